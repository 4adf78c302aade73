"""The in-process transport answers as the loopback server does, and fails as the network fails."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from simulators.http import DropConnection, Request, Response, Router, SimulatorServer
from simulators.inprocess import RouterTransport

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _router() -> Router:
    router = Router()

    @router.route("GET", r"/items/(?P<item>[^/]+)", name="get item")
    def get_item(request: Request) -> Response:
        return Response(
            200,
            {"item": request.params["item"], "q": request.query.get("q"), "raw": request.raw_path},
            headers={"X-Seen-Host": request.headers.get("host", "")},
        )

    @router.route("POST", r"/items", name="create item")
    def create(request: Request) -> Response:
        return Response(201, {"echo": request.json(), "type": request.headers.get("content-type")})

    @router.route("GET", r"/text", name="text")
    def text(request: Request) -> Response:
        return Response(200, "plain")

    @router.route("DELETE", r"/items/(?P<item>[^/]+)", name="delete item")
    def delete(request: Request) -> Response:
        return Response(204)

    @router.route("POST", r"/lost", name="lost")
    def lost(request: Request) -> Response:
        raise DropConnection

    @router.route("GET", r"/hang-up", name="hang up")
    def hang_up(request: Request) -> Response:
        return Response(drop_connection=True)

    @router.route("GET", r"/boom", name="boom")
    def boom(request: Request) -> Response:
        raise RuntimeError("bug")

    return router


async def _answers(client: httpx.AsyncClient) -> list[tuple[int, str, bytes]]:
    calls = [
        client.build_request("GET", "/items/a%20b", params={"q": "x y", "empty": ""}),
        client.build_request("POST", "/items", json={"n": 1}),
        client.build_request("GET", "/text"),
        client.build_request("DELETE", "/items/a"),
        client.build_request("GET", "/nowhere"),
        client.build_request("PUT", "/items"),
        client.build_request("GET", "/boom"),
    ]
    answers = []
    for call in calls:
        answer = await client.send(call)
        answers.append((answer.status_code, answer.headers.get("content-type", ""), answer.content))
    return answers


@pytest.fixture
def loopback() -> Iterator[SimulatorServer]:
    with SimulatorServer(_router()) as server:
        yield server


async def test_answers_as_the_loopback_server_does(loopback: SimulatorServer) -> None:
    transport = RouterTransport()
    transport.plug(loopback.url, _router())  # a second router: the same routes, its own counts
    async with httpx.AsyncClient(base_url=loopback.url) as over_http:
        expected = await _answers(over_http)
    async with httpx.AsyncClient(base_url=loopback.url, transport=transport) as in_process:
        got = await _answers(in_process)
    assert got == expected
    assert got[0][0] == 200 and b'"raw": "/items/a%20b?q=x+y&empty="' in got[0][2]
    assert [status for status, _, _ in got] == [200, 201, 200, 204, 404, 405, 500]


async def test_the_host_header_reaches_the_simulator(loopback: SimulatorServer) -> None:
    """Graph's next and delta links are built from it: they must lead back through the transport."""
    transport = RouterTransport()
    transport.plug(loopback.url, _router())
    async with httpx.AsyncClient(base_url=loopback.url, transport=transport) as client:
        answer = await client.get("/items/x")
    assert answer.headers["x-seen-host"] == loopback.url.removeprefix("http://")


async def test_an_address_nothing_listens_on_refuses_the_connection() -> None:
    transport, router = RouterTransport(), _router()
    transport.plug("http://127.0.0.1:9", router)
    async with httpx.AsyncClient(transport=transport) as client:
        assert (await client.get("http://127.0.0.1:9/text")).text == "plain"
        with pytest.raises(httpx.ConnectError):
            await client.get("http://127.0.0.1:10/text")  # another port
        transport.unplug("http://127.0.0.1:9")
        with pytest.raises(httpx.ConnectError):
            await client.get("http://127.0.0.1:9/text")
        transport.plug("http://127.0.0.1:9", router)
        assert (await client.get("http://127.0.0.1:9/text")).status_code == 200
    assert router.counts["text"] == 2  # a refused request never reached the simulator


@pytest.mark.parametrize(("path", "method"), [("/lost", "POST"), ("/hang-up", "GET")])
async def test_a_dropped_connection_gives_the_client_no_answer(path: str, method: str) -> None:
    transport = RouterTransport()
    transport.plug("http://127.0.0.1:9", _router())
    async with httpx.AsyncClient(base_url="http://127.0.0.1:9", transport=transport) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.request(method, path)
