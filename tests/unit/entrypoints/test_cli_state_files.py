"""The SQLite state file at the command line: ``status``, ``explain`` and ``sync --dry-run`` only read it
(nothing is created or changed beside it, so a read-only folder works), and every problem with it is one
line naming the file, with the contract's exit code: 2 when a human must act on the file (not SQLite,
damaged, newer, read-only where writing is needed), 1 when it is busy (try again)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioning.adapters.state.sqlite import FILE_NAME, SCHEMA_VERSION
from simulators.local import LocalCloud, local_cloud
from simulators.tenants import seed_use_case
from tests.integration.test_state_open import force_read_only
from tests.unit.entrypoints.test_cli import invoke

MAPPINGS = (Path(__file__).resolve().parents[3] / "examples" / "mappings.yaml").read_text()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "mappings.yaml"
    path.write_text(MAPPINGS)
    return path


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Settings that reach nothing: every case here stops at the state file, before any request."""
    for name in ("PROVISIONING_TABLE_CONNECTION_STRING", "PROVISIONING_TABLE_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    values = {
        "PROVISIONING_STATE": str(tmp_path / "state"),
        "GRAPH_API_URL": "http://127.0.0.1:9/v1.0",
        "GRAPH_ACCESS_TOKEN": "unused-token",
        "DRUVA_API_URL": "http://127.0.0.1:9",
        "DRUVA_CLIENT_ID": "unused",
        "DRUVA_CLIENT_SECRET": "unused-secret",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return tmp_path / "state"


@pytest.fixture
def cloud(state: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalCloud]:
    with local_cloud(seed_use_case()) as running:
        for name, value in running.environment(state).items():
            monkeypatch.setenv(name, value)
        yield running


def files(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def test_the_reading_commands_create_and_change_nothing_beside_the_state(
    cloud: LocalCloud, state: Path, config: Path
) -> None:
    code, _, err = invoke("sync", "--config", str(config))
    assert code == 0, err
    before = files(state)
    assert list(before) == [FILE_NAME]  # the sync closed the file: its write-ahead log is folded in

    for arguments in (
        ["sync", "--dry-run"],
        ["sync", "--dry-run", "--full", "--json"],
        ["explain", "alice@contoso.com"],
        ["status"],
    ):
        code, out, err = invoke(arguments[0], "--config", str(config), *arguments[1:])
        assert code in (0, 1), (arguments, out, err)  # status: a fresh state has no full pass yet
        assert "unexpected" not in err and "readonly" not in err
        assert files(state) == before, arguments  # no -wal, no -shm: a read-only folder would do


def write_state(state: Path, content: bytes | None = None) -> Path:
    state.mkdir(parents=True, exist_ok=True)
    path = state / FILE_NAME
    if content is None:
        with sqlite3.connect(path) as db:
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("CREATE TABLE runs (run_id TEXT)")
            db.execute("PRAGMA user_version = 1")
        db.close()
    else:
        path.write_bytes(content)
    return path


COMMANDS = [["sync"], ["sync", "--dry-run"], ["explain", "alice@contoso.com"], ["status"]]


@pytest.mark.parametrize("command", COMMANDS)
def test_a_file_that_is_not_sqlite(state: Path, config: Path, command: list[str]) -> None:
    path = write_state(state, b"not SQLite at all " * 300)
    code, out, err = invoke(command[0], "--config", str(config), *command[1:])
    assert code == 2, (out, err)
    assert f"{path} is not a usable SQLite state file" in err and "unexpected" not in err


@pytest.mark.parametrize("command", COMMANDS)
def test_a_file_from_a_newer_release(state: Path, config: Path, command: list[str]) -> None:
    path = write_state(state)
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    code, _, err = invoke(command[0], "--config", str(config), *command[1:])
    assert code == 2 and f"state file {path} was written by a newer release" in err
    assert "upgrade the app" in err and "without --dry-run" not in err


def test_a_file_that_cannot_be_written_is_bad_input_for_a_sync(
    state: Path, config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_state(state)
    force_read_only(monkeypatch)
    code, out, err = invoke("sync", "--config", str(config), "--json")
    assert code == 2, (out, err)
    assert f"state file {path} cannot be written" in err and "write access" in err
    assert "cannot be written" in json.loads(out.strip().splitlines()[-1])["error"]


def test_a_busy_file_is_worth_trying_again(
    state: Path, config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_state(state)
    monkeypatch.setattr("provisioning.adapters.state.sqlite.BUSY_TIMEOUT_SECONDS", 0.2)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        code, out, err = invoke("sync", "--config", str(config))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert code == 1, (out, err)
    assert f"state file {path} is busy" in err and "try again" in err and "not a usable" not in err
