"""Fixtures for the state store contract: the same tests run against SQLite and Table Storage (Azurite)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from uuid import uuid4

import pytest

from provisioning.adapters.state.sqlite import SqliteStateStore
from provisioning.adapters.state.table import TableStateStore
from provisioning.errors import ProvisioningError
from provisioning.ports import StateStore
from simulators.azurite import AzuriteNotInstalled, AzuriteTable
from tests.builders import NOW


class FakeClock:
    def __init__(self, moment: datetime = NOW) -> None:
        self.moment = moment

    def now(self) -> datetime:
        return self.moment


@dataclass
class Backend:
    """One kind of state store: ``open`` gives a new store on the same data (a second process)."""

    name: str
    open: Callable[[], Awaitable[StateStore]]
    clock: FakeClock


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def azurite() -> Iterator[AzuriteTable]:
    server = AzuriteTable()
    try:
        server.start()
    except AzuriteNotInstalled as missing:
        # Never a skip: CI must run the Table Storage half of the contract.
        pytest.fail(str(missing), pytrace=False)
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", pytest.param("table", marks=pytest.mark.azurite)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    clock = FakeClock()
    if request.param == "sqlite":
        folder = tmp_path / "state"

        async def open_sqlite() -> StateStore:
            return SqliteStateStore.open(folder, clock=clock)

        return Backend("sqlite", open_sqlite, clock)
    server: AzuriteTable = request.getfixturevalue("azurite")
    table_name = f"t{uuid4().hex}"  # a fresh table per test: tests never see each other's rows

    async def open_table() -> StateStore:
        return await TableStateStore.open(
            connection_string=server.connection_string, table_name=table_name, clock=clock
        )

    return Backend("table", open_table, clock)


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[StateStore]:
    opened = await backend.open()
    yield opened
    await opened.aclose()


Outcome = tuple[str, object]  # ("won", result) or ("lost", the ProvisioningError)


def race(
    backend: Backend, action: Callable[[StateStore], Awaitable[object]], writers: int = 2
) -> list[Outcome]:
    """Run ``action`` at the same moment in ``writers`` threads, each with its own store and event loop:
    separate SQLite connections on one file, or separate HTTP clients against one table."""
    ready = threading.Barrier(writers, timeout=30)

    async def one_writer() -> Outcome:
        try:
            store = await backend.open()
        except BaseException:
            ready.abort()  # the others must not wait for a writer that never comes
            raise
        try:
            ready.wait()
            return ("won", await action(store))
        except ProvisioningError as error:
            return ("lost", error)
        finally:
            await store.aclose()

    with ThreadPoolExecutor(writers) as pool:
        futures = [pool.submit(asyncio.run, one_writer()) for _ in range(writers)]
        return [future.result() for future in futures]
