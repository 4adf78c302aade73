"""Choosing and opening the state store from the settings."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import AzureNamedKeyCredential

from provisioning.adapters.state import open_state_store
from provisioning.adapters.state.sqlite import FILE_NAME, SCHEMA_VERSION, SqliteStateStore
from provisioning.adapters.state.table import TableStateStore
from provisioning.domain.state import RunFailure, RunKind, RunSummary
from provisioning.errors import NoState, ProvisioningError, StateFileError, TransientError
from provisioning.settings import Settings
from simulators.azurite import DEV_ACCOUNT, DEV_KEY, LOOPBACK, AzuriteTable
from tests.builders import NOW, link

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
def no_table_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PROVISIONING_TABLE_CONNECTION_STRING", "PROVISIONING_TABLE_ENDPOINT", "PROVISIONING_STATE"):
        monkeypatch.delenv(name, raising=False)


async def test_sqlite_by_default_in_the_state_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROVISIONING_STATE", str(tmp_path / "nested" / "state"))

    store = await open_state_store(Settings())
    try:
        assert isinstance(store, SqliteStateStore)
        await store.put_link(link("alice"))
    finally:
        await store.aclose()

    with sqlite3.connect(tmp_path / "nested" / "state" / FILE_NAME) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert db.execute("SELECT entra_id FROM links").fetchall() == [("id-alice",)]


async def test_data_outlives_the_store_that_wrote_it(tmp_path: Path) -> None:
    first = SqliteStateStore.open(tmp_path)
    saved = await first.put_link(link("alice"))
    await first.aclose()

    second = SqliteStateStore.open(tmp_path)
    try:
        assert await second.get_link("id-alice") == saved
    finally:
        await second.aclose()


def test_processes_opening_a_new_state_file_together_all_get_it(tmp_path: Path) -> None:
    """A journal-mode switch is refused at once while another connection makes it; open waits instead.
    One attempt hits that window only sometimes, so the race is run many times."""

    def open_when_ready(folder: Path, ready: threading.Barrier) -> str:
        ready.wait()
        store = SqliteStateStore.open(folder)
        asyncio.run(store.aclose())
        return "opened"

    for attempt in range(25):
        ready = threading.Barrier(3, timeout=30)
        with ThreadPoolExecutor(3) as pool:
            opened = [pool.submit(open_when_ready, tmp_path / str(attempt), ready) for _ in range(3)]
            assert [future.result() for future in opened] == ["opened"] * 3


def test_a_state_file_from_a_newer_release_is_refused(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / FILE_NAME) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")

    with pytest.raises(StateFileError, match=r"written by a newer release .* upgrade the app"):
        SqliteStateStore.open(tmp_path)


def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    (tmp_path / FILE_NAME).write_bytes(b"this is not SQLite" * 100)
    with pytest.raises(StateFileError, match="not a usable SQLite state file"):
        SqliteStateStore.open(tmp_path)


@pytest.mark.azurite
async def test_table_storage_when_a_connection_string_is_set(
    azurite: AzuriteTable, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROVISIONING_TABLE_CONNECTION_STRING", azurite.connection_string)
    monkeypatch.setenv("PROVISIONING_STATE", str(tmp_path / "unused"))

    store = await open_state_store(Settings())
    try:
        assert isinstance(store, TableStateStore)
        saved = await store.put_link(link("alice"))
        assert await store.get_link("id-alice") == saved
    finally:
        await store.aclose()
    assert not (tmp_path / "unused").exists()  # nothing written locally


@pytest.mark.azurite
async def test_table_storage_by_endpoint_and_credential(azurite: AzuriteTable) -> None:
    endpoint = f"http://{LOOPBACK}:{azurite.port}/{DEV_ACCOUNT}"
    credential = AzureNamedKeyCredential(DEV_ACCOUNT, DEV_KEY)  # in Azure: the managed identity

    store = await TableStateStore.open(endpoint=endpoint, credential=credential, table_name="byendpoint")
    try:
        await store.record_run(RunSummary("run-1", RunKind.FULL, NOW, NOW, {"created": 1}))
        assert [run.run_id for run in await store.recent_runs()] == ["run-1"]
    finally:
        await store.aclose()


async def test_table_storage_needs_somewhere_to_connect() -> None:
    with pytest.raises(ValueError, match="connection string or the account's table endpoint"):
        await TableStateStore.open()


def _as_schema_1(folder: Path) -> None:
    """Turn a current state file back into what the first release wrote: no runs.failures column."""
    with sqlite3.connect(folder / FILE_NAME) as db:
        db.execute("ALTER TABLE runs DROP COLUMN failures")
        db.execute("PRAGMA user_version = 1")


OLD_RUN = RunSummary("run-old", RunKind.DELTA, NOW, NOW, {"created": 1})


async def test_a_schema_1_file_reads_as_it_is_and_is_brought_up_to_date_on_open(tmp_path: Path) -> None:
    first = SqliteStateStore.open(tmp_path)
    await first.record_run(OLD_RUN)
    await first.aclose()
    _as_schema_1(tmp_path)

    read_only = SqliteStateStore.open(tmp_path, create_missing=False)
    try:
        assert await read_only.recent_runs() == [OLD_RUN]  # no failures column: none
    finally:
        await read_only.aclose()
    with sqlite3.connect(tmp_path / FILE_NAME) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 1  # reading changed nothing

    upgraded = SqliteStateStore.open(tmp_path)
    try:
        failed = RunSummary(
            "run-new",
            RunKind.DELTA,
            NOW,
            NOW,
            {"failed": 1},
            failures=(RunFailure("id-a", "a@contoso.com", "why"),),
        )
        await upgraded.record_run(failed)
        assert {run.run_id: run for run in await upgraded.recent_runs()} == {
            "run-old": OLD_RUN,
            "run-new": failed,
        }
    finally:
        await upgraded.aclose()
    with sqlite3.connect(tmp_path / FILE_NAME) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


async def test_existing_only_never_creates_a_state_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "fresh"
    monkeypatch.setenv("PROVISIONING_STATE", str(folder))

    with pytest.raises(NoState, match="does not exist"):
        await open_state_store(Settings(), existing_only=True)

    assert not folder.exists()


async def test_existing_only_opens_sqlite_read_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROVISIONING_STATE", str(tmp_path))
    writer = SqliteStateStore.open(tmp_path)
    await writer.record_run(OLD_RUN)
    await writer.aclose()

    store = await open_state_store(Settings(), existing_only=True)
    try:
        assert await store.recent_runs() == [OLD_RUN]
        with pytest.raises(ProvisioningError, match="only read by this command, yet a write was attempted"):
            await store.record_run(OLD_RUN)
    finally:
        await store.aclose()


@pytest.mark.azurite
async def test_table_storage_existing_only_creates_no_table(azurite: AzuriteTable) -> None:
    with pytest.raises(NoState, match="no table 'neverused'"):
        await TableStateStore.open(
            connection_string=azurite.connection_string, table_name="neverused", create_table=False
        )
    writer = await TableStateStore.open(connection_string=azurite.connection_string, table_name="neverused")
    await writer.aclose()  # created now, by a store that may write
    reader = await TableStateStore.open(
        connection_string=azurite.connection_string, table_name="neverused", create_table=False
    )
    try:
        assert await reader.recent_runs() == []
    finally:
        await reader.aclose()


@pytest.mark.azurite
async def test_table_storage_reads_runs_recorded_before_failures_were_kept(azurite: AzuriteTable) -> None:
    from azure.data.tables.aio import TableClient

    from provisioning.adapters.state.encoding import newest_first

    store = await TableStateStore.open(connection_string=azurite.connection_string, table_name="oldruns")
    try:
        async with TableClient.from_connection_string(azurite.connection_string, "oldruns") as table:
            await table.upsert_entity(  # exactly what the first release wrote
                {
                    "PartitionKey": "runs",
                    "RowKey": f"{newest_first(NOW)}-run-old",
                    "run_id": "run-old",
                    "kind": "delta",
                    "started_at": NOW,
                    "finished_at": NOW,
                    "counts": '{"created":1}',
                    "dry_run": False,
                }
            )
        assert await store.recent_runs() == [OLD_RUN]
    finally:
        await store.aclose()


# --- read-only opens create nothing; every problem of the file classified, naming it ------------------


def _closed_state(folder: Path) -> None:
    async def go() -> None:
        writer = SqliteStateStore.open(folder)
        await writer.record_run(OLD_RUN)
        await writer.aclose()

    asyncio.run(go())


def test_a_read_only_open_creates_nothing_beside_the_file(tmp_path: Path) -> None:
    """What ``status``, ``explain`` and ``--dry-run`` use: no ``-wal``, no ``-shm`` (a folder they may not
    write works as well, and a root reader leaves no root-owned file to lock the deployment out)."""
    _closed_state(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())

    store = SqliteStateStore.open(tmp_path, create_missing=False)
    try:
        assert asyncio.run(store.recent_runs()) == [OLD_RUN]
    finally:
        asyncio.run(store.aclose())

    assert sorted(p.name for p in tmp_path.iterdir()) == before == [FILE_NAME]


def force_read_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on, every file SQLite opens by path is opened read-only (``mode=ro``): how a file or a
    folder this user may not write behaves, where root would write anyway."""
    real: Any = sqlite3.connect

    def read_only(target: str, *args: Any, **kwargs: Any) -> sqlite3.Connection:
        if not target.startswith(("file:", ":memory:")):
            target, kwargs["uri"] = f"{Path(target).absolute().as_uri()}?mode=ro", True
        connection: sqlite3.Connection = real(target, *args, **kwargs)
        return connection

    monkeypatch.setattr(sqlite3, "connect", read_only)


def test_a_state_file_that_cannot_be_written_where_writing_is_needed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _closed_state(tmp_path)
    force_read_only(monkeypatch)
    with pytest.raises(StateFileError, match=r"state file .*state.sqlite3 cannot be written .* write access"):
        SqliteStateStore.open(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="permission bits do not stop root")
def test_a_state_file_with_mode_0444_cannot_be_opened_for_writing(tmp_path: Path) -> None:
    _closed_state(tmp_path)
    (tmp_path / FILE_NAME).chmod(0o444)
    with pytest.raises(StateFileError, match="cannot be written"):
        SqliteStateStore.open(tmp_path)


def test_a_state_file_locked_past_the_timeout_is_busy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _closed_state(tmp_path)
    monkeypatch.setattr("provisioning.adapters.state.sqlite.BUSY_TIMEOUT_SECONDS", 0.2)
    holder = sqlite3.connect(tmp_path / FILE_NAME, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(TransientError, match=r"state file .*state.sqlite3 is busy.*try again"):
            SqliteStateStore.open(tmp_path)
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_a_database_of_no_schema_is_not_read_as_state(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / FILE_NAME) as db:
        db.execute("CREATE TABLE other (x)")
    with pytest.raises(StateFileError, match="holds no state of this product"):
        SqliteStateStore.open(tmp_path, create_missing=False)


def test_a_state_folder_that_cannot_be_created_is_named(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(StateFileError, match=r"state folder .*file/state cannot be created"):
        SqliteStateStore.open(tmp_path / "file" / "state")
