"""One way to start a simulator, put it through an outage and stop it: the same for Graph and Druva.

    running = SimulatorThread(simulator).start()       # in this process, on a free 127.0.0.1 port
    running = SimulatorProcess.start("graph", "--seed", path)   # python -m simulators.graph, by PID
    running.outage(Outage(OutageKind.ERRORS, retry_after=120))  # any outage of outages.py
    running.recover()                                  # every outage and fault off, the port answering
    running.stop()                                     # (both are context managers too)

In a thread, ``refused`` stops the server (the port is kept for the recovery) and ``hang`` puts a
listener on the port that accepts and never answers; a request on a connection opened before either is
dropped (refused) or held until the recovery (hang). In a process, ``hang`` is SIGSTOP (the kernel still
accepts connections, nobody answers) and ``recover`` SIGCONT; ``refused`` cannot be undone with the
simulator's state intact, so a process handle refuses it. The other outages go to the simulator: in
process through ``apply_outage``, to another process through ``POST /_admin/outages``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from typing import Any, Protocol, Self

from simulators.http import LOOPBACK, DropConnection, Request, Response, Router, SimulatorServer
from simulators.outages import Outage, OutageKind, Simulator


class RunningSimulator(Protocol):
    @property
    def url(self) -> str: ...

    def outage(self, outage: Outage) -> None: ...

    def recover(self) -> None: ...

    def stop(self) -> int | None: ...


class SilentListener:
    """A port on 127.0.0.1 that accepts every connection and never answers: the hang no error reveals."""

    def __init__(self, port: int) -> None:
        self._listener = socket.create_server((LOOPBACK, port))
        self._listener.settimeout(0.05)
        self._held: list[socket.socket] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="silent", daemon=True)

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._held.append(connection)  # held open, read from never, answered never

    def start(self) -> SilentListener:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)
        for connection in self._held:
            connection.close()
        self._listener.close()


class _Gate(Router):
    """The simulator's routes behind the handle's switch, for connections opened before an outage."""

    def __init__(self, routes: Router) -> None:
        super().__init__()
        self.routes_behind = routes
        self.down: OutageKind | None = None
        self.up = threading.Event()
        self.up.set()

    def dispatch(self, request: Request) -> Response:
        if self.down == OutageKind.HANG:
            self.up.wait()
            raise DropConnection
        if self.down == OutageKind.REFUSED:
            raise DropConnection
        return self.routes_behind.dispatch(request)


class SimulatorThread:
    """A simulator served from a background thread of this process."""

    def __init__(self, simulator: Simulator, port: int = 0) -> None:
        self.simulator = simulator
        self._gate = _Gate(simulator.router)
        self._server: SimulatorServer | None = None
        self._silent: SilentListener | None = None
        self._wanted_port = port
        self._port: int | None = None  # kept through an outage, so the recovery answers on it

    def start(self) -> Self:
        self._server = SimulatorServer(self._gate, self._port or self._wanted_port).start()
        self._port = self._server.port
        return self

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the simulator is not started")
        return self._port

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def outage(self, outage: Outage) -> None:
        if outage.kind not in (OutageKind.REFUSED, OutageKind.HANG):
            self.simulator.apply_outage(outage)
            return
        self._end_server_outage()
        self._gate.down = outage.kind
        self._gate.up.clear()
        self._close_server()
        if outage.kind == OutageKind.HANG:
            self._silent = SilentListener(self.port).start()

    def recover(self) -> None:
        self._end_server_outage()
        if self._server is None:
            self.start()
        self.simulator.clear_faults()

    def _end_server_outage(self) -> None:
        if self._silent is not None:
            self._silent.stop()
            self._silent = None
        self._gate.down = None
        self._gate.up.set()

    def _close_server(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def stop(self) -> None:
        self._end_server_outage()
        self._close_server()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class SimulatorProcess:
    """``python -m simulators.<name> --port 0 …`` in a process of its own, driven by PID and over HTTP:
    for the benchmarks, which must measure the product and not the simulators, and for ``make local``."""

    def __init__(self, process: subprocess.Popen[str], url: str) -> None:
        self.process = process
        self.url = url
        self._paused = False

    @classmethod
    def start(cls, name: str, *arguments: str) -> SimulatorProcess:
        process = subprocess.Popen(  # noqa: S603 - this project's own module, fixed arguments
            [sys.executable, "-m", f"simulators.{name}", "--port", "0", *arguments],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        banner = process.stdout.readline()  # "<name> simulator listening on http://127.0.0.1:<port>"
        if "listening on" not in banner:
            process.kill()
            process.wait(timeout=10)
            raise SystemExit(f"the {name} simulator did not start: {banner!r}")
        return cls(process, banner.rsplit(" ", 1)[-1].strip())

    @property
    def pid(self) -> int:
        return self.process.pid

    def outage(self, outage: Outage) -> None:
        if outage.kind == OutageKind.REFUSED:
            raise ValueError(
                "a simulator in another process cannot refuse connections and come back with its state: "
                "run it in a SimulatorThread, or stop it"
            )
        if outage.kind == OutageKind.HANG:
            os.kill(self.pid, signal.SIGSTOP)
            self._paused = True
            return
        self._admin("POST", "/_admin/outages", outage.to_json())

    def recover(self) -> None:
        self._resume()
        self._admin("DELETE", "/_admin/outages")

    def _resume(self) -> None:
        if self._paused:
            os.kill(self.pid, signal.SIGCONT)
            self._paused = False

    def _admin(self, method: str, path: str, body: Any = None) -> None:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 - the simulator's own loopback URL
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - loopback only
            answer.read()

    def stop(self) -> int:
        """SIGTERM by PID, then wait; returns the exit code (0 for a clean shutdown)."""
        if self.process.poll() is not None:
            return self.process.returncode
        self._resume()
        self.process.terminate()
        try:
            return self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(timeout=10)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
