#!/usr/bin/env bash
# azd predeploy hook: the mappings file ships inside the app package (PROVISIONING_CONFIG=mappings.yaml).
# preprovision checked it before provisioning; this catches `azd deploy` alone, and an edit since.
# The same check and the same Python requirements (lib.sh, mappings_check): a file it cannot check stops it.
set -euo pipefail
here="$(dirname "$0")"
root="$(cd "$here/../.." && pwd)"
# shellcheck source=infra/scripts/lib.sh
source "$here/lib.sh"
mappings_check "$here/check_mappings.py" "$root/mappings.yaml" "nothing was uploaded"
