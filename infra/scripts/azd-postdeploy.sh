#!/usr/bin/env bash
# azd postdeploy hook: restart once so the Key Vault references resolve with the secrets set after
# provisioning, then show each reference's status (every one should say Resolved). Against azd's
# subscription, whatever az's own default is.
set -euo pipefail
# shellcheck source=infra/scripts/lib.sh
source "$(dirname "$0")/lib.sh"
pin_to_azd
APP="$(azd_output functionAppName)"
RG="$(azd env get-value AZURE_RESOURCE_GROUP)"
az functionapp restart --resource-group "$RG" --name "$APP" --subscription "$SUB"
site="$(az functionapp show -g "$RG" -n "$APP" --query id -o tsv --subscription "$SUB")"
az rest --method get --subscription "$SUB" \
  --url "$site/config/configreferences/appsettings?api-version=2022-03-01" \
  --query "value[].{setting:name, status:properties.status}" -o table
echo "The app starts in plan-only mode: read its plan with 'python -m provisioning status' (infra/README.md, Go live)."
