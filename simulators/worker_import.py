"""An import through the worker path, as Azure runs it, optionally with the worker killed mid-way.

Development and test tooling, not part of the product: ``bench.scale`` times it with 20,000 users and
``tests/e2e/test_worker_kill_resume.py`` checks it with a few hundred. The pieces are separate processes:
the Service Bus stand-in (``simulators.servicebus_process``), the worker host (``simulators.worker_host``,
the one that is killed) and the simulators the caller started. The timer that keeps the subscriptions
(``keep_watch``) is run once through the host's admin API, as its schedule would run it: it enqueues a
delta pass; the worker carries the first import out slice by slice, each slice handing over to a
continuation message.

A kill is SIGKILL once Druva has created a given number of users; the host is started again at once, on
the same port, as Azure would start a new instance. Nothing else helps it along: the dead worker's
message comes back when its lock expires, and the pass it held carries on once its lease has lapsed.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simulators.running import SimulatorProcess
from simulators.worker_host import WorkerHost, free_port, holdings, overlapping_holders, read_lease_log

POLL_SECONDS = 0.25
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback needs no proxy


@dataclass
class Kill:
    at: float  # wall clock, when SIGKILL was sent
    created_before: int  # Druva creates counted when it was sent
    resumed_at: float | None = None  # when a pass next took the cursors

    @property
    def seconds_lost(self) -> float | None:
        return None if self.resumed_at is None else self.resumed_at - self.at


@dataclass
class ImportRun:
    started: float
    finished: float | None = None
    created: int = 0  # users Druva holds now and did not before
    druva_users: int = 0
    druva_users_before: int = 0
    duplicates: int = 0
    kills: list[Kill] = field(default_factory=list)
    invocations: list[dict[str, Any]] = field(default_factory=list)  # the worker's, every incarnation
    overlapping_holders: int = 0
    lease_holders: int = 0
    slices: int = 0  # passes that took the cursors: one per slice carried out (in part, if killed)
    dead_letters: int = 0
    queue: dict[str, Any] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return (self.finished or time.time()) - self.started

    @property
    def longest_invocation(self) -> float:
        """The longest worker invocation that ran to its end (a killed one never did)."""
        return max((i["ended"] - i["started"] for i in self.finished_invocations), default=0.0)

    @property
    def finished_invocations(self) -> list[dict[str, Any]]:
        return [i for i in self.invocations if i["ended"] is not None and i["outcome"] != "killed"]


def _json(url: str) -> Any:
    with _DIRECT.open(url, timeout=30) as answer:
        return json.loads(answer.read())


def creates(druva_url: str) -> int:
    return int(_json(f"{druva_url}/_admin/counts").get("create user", 0))


def import_through_the_worker(
    *,
    work: Path,
    druva_url: str,
    environment: dict[str, str],
    config: Path,
    kill_after: Sequence[int] = (),
    broker_arguments: Sequence[str] = (),
    host_arguments: Sequence[str] = (),
    timeout: float = 1800.0,
) -> ImportRun:
    """Run the import; kill the worker host once Druva has seen each of ``kill_after`` creates."""
    broker = SimulatorProcess.start("servicebus_process", *broker_arguments)
    bus_url = broker.url
    lease_log = work / "leases.jsonl"
    host = WorkerHost(
        bus_url,
        config,
        environment,
        free_port(),
        tuple(host_arguments),
        lease_log=lease_log,
        log=work / "worker-host.log",
    )
    try:
        host.start()
        run = ImportRun(
            started=time.time(), druva_users_before=len(_json(f"{druva_url}/_admin/state")["users"])
        )
        host.run_function("keep_watch")  # the timer: subscriptions, then a delta pass on the queue
        _drive(run, host, (bus_url, druva_url), list(kill_after), timeout)
        killed_at = {n + 1: kill.at for n, kill in enumerate(run.kills)}
        run.invocations = [i for i in host.every_invocation(killed_at) if i["function"] == "worker"]
    finally:
        host.stop()
        broker.stop()
    _tally(run, druva_url, lease_log)
    return run


def _drive(run: ImportRun, host: WorkerHost, urls: tuple[str, str], kills: list[int], timeout: float) -> None:
    bus_url, druva_url = urls
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
        if kills and creates(druva_url) >= kills[0]:
            kills.pop(0)
            count = creates(druva_url)
            run.kills.append(Kill(host.kill(), count))
            host.start()  # a new instance, at once
            continue
        queue = _json(f"{bus_url}/describe")
        running = any(i["ended"] is None for i in host.invocations())
        if queue["active"] == 0 and not running and queue["counters"]["completed"] > 0:
            run.finished, run.queue = time.time(), queue
            return
    raise TimeoutError(f"the import did not finish within {timeout:g} s")


def _tally(run: ImportRun, druva_url: str, lease_log: Path) -> None:
    emails = Counter(u["emailID"].lower() for u in _json(f"{druva_url}/_admin/state")["users"])
    run.druva_users = len(emails)
    run.duplicates = sum(n - 1 for n in emails.values())
    run.created = run.druva_users - run.druva_users_before
    run.dead_letters = int(run.queue.get("dead_lettered", 0))
    history = read_lease_log(lease_log)
    run.overlapping_holders = overlapping_holders(history)
    run.lease_holders = len({h.holder for h in holdings(history)})
    run.slices = len(
        {line["holder"] for line in history if line["action"] == "claim" and line["cursor"] == "users"}
    )
    for kill in run.kills:
        claims = [line["at"] for line in history if line["action"] == "claim" and line["at"] > kill.at]
        kill.resumed_at = min(claims, default=None)
