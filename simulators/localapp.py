"""The whole app on this machine: ``python -m simulators.localapp``.

Starts the Graph and Druva simulators in their own processes, then the local Functions host running
``function_app.py`` with the Service Bus stand-in, SQLite state (or Table Storage on Azurite with
``--table``), and the settings that point the functions at the simulators and at the host's own webhook
URLs. Prints the URLs; Ctrl-C (or SIGTERM) stops the host and every process it started, by PID.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simulators import REPOSITORY
from simulators.functions_host import HostedFunction, LocalFunctionsHost
from simulators.local import LOCAL_GRAPH_TOKEN, simulator_settings
from simulators.realism import PROFILES
from simulators.running import SimulatorProcess
from simulators.servicebus import LocalQueue, LocalServiceBus, QueueSettings

CONFIG = REPOSITORY / "examples" / "mappings.yaml"
QUEUE = "provisioning-work"
STOP_SECONDS = 30.0  # the simulators, then the host's instances (a few seconds each at most)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulators.localapp", description=__doc__)
    parser.add_argument(
        "--port", type=int, default=7071, help="the host's port on 127.0.0.1 (0: any free port)"
    )
    parser.add_argument("--config", type=Path, default=CONFIG, help="the mappings file")
    parser.add_argument("--state", type=Path, default=None, help="state folder (default: a temporary one)")
    parser.add_argument("--table", action="store_true", help="Table Storage on Azurite instead of SQLite")
    parser.add_argument("--graph-seed", default=None, help="tenant JSON for the Graph simulator")
    parser.add_argument(
        "--realism",
        choices=PROFILES,
        default="kind",
        help="how the Graph and Druva simulators behave (simulators/realism.py): kind, or production "
        "(changes readable late, notifications late or lost, refusals)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for chatty in ("httpx", "azure"):  # one line per request would drown what the functions say
        logging.getLogger(chatty).setLevel(logging.WARNING)

    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    with ExitStack() as stack:
        realism = ("--realism", args.realism)
        seed = ("--seed", args.graph_seed) if args.graph_seed else ()
        graph = SimulatorProcess.start("graph", *seed, *realism)
        stack.callback(graph.stop)
        druva = SimulatorProcess.start("druva", *realism)
        stack.callback(druva.stop)
        graph_url, druva_url = graph.url, druva.url
        state = args.state or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="provisioning-local-"))
        )
        environment = {
            **simulator_settings(f"{graph_url}/v1.0", druva_url, state),
            "PROVISIONING_CONFIG": str(args.config.resolve()),
            "PROVISIONING_QUEUE": QUEUE,
            # a fresh secret per run, unless the caller (a benchmark posting notifications itself) set one
            "GRAPH_CLIENT_STATE": os.environ.get("GRAPH_CLIENT_STATE") or secrets.token_urlsafe(32),
        }
        if args.table:
            from simulators.azurite import AzuriteTable

            azurite = stack.enter_context(AzuriteTable())
            environment["PROVISIONING_TABLE_CONNECTION_STRING"] = azurite.connection_string
        host = _host(args.port, environment)
        stack.callback(host.stop)
        # Stopping runs last-in first: the simulators go before the host, so a pass in flight fails at
        # once instead of holding the host's stop up (stopping a process twice is harmless).
        stack.callback(druva.stop)
        stack.callback(graph.stop)
        print(f"local functions host listening on {host.url}", flush=True)
        for function in host.functions.values():
            print(f"  {_describe(function, host.url)}", flush=True)
        print(f"  admin key (x-functions-key): {host.host_key}", flush=True)
        print(f"graph simulator on {graph_url} (pid {graph.pid})", flush=True)
        print(f"druva simulator on {druva_url} (pid {druva.pid})", flush=True)
        print(f"state in {state}; Ctrl-C stops everything", flush=True)
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: the ExitStack stops everything by PID
            stopped.wait()
    return 0


def _host(port: int, environment: dict[str, str]) -> LocalFunctionsHost:

    bus = LocalServiceBus(QueueSettings.from_project(REPOSITORY))
    os.environ.update(environment)
    from function_app import app  # after the settings: imported as the Functions worker would

    host = LocalFunctionsHost(app, bus, port=port).bind()
    os.environ["GRAPH_NOTIFICATION_URL"] = f"{host.url}/api/graph/notifications"
    os.environ["GRAPH_LIFECYCLE_URL"] = f"{host.url}/api/graph/lifecycle"
    from provisioning.entrypoints.functions import runtime

    runtime.reset()
    runtime.use(queue=LocalQueue(bus))  # what ServiceBusConnection gives the functions in Azure
    return host.start()


def _describe(function: HostedFunction, url: str) -> str:
    if function.trigger == "httpTrigger":
        return f"{function.name}: {', '.join(function.methods)} {url}/api/{function.route}"
    if function.trigger == "timerTrigger":
        schedule = function.binding["schedule"]
        return f"{function.name}: timer {schedule}; run now: POST {url}/admin/functions/{function.name}"
    return f"{function.name}: Service Bus queue {function.queue_name()}"


if __name__ == "__main__":
    sys.exit(main())


# Driving a running local app from another process: the demo, the end-to-end tests, the benchmarks ----
@dataclass
class RunningApp:
    process: subprocess.Popen[str]
    url: str
    key: str
    graph_url: str
    druva_url: str
    simulator_pids: tuple[int, ...] = ()

    def _call(self, method: str, url: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 - the URLs this process printed: loopback
            url, data=data, method=method, headers={"Content-Type": "application/json", **(headers or {})}
        )
        with _DIRECT.open(request, timeout=120) as answer:
            text = answer.read()
        return json.loads(text) if text else None

    def run_function(self, name: str) -> None:
        """Run a timer now (answers when the invocation finished)."""
        self._call("POST", f"{self.url}/admin/functions/{name}", {}, {"x-functions-key": self.key})

    def invocations(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self._call(
            "GET", f"{self.url}/admin/host/invocations", headers={"x-functions-key": self.key}
        )
        return found

    def status(self) -> dict[str, Any]:
        found: dict[str, Any] = self._call(
            "GET", f"{self.url}/admin/host/status", headers={"x-functions-key": self.key}
        )
        return found

    def graph(self, method: str, path: str, body: Any = None) -> Any:
        """The Graph simulator's admin API (``/_admin/...``): change the directory as an admin would."""
        return self._call(method, f"{self.graph_url}/_admin{path}", body)

    def graph_api(self, method: str, path: str, body: Any = None) -> Any:
        """Graph itself (``/v1.0/...``), as the app reads it."""
        token = {"Authorization": f"Bearer {LOCAL_GRAPH_TOKEN}"}
        return self._call(method, f"{self.graph_url}/v1.0{path}", body, token)

    def graph_requests(self) -> int:
        """Requests the app made to Graph endpoints so far (a batch counts once)."""
        counts: dict[str, int] = self.graph("GET", "/counts")["counts"]
        return sum(n for name, n in counts.items() if not name.startswith(("admin", "batch step")))

    def druva_users(self) -> dict[str, dict[str, Any]]:
        state = self._call("GET", f"{self.druva_url}/_admin/state")
        return {user["emailID"].lower(): user for user in state["users"]}

    def druva_state(self) -> dict[str, Any]:
        """The Druva simulator's whole state: profiles, storages, users."""
        state: dict[str, Any] = self._call("GET", f"{self.druva_url}/_admin/state")
        return state

    def druva_profiles(self) -> dict[int, str]:
        state = self._call("GET", f"{self.druva_url}/_admin/state")
        return {p["profileID"]: p["profileName"] for p in state["profiles"]}

    def wait_until(
        self, check: Callable[[], bool], timeout: float = 30.0, every: float = 0.02
    ) -> float | None:
        """Poll until ``check()``; returns the wall-clock time it first held, or None on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return time.time()
            time.sleep(every)
        return None

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Until no invocation runs and nothing is due on the queue (scheduled messages may wait)."""

        def idle() -> bool:
            running = any(i["ended"] is None for i in self.invocations())
            return not running and self.status()["queue"]["due"] == 0

        return self.wait_until(idle, timeout, every=0.1) is not None


_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback needs no proxy


@contextmanager
def running_app(
    *arguments: str, log_file: Path | None = None, environment: dict[str, str] | None = None
) -> Iterator[RunningApp]:
    """``python -m simulators.localapp --port 0 …`` in its own process; stopped by PID."""
    log = open(log_file or os.devnull, "w")  # noqa: SIM115 - closed below, after the process
    process = subprocess.Popen(  # noqa: S603 - this project's own module, fixed arguments
        [sys.executable, "-m", "simulators.localapp", "--port", "0", *arguments],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        env={**os.environ, **(environment or {})},
    )
    try:
        banner = _banner(process)
        pids = (int(banner["graph pid"]), int(banner["druva pid"]))
        yield RunningApp(process, banner["host"], banner["key"], banner["graph"], banner["druva"], pids)
    finally:
        process.terminate()  # SIGTERM: it stops its simulators and its host, then exits
        try:
            process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:  # its simulators may be left: say so rather than hide it
            process.kill()
            process.wait(timeout=10)
            print(f"the local app did not stop within {STOP_SECONDS:g} s and was killed", file=sys.stderr)
        log.close()


def _banner(process: subprocess.Popen[str]) -> dict[str, str]:
    assert process.stdout is not None
    found: dict[str, str] = {}
    patterns = {
        "host": r"local functions host listening on (\S+)",
        "key": r"admin key \(x-functions-key\): (\S+)",
        "graph": r"graph simulator on (\S+)",
        "graph pid": r"graph simulator on \S+ \(pid (\d+)\)",
        "druva": r"druva simulator on (\S+)",
        "druva pid": r"druva simulator on \S+ \(pid (\d+)\)",
    }
    for line in process.stdout:
        for name, pattern in patterns.items():
            if matched := re.search(pattern, line):
                found[name] = matched.group(1)
        if "Ctrl-C stops everything" in line:
            return found
    raise RuntimeError(f"the local app did not start (exit code {process.wait()})")
