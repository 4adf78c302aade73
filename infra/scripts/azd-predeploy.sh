#!/usr/bin/env bash
# azd predeploy hook: the mappings file ships inside the app package (PROVISIONING_CONFIG=mappings.yaml);
# without it every function would fail on its first run, so stop before uploading anything.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
if [[ ! -f "$root/mappings.yaml" ]]; then
  echo "mappings.yaml is missing next to function_app.py: copy examples/mappings.yaml and edit it" >&2
  exit 1
fi
