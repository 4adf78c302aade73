# Shared by the deployment scripts (sourced, not run). Bash: the hooks run `bash <script>`.

# Runs "$@" until it succeeds, at most $ATTEMPTS times, $PAUSE seconds apart: new identities and role
# assignments take minutes to replicate in Entra ID and Azure RBAC. Only for calls whose failure can be
# replication; a refusal that needs a human is never retried (grant-graph-permissions.sh tells them apart).
ATTEMPTS="${GRANT_ATTEMPTS:-20}"
PAUSE="${GRANT_PAUSE_SECONDS:-30}"
retry() {
  local attempt=1
  until "$@"; do
    if ((attempt >= ATTEMPTS)); then
      echo "giving up after $attempt attempts: $1 $2 ..." >&2
      return 1
    fi
    echo "not yet (replication can take minutes); retrying in ${PAUSE}s ($attempt/$ATTEMPTS)" >&2
    sleep "$PAUSE"
    attempt=$((attempt + 1))
  done
}

die() {
  printf '%s\n' "$*" >&2
  exit 1
}

# A value of the azd environment, empty when unset (older azd print nothing, newer ones fail).
azd_value() {
  azd env get-value "$1" 2>/dev/null || true
}

# A deployment output under azd (stored under its own name, or upper-cased).
azd_output() {
  azd env get-value "$1" 2>/dev/null || azd env get-value "${1^^}"
}

# An output that may be absent or empty (an optional resource): empty then, not a failure.
azd_optional_output() {
  azd env get-value "$1" 2>/dev/null || azd env get-value "${1^^}" 2>/dev/null || true
}

# Pins this hook to azd's subscription and tenant: SUB and TENANT come from the azd environment, never
# from az's own default, and every az call of a hook passes --subscription "$SUB" (Graph calls use a
# token of "$TENANT"). A subscription az cannot see, or one of another tenant, stops the hook here.
pin_to_azd() {
  SUB="$(azd_value AZURE_SUBSCRIPTION_ID)"
  if [[ -z "$SUB" ]]; then
    die "azd's environment has no AZURE_SUBSCRIPTION_ID: run 'azd env set AZURE_SUBSCRIPTION_ID <subscription id>' (or 'azd provision', which asks for it), then again"
  fi
  local owner
  if ! owner="$(az account show --subscription "$SUB" --query tenantId -o tsv 2>/dev/null)" || [[ -z "$owner" ]]; then
    die "az is not signed in to azd's subscription $SUB: run 'az login --tenant <the tenant of that subscription>', then again"
  fi
  TENANT="$(azd_value AZURE_TENANT_ID)"
  if [[ -z "$TENANT" ]]; then
    # azd records the tenant with the subscription; an older environment may lack it. The subscription
    # decides it, so it is recorded, never guessed from az's default.
    TENANT="$owner"
    azd env set AZURE_TENANT_ID "$TENANT" >/dev/null
    echo "AZURE_TENANT_ID: recorded $TENANT, the tenant of subscription $SUB"
  elif [[ "$TENANT" != "$owner" ]]; then
    die "azd deploys to tenant $TENANT, but subscription $SUB belongs to tenant $owner: fix AZURE_SUBSCRIPTION_ID or AZURE_TENANT_ID with 'azd env set'"
  fi
  export SUB TENANT
}
