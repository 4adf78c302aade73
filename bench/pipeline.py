"""The product's main job, timed: ``python -m provisioning sync`` against the local simulators.

    .venv/bin/python -m bench.pipeline [--users 50000] [--groups 20] [--changes 100]

Both simulators run in processes of their own and the sync runs as the admin would run it, in a fresh
process, so its peak RSS is the product's alone (read with ``os.wait4``). The tenant is synthetic: every
group mapped (10 in the first mapping, the rest in the second), a department mapping, a shared-mailbox
mapping and a catch-all: 5 mappings. Then ``--changes`` users change (joiners into a mapped group,
department moves, leavers, group leavers, deletions) and the incremental sync is timed; last, a sync
with nothing to do, which must write nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from simulators.druva import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, WRITE_ROUTES
from simulators.local import LOCAL_GRAPH_TOKEN
from simulators.running import SimulatorProcess
from simulators.tenants import make_user

SWEEP_ROUTES = ("token", "list profiles", "list storages", "list users")


@dataclass
class Sync:
    seconds: float
    peak_rss_mb: float
    counts: dict[str, int]
    graph: dict[str, int]
    druva: dict[str, int]

    @property
    def graph_requests(self) -> int:
        return sum(n for name, n in self.graph.items() if not name.startswith(("admin", "batch step")))

    @property
    def druva_requests(self) -> int:
        return sum(n for name, n in self.druva.items() if not name.startswith("admin"))

    @property
    def druva_writes(self) -> int:
        return sum(self.druva.get(name, 0) for name in WRITE_ROUTES)

    @property
    def druva_sweep(self) -> int:
        return sum(self.druva.get(name, 0) for name in SWEEP_ROUTES)


def mappings(groups: list[dict[str, Any]]) -> str:
    names = [json.dumps(g["displayName"]) for g in groups]
    half = len(names) // 2
    return f"""\
mappings:
  - name: First groups
    match: {{groups: [{", ".join(names[:half])}]}}
    target: {{profile: Finance, storage: US-East, quota: 200 GB}}
  - name: Other groups
    match: {{groups: [{", ".join(names[half:])}]}}
    target: {{profile: Standard, storage: US-East}}
  - name: Sales and Support
    match: {{attribute: department, values: [Sales, Support]}}
    target: {{profile: Standard, storage: EU-West}}
  - name: Shared mailboxes
    match: {{all: true, kinds: [shared_mailbox]}}
    target: {{profile: Mailboxes, storage: US-East}}
  - name: Everyone else
    match: {{all: true}}
    target: {{profile: Standard, storage: EU-West, quota: unlimited}}
"""


def counts(admin: httpx.Client, path: str) -> dict[str, int]:
    answer = admin.get(path).json()
    found: dict[str, int] = answer.get("counts", answer)
    return found


def reset(graph: httpx.Client, druva: httpx.Client) -> None:
    graph.delete("/_admin/counts")
    druva.post("/_admin/counts/reset")


def sync(config: Path, environment: dict[str, str], graph: httpx.Client, druva: httpx.Client) -> Sync:
    reset(graph, druva)
    started = time.perf_counter()
    process = subprocess.Popen(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "provisioning", "sync", "--config", str(config), "--json"],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"sync failed with exit {os.waitstatus_to_exitcode(status)}: {output[-500:]}")
    return Sync(
        seconds,
        usage.ru_maxrss / 1024,
        json.loads(output.strip().splitlines()[-1]),
        counts(graph, "/_admin/counts"),
        counts(druva, "/_admin/counts"),
    )


def change(graph: httpx.Client, tenant: dict[str, Any], changes: int) -> int:
    """Joiners into a mapped group, department moves, leavers, group leavers and deletions, in equal parts."""
    members = [u for u in tenant["users"] if u["userType"] == "Member" and u["accountEnabled"]]
    first_group = tenant["groups"][0]
    in_group = [m for m in first_group["members"] if any(u["id"] == m for u in members[:5000])]
    share = max(1, changes // 5)
    for n in range(share):
        created = graph.post("/_admin/users", json=make_user(f"joiner.{n:04d}", department="Finance")).json()
        graph.post(f"/_admin/groups/{first_group['id']}/members", json={"id": created["id"]})
    for user in members[-share:]:
        graph.patch(f"/_admin/users/{user['id']}", json={"department": "Sales"})
    for user in members[-2 * share : -share]:
        graph.patch(f"/_admin/users/{user['id']}", json={"accountEnabled": False})
    for member in in_group[:share]:
        graph.delete(f"/_admin/groups/{first_group['id']}/members/{member}")
    for user in members[-3 * share : -2 * share]:
        graph.delete(f"/_admin/users/{user['id']}")
    return share * 5


@dataclass
class Figures:
    users: int
    groups: int
    initial: Sync
    incremental: Sync
    changed: int
    idle: Sync

    def report(self) -> str:
        first, later, idle = self.initial, self.incremental, self.idle
        created = first.counts["created"]
        druva_per_user = (first.druva_requests - first.druva_sweep) / created if created else 0.0
        outcome = ", ".join(f"{k} {v}" for k, v in later.counts.items() if v)
        return "\n".join(
            [
                f"Initial import: {self.users:,} users, {self.groups} groups, 5 mappings",
                f"  wall time                          {first.seconds:8.1f} s",
                f"  users per second, end to end       {self.users / first.seconds:8.0f}",
                f"  created / skipped                  {created:8,} / {first.counts['skipped']:,}",
                f"  Graph requests                     {first.graph_requests:8,}"
                f"  ({first.graph_requests / self.users:.4f} per user)",
                f"  Druva requests                     {first.druva_requests:8,}"
                f"  (sweep {first.druva_sweep})",
                f"  Druva requests per created user    {druva_per_user:8.3f}  (after the sweep)",
                f"  peak RSS of the sync               {first.peak_rss_mb:8.0f} MB",
                f"Incremental sync after {self.changed} changed users",
                f"  wall time                          {later.seconds:8.2f} s",
                f"  Graph requests                     {later.graph_requests:8}"
                f"  ({later.graph_requests / self.changed:.3f} per change)",
                f"  Druva requests                     {later.druva_requests:8}"
                f"  ({later.druva_requests / self.changed:.3f} per change)",
                f"  outcome                            {outcome}",
                "Sync with nothing to do",
                f"  wall time {idle.seconds:.2f} s, Graph requests {idle.graph_requests}, "
                f"Druva writes {idle.druva_writes}",
            ]
        )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.pipeline")
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--groups", type=int, default=20)
    parser.add_argument("--changes", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as folder:
        work = Path(folder)
        seed = work / "tenant.json"
        subprocess.run(  # noqa: S603 - our own module
            [
                sys.executable,
                "-m",
                "simulators.tenants",
                "synthetic",
                "--users",
                str(args.users),
                "--groups",
                str(args.groups),
                "--out",
                str(seed),
            ],
            check=True,
        )
        tenant = json.loads(seed.read_text())
        config = work / "mappings.yaml"
        config.write_text(mappings(tenant["groups"]))
        graph_process = SimulatorProcess.start("graph", "--seed", str(seed))
        druva_process = SimulatorProcess.start("druva")
        graph_url, druva_url = graph_process.url, druva_process.url
        try:
            environment = {
                **os.environ,
                "GRAPH_API_URL": f"{graph_url}/v1.0",
                "GRAPH_ACCESS_TOKEN": LOCAL_GRAPH_TOKEN,
                "DRUVA_API_URL": druva_url,
                "DRUVA_CLIENT_ID": DEFAULT_CLIENT_ID,
                "DRUVA_CLIENT_SECRET": DEFAULT_CLIENT_SECRET,
                "PROVISIONING_STATE": str(work / "state"),
            }
            with (
                httpx.Client(base_url=graph_url, timeout=60) as graph,
                httpx.Client(base_url=druva_url) as druva,
            ):
                initial = sync(config, environment, graph, druva)
                changed = change(graph, tenant, args.changes)
                incremental = sync(config, environment, graph, druva)
                idle = sync(config, environment, graph, druva)
        finally:
            graph_process.stop()
            druva_process.stop()
    print(Figures(args.users, args.groups, initial, incremental, changed, idle).report())


if __name__ == "__main__":
    main()
