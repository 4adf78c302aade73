"""The transport sends header names as they were spelt: HTTP calls them case-insensitive, Druva's
GovCloud does not (it asks for ``Accept`` and ``Authorization``)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from provisioning.adapters.druva.transport import PooledTransport
from provisioning.adapters.tls import tls_context
from simulators.http import Response, Router, SimulatorServer

pytestmark = pytest.mark.anyio


@pytest.fixture
def echo() -> Iterator[SimulatorServer]:
    router = Router()
    router.add("POST", "/names", lambda request: Response(200, {"names": list(request.header_names)}))
    with SimulatorServer(router) as server:
        yield server


async def names_sent(url: str, headers: dict[str, str]) -> list[str]:
    transport = PooledTransport(max_connections=1, ssl_context=tls_context())
    async with httpx.AsyncClient(base_url=url, transport=transport, headers=headers) as http:
        answer = await http.post("/names", json={"x": 1}, headers={"Authorization": "Bearer t"})
    names: list[str] = answer.json()["names"]
    return names


async def test_header_names_leave_as_spelt(echo: SimulatorServer) -> None:
    names = await names_sent(echo.url, {"Accept": "application/json", "X-Odd-spelling": "1"})
    assert {"Accept", "Authorization", "Content-Type", "Host", "User-Agent", "X-Odd-spelling"} <= set(names)
    assert not {"accept", "authorization", "content-type"} & set(names)


async def test_the_body_is_framed_once(echo: SimulatorServer) -> None:
    names = await names_sent(echo.url, {"Accept": "application/json"})
    assert [name for name in names if name.lower() in ("content-length", "transfer-encoding")] == [
        "Content-Length"
    ]
