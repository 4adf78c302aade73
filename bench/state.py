"""State store benchmark (not a test): link writes and lookups per second, and storage per 10,000 links.

    .venv/bin/python -m bench.state [--links 10000] [--table-links 2000]

SQLite runs on a file in a temporary folder; Table Storage runs against Azurite (started and stopped
here, like the tests), which stands in for the real service: its figures are a proxy, not Azure's.
Azurite keeps a table in one JavaScript process and slows down as the table grows, so it gets fewer
links than SQLite; the footprint per 10,000 links is exact either way (every link row has the same shape).
Footprint: SQLite is the file's growth once the WAL is checkpointed; Table Storage is the sum of Azure's
documented entity-size formula (``encoding.entity_size``, plus each row's Timestamp) over the link and
owner rows read back from the table.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar
from uuid import UUID

from azure.data.tables.aio import TableClient

from provisioning.adapters.state.encoding import entity_size
from provisioning.adapters.state.sqlite import FILE_NAME, SqliteStateStore
from provisioning.adapters.state.table import TableStateStore
from provisioning.domain.links import AccountLink, LinkStatus
from provisioning.ports import StateStore
from simulators.azurite import AzuriteTable

PER = 10_000
TIMESTAMP_BYTES = 8 + 2 * len("Timestamp") + 8  # the system property every entity carries
T = TypeVar("T")
X = TypeVar("X")


@dataclass(frozen=True)
class Figures:
    store: str
    in_flight: int
    links: int
    creates_per_s: float
    updates_per_s: float
    lookups_per_s: float
    bytes_per_10k: int | None


def sample_links(count: int, seed: int = 7) -> list[AccountLink]:
    """Links shaped like production ones: GUID ids, real-looking e-mails, a mapping and a target."""
    rng = random.Random(seed)
    decided = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    return [
        AccountLink(
            entra_id=str(UUID(int=rng.getrandbits(128), version=4)),
            druva_user_id=100_000 + i,
            email=f"first.last{i:05d}@contoso.com",
            mapping="US offices",
            profile="Standard",
            storage="US-East",
            quota="200 GB" if i % 2 else None,
            status=LinkStatus.ACTIVE,
            decided_at=decided,
        )
        for i in range(count)
    ]


async def each(
    items: Sequence[X], action: Callable[[X], Awaitable[T]], in_flight: int
) -> tuple[float, list[T]]:
    """Seconds taken to run ``action`` on every item with at most ``in_flight`` at a time."""
    gate = asyncio.Semaphore(in_flight)

    async def one(item: X) -> T:
        async with gate:
            return await action(item)

    started = time.perf_counter()
    results = await asyncio.gather(*(one(item) for item in items))
    return time.perf_counter() - started, list(results)


async def throughput(
    store: StateStore, links: list[AccountLink], in_flight: int
) -> tuple[float, float, float]:
    created_s, created = await each(links, store.put_link, in_flight)
    remapped = [replace(link, profile="Remapped") for link in created]
    updated_s, _ = await each(remapped, store.put_link, in_flight)
    ids = [link.entra_id for link in links]
    random.Random(11).shuffle(ids)
    lookup_s, found = await each(ids, store.get_link, in_flight)
    assert all(found), "every link written must be found"
    count = len(links)
    return count / created_s, count / updated_s, count / lookup_s


def checkpointed_size(folder: Path) -> int:
    with sqlite3.connect(folder / FILE_NAME) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return (folder / FILE_NAME).stat().st_size


async def bench_sqlite(links: list[AccountLink]) -> Figures:
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        store = SqliteStateStore.open(folder)
        empty = checkpointed_size(folder)
        try:
            rates = await throughput(store, links, in_flight=1)
        finally:
            await store.aclose()
        grown = checkpointed_size(folder) - empty
    return Figures("sqlite (file)", 1, len(links), *rates, bytes_per_10k=grown * PER // len(links))


async def bench_table(server: AzuriteTable, links: list[AccountLink], in_flight: int, table: str) -> Figures:
    store = await TableStateStore.open(connection_string=server.connection_string, table_name=table)
    try:
        rates = await throughput(store, links, in_flight)
    finally:
        await store.aclose()
    footprint = await table_footprint(server, table)
    return Figures(
        "table (azurite)", in_flight, len(links), *rates, bytes_per_10k=footprint * PER // len(links)
    )


async def table_footprint(server: AzuriteTable, table: str) -> int:
    """Bytes of every row in the table (link rows and their owner rows), by Azure's formula."""
    async with TableClient.from_connection_string(server.connection_string, table) as client:
        return sum([entity_size(row) + TIMESTAMP_BYTES async for row in client.list_entities()])


def report(figures: list[Figures]) -> str:
    lines = [
        f"{'store':<16} {'in flight':>9} {'links':>7} {'creates/s':>10} {'updates/s':>10} {'lookups/s':>10} "
        f"{'bytes per 10,000 links':>23}"
    ]
    for f in figures:
        size = f"{f.bytes_per_10k:,}" if f.bytes_per_10k is not None else "-"
        lines.append(
            f"{f.store:<16} {f.in_flight:>9} {f.links:>7,} {f.creates_per_s:>10,.0f} "
            f"{f.updates_per_s:>10,.0f} {f.lookups_per_s:>10,.0f} {size:>23}"
        )
    return "\n".join(lines)


async def main(total: int, table_links: int) -> None:
    links = sample_links(total)
    print(
        f"State store benchmark: Python {sys.version.split()[0]}, SQLite {sqlite3.sqlite_version}, "
        "Azurite 3.35.0 (in-memory) as a proxy for Table Storage",
        flush=True,
    )
    figures = [await bench_sqlite(links)]
    with AzuriteTable() as server:
        for in_flight in (1, 8):
            figures.append(await bench_table(server, links[:table_links], in_flight, f"bench{in_flight}"))
    print(report(figures))
    print(
        "creates: put_link of a new link (Table: link + owner row in one transaction); updates: put_link at "
        "the current version; lookups: get_link by Entra id, random order.\n"
        "bytes: SQLite = file growth after a WAL checkpoint; Table = Azure's entity-size formula "
        "(4 + 2·len(PK+RK) + Σ 8 + 2·len(name) + value) over the rows read back, Timestamp included."
    )


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.state", description=__doc__.splitlines()[0])
    parser.add_argument("--links", type=int, default=PER, help="links written to SQLite (default 10,000)")
    parser.add_argument(
        "--table-links", type=int, default=2_000, help="links written to Azurite (default 2,000)"
    )
    return parser.parse_args()


if __name__ == "__main__":
    options = arguments()
    asyncio.run(main(options.links, min(options.table_links, options.links)))
