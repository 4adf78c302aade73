"""Long passes at scale, timed: ``make bench-scale``.

    .venv/bin/python -m bench.scale [--reconcile-users 200000] [--import-users 10000] [--rate-users 2000]
                                    [--worker-users 20000] [--worker-lock-seconds S]
                                    [--worker-slice-accounts N] [--only a|b|c|d]

Every figure comes from the real command line (``python -m provisioning sync``) in a fresh process, with
both simulators in processes of their own; peak RSS is the sync process's own (``os.wait4``).

(a) A full reconciliation of ``--reconcile-users`` accounts. Druva already holds every member (as after a
    switch from Druva's own Entra sync), so the first pass adopts them all (a link each, no Druva
    write); then ``sync --full`` decides every account again and finds nothing to do: the nightly job.
(b) An import of ``--import-users`` accounts with no added latency (5 mappings, 20 groups).
(c) An import of ``--rate-users`` accounts against a Druva at 50 ms a request that answers at most 200
    requests a second (then 429 + Retry-After): wall time against the bound the rate limit sets. Then
    the same import against a Druva at 25 ms a request, without a rate limit, beside a naive sequential
    script (one POST at a time, no reads) creating the same users: the ratio of the two.
(d) An import of ``--worker-users`` accounts through the worker path on the local Functions host, the
    queue in a process of its own; then the same with the worker host killed twice (``bench.worker_scale``).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.pipeline import mappings
from simulators.druva import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_SEED
from simulators.local import LOCAL_GRAPH_TOKEN
from simulators.running import SimulatorProcess

CATCH_ALL = """\
mappings:
  - name: Everyone
    match: {all: true}
    target: {profile: Standard, storage: EU-West}
"""


@dataclass
class Run:
    seconds: float
    peak_rss_mb: float
    counts: dict[str, int]
    cpu_seconds: float = 0.0  # the sync process's own, user and system


def tenant_file(folder: Path, users: int) -> Path:
    seed = folder / f"tenant-{users}.json"
    command = [
        "-m",
        "simulators.tenants",
        "synthetic",
        "--users",
        str(users),
        "--out",
        str(seed),
    ]
    subprocess.run([sys.executable, *command], check=True)  # noqa: S603 - our own module
    return seed


def in_child(job: Callable[..., Any], *arguments: Any) -> Any:
    """Run ``job`` in a fresh interpreter. A process started by fork inherits its parent's peak RSS
    (Linux folds the forked copy's high-water mark into the child's ``ru_maxrss`` at exec), so this
    process must never hold a big tenant itself, or every sync it starts would report it."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(job, arguments)


def write_mappings(tenant: Path, out: Path) -> None:
    out.write_text(mappings(json.loads(tenant.read_text())["groups"]))


def druva_holding(folder: Path, tenant_path: Path) -> Path:
    """A Druva seed holding every enabled member as the catch-all mapping would have created it."""
    tenant = json.loads(tenant_path.read_text())
    users = [
        {
            "email": u["userPrincipalName"],
            "name": u["displayName"],
            "profile": "Standard",
            "storage": "EU-West",
        }
        for u in tenant["users"]
        if u["userType"] == "Member" and u["accountEnabled"]
    ]
    seed = folder / "druva.json"
    seed.write_text(json.dumps(DEFAULT_SEED | {"users": users}))
    return seed


def sync(folder: Path, graph_url: str, druva_url: str, config: Path, *flags: str, **env: str) -> Run:
    environment = {
        **os.environ,
        "GRAPH_API_URL": f"{graph_url}/v1.0",
        "GRAPH_ACCESS_TOKEN": LOCAL_GRAPH_TOKEN,
        "DRUVA_API_URL": druva_url,
        "DRUVA_CLIENT_ID": DEFAULT_CLIENT_ID,
        "DRUVA_CLIENT_SECRET": DEFAULT_CLIENT_SECRET,
        "PROVISIONING_STATE": str(folder / "state"),
        **env,
    }
    started = time.perf_counter()
    process = subprocess.Popen(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "provisioning", "sync", "--config", str(config), "--json", *flags],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"sync failed with exit {code}: {output[-500:]}")
    counts = json.loads(output.strip().splitlines()[-1])
    return Run(seconds, usage.ru_maxrss / 1024, counts, usage.ru_utime + usage.ru_stime)


def cpu_seconds(process: subprocess.Popen[str]) -> float:
    """CPU time (user and system) a running process has used so far, from /proc (Linux)."""
    fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Simulators:
    """The Graph simulator for one tenant and a Druva simulator, each in its own process."""

    def __init__(self, tenant: Path, *druva_arguments: str) -> None:
        self._graph = SimulatorProcess.start("graph", "--seed", str(tenant))
        try:
            self._druva = SimulatorProcess.start("druva", *druva_arguments)
        except BaseException:
            self._graph.stop()
            raise
        self.graph_url, self.druva_url = self._graph.url, self._druva.url

    def __enter__(self) -> Simulators:
        return self

    def __exit__(self, *exc: object) -> None:
        self._graph.stop()
        self._druva.stop()

    def cpu_seconds(self) -> tuple[float, float]:
        """CPU time the Graph and the Druva simulator have used so far."""
        return cpu_seconds(self._graph.process), cpu_seconds(self._druva.process)

    def druva_counts(self) -> dict[str, int]:
        with httpx.Client(base_url=self.druva_url) as admin:
            found: dict[str, int] = admin.get("/_admin/counts").json()
        return found


def reconcile(work: Path, users: int) -> list[str]:
    seed = tenant_file(work, users)
    config = work / "catch-all.yaml"
    config.write_text(CATCH_ALL)
    with Simulators(seed, "--seed", str(in_child(druva_holding, work, seed))) as sims:
        adopt = sync(work / "a", sims.graph_url, sims.druva_url, config)
        full = sync(work / "a", sims.graph_url, sims.druva_url, config, "--full")
        writes = sum(
            n
            for name, n in sims.druva_counts().items()
            if name.endswith(("user", "users")) and not name.startswith(("list", "get", "admin"))
        )
    return [
        f"(a) Full reconciliation of {users:,} accounts (command line, SQLite state)",
        f"  first pass (adopts what Druva holds)  {figures(users, adopt)}",
        f"  sync --full (nothing to do)           {figures(users, full)}",
        f"  Druva writes in both passes           {writes}",
    ]


def figures(users: int, run: Run) -> str:
    outcome = ", ".join(f"{k} {v:,}" for k, v in run.counts.items() if v)
    rate = users / run.seconds
    return f"{run.seconds:7.1f} s  {rate:6.0f} users/s  peak RSS {run.peak_rss_mb:4.0f} MB  ({outcome})"


def import_without_latency(work: Path, users: int) -> list[str]:
    seed = tenant_file(work, users)
    config = work / "mappings.yaml"
    in_child(write_mappings, seed, config)
    with Simulators(seed) as sims:
        graph_before, druva_before = sims.cpu_seconds()
        done = sync(work / "b", sims.graph_url, sims.druva_url, config)
        graph_after, druva_after = sims.cpu_seconds()
    per_user = {
        "sync": done.cpu_seconds,
        "Graph simulator": graph_after - graph_before,
        "Druva simulator": druva_after - druva_before,
    }
    split = ", ".join(f"{name} {seconds / users * 1000:.2f} ms" for name, seconds in per_user.items())
    return [
        f"(b) Import of {users:,} accounts, no added latency (5 mappings, 20 groups)",
        f"  {done.seconds:.1f} s, {users / done.seconds:.0f} users/s, {done.counts['created']:,} created,"
        f" peak RSS {done.peak_rss_mb:.0f} MB",
        f"  CPU per user: {split}; the sync alone, one core: {users / done.cpu_seconds:.0f} users/s"
        f" (load average {os.getloadavg()[0]:.1f})",
    ]


def naive_sequential(druva_url: str, tenant_path: Path) -> tuple[float, int]:
    """What a one-request-at-a-time script does: a token, then one POST per enabled member."""
    tenant = json.loads(tenant_path.read_text())
    members = [u for u in tenant["users"] if u["userType"] == "Member" and u["accountEnabled"]]
    started = time.perf_counter()
    with httpx.Client(base_url=druva_url, timeout=60) as client:
        token = client.post(
            "/token",
            auth=(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET),
            data={"grant_type": "client_credentials"},
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        profiles = client.get("/insync/profilemanagement/v1/profiles", headers=headers).json()["profiles"]
        storages = client.get("/insync/storagemanagement/v1/storages", headers=headers).json()["storages"]
        body = {"profileID": profiles[0]["profileID"], "storageID": storages[0]["StorageID"]}
        for user in members:
            client.post(
                "/insync/usermanagement/v1/users",
                headers=headers,
                json=body | {"emailID": user["userPrincipalName"], "userName": user["displayName"]},
            ).raise_for_status()
    return time.perf_counter() - started, len(members)


def import_against_a_rate_limit(work: Path, users: int) -> list[str]:
    seed = tenant_file(work, users)
    config = work / "mappings.yaml"
    in_child(write_mappings, seed, config)
    with Simulators(seed, "--latency-ms", "50", "--rate-limit", "200") as sims:
        limited = sync(work / "c1", sims.graph_url, sims.druva_url, config)
        requests = sum(n for name, n in sims.druva_counts().items() if not name.startswith("admin"))
        throttled = requests - limited.counts["created"] - 4  # answers beyond one per user and the sweep
    bound = limited.counts["created"] / 200
    with Simulators(seed, "--latency-ms", "25") as sims:
        product = sync(work / "c2", sims.graph_url, sims.druva_url, config)
    with Simulators(seed, "--latency-ms", "25") as sims:
        naive, created = in_child(naive_sequential, sims.druva_url, seed)
    return [
        f"(c) Import of {users:,} accounts through the command line",
        f"  Druva at 50 ms a request, 200 requests/s:  {limited.seconds:.1f} s for"
        f" {limited.counts['created']:,} creates; rate-limit bound {bound:.1f} s"
        f" ({limited.seconds / bound:.2f}x the bound; ~{max(throttled, 0)} requests answered 429)",
        f"  Druva at 25 ms a request, no limit:       product {product.seconds:.1f} s;"
        f" naive sequential script {naive:.1f} s for {created:,} creates;"
        f" ratio {product.seconds / naive:.2f}x",
    ]


def worker_import(
    work: Path, users: int, lock_seconds: float | None, slice_accounts: int | None
) -> list[str]:
    from bench import worker_scale  # (d) lives in its own module

    return worker_scale.worker_import(work, users, worker_scale.Knobs(lock_seconds, slice_accounts))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scale")
    parser.add_argument("--reconcile-users", type=int, default=200_000)
    parser.add_argument("--import-users", type=int, default=10_000)
    parser.add_argument("--rate-users", type=int, default=2_000)
    parser.add_argument("--worker-users", type=int, default=20_000)
    parser.add_argument(
        "--worker-lock-seconds", type=float, default=None, help="(d) queue lock (default: infra/main.bicep's)"
    )
    parser.add_argument(
        "--worker-slice-accounts",
        type=int,
        default=None,
        help="(d) accounts per slice (default: SliceBound's)",
    )
    parser.add_argument("--only", choices=("a", "b", "c", "d"), default=None, help="run one part only")
    args = parser.parse_args()
    parts: dict[str, Callable[[Path], list[str]]] = {
        "a": lambda work: reconcile(work, args.reconcile_users),
        "b": lambda work: import_without_latency(work, args.import_users),
        "c": lambda work: import_against_a_rate_limit(work, args.rate_users),
        "d": lambda work: worker_import(
            work, args.worker_users, args.worker_lock_seconds, args.worker_slice_accounts
        ),
    }
    for name, part in parts.items():
        if args.only not in (None, name):
            continue
        with tempfile.TemporaryDirectory(prefix=f"bench-scale-{name}-") as folder:
            print("\n".join(part(Path(folder))), flush=True)


if __name__ == "__main__":
    main()
