#!/usr/bin/env bash
# azd predeploy hook: the mappings file ships inside the app package (PROVISIONING_CONFIG=mappings.yaml).
# preprovision checked it before provisioning; this catches `azd deploy` alone, and an edit since.
set -euo pipefail
here="$(dirname "$0")"
root="$(cd "$here/../.." && pwd)"
PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" "${PYTHON:-python3}" "$here/check_mappings.py" "$root/mappings.yaml" || {
  echo "nothing was uploaded: fix mappings.yaml first" >&2
  exit 1
}
