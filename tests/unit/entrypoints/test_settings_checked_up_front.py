"""Every setting is checked before any work: a value the product cannot use stops every command with
exit code 2 and one line naming the setting, never its value. A credential set but left blank is
refused rather than silently replaced by another way to sign in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from provisioning.settings import Settings
from tests.unit.entrypoints import test_cli as contract
from tests.unit.entrypoints.test_cli import invoke
from tests.unit.service.test_sync import World

world = contract.world  # the contract tests' fake services: a refused setting never reaches them
config = contract.config
EXAMPLE = Path(__file__).resolve().parents[3] / "local.settings.example.json"
CREDENTIALS = (
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_ID",
    "AZURE_CLIENT_SECRET",
    "DRUVA_CLIENT_ID",
    "DRUVA_CLIENT_SECRET",
)
TABLE = ("PROVISIONING_TABLE_CONNECTION_STRING", "PROVISIONING_TABLE_ENDPOINT")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in (*CREDENTIALS, *TABLE, "GRAPH_ACCESS_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PROVISIONING_STATE", str(tmp_path / "state"))


def command_lines(config: Path) -> list[list[str]]:
    where = ["--config", str(config)]
    return [
        ["sync", *where],
        ["sync", "--dry-run", *where],
        ["sync", "--json", *where],
        ["status", *where],
        ["explain", *where, "ann@contoso.com"],
        ["doctor", *where],
    ]


def refused(world: World, config: Path, name: str, *planted: str) -> None:
    """Every command stops with exit 2 naming ``name``, before any work, echoing none of ``planted``."""
    for arguments in command_lines(config):
        code, out, err = invoke(*arguments)
        assert code == 2, (arguments, out, err)
        assert f"setting {name}" in err, (arguments, err)
        assert not any(value in out + err for value in planted), (arguments, out, err)
        assert "unexpected" not in err and "Traceback" not in out + err
        if "--json" in arguments:
            assert f"setting {name}" in json.loads(out.strip().splitlines()[-1])["error"]
    assert world.druva.writes == [] and world.directory.calls["get_user"] == 0


def test_a_state_folder_that_is_a_symbolic_link_loop(
    world: World, config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    monkeypatch.setenv("PROVISIONING_STATE", str(tmp_path / "loop"))
    refused(world, config, "PROVISIONING_STATE")
    _, _, err = invoke("status", "--config", str(config))
    assert "symbolic links" in err  # the system's own words for the loop


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("PLANTEDjunk", "is not a list of Key=value pairs"),
        ("AccountName=PLANTEDacct", "neither AccountName with AccountKey nor a SharedAccessSignature"),
        ("AccountName=acct;AccountKey=PLANTED%%key", "AccountKey that is not base64"),
        ("SharedAccessSignature=sv=PLANTED&sig=x", "no TableEndpoint"),
        (
            "TableEndpoint=PLANTEDhost;SharedAccessSignature=sv=1",
            "TableEndpoint that must start with https://",
        ),
    ],
)
def test_a_table_connection_string_that_is_not_one(
    world: World, config: Path, monkeypatch: pytest.MonkeyPatch, value: str, why: str
) -> None:
    monkeypatch.setenv("PROVISIONING_TABLE_CONNECTION_STRING", value)
    refused(world, config, "PROVISIONING_TABLE_CONNECTION_STRING", "PLANTED")
    _, _, err = invoke("status", "--config", str(config))
    assert why in err and "UseDevelopmentStorage=true" in err  # what is wrong, and the forms it may take


@pytest.mark.parametrize(
    "value",
    [
        "UseDevelopmentStorage=true",
        "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=c2VjcmV0;EndpointSuffix=core.windows.net",
        "TableEndpoint=https://acct.table.core.windows.net;SharedAccessSignature=sv=2024&sig=abc",
    ],
)
def test_the_table_connection_strings_azure_gives_are_accepted(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("PROVISIONING_TABLE_CONNECTION_STRING", value)
    assert Settings().uses_table_storage


@pytest.mark.parametrize(
    "endpoint", ["http://acct.table.core.windows.net", "http://127.0.0.1:10002/devstoreaccount1"]
)
def test_a_table_endpoint_without_tls(
    world: World, config: Path, monkeypatch: pytest.MonkeyPatch, endpoint: str
) -> None:
    """Reached with the app's Azure identity, whose token the SDK sends over TLS only: http:// would
    fail at the first request, on loopback too (Azurite over http is a connection string)."""
    monkeypatch.setenv("PROVISIONING_TABLE_ENDPOINT", endpoint)
    refused(world, config, "PROVISIONING_TABLE_ENDPOINT")
    _, _, err = invoke("status", "--config", str(config))
    assert "over TLS" in err and "PROVISIONING_TABLE_CONNECTION_STRING instead" in err


BLANK_CREDENTIALS = [
    (
        {"GRAPH_ACCESS_TOKEN": ""},
        "GRAPH_ACCESS_TOKEN",
        "remove it to sign in with the Azure identity",
    ),
    ({"GRAPH_ACCESS_TOKEN": "  "}, "GRAPH_ACCESS_TOKEN", "is set but empty"),
    (
        {"AZURE_TENANT_ID": "t", "AZURE_CLIENT_ID": "c", "AZURE_CLIENT_SECRET": ""},
        "AZURE_CLIENT_SECRET",
        "is empty while AZURE_TENANT_ID and AZURE_CLIENT_ID are set",
    ),
    (
        {"DRUVA_CLIENT_ID": "client", "DRUVA_CLIENT_SECRET": " "},
        "DRUVA_CLIENT_SECRET",
        "is empty while DRUVA_CLIENT_ID is set",
    ),
]


@pytest.mark.parametrize(("environment", "name", "why"), BLANK_CREDENTIALS)
def test_a_blank_credential_is_refused_not_replaced(
    world: World,
    config: Path,
    monkeypatch: pytest.MonkeyPatch,
    environment: dict[str, str],
    *,
    name: str,
    why: str,
) -> None:
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    refused(world, config, name)
    _, _, err = invoke("sync", "--config", str(config))
    assert why in err


def test_a_blank_secret_no_credential_selects_means_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    """How local.settings.example.json leaves settings it does not use: "" (a file cannot unset one)."""
    for name in ("AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "DRUVA_CLIENT_ID", "DRUVA_CLIENT_SECRET"):
        monkeypatch.setenv(name, "")
    monkeypatch.setenv("AZURE_TENANT_ID", "72f988bf-0000-4000-8000-00000000c0de")
    settings = Settings()
    assert settings.azure_client_secret is None and settings.druva_client_secret is None


def test_the_documented_example_still_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in json.loads(EXAMPLE.read_text())["Values"].items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.graph_access_token is not None and settings.azure_client_secret is None
    assert settings.uses_table_storage  # UseDevelopmentStorage=true passes the connection-string check
