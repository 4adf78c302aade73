"""The Druva client's transport speaks httpx over aiohttp's pool: what goes out is what httpx would send,
and every failure keeps the meaning the client's create logic depends on (never sent, or answer lost)."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import Iterator

import httpx
import pytest

from provisioning.adapters.druva.transport import PooledTransport
from provisioning.adapters.tls import tls_context
from simulators.http import DropConnection, Request, Response, Router, SimulatorServer
from simulators.running import SilentListener
from simulators.worker_host import free_port

pytestmark = pytest.mark.anyio


@pytest.fixture
def echo() -> Iterator[SimulatorServer]:
    router = Router()

    def answer(request: Request) -> Response:
        body = {"method": request.method, "path": request.raw_path, "headers": request.headers}
        return Response(200, body | {"body": request.body.decode()})

    def zipped(request: Request) -> Response:
        return Response(200, gzip.compress(b'{"packed": true}'), {"Content-Encoding": "gzip"})

    def drop(request: Request) -> Response:
        raise DropConnection

    router.add("POST", "/echo", answer)
    router.add("GET", "/echo", answer)
    router.add("GET", "/moved", lambda _: Response(302, b"", {"Location": "/echo"}))
    router.add("GET", "/zipped", zipped)
    router.add("POST", "/drop", drop)
    with SimulatorServer(router) as server:
        yield server


def client(url: str, timeout: float = 5.0) -> httpx.AsyncClient:
    transport = PooledTransport(max_connections=4, ssl_context=tls_context())
    return httpx.AsyncClient(base_url=url, transport=transport, timeout=timeout)


async def test_a_request_leaves_as_httpx_built_it(echo: SimulatorServer) -> None:
    async with client(echo.url) as http:
        response = await http.post(
            "/echo",
            params={"emailID": "a+b@contoso.com"},
            json={"x": 1},
            headers={"Authorization": "Bearer t"},
        )
    seen = response.json()
    assert response.status_code == 200
    assert seen["path"] == "/echo?emailID=a%2Bb%40contoso.com"
    assert json.loads(seen["body"]) == {"x": 1}
    headers = seen["headers"]
    assert headers["authorization"] == "Bearer t"
    assert headers["content-type"] == "application/json"
    assert headers["content-length"] == str(len(seen["body"]))
    assert headers["user-agent"].startswith("python-httpx/")  # httpx's, not aiohttp's


async def test_many_requests_share_a_few_connections(echo: SimulatorServer) -> None:
    async with client(echo.url) as http:
        answers = await asyncio.gather(*(http.get("/echo", params={"n": str(n)}) for n in range(40)))
    assert [a.json()["path"] for a in answers] == [f"/echo?n={n}" for n in range(40)]


async def test_a_compressed_answer_is_decoded_once(echo: SimulatorServer) -> None:
    async with client(echo.url) as http:
        response = await http.get("/zipped")
    assert response.json() == {"packed": True}


async def test_a_redirect_is_returned_not_followed(echo: SimulatorServer) -> None:
    async with client(echo.url) as http:
        response = await http.get("/moved")
    assert (response.status_code, response.headers["location"]) == (302, "/echo")


async def test_a_refused_connection_is_a_connect_error() -> None:
    async with client(f"http://127.0.0.1:{free_port()}") as http:  # bound, released: nothing listens
        with pytest.raises(httpx.ConnectError):
            await http.get("/anything")


async def test_a_silent_server_is_a_read_timeout() -> None:
    port = free_port()
    silent = SilentListener(port).start()
    try:
        async with client(f"http://127.0.0.1:{port}", timeout=0.3) as http:
            with pytest.raises(httpx.ReadTimeout):
                await http.post("/users", json={})
    finally:
        silent.stop()


async def test_a_dropped_answer_is_a_transport_error_not_a_connect_error(echo: SimulatorServer) -> None:
    async with client(echo.url) as http:
        with pytest.raises(httpx.TransportError) as raised:
            await http.post("/drop", json={})
    assert not isinstance(raised.value, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))


def test_a_transport_serves_one_event_loop_after_another(echo: SimulatorServer) -> None:
    """A warm Functions instance may run invocations on new event loops: each gets its own pool."""
    transport = PooledTransport(max_connections=2, ssl_context=tls_context())

    async def once() -> int:
        http = httpx.AsyncClient(base_url=echo.url, transport=transport)
        return (await http.get("/echo")).status_code

    assert asyncio.run(once()) == 200
    assert asyncio.run(once()) == 200
    asyncio.run(transport.aclose())
