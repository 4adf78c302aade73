#!/usr/bin/env bash
# azd preprovision hook: everything that can be checked before a single resource is created, so that a
# mistake costs seconds, not a 10-minute provision and a secret prompt.
#  1. mappings.yaml next to function_app.py exists and is valid: it ships inside the app package
#     (PROVISIONING_CONFIG=mappings.yaml), and without it every function fails on its first run. It is
#     read by the app's own loader, so the hooks' Python (PYTHON, else python3) must be 3.11 or later with
#     requirements.txt installed: otherwise the hook stops, saying so (a file it cannot check never passes).
#  2. azd's subscription and tenant, and that az is signed in to them (every later hook uses them).
#  3. SCM_ALLOWED_IP_RANGES, the addresses azd deploys from (Kudu/SCM answers no other): each an IPv4 or
#     IPv6 range in CIDR form; a range of every address (0.0.0.0/0, ::/0) only with SCM_ALLOW_ANY=yes.
#     And GRAPH_GRANT if set.
set -euo pipefail
here="$(dirname "$0")"
root="$(cd "$here/../.." && pwd)"
# shellcheck source=infra/scripts/lib.sh
source "$here/lib.sh"

# First, before anything that needs az: a broken mappings file is the cheapest mistake to report.
mappings_check "$here/check_mappings.py" "$root/mappings.yaml" "stopped before provisioning"

pin_to_azd
echo "deploying to subscription $SUB (tenant $TENANT)"

ranges="$(azd_value SCM_ALLOWED_IP_RANGES)"
if [[ -z "$ranges" ]]; then
  die "set SCM_ALLOWED_IP_RANGES to the public address(es) you deploy from, as CIDRs: azd env set SCM_ALLOWED_IP_RANGES 203.0.113.7/32 (code is deployed through the app's SCM/Kudu site, which answers no other address; your address is what any 'what is my IP' service shows)"
fi
# Every entry a real IPv4/IPv6 range; none that opens SCM to every address unless SCM_ALLOW_ANY=yes (in
# the shell or the azd environment). $PY is the Python mappings_check settled on.
allow_any="${SCM_ALLOW_ANY:-$(azd_value SCM_ALLOW_ANY)}"
SCM_ALLOW_ANY="$allow_any" "$PY" "$here/check_scm_ranges.py" "$ranges" ||
  die "stopped before provisioning: fix SCM_ALLOWED_IP_RANGES (azd env set SCM_ALLOWED_IP_RANGES 203.0.113.7/32)"

grant="$(azd_value GRAPH_GRANT)"
case "${grant:-auto}" in
  auto | skip | require) ;;
  *) die "GRAPH_GRANT is '$grant': use auto (the default), skip or require" ;;
esac
