"""Graph and Druva that accept connections and never answer, or refuse them: every run ends, soon, with
one clear line. The mechanisms are tested with short timeouts; one test holds the product's defaults
(60 s for a silent service) by running the real command line against silent servers."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from provisioning.adapters.druva import DruvaClient, DruvaOptions, DruvaRetryPolicy
from provisioning.adapters.graph import open_directory
from provisioning.errors import TransientError
from provisioning.settings import Settings
from simulators.druva import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_SEED, DruvaSimulator
from simulators.graph import GraphSimulator
from simulators.local import LocalCloud, local_cloud
from simulators.outages import Outage, OutageKind
from simulators.running import SimulatorThread
from simulators.tenants import seed_use_case

HANG, REFUSED = Outage(OutageKind.HANG), Outage(OutageKind.REFUSED)

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).parents[2]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@contextmanager
def druva_in(outage: Outage) -> Iterator[SimulatorThread]:
    with DruvaSimulator(DEFAULT_SEED).serve() as running:
        running.outage(outage)
        yield running


@contextmanager
def graph_in(outage: Outage) -> Iterator[GraphSimulator]:
    with GraphSimulator(seed_use_case()) as graph:
        graph.running.outage(outage)
        yield graph


@pytest.fixture
def hung_druva() -> Iterator[SimulatorThread]:
    with druva_in(HANG) as running:
        yield running


@pytest.fixture
def hung_graph() -> Iterator[GraphSimulator]:
    with graph_in(HANG) as graph:
        yield graph


def short(timeout: float = 0.3, outage: float = 1.0) -> DruvaOptions:
    retry = DruvaRetryPolicy(
        backoff_seconds=0.05, throttle_seconds=0.05, jitter_seconds=0, outage_seconds=outage
    )
    return DruvaOptions(timeout_seconds=timeout, connect_timeout_seconds=timeout, retry=retry)


async def test_a_silent_druva_fails_within_the_outage_budget(hung_druva: SimulatorThread) -> None:
    started = time.monotonic()
    async with DruvaClient(hung_druva.url, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, short()) as druva:
        with pytest.raises(TransientError, match="ReadTimeout"):
            await druva.profiles()
    elapsed = time.monotonic() - started
    assert elapsed < 2.5, elapsed  # a few 0.3 s attempts inside the 1 s budget, not 6 full attempts


async def test_an_unreachable_druva_stops_retrying_within_the_budget() -> None:
    started = time.monotonic()
    with druva_in(REFUSED) as refusing:
        async with DruvaClient(refusing.url, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, short()) as druva:
            with pytest.raises(TransientError, match="ConnectError"):
                await druva.profiles()
            first = time.monotonic() - started
            with pytest.raises(TransientError):  # the budget is per client (per run): no fresh 1 s each
                await druva.storages()
    assert first < 2.0, first
    assert time.monotonic() - started - first < 0.5


class Refusing(httpx.AsyncBaseTransport):
    """Real HTTP, except that the next ``refuse`` connections are refused."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self.refuse = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.refuse:
            self.refuse -= 1
            raise httpx.ConnectError("connection refused", request=request)
        return await self._inner.handle_async_request(request)


async def test_the_budget_is_for_one_outage_not_for_the_whole_run() -> None:
    """Druva reachable again resets the clock: an early blip does not doom the rest of the run."""
    transport = Refusing()
    with local_cloud() as cloud:
        url = cloud.druva_server.url
        async with DruvaClient(
            url, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, short(outage=1.0), transport=transport
        ) as druva:
            transport.refuse = 2
            assert await druva.profiles()
            await asyncio.sleep(1.2)  # longer than the budget
            transport.refuse = 2
            assert await druva.find_user("nobody@contoso.com") is None  # retried, not given up at once
            assert transport.refuse == 0


async def test_a_silent_graph_fails_within_its_timeout(hung_graph: GraphSimulator) -> None:
    settings = Settings(GRAPH_API_URL=hung_graph.graph_url, GRAPH_ACCESS_TOKEN="token-for-test")
    directory = open_directory(settings, timeout=0.5)
    started = time.monotonic()
    try:
        with pytest.raises(TransientError, match="did not answer in time"):
            await directory.get_user("alice@contoso.com", ["id"])
    finally:
        await directory.aclose()
    assert time.monotonic() - started < 2.0


async def test_an_unreachable_graph_fails_at_once() -> None:
    with graph_in(REFUSED) as graph:
        directory = open_directory(
            Settings(GRAPH_API_URL=graph.graph_url, GRAPH_ACCESS_TOKEN="token-for-test")
        )
        started = time.monotonic()
        try:
            with pytest.raises(TransientError, match="cannot reach Graph"):
                await directory.get_user("alice@contoso.com", ["id"])
        finally:
            await directory.aclose()
    assert time.monotonic() - started < 5.0


def test_with_the_defaults_a_silent_service_fails_the_run_within_60_seconds(tmp_path: Path) -> None:
    """The product's own bounds, through the real command line: Druva silent, then Graph silent, both
    run at once (each takes about the 30 s read timeout)."""
    config = tmp_path / "mappings.yaml"
    config.write_text((ROOT / "examples" / "mappings.yaml").read_text())
    with local_cloud() as druva_silent, local_cloud() as graph_silent:
        druva_silent.druva_server.outage(HANG)
        graph_silent.graph.running.outage(HANG)
        runs = {
            "druva": _start_sync(druva_silent, tmp_path / "a", config),
            "graph": _start_sync(graph_silent, tmp_path / "b", config),
        }
        started = time.monotonic()
        for name, process in runs.items():
            out, err = process.communicate(timeout=90)
            elapsed = time.monotonic() - started
            assert process.returncode == 1, (name, out, err)
            assert elapsed < 60, (name, elapsed)
            line = json.loads(out.strip().splitlines()[-1])
            assert line["created"] == 0 and ("ReadTimeout" in line["error"] or "in time" in line["error"]), (
                line
            )
            assert "Traceback" not in err


def _start_sync(cloud: LocalCloud, folder: Path, config: Path) -> subprocess.Popen[str]:
    environment = {**os.environ, **cloud.environment(folder)}
    return subprocess.Popen(  # noqa: S603 - this interpreter, this repository's module
        [sys.executable, "-m", "provisioning", "sync", "--config", str(config), "--json"],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
