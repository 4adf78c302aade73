"""Brokers for the wire tests: the AMQP peer in its own process on a free loopback port (stopped by its
PID), a port that never answers, and one that refuses."""

from __future__ import annotations

import json
import queue
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parents[3]
STARTUP_SECONDS = 20.0  # importing proton and binding a port; generous for a busy shared machine
QUIET_SECONDS = 0.3  # how long the peer must stay silent before its record is taken as complete
ENDED = "\x00ended"  # what the reader thread queues when the peer's output ends


def emulator_connection_string(port: int) -> str:
    """The form the Service Bus emulator's documentation gives, pointed at the peer's port. The key is the
    emulator's published placeholder, not a secret."""
    return (
        f"Endpoint=sb://127.0.0.1:{port};SharedAccessKeyName=RootManageSharedAccessKey;"
        "SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;"
    )


class AmqpPeer:
    def __init__(self, mode: str) -> None:
        self.mode = mode
        self._lines: queue.Queue[str] = queue.Queue()
        self._process = subprocess.Popen(  # noqa: S603 (our own module, fixed arguments)
            [sys.executable, "-m", "tests.integration.servicebus.amqp_peer", mode],
            cwd=REPO,
            stdin=subprocess.PIPE,  # the peer exits when this closes, even if the tests are killed
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        threading.Thread(target=self._pump, args=(self._process.stdout,), daemon=True).start()
        self.pid = self._process.pid
        self.port = int(self._next(STARTUP_SECONDS)["port"])
        self.connection_string = emulator_connection_string(self.port)

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self._lines.put(line)
        self._lines.put(ENDED)

    def _next(self, timeout: float) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            line = None
        if line is None or line == ENDED:
            self.stop()
            said = "stopped" if line == ENDED else f"said nothing for {timeout} s"
            raise AssertionError(f"the AMQP peer {said} ({self._errors()})")
        return dict(json.loads(line))

    def _errors(self) -> str:
        if self._process.poll() is None or self._process.stderr is None:
            return "still running"
        return self._process.stderr.read().strip()[-2000:] or f"exit code {self._process.returncode}"

    def records(self, settle_seconds: float = QUIET_SECONDS) -> list[dict[str, Any]]:
        """Everything recorded so far: lines are read until the peer has been quiet for a moment."""
        found: list[dict[str, Any]] = []
        while True:
            try:
                line = self._lines.get(timeout=settle_seconds)
            except queue.Empty:
                return found
            if line == ENDED:
                raise AssertionError(f"the AMQP peer stopped ({self._errors()})")
            found.append(json.loads(line))

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait(timeout=10)
        for stream in (self._process.stdin, self._process.stdout, self._process.stderr):
            if stream is not None:
                stream.close()


class MutePort:
    """A TCP port that accepts connections (the kernel completes the handshake) and never says a word."""

    def __init__(self) -> None:
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(8)
        self.port = self._socket.getsockname()[1]
        self.connection_string = emulator_connection_string(self.port)

    def stop(self) -> None:
        self._socket.close()


def closed_port_connection_string() -> str:
    """A loopback port nobody listens on: the connection is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return emulator_connection_string(port)


def elapsed_since(started: float) -> float:
    return time.monotonic() - started
