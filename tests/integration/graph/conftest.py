"""The Graph adapter against the in-process Graph simulator, with small pages so paging is exercised."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from provisioning.adapters.graph import GraphDirectory, GraphRetryPolicy
from provisioning.adapters.graph.client import connect
from provisioning.settings import Settings
from simulators.graph import GraphSimulator, PageSizes
from simulators.http import DropConnection, Request, Response, Router, SimulatorServer
from simulators.tenants import Tenant, seed_use_case

# Real delays scaled down a thousandfold: a Retry-After of 2 s is sat out as 2 ms.
FAST_RETRIES = GraphRetryPolicy(max_retries=3, longest_wait=20.0, backoff=1.0, time_scale=0.001)
SMALL_PAGES = PageSizes(users_delta=4, groups_delta=2, members_per_page=3, list_default=5)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def tenant() -> Tenant:
    return seed_use_case()


@pytest.fixture
def simulator(tenant: Tenant) -> Iterator[GraphSimulator]:
    with GraphSimulator(tenant, page_sizes=SMALL_PAGES, validation_timeout=2.0) as running:
        yield running


@pytest.fixture
async def directory(simulator: GraphSimulator) -> AsyncIterator[GraphDirectory]:
    settings = Settings(GRAPH_API_URL=simulator.graph_url, GRAPH_ACCESS_TOKEN="test-token")
    opened = GraphDirectory(connect(settings, FAST_RETRIES))
    yield opened
    await opened.aclose()


class Receiver:
    """A notification endpoint on loopback: answers Graph's validation handshake (or fails it on
    purpose) and keeps every notification it is sent."""

    def __init__(self, *, echo: bool = True, delay: float = 0.0) -> None:
        self.echo, self.delay = echo, delay
        self.validations: list[str] = []
        self.notifications: list[dict[str, Any]] = []
        self.posts = 0
        router = Router()
        router.add("POST", r"/api/graph/(notifications|lifecycle)", self._receive, "notify")
        self.server = SimulatorServer(router)

    @property
    def url(self) -> str:
        return f"{self.server.url}/api/graph/notifications?code=function-key"

    @property
    def lifecycle_url(self) -> str:
        return f"{self.server.url}/api/graph/lifecycle"

    def _receive(self, request: Request) -> Response:
        token = request.query.get("validationToken")
        if token is not None:
            self.validations.append(token)
            if self.delay:
                time.sleep(self.delay)  # Graph has hung up by now: answering would hit a closed socket
                raise DropConnection
            return Response(200, token if self.echo else "not the token")
        self.posts += 1
        self.notifications.extend(request.json()["value"])
        return Response(202)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver()
    with made.server:
        yield made
