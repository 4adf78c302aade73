#!/usr/bin/env bash
# The post-deploy check, from an admin's machine (az login, this repository, `pip install -r
# requirements.txt`). Read-only: it changes nothing in Azure, Entra ID or Druva.
#  1. Every Key Vault reference of the app resolved (an unresolved one reaches the app as its literal
#     text, which the app refuses, naming the setting).
#  2. The app's identity holds the three Graph application permissions (what its token's roles claim
#     will carry; the groups change-notification subscription needs Group.Read.All).
#  3. `python -m provisioning doctor` with the deployed settings: Druva credentials, the mappings' groups,
#     profiles and storages. The Druva secret comes from DRUVA_CLIENT_SECRET in your shell if set, else
#     from Key Vault (which needs Key Vault Secrets User or Officer on the vault: the deploying admin's
#     bootstrap role is removed after provisioning); it is never printed. Graph is read with your own
#     token here (the managed identity has no token outside Azure).
# Usage: infra/scripts/check-deployment.sh <resource group> <function app> [mappings.yaml]
#        AZURE_SUBSCRIPTION_ID=<id> selects the subscription (azd: azd env get-value AZURE_SUBSCRIPTION_ID);
#        otherwise az's default one.
set -euo pipefail
RG="${1:?resource group}"; APP="${2:?function app name}"; CONFIG="${3:-mappings.yaml}"
SUB="${AZURE_SUBSCRIPTION_ID:-$(az account show --query id -o tsv)}"
failed=0

site="$(az functionapp show -g "$RG" -n "$APP" --query id -o tsv --subscription "$SUB")"
unresolved="$(az rest --method get --url "$site/config/configreferences/appsettings?api-version=2022-03-01" \
  --query "value[?properties.status!='Resolved'].name" -o tsv --subscription "$SUB")"
if [[ -n "$unresolved" ]]; then
  echo "FAILED Key Vault references not resolved: $unresolved (secret missing, or the identity lacks Key Vault Secrets User; then restart the app)"
  failed=1
else
  echo "ok     every Key Vault reference resolved"
fi

setting() {
  az functionapp config appsettings list -g "$RG" -n "$APP" --query "[?name=='$1'].value | [0]" -o tsv \
    --subscription "$SUB"
}
client_id="$(setting AZURE_CLIENT_ID)"
principal="$(az identity list -g "$RG" --query "[?clientId=='$client_id'].principalId | [0]" -o tsv --subscription "$SUB")"
held="$(az rest --method GET --url "https://graph.microsoft.com/v1.0/servicePrincipals/$principal/appRoleAssignments" \
  --query "value[].appRoleId" -o tsv)"
for role in User.Read.All Group.Read.All MailboxSettings.Read; do
  id="$(az ad sp show --id 00000003-0000-0000-c000-000000000000 --query "appRoles[?value=='$role'].id | [0]" -o tsv)"
  if grep -qx "$id" <<<"$held"; then
    echo "ok     Graph application permission $role"
  else
    echo "FAILED Graph application permission $role is missing: run infra/scripts/grant-graph-permissions.sh $principal"
    failed=1
  fi
done

vault="$(setting DRUVA_CLIENT_SECRET | sed -E 's#.*https://([^.]+)\..*#\1#')"
if [[ -z "${DRUVA_CLIENT_SECRET:-}" ]]; then
  if ! DRUVA_CLIENT_SECRET="$(az keyvault secret show --vault-name "$vault" --name druva-client-secret \
    --query value -o tsv --subscription "$SUB" 2>/dev/null)"; then
    echo "FAILED cannot read druva-client-secret from $vault (you need Key Vault Secrets User on it): give it for this one command instead: read -rs DRUVA_CLIENT_SECRET && DRUVA_CLIENT_SECRET=\"\$DRUVA_CLIENT_SECRET\" $0 $*"
    exit 1
  fi
fi
GRAPH_ACCESS_TOKEN="$(az account get-access-token --subscription "$SUB" --resource-type ms-graph --query accessToken -o tsv)" \
DRUVA_CLIENT_SECRET="$DRUVA_CLIENT_SECRET" \
DRUVA_API_URL="$(setting DRUVA_API_URL)" DRUVA_CLIENT_ID="$(setting DRUVA_CLIENT_ID)" \
GRAPH_API_URL="$(setting GRAPH_API_URL)" \
  python3 -m provisioning doctor --config "$CONFIG" || failed=1
exit "$failed"
