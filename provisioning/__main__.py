"""``python -m provisioning``: the operator's command line."""

from provisioning.entrypoints.cli import app

app(prog_name="python -m provisioning")
