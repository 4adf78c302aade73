"""An httpx transport that hands requests to the simulators' routers in-process, without a socket.

For the long soak only (``python -m simulators.soak --transport in-process``, what ``make soak`` runs):
about 1,600 Graph and Druva requests a simulated day, each through loopback HTTP, a server thread and two
HTTP parsers on two shared cores, are most of its wall time. Here the product's own clients (msgraph-sdk's
middleware pipeline, httpx, the Druva client's retry and token handling) build and read every request and
response exactly as over the network; only the socket, the connection pool and the server's HTTP parsing
are skipped. The request reaches the same ``Router.dispatch`` the loopback server calls, built as that
server builds it (``simulators.http._RequestHandler``), and the answer comes back as the server would
write it. What the network would do on its own is emulated here: a simulator "not listening" (``unplug``)
refuses the connection (``httpx.ConnectError``), and a dropped connection is the error httpcore raises
when the server closes without answering.

The short soak in ``make test`` and every other test keep loopback HTTP, so the real path stays tested.
"""

from __future__ import annotations

import threading
from urllib.parse import urlsplit

import httpx

from simulators.http import Router, answer, on_the_wire, request_from


class RouterTransport(httpx.AsyncBaseTransport):
    """Requests to a plugged-in ``host:port`` go to its router; any other address is refused."""

    def __init__(self) -> None:
        self._routers: dict[str, Router] = {}
        self._lock = threading.Lock()

    def plug(self, url: str, router: Router) -> None:
        """Serve ``url``'s ``host:port`` (a base URL such as a simulator's ``.url``) from ``router``."""
        with self._lock:
            self._routers[_address(url)] = router

    def unplug(self, url: str) -> None:
        """Nothing listens there any more: connections are refused until it is plugged in again."""
        with self._lock:
            self._routers.pop(_address(url), None)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            router = self._routers.get(f"{request.url.host}:{request.url.port}")
        if router is None:
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        body = await request.aread()
        raw_path = request.url.raw_path.decode("ascii")
        # Names as the client wrote them (items() lower-cases them): Druva's GovCloud mode checks them.
        sent = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in request.headers.raw]
        response = answer(router, request_from(request.method, raw_path, sent, body))
        if response is None:
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a response.", request=request
            )
        status, headers, payload = on_the_wire(response)
        return httpx.Response(
            status,
            headers=headers,
            content=b"" if request.method == "HEAD" else payload,
            request=request,
        )


def _address(url: str) -> str:
    split = urlsplit(url)
    return f"{split.hostname}:{split.port}"
