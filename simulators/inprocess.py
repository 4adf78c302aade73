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

import json
import threading
from urllib.parse import parse_qs, unquote, urlsplit

import httpx

from simulators.http import DropConnection, Request, Response, Router


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
        response = _dispatch(router, _request(request, body))
        if response is None:
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a response.", request=request
            )
        status, headers, payload = _written(response)
        return httpx.Response(
            status,
            headers=headers,
            content=b"" if request.method == "HEAD" else payload,
            request=request,
        )


def _address(url: str) -> str:
    split = urlsplit(url)
    return f"{split.hostname}:{split.port}"


def _request(request: httpx.Request, body: bytes) -> Request:
    """As ``simulators.http._RequestHandler`` builds it from the request line, headers and body."""
    raw_path = request.url.raw_path.decode("ascii")
    split = urlsplit(raw_path)
    return Request(
        method=request.method,
        path=unquote(split.path),
        query={k: v[0] for k, v in parse_qs(split.query, keep_blank_values=True).items()},
        headers={k.lower(): v for k, v in request.headers.items()},
        body=body,
        raw_path=raw_path,
    )


def _dispatch(router: Router, request: Request) -> Response | None:
    """The router's answer; None for a connection closed without one."""
    try:
        response = router.dispatch(request)
    except DropConnection:
        return None
    except Exception as error:  # a simulator bug shows up as a 500, as the loopback server answers it
        response = Response(500, {"error": f"simulator error: {type(error).__name__}: {error}"})
    return None if response.drop_connection else response


def _written(response: Response) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body as ``simulators.http._RequestHandler._write`` puts them on the wire."""
    headers = dict(response.headers)
    if isinstance(response.body, bytes):
        payload = response.body
    elif isinstance(response.body, str):
        payload = response.body.encode()
        headers.setdefault("Content-Type", "text/plain; charset=utf-8")
    elif response.body is None:
        payload = b""
    else:
        payload = json.dumps(response.body).encode()
        headers.setdefault("Content-Type", "application/json")
    headers["Content-Length"] = str(len(payload))
    return response.status, headers, payload
