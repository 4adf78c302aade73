"""Graph adapter benchmark against the Graph simulator running in its own process.

    .venv/bin/python -m bench.graph [--users 50000] [--groups 20] [--changes 100]

Initial read = users delta (the attributes a typical mappings file needs) + direct membership of every
mapped group through groups delta, kept in memory as the pipeline would. Incremental read = both deltas
again from the cursors after ``--changes`` users changed (attributes, joiners, leavers, group moves).
Requests are counted by the simulator. Memory: this process's RSS before the read (interpreter and SDK)
and its peak after; then, in a second pass under tracemalloc, the peak of Python allocations. Last, the
cost of parsing one users-delta page with the SDK's kiota models versus ``json.loads`` and our own
mapping: the reason the adapter reads raw JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from kiota_serialization_json.json_parse_node_factory import JsonParseNodeFactory
from msgraph.generated.users.delta.delta_get_response import DeltaGetResponse

from provisioning.adapters.graph import open_directory
from provisioning.adapters.graph.delta import user_change, user_select
from provisioning.domain.accounts import EntraAccount
from provisioning.ports import Directory
from provisioning.settings import Settings
from simulators.running import SimulatorProcess
from simulators.tenants import make_user

BEARER = "bench"  # the simulator takes any bearer token
SELECT = ["department", "officeLocation", "country", "onPremisesExtensionAttributes.extensionAttribute1"]


@dataclass
class Pass:
    requests: int
    seconds: float
    users: int
    memberships: int
    user_cursor: str
    membership_cursor: str


def start_graph(users: int, groups: int, workdir: Path) -> SimulatorProcess:
    seed = workdir / "tenant.json"
    subprocess.run(  # noqa: S603 (our own interpreter and module)
        [
            sys.executable,
            "-m",
            "simulators.tenants",
            "synthetic",
            "--users",
            str(users),
            "--groups",
            str(groups),
            "--out",
            str(seed),
        ],
        check=True,
    )
    return SimulatorProcess.start("graph", "--seed", str(seed))


async def ids(admin: httpx.AsyncClient, collection: str, **query: str) -> list[dict[str, Any]]:
    """The first page of a collection, read from the simulator: the tenant itself is never loaded into
    this process, so its peak memory is the adapter's."""
    answer = await admin.get(
        f"/v1.0/{collection}", params={"$top": "999", **query}, headers={"Authorization": f"Bearer {BEARER}"}
    )
    return list(answer.json()["value"])


async def graph_requests(admin: httpx.AsyncClient) -> int:
    counts = (await admin.get("/_admin/counts")).json()["counts"]
    return sum(n for name, n in counts.items() if not name.startswith(("admin", "batch step")))


async def read_all(directory: Directory, groups: list[str], cursors: tuple[str, str] | None) -> Pass:
    accounts: dict[str, EntraAccount] = {}
    members: dict[str, set[str]] = {}
    user_cursor = membership_cursor = ""
    async for page in directory.read_users(cursors[0] if cursors else None, SELECT):
        accounts.update((c.id, c) for c in page.changes if isinstance(c, EntraAccount))
        user_cursor = page.cursor or user_cursor
    async for membership in directory.read_memberships(cursors[1] if cursors else None, groups):
        for change in membership.changes:
            group = members.setdefault(change.group_id, set())
            if change.removed:
                group.discard(change.member_id)
            else:
                group.add(change.member_id)
        membership_cursor = membership.cursor or membership_cursor
    return Pass(0, 0.0, len(accounts), sum(map(len, members.values())), user_cursor, membership_cursor)


async def timed(
    directory: Directory, admin: httpx.AsyncClient, groups: list[str], cursors: tuple[str, str] | None
) -> Pass:
    await admin.delete("/_admin/counts")
    started = time.perf_counter()
    result = await read_all(directory, groups, cursors)
    result.seconds = time.perf_counter() - started
    result.requests = await graph_requests(admin)
    return result


async def change_users(admin: httpx.AsyncClient, groups: list[str], count: int) -> int:
    """``count`` distinct users changed: 60% moved office, 15% joined (into a mapped group), 10% soft and
    5% hard deleted, 10% added to another mapped group."""
    rng = random.Random(5)
    members = [
        u for u in await ids(admin, "users", **{"$select": "id,userType"}) if u["userType"] == "Member"
    ]
    picked = rng.sample(members, count)
    plan = {
        "office": int(count * 0.6),
        "join": int(count * 0.15),
        "soft": int(count * 0.1),
        "hard": int(count * 0.05),
    }
    plan["move"] = count - sum(plan.values())
    cursor = 0
    for kind, number in plan.items():
        for user in picked[cursor : cursor + number]:
            if kind == "office":
                await admin.patch(f"/_admin/users/{user['id']}", json={"officeLocation": "Chicago"})
            elif kind == "join":
                joiner = make_user(f"joiner{cursor}", office="New York")
                new = (await admin.post("/_admin/users", json=joiner)).json()
                await admin.post(f"/_admin/groups/{groups[0]}/members", json={"id": new["id"]})
            elif kind in ("soft", "hard"):
                await admin.delete(
                    f"/_admin/users/{user['id']}", params={"permanent": str(kind == "hard").lower()}
                )
            else:
                await admin.post(
                    f"/_admin/groups/{groups[rng.randrange(len(groups))]}/members", json={"id": user["id"]}
                )
            cursor += 1
    return count


async def parse_costs(base_url: str) -> tuple[float, float, int]:
    """ms to turn one users-delta page into objects: kiota models vs json.loads + our mapping."""
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {BEARER}"}) as client:
        select = ",".join(user_select(SELECT))
        page = (await client.get(f"{base_url}/v1.0/users/delta()", params={"$select": select})).content
    factory = JsonParseNodeFactory()
    factory.get_root_parse_node("application/json", page).get_object_value(DeltaGetResponse)  # warm-up
    kiota = float("inf")
    for _ in range(3):  # the best of three: kiota's timings vary a lot from one parse to the next
        started = time.perf_counter()
        factory.get_root_parse_node("application/json", page).get_object_value(DeltaGetResponse)
        kiota = min(kiota, time.perf_counter() - started)
    started = time.perf_counter()
    for _ in range(20):
        [user_change(item) for item in json.loads(page)["value"]]
    raw = (time.perf_counter() - started) / 20
    return kiota * 1000, raw * 1000, len(json.loads(page)["value"])


async def main(users: int, group_count: int, changes: int) -> None:
    with tempfile.TemporaryDirectory() as workdir:
        graph = start_graph(users, group_count, Path(workdir))
        base_url = graph.url
        settings = Settings(GRAPH_API_URL=f"{base_url}/v1.0", GRAPH_ACCESS_TOKEN=BEARER)
        try:
            async with httpx.AsyncClient(base_url=base_url, timeout=60) as admin:
                groups = [g["id"] for g in await ids(admin, "groups", **{"$select": "id"})]
                directory = open_directory(settings)
                rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                initial = await timed(directory, admin, groups, None)
                rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                tracemalloc.start()
                await read_all(directory, groups, None)
                traced_mb = tracemalloc.get_traced_memory()[1] / 2**20
                tracemalloc.stop()
                changed = await change_users(admin, groups, changes)
                incremental = await timed(
                    directory, admin, groups, (initial.user_cursor, initial.membership_cursor)
                )
                await directory.aclose()
            kiota_ms, raw_ms, page_users = await parse_costs(base_url)
        finally:
            graph.stop()
    print(
        f"Graph adapter on the simulator: {users:,} users, {group_count} mapped groups, "
        f"{initial.memberships:,} memberships"
    )
    print(f"{'read':<24}{'requests':>9}{'per user':>10}{'wall s':>8}{'peak RSS MB':>13}{'traced MB':>11}")
    print(
        f"{'initial':<24}{initial.requests:>9}{initial.requests / users:>10.4f}{initial.seconds:>8.1f}"
        f"{f'{rss_before:.0f} → {rss_mb:.0f}':>13}{traced_mb:>11.0f}"
    )
    label = f"incremental ({changed} users)"
    per_change = incremental.requests / changed
    print(f"{label:<24}{incremental.requests:>9}{per_change:>10.2f}{incremental.seconds:>8.2f}")
    print(
        f"parsing one {page_users}-user delta page: kiota models {kiota_ms:.0f} ms (best of 3), "
        f"raw JSON + mapping {raw_ms:.1f} ms"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.graph")
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--groups", type=int, default=20)
    parser.add_argument("--changes", type=int, default=100)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.users, arguments.groups, arguments.changes))
