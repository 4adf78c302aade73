"""Hostile and careless input at the command line: every one gets its exit code and one clear line,
never a traceback, and the --json counts line ends stdout whatever happened."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from provisioning.errors import TransientError
from tests.unit.entrypoints import test_cli as contract
from tests.unit.entrypoints.test_cli import invoke
from tests.unit.service.test_sync import World

world = contract.world  # the contract tests' fixtures: the fake services and the mappings file
config = contract.config

# --- import: 13 shapes of an account that cannot be imported, each reported, each a failure ---------

UNIMPORTABLE = [
    ("", "is empty"),
    ("   ", "is empty"),
    ("'ann@contoso.com'", "no Entra account"),  # quotes are legal in a name: Graph looks, finds none
    ('"ann@contoso.com"', "holds a character"),
    ("../groups", "holds a character"),
    ("a@x/../b@x", "holds a character"),
    ("?$select=id", "holds a character"),
    ("%2e%2e%2fgroups", "holds a character"),
    ("ann@contoso.com\nbob@contoso.com", "holds a character"),
    ("x" * 10_000 + "@contoso.com", "characters long"),
    ("who@x.com", "no Entra account"),
    ("guest@contoso.com", "only Member accounts"),
    ("gone@contoso.com", "disabled"),
]


@pytest.mark.parametrize(("ref", "reason"), UNIMPORTABLE)
def test_every_account_that_cannot_be_imported_is_a_failure(
    world: World, config: Path, ref: str, reason: str
) -> None:
    code, out, err = invoke("import", "--config", str(config), ref)
    assert code == 1, (out, err)
    assert reason in err
    assert "Traceback" not in out + err
    assert world.druva.writes == []
    assert len(err) < 1000  # a 10 KB name is shortened, not echoed


def test_one_known_and_499_unknown(world: World, config: Path) -> None:
    unknown = [f"nobody{n}@contoso.com" for n in range(499)]
    code, out, err = invoke("import", "--config", str(config), "ann@contoso.com", *unknown)
    assert code == 1
    assert "ann@contoso.com: created" in out
    assert err.count("not imported") == 499
    assert [w for w in world.druva.writes if w[0] == "create"] == [("create", "ann@contoso.com")]


def test_a_path_like_name_never_reaches_the_directory(world: World, config: Path) -> None:
    before = world.directory.calls["get_user"]
    invoke("import", "--config", str(config), "../groups", "a@x/../b@x", "?$select=id", "%2e%2e%2fgroups")
    assert world.directory.calls["get_user"] == before


def test_the_table_and_the_exit_code_agree(world: World, config: Path) -> None:
    code, out, _ = invoke("import", "--config", str(config), "who@x.com", "ann@contoso.com")
    failed_column = out.strip().splitlines()[-2].split("│")[-2].strip()  # the table's last cell
    assert failed_column == "1" and code == 1


# --- settings: refused at start-up with exit 2, naming the setting and never echoing the value -------

BAD_SETTINGS = [
    ("GRAPH_API_URL", "not a url", "must start with https://"),
    ("GRAPH_API_URL", "https://graph.example:99999/v1.0", "not a valid URL"),
    ("GRAPH_API_URL", "https://:443/v1.0", "has no host name"),
    ("DRUVA_API_URL", "apis.druva.com", "must start with https://"),
    ("DRUVA_API_URL", "https://apis.druva.com:0", "port 0"),
    ("DRUVA_API_URL", "ftp://apis.druva.com", "must start with https://"),
    ("DRUVA_API_URL", "https://apis.druva.com:port", "not a valid URL"),
    ("GRAPH_NOTIFICATION_URL", "graph/notifications", "must start with https://"),
    ("PROVISIONING_TABLE_ENDPOINT", "account.table.core.windows.net", "table endpoint"),
    ("GRAPH_ACCESS_TOKEN", "tok-PLANTEDVALUE\n", "control character"),
    ("GRAPH_ACCESS_TOKEN", "tok-PLANTEDVALUE\r\nX-Injected: 1", "control character"),
    ("DRUVA_CLIENT_SECRET", "PLANTEDVALUE\t", "control character"),
    ("AZURE_CLIENT_SECRET", "PLANTED\x01VALUE", "control character"),
    ("GRAPH_CLIENT_STATE", "PLANTEDVALUE\x1b[2J", "control character"),
    ("PROVISIONING_TABLE_CONNECTION_STRING", "AccountKey=PLANTEDVALUE\n", "control character"),
    ("DRUVA_CLIENT_ID", "client\x7f", "control character"),
    ("PROVISIONING_LOG_LEVEL", "LOUD", "must be one of DEBUG, INFO, WARNING, ERROR"),
]


@pytest.mark.parametrize(("name", "value", "reason"), BAD_SETTINGS)
@pytest.mark.parametrize("command", ["sync", "import", "explain", "doctor"])
def test_bad_settings_stop_before_any_work(
    world: World,
    config: Path,
    monkeypatch: pytest.MonkeyPatch,
    command: str,
    name: str,
    *,
    value: str,
    reason: str,
) -> None:
    monkeypatch.setenv(name, value)
    arguments = [command, "--config", str(config)] + (
        ["ann@contoso.com"] if command in ("import", "explain") else []
    )
    code, out, err = invoke(*arguments)
    assert code == 2, (out, err)
    assert f"setting {name}" in err and reason in err
    assert "PLANTED" not in out + err and "Traceback" not in out + err
    assert world.druva.writes == [] and world.directory.calls["get_user"] == 0


def test_state_folder_that_is_a_file(
    world: World, config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "state").write_text("not a folder")
    monkeypatch.setenv("PROVISIONING_STATE", str(tmp_path / "state"))
    code, _, err = invoke("sync", "--config", str(config))
    assert code == 2 and "setting PROVISIONING_STATE" in err and "is a file" in err
    code, _, err = invoke("sync", "--config", str(config), "--dry-run")
    assert code == 2 and "is a file" in err


def test_state_folder_that_cannot_be_written(
    world: World, config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("PROVISIONING_STATE", str(tmp_path / "file" / "state"))  # below a file
    code, _, err = invoke("sync", "--config", str(config))
    assert code == 2 and "setting PROVISIONING_STATE" in err
    if os.geteuid() != 0:  # root writes anywhere: the permission case is only testable as a user
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        monkeypatch.setenv("PROVISIONING_STATE", str(locked / "state"))
        code, _, err = invoke("sync", "--config", str(config))
        assert code == 2 and "cannot be written" in err


# --- --json: the counts line ends stdout, with the reason, whatever stopped the run ------------------


def last_json(out: str) -> dict[str, object]:
    line: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    return line


def test_json_line_when_the_mappings_file_is_bad(world: World, tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("mappings: [")
    code, out, _ = invoke("sync", "--config", str(path), "--json")
    line = last_json(out)
    assert code == 2 and line["failed"] == 0 and "not valid YAML" in str(line["error"])
    assert set(line) == {
        "created",
        "updated",
        "preserved",
        "reactivated",
        "unchanged",
        "skipped",
        "failed",
        "error",
    }


def test_json_line_when_a_setting_is_bad(world: World, config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRAPH_ACCESS_TOKEN", "tok\n")
    code, out, _ = invoke("sync", "--config", str(config), "--json")
    assert code == 2 and "setting GRAPH_ACCESS_TOKEN" in str(last_json(out)["error"])


def test_json_line_when_a_service_fails(world: World, config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def unreachable(*args: object, **kwargs: object) -> list[str]:
        raise TransientError("Druva GET /profilemanagement/v1/profiles: no answer in 30 s (ReadTimeout)")

    monkeypatch.setattr(world.druva, "profiles", unreachable)
    code, out, _ = invoke("sync", "--config", str(config), "--json")
    line = last_json(out)
    assert code == 1 and "no answer in 30 s" in str(line["error"])
    assert all(line[k] == 0 for k in line if k != "error")


def test_json_line_after_an_unexpected_failure(
    world: World, config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: object, **kwargs: object) -> list[str]:
        raise KeyError("bug")

    monkeypatch.setattr(world.druva, "profiles", broken)
    code, out, err = invoke("sync", "--config", str(config), "--json")
    assert code == 1 and "unexpected KeyError" in str(last_json(out)["error"])
    assert "Traceback" not in out + err


def test_success_has_no_error_field(world: World, config: Path) -> None:
    code, out, _ = invoke("sync", "--config", str(config), "--json")
    assert code == 0 and "error" not in last_json(out)


# --- log level ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "level", "expected"),
    [
        ([], None, logging.WARNING),
        (["--verbose"], None, logging.DEBUG),
        ([], "info", logging.INFO),
        (["-v"], "ERROR", logging.DEBUG),
    ],
)
def test_log_level_setting_and_verbose(
    world: World,
    config: Path,
    monkeypatch: pytest.MonkeyPatch,
    flags: list[str],
    *,
    level: str | None,
    expected: int,
) -> None:
    if level:
        monkeypatch.setenv("PROVISIONING_LOG_LEVEL", level)
    root = logging.getLogger()
    monkeypatch.setattr(root, "level", root.level)  # restored after the test
    code, _, _ = invoke("doctor", "--config", str(config), *flags)
    assert code == 0 and root.level == expected


@pytest.mark.parametrize(("ref", "reason"), UNIMPORTABLE[:10])
def test_explain_refuses_the_same_names(world: World, config: Path, ref: str, reason: str) -> None:
    code, out, err = invoke("explain", "--config", str(config), ref)
    assert code == 1 and reason in err and "Traceback" not in out + err
    assert len(err) < 1000


def test_service_text_is_printed_as_text_not_markup(world: World, config: Path) -> None:
    code, _, err = invoke("import", "--config", str(config), "[bold]x[/]@contoso.com", "[/nope]@x.com")
    assert code == 1 and "[/nope]" in err  # a rich markup tag in a name is shown, not interpreted or fatal
