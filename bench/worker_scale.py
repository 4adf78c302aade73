"""Part (d) of ``make bench-scale``: the first import through the worker path on the local Functions host.

The import runs as it runs in Azure (``simulators.worker_import``): the keep_watch timer enqueues a delta
pass, and the worker function carries the import out slice by slice (``SliceBound``: 5,000 accounts or
150 s), each slice handing over to a continuation message on the Service Bus stand-in. The stand-in runs
in its own process with the deployed queue settings (``infra/main.bicep``, ``host.json``: a 5-minute
lock); the worker host in another; SQLite state on disk; Druva at 50 ms a request and 200 requests a
second. Timer schedules are off (the admin API runs keep_watch once), so a quarter-hour never brings a
second pass that would shorten a recovery by chance.

Then the same import, on a fresh Druva and fresh state, with the worker host killed (SIGKILL) twice,
at about 30 % and 65 % of the creates, and started again at once.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from bench.scale import Simulators, in_child, tenant_file, write_mappings
from provisioning.service.slicing import WORKER_SLICE
from simulators.local import simulator_settings
from simulators.servicebus import QueueSettings
from simulators.worker_import import ImportRun, import_through_the_worker

RATE_LIMIT = 200  # Druva's requests a second in this benchmark
KILLS_AT = (0.30, 0.65)  # fractions of the creates


def _one_run(work: Path, seed: Path, config: Path, kill_after: list[int], knobs: Knobs) -> ImportRun:
    work.mkdir()
    with Simulators(seed, "--latency-ms", "50", "--rate-limit", str(RATE_LIMIT)) as sims:
        environment = {
            **simulator_settings(f"{sims.graph_url}/v1.0", sims.druva_url, work / "state"),
            "GRAPH_CLIENT_STATE": secrets.token_urlsafe(32),
        }
        return import_through_the_worker(
            work=work,
            druva_url=sims.druva_url,
            environment=environment,
            config=config,
            kill_after=kill_after,
            broker_arguments=["--lock-seconds", str(knobs.lock_seconds)] if knobs.lock_seconds else [],
            host_arguments=[
                "--no-timers",
                *(["--slice-accounts", str(knobs.slice_accounts)] if knobs.slice_accounts else []),
            ],
        )


def _figures(run: ImportRun) -> list[str]:
    bound = run.created / RATE_LIMIT
    return [
        f"  wall {run.seconds:.1f} s for {run.created:,} creates; rate-limit bound {bound:.1f} s"
        f" ({run.seconds / bound:.2f}x the bound)",
        f"  {run.slices} slices (passes that took the cursors), {len(run.invocations)} worker invocations,"
        f" the longest {run.longest_invocation:.1f} s (slice bound 150 s, lock renewal 600 s)",
        f"  duplicates in Druva {run.duplicates}; overlapping lease holders {run.overlapping_holders}"
        f" (of {run.lease_holders} holders in the lease history); dead letters {run.dead_letters}",
    ]


@dataclass(frozen=True)
class Knobs:
    """What differs from the deployment, if anything (the figures say so): the queue's lock duration (a
    shorter lock brings a dead worker's message back sooner) and the slice's account bound."""

    lock_seconds: float | None = None
    slice_accounts: int | None = None


def worker_import(work: Path, users: int, knobs: Knobs = Knobs()) -> list[str]:
    seed = tenant_file(work, users)
    config = work / "mappings.yaml"
    in_child(write_mappings, seed, config)
    lock = knobs.lock_seconds or QueueSettings.from_project().lock_duration
    accounts = knobs.slice_accounts or WORKER_SLICE.accounts
    clean = _one_run(work / "d1", seed, config, [], knobs)
    kill_after = [int(clean.created * share) for share in KILLS_AT]
    killed = _one_run(work / "d2", seed, config, kill_after, knobs)
    lines = [
        f"(d) Import of {users:,} accounts through the worker path on the local Functions host"
        f" (Druva at 50 ms a request, {RATE_LIMIT} requests/s; slices of {accounts:,} accounts or"
        f" {WORKER_SLICE.seconds:g} s{'' if knobs.slice_accounts else ', as deployed'})",
        *_figures(clean),
        f"  the same, the worker host killed (SIGKILL) twice and restarted at once (queue lock {lock:g} s"
        f"{'' if knobs.lock_seconds else ', as deployed'}; lease 60 s):",
        *_figures(killed),
    ]
    for n, kill in enumerate(killed.kills, 1):
        lost = (
            "never resumed"
            if kill.seconds_lost is None
            else f"a pass took the cursors again after {kill.seconds_lost:.1f} s"
        )
        lines.append(f"  kill {n} after {kill.created_before:,} creates: {lost}")
    lines.append(f"  time lost to the kills: {killed.seconds - clean.seconds:.1f} s in all")
    return lines
