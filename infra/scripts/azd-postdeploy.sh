#!/usr/bin/env bash
# azd postdeploy hook: restart once so the Key Vault references resolve with the secrets set after
# provisioning, then show each reference's status (every one should say Resolved).
set -euo pipefail
# shellcheck source=infra/scripts/lib.sh
source "$(dirname "$0")/lib.sh"
APP="$(azd_output functionAppName)"
RG="$(azd env get-value AZURE_RESOURCE_GROUP)"
az functionapp restart --resource-group "$RG" --name "$APP"
az rest --method get \
  --url "$(az functionapp show -g "$RG" -n "$APP" --query id -o tsv)/config/configreferences/appsettings?api-version=2022-03-01" \
  --query "value[].{setting:name, status:properties.status}" -o table
