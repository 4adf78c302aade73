#!/usr/bin/env bash
# Grants the app's managed identity its three Microsoft Graph application permissions, all read-only:
#   User.Read.All         users, /users/delta, the users change-notification subscription
#   Group.Read.All        groups, their members, /groups/delta, the groups subscription
#   MailboxSettings.Read  mailboxSettings.userPurpose, to tell shared mailboxes from disabled people
#
# Usage: infra/scripts/grant-graph-permissions.sh [--new-identity] [--tenant <tenant id>] <principal id>
#        infra/scripts/grant-graph-permissions.sh --print-handover [--tenant <tenant id>] <principal id>
#        (the principal id is the deployment output managedIdentityPrincipalId; or MI=<principal id>)
#
# Needs: az login as someone with AppRoleAssignment.ReadWrite.All and Application.Read.All in that tenant
# (for example a Privileged Role Administrator): `az login --tenant <tenant id> --allow-no-subscriptions`.
# Without --tenant: AZURE_TENANT_ID, else the tenant az is signed in to.
#
# Idempotent: roles already granted are left alone, so it can run after every deployment. A new
# user-assigned identity takes a few minutes to replicate in Entra ID. Only its symptoms are retried, for
# up to ~10 minutes: a 404 Request_ResourceNotFound about the identity itself, "Not a valid reference
# update", and throttling or an unavailable service (429, 5xx). Whether a 404 for the identity is
# replication or a wrong id only the caller knows: --new-identity (the identity was created minutes ago:
# azd's postprovision hook passes it) waits for it; without it, a principal id Graph has never shown fails
# at once. Once Graph has shown the identity, a later 404 about it is a replica catching up, and waited
# for. Every other error ("not found" of anything else, a 400 such as "Permission being assigned was not
# found on application") fails at once with Graph's words. A refusal (403: the signed-in account may not
# grant app roles) stops at once too and prints what to hand to someone who may.
# Exit status: 0 granted (or already held), 3 refused (hand-over printed), 4 the identity still not
# replicated (or Graph still throttling) after waiting, 2 usage, 1 anything else (the error shown).
set -euo pipefail
# shellcheck source=infra/scripts/lib.sh
source "$(dirname "$0")/lib.sh"

ROLES=(User.Read.All Group.Read.All MailboxSettings.Read)
GRAPH_APP_ID=00000003-0000-0000-c000-000000000000
GRAPH=https://graph.microsoft.com/v1.0

usage() {
  echo "usage: $0 [--print-handover | --new-identity] [--tenant <tenant id>] <managed identity principal id>" >&2
  echo "       (the deployment output managedIdentityPrincipalId)" >&2
  exit 2
}

TENANT="${AZURE_TENANT_ID:-}"
ONLY_HANDOVER=false
# Whether a 404 Request_ResourceNotFound about the identity is waited out as replication: from the start
# with --new-identity, else once Graph has shown the identity (a replica that has not caught up yet).
WAIT_FOR_IDENTITY=false
while [[ $# -gt 0 ]]; do
  case "$1" in
    --tenant) [[ $# -ge 2 ]] || usage; TENANT="$2"; shift 2 ;;
    --print-handover) ONLY_HANDOVER=true; shift ;;
    --new-identity) WAIT_FOR_IDENTITY=true; shift ;;
    -h | --help) usage ;;
    --) shift; break ;;
    -*) usage ;;
    *) break ;;
  esac
done
MI="${1:-${MI:-}}"
[[ -n "$MI" ]] || usage
GUID='^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$'
if ! [[ "$MI" =~ $GUID ]]; then
  echo "'$MI' is not a principal id: that is a GUID, the deployment output managedIdentityPrincipalId" >&2
  usage
fi
if [[ -z "$TENANT" ]]; then
  TENANT="$(az account show --query tenantId -o tsv)" || die "not signed in: az login --tenant <tenant id> --allow-no-subscriptions"
fi

# What to hand to a Privileged Role Administrator: the principal, the roles, the commands.
handover() {
  cat >&2 <<EOF

=== Microsoft Graph permissions: hand this to a Privileged Role Administrator ===
The provisioning app's managed identity needs three read-only Microsoft Graph application permissions:
  ${ROLES[*]}
  managed identity (service principal) object id: $MI
  tenant: $TENANT
Whoever holds AppRoleAssignment.ReadWrite.All and Application.Read.All (Privileged Role Administrator)
runs, from a clone of this repository:
  az login --tenant $TENANT --allow-no-subscriptions
  infra/scripts/grant-graph-permissions.sh --tenant $TENANT $MI
or, without the repository (Azure Cloud Shell, Bash, signed in to that tenant):
  MI=$MI
  GRAPH_SP=\$(az ad sp show --id $GRAPH_APP_ID --query id -o tsv)
  for ROLE in ${ROLES[*]}; do
    ROLE_ID=\$(az ad sp show --id $GRAPH_APP_ID --query "appRoles[?value=='\$ROLE'].id | [0]" -o tsv)
    az rest --method POST --url "$GRAPH/servicePrincipals/\$MI/appRoleAssignments" \\
      --body "{\\"principalId\\":\\"\$MI\\",\\"resourceId\\":\\"\$GRAPH_SP\\",\\"appRoleId\\":\\"\$ROLE_ID\\"}"
  done
Until then the app runs but cannot read Entra ID: infra/scripts/check-deployment.sh and
\`python -m provisioning doctor\` name the missing permission, the subscription upkeep fails naming it
(\`python -m provisioning status\` shows it, and its alert mails you), and nothing is provisioned.
===
EOF
}

if [[ "$ONLY_HANDOVER" == true ]]; then
  handover
  exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# A Microsoft Graph token of $TENANT, in a file only this user can read: never on a command line.
if ! token="$(az account get-access-token --tenant "$TENANT" --resource-type ms-graph --query accessToken \
  -o tsv 2>"$work/error")" || [[ -z "$token" ]]; then
  die "no Microsoft Graph token for tenant $TENANT: $(cat "$work/error")
Sign in to that tenant (az login --tenant $TENANT --allow-no-subscriptions); a sign-in blocked by a Conditional Access policy (AADSTS53003) needs a device or location the policy allows, or someone else to grant."
fi
(
  umask 077
  printf '{"Authorization": "Bearer %s", "Content-Type": "application/json"}' "$token" >"$work/headers.json"
)
unset token

# graph METHOD PATH [az rest options]: one Graph call as the signed-in account. On failure the error
# text is in $work/error and the status says what kind of failure it was:
#   3 refused (403: only a human with more rights can help), 4 the identity not replicated yet (a 404
#   Request_ResourceNotFound of a path about the identity, or "Not a valid reference update"), 5
#   throttled or unavailable (429, 5xx), 1 anything else: another "not found" too, never retried.
graph() {
  local method="$1" path="$2"
  shift 2
  if az rest --method "$method" --url "$GRAPH$path" --headers "@$work/headers.json" "$@" 2>"$work/error"; then
    return 0
  fi
  if grep -qiE 'Forbidden|Authorization_RequestDenied|Insufficient privileges' "$work/error"; then
    return 3
  elif grep -qF 'Not a valid reference update' "$work/error" ||
    { [[ "$path" == "/servicePrincipals/$MI"[/?]* ]] && grep -qF 'Request_ResourceNotFound' "$work/error"; }; then
    return 4
  elif grep -qiE 'Too Many Requests|TooManyRequests|Service Unavailable|ServiceUnavailable|Bad Gateway|Gateway Timeout|Internal Server Error' "$work/error"; then
    return 5
  fi
  return 1
}

# Like graph, but waits out throttling, and replication while WAIT_FOR_IDENTITY is true; a refusal or
# another error returns at once.
graph_waiting() {
  local attempt=1 status
  while :; do
    status=0
    graph "$@" || status=$?
    case "$status" in
      5) ;;
      4) [[ "$WAIT_FOR_IDENTITY" == true ]] || return 4 ;;
      *) return "$status" ;;
    esac
    if ((attempt >= ATTEMPTS)); then
      echo "giving up after $attempt attempts: $1 $2" >&2
      return "$status"
    fi
    echo "not yet (a new identity takes minutes to replicate in Entra ID); retrying in ${PAUSE}s ($attempt/$ATTEMPTS)" >&2
    sleep "$PAUSE"
    attempt=$((attempt + 1))
  done
}

# Stops on a failed step: a refusal with the hand-over (status 3), replication or throttling that outlasted
# the wait (4), anything else at once (1); each with Graph's words.
failed() {
  local status="$1" step="$2"
  if [[ "$status" == 3 ]]; then
    echo "Microsoft Graph refused to let the signed-in account $step (403): it may not grant app roles in tenant $TENANT." >&2
    handover
    exit 3
  fi
  echo "could not $step: $(cat "$work/error")" >&2
  if [[ "$status" == 4 || "$status" == 5 ]]; then
    exit 4
  fi
  exit 1
}

status=0
graph_sp="$(graph_waiting GET "/servicePrincipals(appId='$GRAPH_APP_ID')?\$select=id" --query id -o tsv)" || status=$?
((status == 0)) || failed "$status" "read Microsoft Graph's service principal"
graph_waiting GET "/servicePrincipals/$MI?\$select=id" --query id -o tsv >/dev/null || status=$?
if ((status == 4)) && [[ "$WAIT_FOR_IDENTITY" != true ]]; then
  echo "Microsoft Graph has no service principal $MI in tenant $TENANT: $(cat "$work/error")" >&2
  die "Check the id: the managed identity's principal (object) id, the deployment output managedIdentityPrincipalId (not its client id), and the tenant. An identity created in the last few minutes may not have reached Entra ID yet: then run again with --new-identity, which waits for it ($ATTEMPTS attempts, ${PAUSE}s apart)."
fi
((status == 0)) || failed "$status" "find the managed identity $MI"
WAIT_FOR_IDENTITY=true # Graph has shown it: a later 404 about it is a replica that has not caught up yet
held="$(graph_waiting GET "/servicePrincipals/$MI/appRoleAssignments" \
  --query "value[?resourceId=='$graph_sp'].appRoleId" -o tsv)" || status=$?
((status == 0)) || failed "$status" "read the managed identity's app role assignments"

for ROLE in "${ROLES[@]}"; do
  role_id="$(graph_waiting GET "/servicePrincipals/$graph_sp?\$select=appRoles" \
    --query "appRoles[?value=='$ROLE'].id | [0]" -o tsv)" || status=$?
  ((status == 0)) || failed "$status" "read the id of $ROLE"
  [[ -n "$role_id" ]] || die "Microsoft Graph has no application permission $ROLE in tenant $TENANT"
  if grep -qxF "$role_id" <<<"$held"; then
    echo "$ROLE: already granted"
    continue
  fi
  graph_waiting POST "/servicePrincipals/$MI/appRoleAssignments" -o none \
    --body "{\"principalId\":\"$MI\",\"resourceId\":\"$graph_sp\",\"appRoleId\":\"$role_id\"}" || status=$?
  if ((status != 0)) && grep -qi 'already exists' "$work/error"; then
    status=0 # granted meanwhile by someone else
  fi
  ((status == 0)) || failed "$status" "grant $ROLE"
  echo "$ROLE: granted"
done
