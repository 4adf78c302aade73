#!/usr/bin/env bash
# azd postprovision hook: what a Bicep deployment cannot do. Idempotent: safe after every `azd up`.
# Runs against azd's subscription and tenant (pin_to_azd), whatever az's own default is.
#  1. Microsoft Graph permissions for the app's identity (grant-graph-permissions.sh), unless
#     GRAPH_GRANT=skip. Only a Privileged Role Administrator (or equivalent) may grant them: for anyone
#     else the grant is refused at once, the hand-over for one is printed, and the deployment goes on
#     (GRAPH_GRANT=require stops it instead). The same with GRAPH_GRANT=auto for any other failure but
#     replication that outlasted the wait: no Graph token (a Conditional Access block, AADSTS53003, ...)
#     or an error Graph gave: the reason, then the hand-over, and the deployment finishes. Until the grant
#     is done, check-deployment.sh, `doctor` and `status` say it is missing.
#  2. The two Key Vault secrets, only when missing: the Graph clientState is generated here (a redeploy
#     never rotates it under live subscriptions); the Druva client secret is asked for without echo, or
#     read from DRUVA_CLIENT_SECRET in the shell that runs azd (never stored in the azd environment).
#  3. Your Key Vault Secrets Officer role on the vault, needed only for step 2, is removed again.
#  4. The budget's start date is recorded (BUDGET_START_DATE): Azure refuses to change it later.
set -euo pipefail
here="$(dirname "$0")"
# shellcheck source=infra/scripts/lib.sh
source "$here/lib.sh"
pin_to_azd

GRANT="$(azd_value GRAPH_GRANT)"
GRANT="${GRANT:-auto}"
case "$GRANT" in
  auto | skip | require) ;;
  *) die "GRAPH_GRANT is '$GRANT': use auto (the default), skip or require (azd env set GRAPH_GRANT ...)" ;;
esac

MI="$(azd_output managedIdentityPrincipalId)"
graph_grant=granted
if [[ "$GRANT" == skip ]]; then
  echo "GRAPH_GRANT=skip: the Microsoft Graph permissions are left to someone who may grant them"
  "$here/grant-graph-permissions.sh" --print-handover --tenant "$TENANT" "$MI"
  graph_grant=handed-over
else
  # The identity comes from this deployment: a 404 for it is Entra ID replication, waited out.
  status=0
  "$here/grant-graph-permissions.sh" --new-identity --tenant "$TENANT" "$MI" || status=$?
  case "$status" in
    0) ;;
    4) # Still not replicated (or throttled) after ~10 minutes: provisioning again retries the whole hook.
      die "the managed identity is still not usable in Microsoft Graph (above): run 'azd provision' again in a few minutes" ;;
    *)
      if [[ "$GRANT" != auto ]]; then
        exit "$status"
      fi
      if [[ "$status" != 3 ]]; then # a refusal printed the hand-over already
        echo "The Microsoft Graph permissions could not be granted from here: the reason is above." >&2
        "$here/grant-graph-permissions.sh" --print-handover --tenant "$TENANT" "$MI"
      fi
      echo "Going on without the Graph permissions: the deployment finishes, the app waits for the grant." >&2
      graph_grant=handed-over
      ;;
  esac
fi

KV="$(azd_output keyVaultName)"
has_secret() {
  az keyvault secret show --vault-name "$KV" --name "$1" --query id -o tsv --subscription "$SUB" >/dev/null 2>&1
}
# The Secrets Officer role on the vault (secretsOfficerPrincipalId = the azd user) may still be propagating.
retry az keyvault secret list --vault-name "$KV" --query "[0].id" -o none --subscription "$SUB"

if has_secret graph-client-state; then
  echo "graph-client-state: present, left as it is"
else
  python3 -c 'import secrets; print(secrets.token_urlsafe(48), end="")' |
    az keyvault secret set --vault-name "$KV" --name graph-client-state --file /dev/stdin -o none --subscription "$SUB"
  echo "graph-client-state: generated"
fi

if [[ -n "$(azd_value DRUVA_CLIENT_SECRET)" ]]; then
  echo "warning: DRUVA_CLIENT_SECRET is stored in the azd environment, in plain text under .azure/: delete that line from .azure/<environment>/.env" >&2
fi
if has_secret druva-client-secret; then
  echo "druva-client-secret: present, left as it is"
else
  secret="${DRUVA_CLIENT_SECRET:-}"
  if [[ -z "$secret" && -t 0 ]]; then
    read -rs -p "Druva client secret (Druva console > Settings > API Credentials): " secret
    echo
  fi
  if [[ -z "$secret" ]]; then
    echo "druva-client-secret is missing and there is no terminal to ask for it. Run 'azd provision' in a terminal (it asks, without echo), or give it for that one command: read -rs DRUVA_CLIENT_SECRET && DRUVA_CLIENT_SECRET=\"\$DRUVA_CLIENT_SECRET\" azd provision" >&2
    exit 1
  fi
  printf '%s' "$secret" | az keyvault secret set --vault-name "$KV" --name druva-client-secret --file /dev/stdin -o none --subscription "$SUB"
  unset secret
  echo "druva-client-secret: stored"
fi

# Both secrets are in the vault: the bootstrap role goes (the next provision creates it for this hook).
bootstrap="$(azd_optional_output bootstrapRoleAssignmentId)"
if [[ -n "$bootstrap" ]]; then
  az role assignment delete --ids "$bootstrap" --subscription "$SUB" -o none
  echo "Key Vault Secrets Officer on $KV: removed again (it was needed only to store the two secrets)"
fi

if [[ -z "$(azd_value BUDGET_START_DATE)" ]]; then
  start="$(azd_optional_output budgetStartDate)"
  if [[ -n "$start" ]]; then
    azd env set BUDGET_START_DATE "$start" >/dev/null
    echo "BUDGET_START_DATE: recorded $start (Azure refuses to change a budget's start date)"
  fi
fi

if [[ "$graph_grant" != granted ]]; then
  echo "Reminder: the Microsoft Graph permissions are not granted yet; hand over the text above." >&2
fi
