"""Azurite's Table service on a free loopback port: Table Storage for tests, the demo and benchmarks.

``make test`` installs Azurite from ``package.json`` (pinned; 3.37 needs Node 22) into ``node_modules``.
It runs with in-memory persistence and telemetry off (offline it would otherwise log ENOTFOUND errors),
and is stopped by the PID it was started with.
"""

from __future__ import annotations

import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO

from simulators import REPOSITORY

LOOPBACK = "127.0.0.1"
AZURITE_TABLE = REPOSITORY / "node_modules" / ".bin" / "azurite-table"
DEV_ACCOUNT = "devstoreaccount1"
# Azurite's well-known development key, published in Microsoft's documentation: not a secret.
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
_ATTEMPTS = 3  # a free port can be taken between probing it and Azurite binding it


class AzuriteNotInstalled(RuntimeError):
    def __init__(self, executable: Path) -> None:
        super().__init__(
            f"Azurite is not installed ({executable} is missing): run `make test`, or `npm ci` in the "
            "repository root, to install the Table Storage emulator the state store's tests need"
        )


class AzuriteTable:
    def __init__(self, executable: Path = AZURITE_TABLE, startup_seconds: float = 30.0) -> None:
        self.executable = executable
        self.startup_seconds = startup_seconds
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
            f"TableEndpoint=http://{LOOPBACK}:{self.port}/{DEV_ACCOUNT};"
        )

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self) -> AzuriteTable:
        if not self.executable.exists():
            raise AzuriteNotInstalled(self.executable)
        failures = []
        for _ in range(_ATTEMPTS):
            with tempfile.TemporaryFile() as log:
                self.port = _free_port()
                self._process = self._launch(log)
                if self._answers():
                    return self
                self.stop()
                log.seek(0)
                failures.append(log.read().decode(errors="replace").strip() or "no output")
        raise RuntimeError(f"Azurite did not start on {LOOPBACK}: {' | '.join(failures)}")

    def _launch(self, log: IO[bytes]) -> subprocess.Popen[bytes]:
        command = [
            str(self.executable),
            "--tableHost",
            LOOPBACK,
            "--tablePort",
            str(self.port),
            "--inMemoryPersistence",
            "--disableTelemetry",
            "--silent",
        ]
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603 (our own binary)

    def _answers(self) -> bool:
        deadline = time.monotonic() + self.startup_seconds
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                return False
            try:
                socket.create_connection((LOOPBACK, self.port), timeout=0.5).close()
            except OSError:
                time.sleep(0.05)
            else:
                return True
        return False

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> AzuriteTable:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])
