"""Simulators in processes of their own, so a benchmark measures the product and not the simulators."""

from __future__ import annotations

import subprocess
import sys


def start_simulator(name: str, *arguments: str) -> tuple[subprocess.Popen[str], str]:
    """``python -m provisioning.simulators.<name> --port 0 …``; returns the process and its URL."""
    process = subprocess.Popen(  # noqa: S603 - this project's own module, fixed arguments
        [sys.executable, "-m", f"provisioning.simulators.{name}", "--port", "0", *arguments],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    banner = process.stdout.readline()  # "<name> simulator listening on http://127.0.0.1:<port>"
    if "listening on" not in banner:
        process.kill()
        raise SystemExit(f"the {name} simulator did not start: {banner!r}")
    return process, banner.rsplit(" ", 1)[-1].strip()


def stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
