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

# The Python the hooks check with: $PYTHON, else python3 (an activated venv's). The checks import the
# app's own code, so it must be the project's minimum (requires-python in pyproject.toml) or later, with
# requirements.txt installed. Its version is asked in a way any Python (even 2.x) can answer: one too old
# to parse check_mappings.py is told so, not that mappings.yaml is broken. Sets PY.
PYTHON_MIN=3.11
PYTHON_HINT="install Python $PYTHON_MIN or later with the app's requirements and run the hooks with it: python3.11 -m venv .venv && .venv/bin/pip install -r requirements.txt, then activate it (. .venv/bin/activate) or set PYTHON=.venv/bin/python"
hook_python() {
  PY="${PYTHON:-python3}"
  local version
  if ! version="$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)"; then
    die "cannot run '$PY' (the hooks' Python, PYTHON or python3): $PYTHON_HINT"
  fi
  if ! [[ "$version" =~ ^([0-9]+)\.([0-9]+)$ ]]; then
    die "cannot tell the version of '$PY' (it said '$version'): $PYTHON_HINT"
  fi
  local major=$((10#${BASH_REMATCH[1]})) minor=$((10#${BASH_REMATCH[2]}))
  local need_major=$((10#${PYTHON_MIN%%.*})) need_minor=$((10#${PYTHON_MIN#*.}))
  if ((major < need_major || (major == need_major && minor < need_minor))); then
    die "'$PY' is Python $version, too old: the hooks need Python $PYTHON_MIN or later (the project's requires-python): $PYTHON_HINT"
  fi
}

# mappings_check CHECKER FILE STOPPED: check_mappings.py on FILE (the repository root beside it on
# PYTHONPATH, so the app's own loader reads it). A problem with the file stops the hook with STOPPED and
# "fix mappings.yaml"; a file that could not be checked (no requirements) stops it too, never passes.
mappings_check() {
  local checker="$1" file="$2" stopped="$3" status=0
  hook_python
  PYTHONPATH="$(dirname "$file")${PYTHONPATH:+:$PYTHONPATH}" "$PY" "$checker" "$file" || status=$?
  case "$status" in
    0) ;;
    1) die "$stopped: fix mappings.yaml first" ;;
    *) die "$stopped: mappings.yaml was not checked (above); a file that cannot be checked is not deployed" ;;
  esac
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
