"""``status`` end to end on a real SQLite state file: the verdict, the exit code, --json, and that it
reads only (a fresh machine gets no state file)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from provisioning.adapters.state.sqlite import FILE_NAME, SCHEMA_VERSION, SqliteStateStore
from provisioning.domain.directory import Subscription
from provisioning.domain.state import RunFailure, RunKind, RunSummary
from provisioning.entrypoints.cli import app
from provisioning.ports import StateStore
from provisioning.service.status import read_status
from tests.unit.entrypoints.test_cli import CONFIG

NOW = datetime.now(UTC)


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("PROVISIONING_TABLE_CONNECTION_STRING", "PROVISIONING_TABLE_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    folder = tmp_path / "state"
    monkeypatch.setenv("PROVISIONING_STATE", str(folder))
    return folder


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "mappings.yaml"
    path.write_text(CONFIG)
    return path


def status(config: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["status", "--config", str(config), *args])
    return result.exit_code, result.stdout, result.stderr


def a_pass(minutes_ago: float, kind: str = "delta", failed: tuple[str, ...] = ()) -> RunSummary:
    started = NOW - timedelta(minutes=minutes_ago)
    return RunSummary(
        f"run-{minutes_ago:g}",
        RunKind(kind),
        started,
        started + timedelta(seconds=3),
        {"created": 2, "failed": len(failed)},
        failures=tuple(RunFailure(i, f"{i}@contoso.com", "Druva answered 500") for i in failed),
    )


def write(folder: Path, runs: list[RunSummary], subscriptions: bool = True) -> None:
    async def go() -> None:
        store = SqliteStateStore.open(folder)
        try:
            for run in runs:
                await store.record_run(run)
            if subscriptions:
                for resource in ("users", "groups"):
                    await store.put_subscription(
                        Subscription(
                            f"sub-{resource}", resource, NOW + timedelta(days=20), "https://app/api/n"
                        )
                    )
            claim = await store.claim_cursor("users", "run-5", NOW - timedelta(minutes=5), 900)
            await store.save_cursor(claim, '{"policy": "p", "delta": "d"}')
        finally:
            await store.aclose()

    asyncio.run(go())


def test_a_fresh_machine_has_no_state_and_gets_none(state: Path, config: Path) -> None:
    code, out, _ = status(config)
    assert code == 1
    assert "no state yet" in out and FILE_NAME in out
    assert not state.exists()

    code, out, _ = status(config, "--json")
    assert code == 1 and not state.exists()
    assert json.loads(out) == {
        "healthy": False,
        "problems": [{"code": "no_state", "detail": json.loads(out)["problems"][0]["detail"]}],
    }


def test_healthy(state: Path, config: Path) -> None:
    write(state, [a_pass(5), a_pass(20), a_pass(300, "full")])

    code, out, _ = status(config)

    assert code == 0, out
    assert "healthy" in out and "UNHEALTHY" not in out
    assert "sub-users" in out and "Last full reconciliation" in out


def test_json_is_one_object_with_everything(state: Path, config: Path) -> None:
    write(state, [a_pass(5), a_pass(300, "full")])

    code, out, _ = status(config, "--json")

    assert code == 0
    found = json.loads(out)  # the whole of stdout is one JSON object
    assert found["healthy"] is True and found["problems"] == []
    assert [p["run_id"] for p in found["passes"]] == ["run-5", "run-300"]
    assert found["passes"][0]["counts"] == {"created": 2, "failed": 0}
    assert found["passes"][0]["duration_seconds"] == 3.0
    assert {s["resource"]: s["id"] for s in found["subscriptions"]} == {
        "users": "sub-users",
        "groups": "sub-groups",
    }
    users = next(c for c in found["cursors"] if c["name"] == "users")
    assert users["lease_owner"] is None and 0 <= users["age_seconds"] < 60  # saved just now
    assert found["last_full_reconciliation"] == (NOW - timedelta(minutes=300)).isoformat()


def test_an_account_failing_three_passes_in_a_row_is_unhealthy(state: Path, config: Path) -> None:
    write(
        state,
        [
            a_pass(5, failed=("id-a",)),
            a_pass(20, failed=("id-a",)),
            a_pass(35, failed=("id-a",)),
            a_pass(300, "full"),
        ],
    )

    code, out, _ = status(config)
    assert code == 1
    assert "UNHEALTHY" in out and "account_failing" in out and "id-a@contoso.com" in out

    code, out, _ = status(config, "--json")
    found = json.loads(out)
    assert [p["code"] for p in found["problems"]] == ["account_failing"]
    assert found["failing_accounts"] == [
        {
            "entra_id": "id-a",
            "principal": "id-a@contoso.com",
            "reason": "Druva answered 500",
            "consecutive_passes": 3,
        }
    ]


def test_stale_passes_with_subscriptions_are_unhealthy(state: Path, config: Path) -> None:
    write(state, [a_pass(90), a_pass(60 * 50, "full")])

    code, out, _ = status(config, "--json")

    assert code == 1
    assert sorted(p["code"] for p in json.loads(out)["problems"]) == [
        "no_recent_full_reconciliation",
        "no_recent_pass",
    ]


def test_status_writes_nothing(state: Path, config: Path) -> None:
    write(state, [a_pass(5), a_pass(300, "full")])
    database = state / FILE_NAME
    before = hashlib.sha256(database.read_bytes()).hexdigest()

    status(config)
    status(config, "--json")

    # A WAL reader may leave an empty write-ahead log and its index beside the file: nothing written.
    assert hashlib.sha256(database.read_bytes()).hexdigest() == before
    wal = state / f"{FILE_NAME}-wal"
    assert not wal.exists() or wal.stat().st_size == 0


def test_a_bad_mappings_file_is_bad_input(state: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("mappings: []\nsurprise: 1\n")

    code, _, err = status(bad)

    assert code == 2 and "bad.yaml" in err


@pytest.mark.anyio
async def test_status_reads_both_state_stores_alike(store: StateStore) -> None:
    """The same facts give the same verdict from SQLite and from Table Storage."""
    for run in (a_pass(5, failed=("id-a",)), a_pass(20, failed=("id-a",)), a_pass(35, failed=("id-a",))):
        await store.record_run(run)
    await store.put_subscription(
        Subscription("sub-users", "users", NOW + timedelta(hours=3), "https://app/n")
    )
    await store.claim_cursor("groups", "run-dead", NOW - timedelta(hours=1), 900)

    found = await read_status(store, NOW)

    assert [run.run_id for run in found.runs] == ["run-5", "run-20", "run-35"]
    assert sorted(p.code for p in found.problems) == [
        "account_failing",
        "lease_overdue",
        "no_recent_full_reconciliation",
        "subscription_expiring",
        "subscription_missing",
    ]
    assert [(a.entra_id, a.consecutive) for a in found.failing] == [("id-a", 3)]
    assert found.to_json(10)["cursors"][1]["lease_owner"] == "run-dead"


# --- read-only means read-only, and every state-file problem named with its exit code ----------------


def beside(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def test_status_creates_no_file_beside_the_state(state: Path, config: Path) -> None:
    """No ``-wal`` or ``-shm`` index either: the folder may be read-only, and a root ``status`` would
    leave files the deployment's own user cannot open."""
    write(state, [a_pass(5), a_pass(300, "full")])
    before = beside(state)
    assert list(before) == [FILE_NAME]  # the writer closed: its log was folded in and removed

    assert status(config)[0] == 0
    assert status(config, "--json")[0] == 0

    assert beside(state) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="permission bits do not stop root")
def test_status_reads_a_state_in_a_folder_it_may_not_write(state: Path, config: Path) -> None:
    write(state, [a_pass(5), a_pass(300, "full")])
    (state / FILE_NAME).chmod(0o444)
    state.chmod(0o555)
    try:
        code, out, err = status(config)
    finally:
        state.chmod(0o755)
    assert code == 0, (out, err)


def test_status_sees_what_a_running_sync_committed(state: Path, config: Path) -> None:
    """While a writer has the file open its commits may still be in the write-ahead log: read them."""
    write(state, [a_pass(300, "full")])
    writer = sqlite3.connect(state / FILE_NAME, isolation_level=None)
    try:
        writer.execute("PRAGMA wal_autocheckpoint = 0")  # keep the new run in the log
        writer.execute(
            "INSERT INTO runs (run_id, kind, started_at, started_us, finished_at, counts, dry_run) "
            "SELECT 'run-live', kind, started_at, started_us + 1, finished_at, counts, dry_run FROM runs"
        )
        code, out, _ = status(config, "--json")
    finally:
        writer.close()
    assert code in (0, 1) and json.loads(out)["passes"][0]["run_id"] == "run-live"


def test_a_file_that_is_not_sqlite_is_bad_input(state: Path, config: Path) -> None:
    state.mkdir()
    (state / FILE_NAME).write_bytes(b"this is not SQLite" * 100)
    code, out, err = status(config)
    assert code == 2, (out, err)
    assert f"{state / FILE_NAME} is not a usable SQLite state file" in err and "move it aside" in err


def test_a_newer_schema_says_to_upgrade(state: Path, config: Path) -> None:
    write(state, [a_pass(5)])
    with sqlite3.connect(state / FILE_NAME) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    code, _, err = status(config)
    assert code == 2 and str(state / FILE_NAME) in err
    assert "upgrade the app" in err and "without --dry-run" not in err  # a sync would refuse it too


def test_a_record_that_cannot_be_read_names_the_file(state: Path, config: Path) -> None:
    write(state, [a_pass(5)])
    with sqlite3.connect(state / FILE_NAME) as db:
        db.execute("UPDATE runs SET counts = 'not json'")
    code, out, err = status(config)
    assert code == 2, (out, err)
    assert f"state file {state / FILE_NAME}: a record cannot be read (JSONDecodeError" in err
    assert "unexpected" not in err and "restore it from a backup" in err


def test_a_damaged_file_names_the_file(state: Path, config: Path) -> None:
    write(state, [a_pass(minutes) for minutes in range(1, 400)])  # several pages of runs
    path = state / FILE_NAME
    data = bytearray(path.read_bytes())
    page = 4096
    data[page * 2 : page * 6] = b"\xa5" * (page * 4)  # the runs pages, overwritten
    path.write_bytes(bytes(data))
    code, out, err = status(config)
    assert code == 2, (out, err)
    assert f"{path} is not a usable SQLite state file" in err and "unexpected" not in err


def test_a_state_file_held_by_another_process_is_busy_not_broken(
    state: Path, config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lock held past the busy timeout is transient: exit 1, "try again", never "not usable"."""
    write(state, [a_pass(5)])
    monkeypatch.setattr("provisioning.adapters.state.sqlite.BUSY_TIMEOUT_SECONDS", 0.2)
    holder = sqlite3.connect(state / FILE_NAME, isolation_level=None)
    try:
        holder.execute("PRAGMA journal_mode = DELETE")  # a rollback journal: readers wait for writers
        holder.execute("BEGIN EXCLUSIVE")
        holder.execute("DELETE FROM runs")
        code, out, err = status(config)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert code == 1, (out, err)
    assert f"state file {state / FILE_NAME} is busy" in err and "try again" in err
    assert "not a usable" not in err
