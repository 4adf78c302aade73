"""Local stand-ins and tooling, not deployed: the simulators, the local Functions host, the demo, the soak."""

from pathlib import Path

# The repository's root, where host.json, infra/, examples/ and node_modules/ are: written once, as the
# move of this package out of provisioning/ showed when four copies of it all pointed one level too high.
REPOSITORY = Path(__file__).resolve().parents[1]
