# Shared by the deployment scripts (sourced, not run).

# Runs "$@" until it succeeds, at most $ATTEMPTS times, $PAUSE seconds apart: new identities and role
# assignments take minutes to replicate in Entra ID and Azure RBAC.
ATTEMPTS="${GRANT_ATTEMPTS:-20}"
PAUSE="${GRANT_PAUSE_SECONDS:-30}"
retry() {
  local attempt=1
  until "$@"; do
    if (( attempt >= ATTEMPTS )); then
      echo "giving up after $attempt attempts: $1 $2 ..." >&2
      return 1
    fi
    echo "not yet (replication can take minutes); retrying in ${PAUSE}s ($attempt/$ATTEMPTS)" >&2
    sleep "$PAUSE"
    attempt=$((attempt + 1))
  done
}

# A deployment output under azd (stored under its own name, or upper-cased).
azd_output() {
  azd env get-value "$1" 2>/dev/null || azd env get-value "${1^^}"
}
