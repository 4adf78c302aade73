"""Every Graph read ends, and its links stay on Graph's host: against the simulator made to lie on demand
(its answers rewritten on the way out) and against a stand-in Graph (``httpx.MockTransport``).

A read whose ``@odata.nextLink`` repeats or goes round (A→B→A) is stopped at the repeat; one whose link
is new every time, at its bound on pages; a slow one, at its bound on time. A link to another origin is
never followed, a ``deltaLink`` to one never becomes a cursor, and a cursor that holds one is expired.
Every read here is also bounded by ``asyncio.wait_for``: a read that does not end fails the test instead
of hanging it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

import httpx
import pytest

from provisioning.adapters.graph import GraphDirectory
from provisioning.adapters.graph.client import connect
from provisioning.adapters.graph.delta import (
    GroupsLink,
    ReadBounds,
    membership_cursor,
    user_select,
    users_cursor,
)
from provisioning.domain.directory import MembershipPage, UserPage
from provisioning.errors import CursorExpired, PagingStopped
from provisioning.settings import Settings
from simulators.graph import GraphSimulator
from simulators.http import Request, Response, Router, SimulatorServer
from simulators.tenants import Tenant

from .conftest import FAST_RETRIES

pytestmark = pytest.mark.anyio
SELECT = ["department"]
ENDS_WITHIN = 10.0  # seconds: far more than any of these reads needs, far less than a hung test
STAND_IN = "https://graph.test/v1.0"
T = TypeVar("T")


# a Graph that lies, and a host that is not Graph -------------------------------------------------------
Rewrite = Callable[[dict[str, Any]], None]


def rewrite(router: Router, route: str, change: Rewrite) -> None:
    """Every successful answer of the simulator's ``route`` passes through ``change`` (its JSON body,
    changed in place) before it leaves."""
    for each in router.routes:
        if each.name == route:
            each.handler = _rewritten(each.handler, change)


def _rewritten(handler: Callable[[Request], Response], change: Rewrite) -> Callable[[Request], Response]:
    def answer(request: Request) -> Response:
        response = handler(request)
        if response.status == 200 and isinstance(response.body, dict):
            change(response.body)
        return response

    return answer


def moved_to(elsewhere: str, link: str) -> str:
    """``link`` with its origin (scheme, host, port) replaced by ``elsewhere``'s: the same path and query."""
    original = httpx.URL(link)
    target = httpx.URL(elsewhere)
    return str(original.copy_with(scheme=target.scheme, host=target.host, port=target.port))


@pytest.fixture
def elsewhere() -> Iterator[SimulatorServer]:
    """A loopback server on another port, answering everything as Graph answers a request without a
    token: what following a link to another host leads to. It counts what reaches it."""
    router = Router()
    router.add(
        "GET", r"/.*", lambda _: Response(401, {"error": {"code": "InvalidAuthenticationToken"}}), "any"
    )
    with SimulatorServer(router) as server:
        yield server


def requests_to(server: SimulatorServer) -> int:
    return sum(server.router.counts.values())


async def within_bounds(read: Awaitable[T]) -> T:
    return await asyncio.wait_for(read, ENDS_WITHIN)


async def collect(pages: AsyncIterator[T], into: list[T]) -> list[T]:
    """Every page of ``pages`` into ``into``, so that what came before a failure can be looked at."""
    async for page in pages:
        into.append(page)
    return into


def bounded_directory(simulator: GraphSimulator, bounds: ReadBounds) -> GraphDirectory:
    settings = Settings(GRAPH_API_URL=simulator.graph_url, GRAPH_ACCESS_TOKEN="test-token")
    return GraphDirectory(connect(settings, FAST_RETRIES), read_bounds=bounds)


def stand_in(answer: Callable[[httpx.Request], Awaitable[httpx.Response]], **options: Any) -> GraphDirectory:
    """A directory whose Graph is ``answer`` (over ``https://graph.test``)."""

    async def over_the_network(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0)  # as a real exchange would, it lets a read that never ends be cancelled
        return await answer(request)

    settings = Settings(GRAPH_API_URL=STAND_IN, GRAPH_ACCESS_TOKEN="test-token")
    transport = httpx.MockTransport(over_the_network)
    return GraphDirectory(connect(settings, FAST_RETRIES, transport=transport), **options)


def subscriptions_page(next_link: str | None) -> httpx.Response:
    body: dict[str, Any] = {"value": []}
    if next_link is not None:
        body["@odata.nextLink"] = next_link
    return httpx.Response(200, json=body)


# links that repeat -------------------------------------------------------------------------------------
async def test_a_users_delta_whose_next_link_repeats_is_stopped_at_the_repeat(
    directory: GraphDirectory, simulator: GraphSimulator
) -> None:
    first_links: list[str] = []

    def send_the_first_link_again(body: dict[str, Any]) -> None:
        if "@odata.nextLink" in body:
            first_links.append(body["@odata.nextLink"])
            body["@odata.nextLink"] = first_links[0]

    rewrite(simulator.router, "users delta", send_the_first_link_again)
    pages: list[UserPage] = []

    with pytest.raises(PagingStopped, match=r"users delta: the @odata.nextLink of page 2 .* page 2 of this"):
        await within_bounds(collect(directory.read_users(None, SELECT), pages))

    assert simulator.counts["users delta"] == 2  # the first page, then the link once: never again
    assert len(pages) == 2 and all(page.cursor is None for page in pages)


async def test_a_groups_delta_whose_next_link_repeats_is_stopped_and_keeps_no_cursor(
    directory: GraphDirectory, simulator: GraphSimulator, tenant: Tenant
) -> None:
    groups = [tenant.group_id("US Finance"), tenant.group_id("US Sales")]
    sent: list[str] = []

    def send_the_same_link_for_ever(body: dict[str, Any]) -> None:
        if "@odata.nextLink" in body:
            sent.append(body["@odata.nextLink"])
            body["@odata.nextLink"] = sent[0]

    rewrite(simulator.router, "groups delta", send_the_same_link_for_ever)
    pages: list[MembershipPage] = []

    with pytest.raises(PagingStopped, match=r"groups delta: the @odata.nextLink of page 2"):
        await within_bounds(collect(directory.read_memberships(None, groups), pages))

    assert simulator.counts["groups delta"] == 2
    assert all(page.cursor is None for page in pages)


async def test_a_list_whose_next_link_goes_round_a_b_a_is_stopped_where_it_comes_back() -> None:
    a, b = f"{STAND_IN}/subscriptions?$skiptoken=A", f"{STAND_IN}/subscriptions?$skiptoken=B"
    asked: list[str] = []

    async def graph(request: httpx.Request) -> httpx.Response:
        token = request.url.params.get("$skiptoken")
        asked.append(token or "first")
        return subscriptions_page({None: a, "A": b, "B": a}[token])

    directory = stand_in(graph)
    try:
        with pytest.raises(
            PagingStopped, match=r"list subscriptions: the @odata.nextLink of page 3 .* page 2"
        ):
            await within_bounds(directory.list_subscriptions())
    finally:
        await directory.aclose()
    assert asked == ["first", "A", "B"]  # A is not asked for twice


# links that never end ----------------------------------------------------------------------------------
async def test_a_list_whose_next_link_is_new_every_time_ends_at_the_page_bound() -> None:
    asked = 0
    long_token = "x" * 300

    async def graph(request: httpx.Request) -> httpx.Response:
        nonlocal asked
        asked += 1
        return subscriptions_page(f"{STAND_IN}/subscriptions?$skiptoken={long_token}{asked}")

    directory = stand_in(graph, read_bounds=ReadBounds(pages=25))
    try:
        with pytest.raises(PagingStopped, match="stopped after 25 pages") as stopped:
            await within_bounds(directory.list_subscriptions())
    finally:
        await directory.aclose()
    assert asked == 25
    assert long_token not in str(stopped.value)


async def test_a_read_that_keeps_graph_busy_ends_at_the_time_bound() -> None:
    asked = 0

    async def slow_graph(request: httpx.Request) -> httpx.Response:
        nonlocal asked
        asked += 1
        await asyncio.sleep(0.05)
        return subscriptions_page(f"{STAND_IN}/subscriptions?$skiptoken={asked}")

    directory = stand_in(slow_graph, read_bounds=ReadBounds(seconds=0.3))
    try:
        with pytest.raises(PagingStopped, match=r"longer than one read may take \(0.3 s\)"):
            await within_bounds(directory.list_subscriptions())
    finally:
        await directory.aclose()
    assert 2 <= asked <= 12  # ended by time (about 6 pages of 0.05 s), long before any page bound


# links that leave Graph's host -------------------------------------------------------------------------
async def test_a_next_link_to_another_host_is_refused_and_never_followed(
    directory: GraphDirectory, simulator: GraphSimulator, elsewhere: SimulatorServer
) -> None:
    def send_it_elsewhere(body: dict[str, Any]) -> None:
        if "@odata.nextLink" in body:
            body["@odata.nextLink"] = moved_to(elsewhere.url, body["@odata.nextLink"])

    rewrite(simulator.router, "users delta", send_it_elsewhere)
    pages: list[UserPage] = []

    with pytest.raises(PagingStopped, match=f"refused an @odata.nextLink to {elsewhere.url}") as refused:
        await within_bounds(collect(directory.read_users(None, SELECT), pages))

    assert f"GRAPH_API_URL's origin {simulator.url}" in str(refused.value)
    assert requests_to(elsewhere) == 0
    assert len(pages) == 1 and pages[0].cursor is None


async def test_a_delta_link_to_another_host_never_becomes_the_users_cursor(
    directory: GraphDirectory, simulator: GraphSimulator, elsewhere: SimulatorServer
) -> None:
    def send_it_elsewhere(body: dict[str, Any]) -> None:
        if "@odata.deltaLink" in body:
            body["@odata.deltaLink"] = moved_to(elsewhere.url, body["@odata.deltaLink"])

    rewrite(simulator.router, "users delta", send_it_elsewhere)
    pages: list[UserPage] = []

    with pytest.raises(PagingStopped, match=f"refused an @odata.deltaLink to {elsewhere.url}"):
        await within_bounds(collect(directory.read_users(None, SELECT), pages))

    assert simulator.counts["users delta"] == 4 and len(pages) == 3  # the page carrying it never came out
    assert all(page.cursor is None for page in pages)
    assert requests_to(elsewhere) == 0


async def test_a_delta_link_to_another_host_never_becomes_the_membership_cursor(
    directory: GraphDirectory, simulator: GraphSimulator, tenant: Tenant, elsewhere: SimulatorServer
) -> None:
    def send_it_elsewhere(body: dict[str, Any]) -> None:
        if "@odata.deltaLink" in body:
            body["@odata.deltaLink"] = moved_to(elsewhere.url, body["@odata.deltaLink"])

    rewrite(simulator.router, "groups delta", send_it_elsewhere)
    pages: list[MembershipPage] = []

    with pytest.raises(PagingStopped, match=r"groups delta: refused an @odata.deltaLink"):
        await within_bounds(collect(directory.read_memberships(None, [tenant.group_id("US HR")]), pages))

    assert all(page.cursor is None for page in pages)
    assert requests_to(elsewhere) == 0


@pytest.mark.parametrize(
    "link",
    [
        "http://graph.test/v1.0/subscriptions?$skiptoken=2",  # the same host, but in clear
        "https://graph.test:8443/v1.0/subscriptions?$skiptoken=2",  # the same host, another port
        "https://graph.test.example.net/v1.0/subscriptions?$skiptoken=2",
        "/v1.0/subscriptions?$skiptoken=2",  # no origin at all
    ],
)
async def test_a_link_off_an_https_graph_is_refused_even_on_its_host(link: str) -> None:
    asked: list[str] = []

    async def graph(request: httpx.Request) -> httpx.Response:
        asked.append(str(request.url))
        return subscriptions_page(link if len(asked) == 1 else None)

    directory = stand_in(graph)
    try:
        with pytest.raises(PagingStopped, match=r"refused an @odata.nextLink"):
            await within_bounds(directory.list_subscriptions())
    finally:
        await directory.aclose()
    assert asked == [f"{STAND_IN}/subscriptions"]


async def test_a_link_on_graphs_own_origin_is_followed_whatever_the_case_of_its_host() -> None:
    async def graph(request: httpx.Request) -> httpx.Response:
        first = "$skiptoken" not in request.url.params
        return subscriptions_page("https://GRAPH.test:443/v1.0/subscriptions?$skiptoken=2" if first else None)

    directory = stand_in(graph)
    try:
        assert await within_bounds(directory.list_subscriptions()) == []
    finally:
        await directory.aclose()


# cursors that hold a link to another host --------------------------------------------------------------
async def test_a_users_cursor_holding_another_host_is_expired_not_followed(
    directory: GraphDirectory, elsewhere: SimulatorServer
) -> None:
    kept = users_cursor(f"{elsewhere.url}/v1.0/users/delta()?$deltatoken=kept", user_select(SELECT))

    with pytest.raises(CursorExpired, match=r"the users cursor holds a link to http://127.0.0.1"):
        await within_bounds(collect(directory.read_users(kept, SELECT), []))

    assert requests_to(elsewhere) == 0


async def test_a_membership_cursor_holding_another_host_is_expired_not_followed(
    directory: GraphDirectory, tenant: Tenant, elsewhere: SimulatorServer
) -> None:
    finance = tenant.group_id("US Finance")
    kept = membership_cursor([GroupsLink(frozenset({finance}), f"{elsewhere.url}/v1.0/groups/delta?x=1")])

    with pytest.raises(CursorExpired, match=r"the membership cursor holds a link to http://127.0.0.1"):
        await within_bounds(collect(directory.read_memberships(kept, [finance]), []))

    assert requests_to(elsewhere) == 0


async def test_honest_paging_still_reads_every_page_within_tight_bounds(simulator: GraphSimulator) -> None:
    """The bounds count pages and links, not users: a read of exactly as many pages as allowed ends."""
    directory = bounded_directory(simulator, ReadBounds(pages=4))
    try:
        pages = await within_bounds(collect(directory.read_users(None, SELECT), []))
    finally:
        await directory.aclose()
    assert len(pages) == 4 and pages[-1].cursor is not None  # 13 users, 4 a page
