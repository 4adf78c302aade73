"""How fast the Druva client creates users, and how many Druva requests each create costs.

Run: ``.venv/bin/python -m bench.druva [--creates N] [--existing N]``

The Druva simulator runs in its own process (as ``python -m simulators.druva``), so the
client and the server do not share an interpreter. Each row starts from the same Druva (a catalog plus
``--existing`` users), sweeps the existing users once the way a run does, then creates ``--creates``
new users with ``--creates`` tasks at once, the client's concurrency limit deciding how many are in
flight. Requests are counted by the simulator; "requests/user" leaves out the initial sweep (token,
catalog and user pages), which a run pays once whatever it creates. The rows with added latency show
what the concurrency limit buys against a Druva that takes time to answer, as the real one does.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import httpx

from provisioning.adapters.druva import DruvaClient, DruvaOptions, DruvaRetryPolicy
from provisioning.domain.druva import NewDruvaUser
from simulators.druva import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_SEED
from simulators.running import SimulatorProcess

CONCURRENCY = (1, 4, 16)
FAULTS = {"throttle_rate": 0.05, "error_rate": 0.02, "lost_response_rate": 0.02}


@dataclass(frozen=True)
class Scenario:
    concurrency: int
    latency_ms: float = 0.0
    faults: bool = False

    @property
    def label(self) -> str:
        faults = "429 5% · 500 2% · lost 2%" if self.faults else "none"
        return f"{self.concurrency:>11}  {self.latency_ms:>10g}  {faults:<26}"


@dataclass(frozen=True)
class Result:
    scenario: Scenario
    creates_per_second: float
    requests_per_user: float
    sweep_requests: int


def scenarios() -> list[Scenario]:
    plain = [Scenario(c) for c in CONCURRENCY]
    slow = [Scenario(c, latency_ms=20) for c in CONCURRENCY]
    return [*plain, *slow, Scenario(4, faults=True)]


def seed(existing: int) -> dict[str, Any]:
    users = [
        {"email": f"existing{n}@contoso.com", "profile": "Standard", "storage": "US-East"}
        for n in range(existing)
    ]
    return DEFAULT_SEED | {"users": users}


async def api_requests(admin: httpx.AsyncClient) -> int:
    counts = (await admin.get("/_admin/counts")).json()
    return sum(n for name, n in counts.items() if not name.startswith("admin"))


async def run(url: str, scenario: Scenario, creates: int, existing: int) -> Result:
    async with httpx.AsyncClient(base_url=url, timeout=60) as admin:
        await admin.post("/_admin/reset", json=seed(existing))
        faults: dict[str, Any] = dict(FAULTS) if scenario.faults else {}
        await admin.post("/_admin/faults", json=faults | {"latency_seconds": scenario.latency_ms / 1000})
        retry = DruvaRetryPolicy(
            attempts=10, backoff_seconds=0.01, throttle_seconds=0.05, jitter_seconds=0.01
        )
        options = DruvaOptions(max_concurrency=scenario.concurrency, retry=retry)
        async with DruvaClient(url, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, options) as druva:
            swept = [user async for user in druva.users()]
            assert len(swept) == existing
            sweep_requests = await api_requests(admin)
            started = time.perf_counter()
            new = [
                NewDruvaUser(f"new{n}@contoso.com", f"New {n}", "Standard", "US-East") for n in range(creates)
            ]
            await asyncio.gather(*(druva.create_user(user) for user in new))
            elapsed = time.perf_counter() - started
        write_requests = await api_requests(admin) - sweep_requests
        state = (await admin.get("/_admin/state")).json()
        assert len(state["users"]) == existing + creates, "a create was lost or duplicated"
    return Result(scenario, creates / elapsed, write_requests / creates, sweep_requests)


def print_table(results: list[Result], creates: int, existing: int) -> None:
    print(f"Druva client → simulator (separate process, loopback): {creates} creates per row,", end=" ")
    print(f"{existing} existing users swept first")
    print("concurrency  latency ms  faults                      creates/s  requests/user  sweep requests")
    for result in results:
        print(
            f"{result.scenario.label}  {result.creates_per_second:>9.0f}  {result.requests_per_user:>13.3f}"
            f"  {result.sweep_requests:>14}"
        )


async def measure(creates: int, existing: int) -> list[Result]:
    with SimulatorProcess.start("druva") as druva:
        return [await run(druva.url, scenario, creates, existing) for scenario in scenarios()]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.druva")
    parser.add_argument("--creates", type=int, default=400, help="users created per row")
    parser.add_argument("--existing", type=int, default=5000, help="users already in Druva (swept first)")
    args = parser.parse_args(argv)
    # Retries are expected in the fault row; the table says what they cost.
    logging.getLogger("provisioning.adapters.druva").setLevel(logging.ERROR)
    results = asyncio.run(measure(args.creates, args.existing))
    print_table(results, args.creates, args.existing)


if __name__ == "__main__":
    main()
