#!/usr/bin/env bash
# Grants the app's managed identity its three Microsoft Graph application permissions, all read-only:
#   User.Read.All         users, /users/delta, the users change-notification subscription
#   Group.Read.All        groups, their members, /groups/delta, the groups subscription
#   MailboxSettings.Read  mailboxSettings.userPurpose, to tell shared mailboxes from disabled people
#
# Usage: infra/scripts/grant-graph-permissions.sh <managed identity principal id>
#        (or MI=<principal id>): the deployment output managedIdentityPrincipalId
#
# Idempotent: roles already granted are left alone, so it can run after every deployment. A new
# user-assigned identity takes a few minutes to replicate in Entra ID ("Not a valid reference update",
# or the service principal not found); each step is retried for up to ~10 minutes.
# Needs: az login as someone with AppRoleAssignment.ReadWrite.All and Application.Read.All (for example
# the Privileged Role Administrator role).
set -euo pipefail
# shellcheck source=infra/scripts/lib.sh
source "$(dirname "$0")/lib.sh"

MI="${1:-${MI:-}}"
if [[ -z "$MI" ]]; then
  echo "usage: $0 <managed identity principal id> (deployment output managedIdentityPrincipalId)" >&2
  exit 2
fi
ROLES=(User.Read.All Group.Read.All MailboxSettings.Read)
GRAPH_APP_ID=00000003-0000-0000-c000-000000000000
GRAPH_SP=$(az ad sp show --id "$GRAPH_APP_ID" --query id -o tsv)
retry az ad sp show --id "$MI" --query id -o tsv >/dev/null

for ROLE in "${ROLES[@]}"; do
  ROLE_ID=$(az ad sp show --id "$GRAPH_APP_ID" --query "appRoles[?value=='$ROLE'].id | [0]" -o tsv)
  HELD=$(az rest --method GET \
    --url "https://graph.microsoft.com/v1.0/servicePrincipals/$MI/appRoleAssignments" \
    --query "value[?appRoleId=='$ROLE_ID'] | length(@)" -o tsv)
  if [[ "$HELD" != "0" ]]; then
    echo "$ROLE: already granted"
    continue
  fi
  retry az rest --method POST -o none \
    --url "https://graph.microsoft.com/v1.0/servicePrincipals/$MI/appRoleAssignments" \
    --headers Content-Type=application/json \
    --body "{\"principalId\":\"$MI\",\"resourceId\":\"$GRAPH_SP\",\"appRoleId\":\"$ROLE_ID\"}"
  echo "$ROLE: granted"
done
