"""The local Functions host alone in a process that can be killed, its queue in another that survives.

Development and test tooling, not part of the product. ``python -m simulators.localapp`` keeps the host,
its Service Bus stand-in and its simulators together; this module splits them as Azure does, so a worker
killed with SIGKILL loses only what a crashed Functions instance loses::

    python -m simulators.worker_host --bus URL --config mappings.yaml [--port N] [--lease-log FILE]

- the queue is the broker at ``--bus`` (``python -m simulators.servicebus_process``): the messages the
  dead worker held stay locked until their lock expires, then come back;
- the state is the durable store the environment names (``PROVISIONING_STATE``, SQLite on disk, or
  Table Storage): the dead pass's lease lapses within its time to live and the next pass carries on;
- Graph and Druva are wherever the environment points (their simulators, in processes of their own).

``--lease-log`` appends every accepted lease write (claim, renewal, save, release: cursor, holder,
until) as a JSON line, flushed as it happens, so the lines survive a kill: the record the benchmark reads
to count overlapping lease holders. :class:`WorkerHost` starts, kills and restarts such a process.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import select
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from simulators.http import LOOPBACK, wait_until_stopped

QUEUE = "provisioning-work"
BANNER = "worker host ready on "
START_SECONDS = 60.0  # importing the app and binding the port: a few seconds on a busy machine


class LeaseLog(logging.Handler):
    """The lease history as JSON lines, one write per line (a SIGKILL loses at most the line in flight)."""

    def __init__(self, out: TextIO) -> None:
        super().__init__(logging.DEBUG)
        self.out = out

    def emit(self, record: logging.LogRecord) -> None:
        self.out.write(json.dumps(getattr(record, "lease", {})) + "\n")
        self.out.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulators.worker_host", description=__doc__)
    parser.add_argument("--bus", required=True, help="URL of python -m simulators.servicebus_process")
    parser.add_argument("--config", type=Path, required=True, help="the mappings file")
    parser.add_argument("--port", type=int, default=0, help="the host's port on 127.0.0.1")
    parser.add_argument("--lease-log", type=Path, default=None, help="append the lease history here")
    parser.add_argument("--no-timers", action="store_true", help="timers run only when asked (admin API)")
    parser.add_argument("--lease-seconds", type=float, default=None, help="shorter leases (tests)")
    parser.add_argument("--slice-accounts", type=int, default=None, help="smaller slices (tests)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.lease_log is not None:
        history = logging.getLogger("provisioning.lease.history")
        history.setLevel(logging.DEBUG)
        history.addHandler(LeaseLog(args.lease_log.open("a", buffering=1)))
        history.propagate = False
    _shorten(args.lease_seconds, args.slice_accounts)

    from simulators.functions_host import LocalFunctionsHost
    from simulators.servicebus import LocalQueue
    from simulators.servicebus_process import RemoteServiceBus

    bus = RemoteServiceBus(args.bus)
    os.environ.update({"PROVISIONING_CONFIG": str(args.config.resolve()), "PROVISIONING_QUEUE": QUEUE})
    from function_app import app  # after the settings: imported as the Functions worker would

    host = LocalFunctionsHost(app, bus, port=args.port, run_timers=not args.no_timers).bind()
    os.environ["GRAPH_NOTIFICATION_URL"] = f"{host.url}/api/graph/notifications"
    os.environ["GRAPH_LIFECYCLE_URL"] = f"{host.url}/api/graph/lifecycle"
    from provisioning.entrypoints.functions import runtime

    runtime.reset()
    runtime.use(queue=LocalQueue(bus))  # what ServiceBusConnection gives the functions in Azure
    host.start()
    print(f"{BANNER}{host.url} key {host.host_key} pid {os.getpid()}", flush=True)
    try:
        wait_until_stopped()
    finally:
        host.stop()
    return 0


def _shorten(lease_seconds: float | None, slice_accounts: int | None) -> None:
    """The same code paths with smaller numbers, so a test sees a lease lapse and slices in seconds."""
    if lease_seconds is not None:
        from provisioning.service import lease

        lease.LEASE_SECONDS = lease_seconds
        lease.HEARTBEAT_SECONDS = lease_seconds / 4
        lease.FENCE_MARGIN_SECONDS = lease_seconds / 6
    if slice_accounts is not None:
        from provisioning.service import slicing

        slicing.WORKER_SLICE = slicing.SliceBound(
            accounts=slice_accounts, seconds=slicing.WORKER_SLICE.seconds
        )


# Driving it from another process: the benchmark and the tests -----------------------------------------
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback needs no proxy


@dataclass
class WorkerHost:
    """A worker host process that can be killed (SIGKILL) and started again on the same port."""

    bus_url: str
    config: Path
    environment: dict[str, str]
    port: int
    arguments: tuple[str, ...] = ()
    lease_log: Path | None = None
    process: subprocess.Popen[str] | None = None
    url: str = ""
    key: str = ""
    incarnations: int = 0
    log: Path | None = None
    _seen: dict[int, list[dict[str, Any]]] = field(default_factory=dict)

    def start(self) -> WorkerHost:
        command = [
            sys.executable,
            "-m",
            "simulators.worker_host",
            "--bus",
            self.bus_url,
            "--config",
            str(self.config),
            "--port",
            str(self.port),
            *(["--lease-log", str(self.lease_log)] if self.lease_log else []),
            *self.arguments,
        ]
        errors = self.log.open("a") if self.log else subprocess.DEVNULL
        self.process = subprocess.Popen(  # noqa: S603 - this project's own module, fixed arguments
            command, stdout=subprocess.PIPE, stderr=errors, text=True, env={**os.environ, **self.environment}
        )
        if self.log and not isinstance(errors, int):
            errors.close()  # the child has its own copy
        self.incarnations += 1
        assert self.process.stdout is not None
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.process.stdout], [], [], max(0.0, deadline - time.monotonic()))
            line = self.process.stdout.readline() if ready else ""
            if line.startswith(BANNER):
                url, _, key, *_ = line[len(BANNER) :].split()
                self.url, self.key = url, key
                return self
            if not line:  # the process ended, or the deadline passed
                break
        self.process.kill()
        raise RuntimeError(f"the worker host did not start (exit code {self.process.wait(timeout=10)})")

    def kill(self) -> float:
        """SIGKILL, as a crashed instance dies: no cleanup, no settlement. Returns when it was sent."""
        assert self.process is not None
        self._seen[self.incarnations] = self.invocations()
        killed_at = time.time()
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        return killed_at

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def __enter__(self) -> WorkerHost:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _call(self, method: str, path: str, timeout: float = 600) -> Any:
        request = urllib.request.Request(  # noqa: S310 - the URL the process printed: loopback
            f"{self.url}{path}", data=b"{}" if method == "POST" else None, method=method
        )
        request.add_header("x-functions-key", self.key)
        with _DIRECT.open(request, timeout=timeout) as answer:
            text = answer.read()
        return json.loads(text) if text else None

    def run_function(self, name: str) -> None:
        """Run a timer now, through the admin API (answers when the invocation finished)."""
        self._call("POST", f"/admin/functions/{name}")

    def invocations(self) -> list[dict[str, Any]]:
        """This incarnation's invocations (start, end, outcome)."""
        found: list[dict[str, Any]] = self._call("GET", "/admin/host/invocations", timeout=30)
        return found

    def every_invocation(self, killed_at: dict[int, float] | None = None) -> list[dict[str, Any]]:
        """Every incarnation's invocations; one still running when its process was killed ends at the kill
        (as last seen before it: a kill loses the process's own log, not what was read from it)."""
        seen = {**self._seen, self.incarnations: self.invocations()}
        found = []
        for incarnation, invocations in sorted(seen.items()):
            for invocation in invocations:
                ended = {}
                if invocation["ended"] is None and killed_at and incarnation in killed_at:
                    ended = {"ended": killed_at[incarnation], "outcome": "killed"}
                found.append({**invocation, **ended, "incarnation": incarnation})
        return found


def free_port() -> int:
    """A port free on loopback now (the host binds it again after every restart)."""
    import socket

    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class Holding:
    """One holder's time with one cursor, from the store's accepted writes."""

    cursor: str
    holder: str
    since: float
    until: float


def holdings(lines: list[dict[str, Any]]) -> list[Holding]:
    """Each holder's claim of each cursor, from its claim to its release, or to the end of its last
    accepted claim or renewal (a holder that died simply stops renewing: its lease ends then)."""
    open_: dict[tuple[str, str], Holding] = {}
    done: list[Holding] = []
    for line in sorted(lines, key=lambda x: x["at"]):
        key = (line["cursor"], line["holder"])
        if line["action"] == "claim":
            open_[key] = Holding(line["cursor"], line["holder"], line["at"], line["until"])
        elif key in open_ and line["until"] is not None:
            open_[key] = Holding(key[0], key[1], open_[key].since, max(open_[key].until, line["until"]))
        elif key in open_:  # released (or saved with release): held until that write
            done.append(Holding(key[0], key[1], open_[key].since, min(open_.pop(key).until, line["at"])))
    return done + list(open_.values())


def overlapping_holders(lines: list[dict[str, Any]]) -> int:
    """Pairs of different holders whose holdings of the same cursor overlap in time."""
    found = 0
    every = holdings(lines)
    for n, one in enumerate(every):
        for other in every[n + 1 :]:
            if one.cursor == other.cursor and one.holder != other.holder:
                found += one.since < other.until and other.since < one.until
    return found


def read_lease_log(path: Path) -> list[dict[str, Any]]:
    lines = []
    for text in path.read_text().splitlines():
        try:
            lines.append(json.loads(text))
        except ValueError:  # the line a kill cut short
            continue
    return lines


if __name__ == "__main__":
    sys.exit(main())
