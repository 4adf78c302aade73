"""Every Druva list read ends: against the simulator made to lie on demand (its list answers rewritten on
the way out), a page token that comes back (the same one, or A→B→A), one that is new every time, and a
read that takes too long each stop the read with ``PagingStopped``, never silently cut short. Every read
here is also bounded by ``asyncio.wait_for``, so a read that does not end fails the test instead of
hanging it. The last test runs the real command line against such a Druva."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from provisioning.adapters.druva import DruvaClient, DruvaOptions
from provisioning.adapters.druva.paging import ReadBounds
from provisioning.errors import PagingStopped
from simulators.druva import DruvaSimulator
from simulators.http import Request, Response, Router
from simulators.local import local_cloud
from simulators.running import SimulatorThread

from .conftest import CREDENTIALS, fast_retry

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).parents[3]
ENDS_WITHIN = 10.0  # seconds: far more than any of these reads needs, far less than a hung test
RUNAWAY = "runaway-" + "x" * 200  # long, as real tokens can be: never shown in full
T = TypeVar("T")
Liar = Callable[[Request, Callable[[Request], Response]], Response]


def lie(router: Router, route: str, liar: Liar) -> None:
    """Every request to the simulator's ``route`` is answered by ``liar``, which may ask the simulator
    itself (the second argument) and change what it says."""
    for each in router.routes:
        if each.name == route:
            each.handler = _answered_by(liar, each.handler)


def _answered_by(liar: Liar, truth: Callable[[Request], Response]) -> Callable[[Request], Response]:
    return lambda request: liar(request, truth)


def token_for(offset: int) -> str:
    """The simulator's page token for the page that starts at ``offset``."""
    return base64.b64encode(str(offset).encode()).decode()


def with_next_token(response: Response, token: str) -> Response:
    assert isinstance(response.body, dict)
    return Response(response.status, {**response.body, "nextPageToken": token}, response.headers)


def new_token_every_time(key: str) -> Liar:
    """Druva whose ``key`` list never ends: after the first (true) page, empty pages, each naming a page
    token it never named before."""

    def liar(request: Request, truth: Callable[[Request], Response]) -> Response:
        asked = request.query.get("pageToken", "")
        if not asked.startswith(RUNAWAY):
            return with_next_token(truth(request), f"{RUNAWAY}-1")
        n = int(asked.rpartition("-")[2])
        return Response(200, {"totalSize": 0, "nextPageToken": f"{RUNAWAY}-{n + 1}", key: []})

    return liar


async def within_bounds(read: Awaitable[T]) -> T:
    return await asyncio.wait_for(read, ENDS_WITHIN)


async def every_user(druva: DruvaClient) -> list[str]:
    return [user.email async for user in druva.users()]


def bounded_client(server: SimulatorThread, bounds: ReadBounds, **options: Any) -> DruvaClient:
    return DruvaClient(
        server.url, *CREDENTIALS, DruvaOptions(retry=fast_retry(), read_bounds=bounds), **options
    )


@pytest.fixture
def six_users_two_a_page(simulator: DruvaSimulator) -> DruvaSimulator:
    simulator.page_size = 2
    for n in range(6):
        simulator.add_user(f"user{n}@contoso.com", profile="Standard", storage="US-East")
    return simulator


async def test_a_page_token_that_goes_round_a_b_a_stops_the_sweep(
    six_users_two_a_page: DruvaSimulator, druva: DruvaClient
) -> None:
    simulator = six_users_two_a_page

    def back_to_the_second_page(request: Request, truth: Callable[[Request], Response]) -> Response:
        answer = truth(request)
        last = request.query.get("pageToken") == token_for(4)
        return with_next_token(answer, token_for(2)) if last else answer

    lie(simulator.router, "list users", back_to_the_second_page)

    with pytest.raises(PagingStopped, match=r"users: the nextPageToken of page 3 .* is the token page 2"):
        await within_bounds(every_user(druva))

    assert simulator.counts["list users"] == 3  # the second page is not asked for twice


async def test_the_same_page_token_again_fails_the_sweep_instead_of_cutting_it_short(
    six_users_two_a_page: DruvaSimulator, druva: DruvaClient
) -> None:
    """Ending the read there (as the client once did, with a warning) would pass off four users as all
    of them: a user Druva has but the sweep missed looks like one to create."""
    simulator = six_users_two_a_page

    def the_same_token_again(request: Request, truth: Callable[[Request], Response]) -> Response:
        answer = truth(request)
        asked = request.query.get("pageToken")
        return with_next_token(answer, asked) if asked else answer

    lie(simulator.router, "list users", the_same_token_again)

    with pytest.raises(PagingStopped, match=r"the nextPageToken of page 2 .* is the token page 2"):
        await within_bounds(every_user(druva))

    assert simulator.counts["list users"] == 2


async def test_a_page_token_new_every_time_ends_at_the_page_bound(
    simulator: DruvaSimulator, server: SimulatorThread
) -> None:
    lie(simulator.router, "list users", new_token_every_time("users"))

    async with bounded_client(server, ReadBounds(pages=30)) as druva:
        with pytest.raises(PagingStopped, match="users: stopped after 30 pages") as stopped:
            await within_bounds(every_user(druva))

    assert simulator.counts["list users"] == 30
    assert RUNAWAY not in str(stopped.value)


async def test_a_read_that_keeps_druva_busy_ends_at_the_time_bound(
    simulator: DruvaSimulator, server: SimulatorThread
) -> None:
    now = [0.0]
    endless = new_token_every_time("users")

    def slow(request: Request, truth: Callable[[Request], Response]) -> Response:
        now[0] += 100.0  # each page takes 100 s of the client's clock
        return endless(request, truth)

    lie(simulator.router, "list users", slow)

    async with bounded_client(server, ReadBounds(seconds=250), clock=lambda: now[0]) as druva:
        with pytest.raises(PagingStopped, match=r"after 300.0 s and 3 pages, longer than one read may take"):
            await within_bounds(every_user(druva))

    assert simulator.counts["list users"] == 3


@pytest.mark.parametrize(("route", "key"), [("list profiles", "profiles"), ("list storages", "storages")])
async def test_a_catalog_list_that_never_ends_fails_the_read(
    simulator: DruvaSimulator, druva: DruvaClient, route: str, key: str
) -> None:
    def the_same_token_for_ever(request: Request, truth: Callable[[Request], Response]) -> Response:
        if request.query.get("pageToken") == "P1":
            return Response(200, {"totalSize": 0, "nextPageToken": "P1", key: []})
        return with_next_token(truth(request), "P1")

    lie(simulator.router, route, the_same_token_for_ever)

    with pytest.raises(PagingStopped, match=f"{key}: the nextPageToken of page 2 .* is the token page 2"):
        await within_bounds(druva.profiles())

    assert simulator.counts[route] == 2


async def test_honest_paging_still_reads_every_page_within_tight_bounds(
    six_users_two_a_page: DruvaSimulator, server: SimulatorThread
) -> None:
    async with bounded_client(server, ReadBounds(pages=3)) as druva:
        assert len(await within_bounds(every_user(druva))) == 6  # exactly three pages of two


def test_the_command_line_fails_a_never_ending_druva_sweep_at_once(tmp_path: Path) -> None:
    """The product's defaults, through the real command line: a Druva whose users list goes round fails
    the run with exit 1 and the reason, in seconds, instead of running until it is killed."""
    config = tmp_path / "mappings.yaml"
    config.write_text((ROOT / "examples" / "mappings.yaml").read_text())
    with local_cloud() as cloud:
        cloud.druva.page_size = 2
        for n in range(6):
            cloud.druva.add_user(f"user{n}@contoso.com", profile="Standard", storage="US-East")

        def back_to_the_start(request: Request, truth: Callable[[Request], Response]) -> Response:
            answer = truth(request)
            last = request.query.get("pageToken") == token_for(4)
            return with_next_token(answer, token_for(2)) if last else answer

        lie(cloud.druva.router, "list users", back_to_the_start)
        started = time.monotonic()
        run = subprocess.run(  # noqa: S603 - this interpreter, this repository's module
            [sys.executable, "-m", "provisioning", "sync", "--config", str(config), "--json"],
            cwd=ROOT,
            env={**os.environ, **cloud.environment(tmp_path / "state")},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    elapsed = time.monotonic() - started
    assert run.returncode == 1, (run.stdout, run.stderr)
    line = json.loads(run.stdout.strip().splitlines()[-1])
    assert "Druva GET /usermanagement/v1/users: the nextPageToken of page 3" in line["error"], line
    assert line["created"] == 0 and "Traceback" not in run.stderr
    assert elapsed < 20, elapsed
