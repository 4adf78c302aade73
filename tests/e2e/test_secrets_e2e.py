"""Planted secrets never come out: every command, debug logging, Graph and Druva failing in every way
the simulators can, and malformed secrets too. Searched for in stdout, stderr, the log records and the
state files, in every form a secret takes in text (raw, URL-encoded, Basic-auth, JSON-escaped)."""

from __future__ import annotations

import base64
import io
import json
import logging
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
from typer.testing import CliRunner

import provisioning.adapters.druva as druva_adapter
from provisioning.adapters.druva import DruvaOptions, DruvaRetryPolicy
from provisioning.entrypoints.cli import app
from simulators.druva import DEFAULT_CLIENT_ID, DEFAULT_SEED
from simulators.local import LocalCloud, local_cloud
from simulators.outages import Outage, OutageKind
from simulators.tenants import seed_use_case

CONFIG = (Path(__file__).parents[2] / "examples" / "mappings.yaml").read_text()
DRUVA_SECRET = "dsec-Pl4nted/Druva+Secret&x=1%zz"
SECRETS = {
    "GRAPH_ACCESS_TOKEN": "gtok-Pl4nted/Graph+Token==",
    "DRUVA_CLIENT_SECRET": DRUVA_SECRET,
    "AZURE_CLIENT_SECRET": "azsec-Pl4nted~Azure.Secret",
    "GRAPH_CLIENT_STATE": "cstate-Pl4nted-Client-State",
    "GRAPH_CLIENT_STATE_PREVIOUS": "cstate-Pl4nted-Previous",
}
COMMANDS = [
    ["sync", "--json"],
    ["sync", "--dry-run"],
    ["sync", "--full", "--json"],
    ["import", "alice@contoso.com", "who@x.com", "../groups"],
    ["explain", "alice@contoso.com"],
    ["doctor"],
]
FAULTS = ["none", "druva refuses the secret", "druva 500", "druva down", "graph 500", "graph 403"]


def forms(secret: str) -> set[str]:
    basic = base64.b64encode(f"{DEFAULT_CLIENT_ID}:{secret}".encode()).decode()
    return {
        secret,
        secret.strip(),
        quote(secret.strip(), safe=""),
        quote_plus(secret.strip(), safe=""),
        json.dumps(secret.strip())[1:-1],
        basic,
    }


class Leaks:
    """Runs the CLI in-process with a log handler of its own, and searches everything it wrote."""

    def __init__(self, cloud: LocalCloud, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.folder, self.monkeypatch = folder, monkeypatch
        for name, value in {**cloud.environment(folder / "state"), **SECRETS}.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("PROVISIONING_LOG_LEVEL", "DEBUG")
        self.config = folder / "mappings.yaml"
        self.config.write_text(CONFIG)
        self.runs = 0
        # Druva's retries sit out milliseconds here; the outage budget stays real (and short).
        fast = DruvaRetryPolicy(
            backoff_seconds=0.01, throttle_seconds=0.01, jitter_seconds=0, outage_seconds=2
        )
        monkeypatch.setattr(druva_adapter, "DruvaOptions", partial(DruvaOptions, retry=fast))

    def run(self, arguments: list[str], planted: dict[str, str]) -> int:
        log = io.StringIO()
        handler = logging.StreamHandler(log)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        try:
            command, *rest = arguments
            result = CliRunner().invoke(app, [command, "--config", str(self.config), "--verbose", *rest])
        finally:
            root.removeHandler(handler)
        self.runs += 1
        assert "Traceback" not in result.stdout + result.stderr, result.stderr
        written = {"stdout": result.stdout, "stderr": result.stderr, "log": log.getvalue()}
        written.update(self.state_files())
        for where, text in written.items():
            for name, secret in planted.items():
                for form in forms(secret):
                    assert form not in text, f"{name} ({form!r}) in {where} after {arguments}"
        return result.exit_code

    def state_files(self) -> dict[str, str]:
        folder = self.folder / "state"
        files = sorted(folder.iterdir()) if folder.is_dir() else []
        return {str(p): p.read_bytes().decode("utf-8", "replace") for p in files if p.is_file()}


@pytest.fixture
def cloud() -> Iterator[LocalCloud]:
    seed = {**DEFAULT_SEED, "credentials": {"client_id": DEFAULT_CLIENT_ID, "client_secret": DRUVA_SECRET}}
    with local_cloud(seed_use_case(), druva_seed=seed) as running:
        yield running


@pytest.fixture
def leaks(cloud: LocalCloud, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Leaks:
    return Leaks(cloud, tmp_path, monkeypatch)


@pytest.mark.parametrize("fault", FAULTS)
def test_no_secret_in_any_output_whatever_fails(
    leaks: Leaks, cloud: LocalCloud, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    if fault == "druva refuses the secret":
        cloud.druva.client_secret = "another-secret"
    elif fault == "druva 500":
        cloud.druva_server.outage(Outage(OutageKind.ERRORS))
    elif fault == "druva down":
        cloud.druva_server.outage(Outage(OutageKind.REFUSED))
    elif fault == "graph 500":
        cloud.graph.inject(500, fraction=1.0)
    elif fault == "graph 403":
        cloud.graph.inject(403, fraction=1.0)
    codes = [leaks.run(arguments, SECRETS) for arguments in COMMANDS]
    if fault == "none":
        assert codes == [0, 0, 0, 1, 0, 0]  # import: who@x.com and ../groups are refused
    else:
        assert all(code in (1, 2) for code in codes[:5]), codes  # doctor reports, exit 1
        assert codes[5] == 1


MALFORMED = [
    ("GRAPH_ACCESS_TOKEN", "gtok-Pl4nted-Malformed\n"),
    ("GRAPH_ACCESS_TOKEN", "gtok-Pl4nted-Malformed\r\nX-Injected: 1"),
    ("DRUVA_CLIENT_SECRET", "dsec-Pl4nted-Malformed\t"),
    ("DRUVA_CLIENT_SECRET", " dsec-Pl4nted-Malformed\x1b[2J"),
    ("AZURE_CLIENT_SECRET", "azsec-Pl4nted-Malformed\x7f"),
    ("GRAPH_CLIENT_STATE", "cstate-Pl4nted-Malformed\n"),
    ("PROVISIONING_TABLE_CONNECTION_STRING", "AccountName=a;AccountKey=Pl4ntedKey-Malformed==\n"),
]


@pytest.mark.parametrize(("name", "value"), MALFORMED)
def test_a_malformed_secret_is_refused_and_never_echoed(
    leaks: Leaks, monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    planted = {**SECRETS, name: value, "key": "Pl4ntedKey-Malformed=="}
    for arguments in COMMANDS:
        assert leaks.run(arguments, planted) == 2
