"""A simulator in a process of its own (``python -m simulators.<name> --port 0``): for the
benchmarks, which must measure the product and not the simulators, and for the tests of the command line."""

from __future__ import annotations

import subprocess
import sys


def start_simulator(name: str, *arguments: str) -> tuple[subprocess.Popen[str], str]:
    """``python -m simulators.<name> --port 0 …``; returns the process and its URL."""
    process = subprocess.Popen(  # noqa: S603 - this project's own module, fixed arguments
        [sys.executable, "-m", f"simulators.{name}", "--port", "0", *arguments],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    banner = process.stdout.readline()  # "<name> simulator listening on http://127.0.0.1:<port>"
    if "listening on" not in banner:
        process.kill()
        raise SystemExit(f"the {name} simulator did not start: {banner!r}")
    return process, banner.rsplit(" ", 1)[-1].strip()


def stop(process: subprocess.Popen[str]) -> int:
    """SIGTERM by PID, then wait; returns the exit code (0 for a clean shutdown)."""
    process.terminate()
    try:
        return process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait(timeout=10)
