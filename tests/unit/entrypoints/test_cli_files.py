"""Only regular files are read as configuration: the mappings file, the SQLite state file and a seed.
A FIFO would block its reader for ever, a device may never end, a socket or a directory cannot be read:
each is refused at once, with exit code 2 and a line naming the file and what it is.

A regression would hang, so every case runs under a deadline that fails it instead: an in-process
alarm where Python does the blocking open, a subprocess where SQLite does (it retries an interrupted
open, so no signal can free it)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

import pytest

from provisioning.adapters.state.sqlite import FILE_NAME
from simulators.tenants import Tenant, seed_use_case
from tests.unit.entrypoints import test_cli as contract
from tests.unit.entrypoints.test_cli import CONFIG, invoke
from tests.unit.service.test_sync import World

world = contract.world  # the contract tests' fake services: nothing here may reach them
DEADLINE = 5.0
REPOSITORY = Path(__file__).resolve().parents[3]


@contextmanager
def within(seconds: float) -> Iterator[None]:
    """Fail, rather than hang, when the block is still running after ``seconds``."""

    def expired(signum: int, frame: FrameType | None) -> None:
        raise TimeoutError(f"still running after {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def make(kind: str, path: Path) -> Path:
    """A file of ``kind`` at ``path`` (devices are the system's own, not created)."""
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    elif kind == "socket":
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(path))  # the file stays after the socket closes
        server.close()
    else:
        return Path(kind)
    return path


KINDS = [
    ("fifo", "is a FIFO (named pipe), not a regular file"),
    ("directory", "is a directory, not a regular file"),
    ("socket", "is a socket, not a regular file"),
    ("/dev/zero", "is a character device, not a regular file"),
    ("/dev/null", "is a character device, not a regular file"),
]


@pytest.mark.parametrize(("kind", "what"), KINDS)
@pytest.mark.parametrize("command", [["sync"], ["sync", "--dry-run"], ["status"], ["doctor"]])
def test_a_mappings_file_that_is_not_a_regular_file_is_refused_at_once(
    world: World, tmp_path: Path, kind: str, what: str, command: list[str]
) -> None:
    path = make(kind, tmp_path / "mappings.yaml")
    with within(DEADLINE):
        code, out, err = invoke(*command, "--config", str(path))
    assert code == 2, (out, err)
    assert f"{path}: {what}" in err and "Traceback" not in out + err


def test_the_mappings_file_from_the_environment_is_checked_alike(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = make("fifo", tmp_path / "mappings.yaml")
    monkeypatch.setenv("PROVISIONING_CONFIG", str(path))
    with within(DEADLINE):
        code, _, err = invoke("sync", "--json")
    assert code == 2 and "is a FIFO (named pipe)" in err


def test_a_regular_file_behind_a_symbolic_link_is_read(world: World, tmp_path: Path) -> None:
    target = tmp_path / "real.yaml"
    target.write_text(CONFIG)
    (tmp_path / "mappings.yaml").symlink_to(target)
    code, _, err = invoke("sync", "--dry-run", "--config", str(tmp_path / "mappings.yaml"))
    assert code == 0, err


def run_cli(*arguments: str, environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``python -m provisioning`` in its own process, killed (and the test failed) past the deadline."""
    return subprocess.run(  # noqa: S603 - this interpreter, this repository's module
        [sys.executable, "-m", "provisioning", *arguments],
        cwd=REPOSITORY,
        env=environment,
        capture_output=True,
        text=True,
        timeout=DEADLINE * 2,  # the interpreter's start-up included
        check=False,
    )


@pytest.fixture
def environment(tmp_path: Path) -> dict[str, str]:
    """Settings that name nothing reachable: a state-file refusal comes before any request."""
    kept = {name: os.environ[name] for name in ("PATH", "HOME", "LANG", "SYSTEMROOT") if name in os.environ}
    return kept | {
        "PROVISIONING_STATE": str(tmp_path / "state"),
        "GRAPH_API_URL": "http://127.0.0.1:9/v1.0",
        "GRAPH_ACCESS_TOKEN": "unused-token",
        "DRUVA_API_URL": "http://127.0.0.1:9",
        "DRUVA_CLIENT_ID": "unused",
        "DRUVA_CLIENT_SECRET": "unused-secret",
        "PYTHONPATH": str(REPOSITORY),
    }


@pytest.mark.parametrize(("kind", "what"), KINDS[:3])
@pytest.mark.parametrize("command", [["status"], ["sync", "--dry-run"], ["sync"]])
def test_a_state_file_that_is_not_a_regular_file_is_refused_at_once(
    tmp_path: Path, environment: dict[str, str], kind: str, what: str, command: list[str]
) -> None:
    config = tmp_path / "mappings.yaml"
    config.write_text(CONFIG)
    (tmp_path / "state").mkdir()
    state_file = make(kind, tmp_path / "state" / FILE_NAME)
    done = run_cli(*command, "--config", str(config), environment=environment)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert f"{state_file} {what}" in done.stderr and "Traceback" not in done.stderr


def test_a_fifo_beside_the_state_file_is_refused_too(tmp_path: Path, environment: dict[str, str]) -> None:
    config = tmp_path / "mappings.yaml"
    config.write_text(CONFIG)
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / FILE_NAME).write_bytes(b"")
    os.mkfifo(tmp_path / "state" / f"{FILE_NAME}-wal")
    done = run_cli("sync", "--config", str(config), environment=environment)
    assert done.returncode == 2 and f"{FILE_NAME}-wal is a FIFO" in done.stderr, done.stderr


def test_a_seed_that_is_not_a_regular_file_is_refused_at_once(tmp_path: Path) -> None:
    fifo = make("fifo", tmp_path / "tenant.json")
    with within(DEADLINE), pytest.raises(ValueError, match="is a FIFO"):  # NotRegularFile
        Tenant.load(fifo)
    seed = tmp_path / "seed.json"
    seed_use_case().dump(seed)
    assert Tenant.load(seed).users == seed_use_case().users
