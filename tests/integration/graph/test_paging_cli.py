"""The real command line against a Graph simulator that lies on demand: a delta round whose
``@odata.nextLink`` repeats fails the run at once with exit 1 and the reason, and a ``deltaLink`` to
another host fails the run without ever becoming a stored cursor, so the next honest run just works
(before, it was kept, and every later run failed with 401 until someone ran ``--full``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from simulators.graph import PageSizes
from simulators.http import Request, Response, Router, SimulatorServer
from simulators.local import LocalCloud, local_cloud

ROOT = Path(__file__).parents[3]
Handlers = list[tuple[Any, Callable[[Request], Response]]]


def rewrite(router: Router, route: str, change: Callable[[dict[str, Any]], None]) -> Handlers:
    """Every successful answer of ``route`` passes through ``change`` (its JSON body, changed in place);
    returns what to put back to make the simulator honest again."""
    undo: Handlers = []
    for each in router.routes:
        if each.name == route:
            undo.append((each, each.handler))
            each.handler = _rewritten(each.handler, change)
    return undo


def _rewritten(handler: Callable[[Request], Response], change: Callable[[dict[str, Any]], None]) -> Any:
    def answer(request: Request) -> Response:
        response = handler(request)
        if response.status == 200 and isinstance(response.body, dict):
            change(response.body)
        return response

    return answer


def honest_again(undo: Handlers) -> None:
    for route, handler in undo:
        route.handler = handler


@pytest.fixture
def elsewhere() -> Iterator[SimulatorServer]:
    """Another loopback server: answers everything as Graph answers a request without a token."""
    router = Router()
    router.add(
        "GET", r"/.*", lambda _: Response(401, {"error": {"code": "InvalidAuthenticationToken"}}), "any"
    )
    with SimulatorServer(router) as server:
        yield server


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "mappings.yaml"
    path.write_text((ROOT / "examples" / "mappings.yaml").read_text())
    return path


def sync(cloud: LocalCloud, state: Path, config: Path) -> tuple[int, dict[str, Any], str, float]:
    """One ``sync --json``: exit code, its last line, its error output and how long it took."""
    started = time.monotonic()
    run = subprocess.run(  # noqa: S603 - this interpreter, this repository's module
        [sys.executable, "-m", "provisioning", "sync", "--config", str(config), "--json"],
        cwd=ROOT,
        env={**os.environ, **cloud.environment(state)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    last = json.loads(run.stdout.strip().splitlines()[-1])
    return run.returncode, last, run.stderr, time.monotonic() - started


def test_a_delta_round_whose_next_link_repeats_fails_the_run_at_once(tmp_path: Path, config: Path) -> None:
    with local_cloud(page_sizes=PageSizes(users_delta=4)) as cloud:
        first: list[str] = []

        def send_the_first_link_again(body: dict[str, Any]) -> None:
            if "@odata.nextLink" in body:
                first.append(body["@odata.nextLink"])
                body["@odata.nextLink"] = first[0]

        rewrite(cloud.graph.router, "users delta", send_the_first_link_again)
        code, last, errors, elapsed = sync(cloud, tmp_path / "state", config)
        asked = cloud.graph.counts["users delta"]

    assert code == 1, (last, errors)
    assert "users delta: the @odata.nextLink of page 2" in last["error"], last
    assert "Traceback" not in errors and asked == 2
    assert elapsed < 20, elapsed


@pytest.mark.parametrize("route", ["users delta", "groups delta"])
def test_a_delta_link_to_another_host_fails_the_run_and_is_never_stored(
    tmp_path: Path, config: Path, elsewhere: SimulatorServer, route: str
) -> None:
    state, foreign = tmp_path / "state", f"127.0.0.1:{elsewhere.port}"

    with local_cloud() as cloud:
        graph = f"127.0.0.1:{cloud.graph.running.port}"

        def send_it_elsewhere(body: dict[str, Any]) -> None:
            if "@odata.deltaLink" in body:
                body["@odata.deltaLink"] = body["@odata.deltaLink"].replace(graph, foreign)

        assert sync(cloud, state, config)[0] == 0  # cursors for both delta queries, kept
        undo = rewrite(cloud.graph.router, route, send_it_elsewhere)
        code, last, errors, _ = sync(cloud, state, config)
        stored = b"".join(path.read_bytes() for path in state.rglob("*") if path.is_file())
        honest_again(undo)
        after, later, _, _ = sync(cloud, state, config)

    assert code == 1, (last, errors)
    assert f"{route}: refused an @odata.deltaLink to http://{foreign}" in last["error"], last
    assert foreign.encode() not in stored  # the cursor the run began with is still the one kept
    assert after == 0, later  # and it still works
    assert sum(elsewhere.router.counts.values()) == 0
