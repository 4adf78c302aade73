#!/usr/bin/env bash
# azd preprovision hook: everything that can be checked before a single resource is created, so that a
# mistake costs seconds, not a 10-minute provision and a secret prompt.
#  1. mappings.yaml next to function_app.py exists and is valid: it ships inside the app package
#     (PROVISIONING_CONFIG=mappings.yaml), and without it every function fails on its first run.
#  2. azd's subscription and tenant, and that az is signed in to them (every later hook uses them).
#  3. SCM_ALLOWED_IP_RANGES, the addresses azd deploys from (Kudu/SCM answers no other), and
#     GRAPH_GRANT if set.
set -euo pipefail
here="$(dirname "$0")"
root="$(cd "$here/../.." && pwd)"
# shellcheck source=infra/scripts/lib.sh
source "$here/lib.sh"

# First, before anything that needs az: a broken mappings file is the cheapest mistake to report.
PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" "${PYTHON:-python3}" "$here/check_mappings.py" "$root/mappings.yaml" ||
  die "stopped before provisioning: fix mappings.yaml first"

pin_to_azd
echo "deploying to subscription $SUB (tenant $TENANT)"

ranges="$(azd_value SCM_ALLOWED_IP_RANGES)"
if [[ -z "$ranges" ]]; then
  die "set SCM_ALLOWED_IP_RANGES to the public address(es) you deploy from, as CIDRs: azd env set SCM_ALLOWED_IP_RANGES 203.0.113.7/32 (code is deployed through the app's SCM/Kudu site, which answers no other address; your address is what any 'what is my IP' service shows)"
fi
IFS=',' read -r -a cidrs <<<"$ranges,"
for cidr in "${cidrs[@]}"; do
  cidr="${cidr//[[:space:]]/}"
  if ! [[ "$cidr" =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}/[0-9]{1,2}$ || "$cidr" =~ ^[0-9A-Fa-f:]+/[0-9]{1,3}$ ]]; then
    die "SCM_ALLOWED_IP_RANGES: '$cidr' is not an address range in CIDR form, such as 203.0.113.7/32"
  fi
done

grant="$(azd_value GRAPH_GRANT)"
case "${grant:-auto}" in
  auto | skip | require) ;;
  *) die "GRAPH_GRANT is '$grant': use auto (the default), skip or require" ;;
esac
