#!/usr/bin/env bash
# azd postprovision hook: what a Bicep deployment cannot do. Idempotent: safe after every `azd up`.
#  1. Microsoft Graph permissions for the app's identity (grant-graph-permissions.sh; waits for replication).
#  2. The two Key Vault secrets, only when missing: the Graph clientState is generated here (a redeploy
#     never rotates it under live subscriptions); the Druva client secret comes from DRUVA_CLIENT_SECRET
#     (`azd env set DRUVA_CLIENT_SECRET ...`) or is asked for, never echoed.
set -euo pipefail
here="$(dirname "$0")"
# shellcheck source=infra/scripts/lib.sh
source "$here/lib.sh"

"$here/grant-graph-permissions.sh" "$(azd_output managedIdentityPrincipalId)"

KV="$(azd_output keyVaultName)"
has_secret() { az keyvault secret show --vault-name "$KV" --name "$1" --query id -o tsv >/dev/null 2>&1; }
# The Secrets Officer role on the vault (secretsOfficerPrincipalId = the azd user) may still be propagating.
retry az keyvault secret list --vault-name "$KV" --query "[0].id" -o none

if has_secret graph-client-state; then
  echo "graph-client-state: present, left as it is"
else
  python3 -c 'import secrets; print(secrets.token_urlsafe(48), end="")' |
    az keyvault secret set --vault-name "$KV" --name graph-client-state --file /dev/stdin -o none
  echo "graph-client-state: generated"
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
    echo "druva-client-secret is missing: run 'azd env set DRUVA_CLIENT_SECRET <secret>' and 'azd provision'" >&2
    exit 1
  fi
  printf '%s' "$secret" | az keyvault secret set --vault-name "$KV" --name druva-client-secret --file /dev/stdin -o none
  unset secret
  echo "druva-client-secret: stored"
fi
