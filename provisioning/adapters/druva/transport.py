"""The Druva client's HTTP transport: httpx's interface, aiohttp's connection pool.

A large import is one request per user, so the cost of one request on the client is the cost of an
imported user. httpx's own pool (httpcore over anyio) looks at every pooled connection on every request
and every answer (each look asks anyio for the socket's attributes and polls the socket), which made
up most of the command line's CPU time on an import. aiohttp's pool and its C parser do the same job
for a fraction of it, and aiohttp is already a dependency (the Azure SDKs' async transport).

The client above keeps speaking httpx (requests, responses, exceptions): this transport maps aiohttp's
failures onto httpx's, preserving the distinction the Druva client relies on, between a request that
never left (``ConnectError``/``ConnectTimeout``/``PoolTimeout``: safe to send again) and one whose answer
was lost (``ReadTimeout``/``ReadError``/``RemoteProtocolError``: a create must be looked up first). It
never retries anything itself; aiohttp retries only idempotent methods on a keep-alive connection the
server had closed, which httpx's pool does too.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import aiohttp
import httpx
from yarl import URL

# What httpx already put in the request; aiohttp must not add its own.
_SKIP_AUTO_HEADERS = ("User-Agent", "Accept-Encoding", "Accept", "Content-Type")
# aiohttp frames the body itself from the bytes it is given.
_FRAMING = {"content-length", "transfer-encoding"}


class PooledTransport(httpx.AsyncBaseTransport):
    """Keep-alive connections (at most ``max_connections``) to one Druva API gateway."""

    def __init__(self, *, max_connections: int, ssl_context: ssl.SSLContext) -> None:
        self._max_connections = max_connections
        self._ssl = ssl_context
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _session_for_this_loop(self) -> aiohttp.ClientSession:
        # A session belongs to the event loop it was opened on; the client may be built outside any loop.
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            connector = aiohttp.TCPConnector(limit=self._max_connections, limit_per_host=0, ssl=self._ssl)
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,  # httpx decodes the body by its Content-Encoding, as it always did
                skip_auto_headers=_SKIP_AUTO_HEADERS,
                cookie_jar=aiohttp.DummyCookieJar(),
            )
            self._loop = loop
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._session_for_this_loop()
        headers = _as_spelt(request.headers)
        body = await request.aread()
        try:
            async with session.request(
                request.method,
                URL(str(request.url), encoded=True),  # as httpx encoded it: "+" and "@" in e-mails stay
                headers=headers,
                data=body if body or request.method in ("POST", "PUT", "PATCH") else None,
                allow_redirects=False,
                timeout=_timeout(request.extensions.get("timeout")),
            ) as answer:
                content = await answer.read()
                return httpx.Response(
                    answer.status,
                    headers=list(answer.raw_headers),
                    content=content,
                    request=request,
                )
        except (aiohttp.ConnectionTimeoutError, aiohttp.ClientConnectorError) as error:
            raise _connect_failure(error, request) from error
        except (aiohttp.SocketTimeoutError, TimeoutError) as error:
            raise httpx.ReadTimeout(f"no answer in time: {error}", request=request) from error
        except aiohttp.ServerDisconnectedError as error:
            raise httpx.RemoteProtocolError(f"server disconnected: {error}", request=request) from error
        except aiohttp.ClientError as error:  # reset, truncated answer, …: sent, answer lost
            raise httpx.ReadError(f"{type(error).__name__}: {error}", request=request) from error

    async def aclose(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None


def _as_spelt(headers: httpx.Headers) -> list[tuple[str, str]]:
    """The request's headers with their names spelt as whoever set them did (``Accept``,
    ``Authorization``, ``Content-Type``), framing left out. httpx's ``items()`` and ``multi_items()``
    lower-case every name, which HTTP allows and Druva's GovCloud does not: it wants ``Accept`` and
    ``Authorization`` capitalised. aiohttp sends names as it is given them."""
    encoding = headers.encoding
    return [
        (name.decode(encoding), value.decode(encoding))
        for name, value in headers.raw
        if name.lower().decode(encoding) not in _FRAMING
    ]


def _connect_failure(error: Exception, request: httpx.Request) -> httpx.TransportError:
    message = f"{type(error).__name__}: {error}"
    if isinstance(error, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(message, request=request)
    return httpx.ConnectError(message, request=request)


def _timeout(settings: Any) -> aiohttp.ClientTimeout:
    """httpx's per-request timeouts (connect, read, write, pool) in aiohttp's terms: the wait for a
    pooled connection and the connect together bound ``connect``; each read of the answer ``read``."""
    if not isinstance(settings, dict):
        return aiohttp.ClientTimeout()
    connect, read, pool = settings.get("connect"), settings.get("read"), settings.get("pool")
    waits = [t for t in (connect, pool) if t is not None]
    return aiohttp.ClientTimeout(
        total=None, connect=sum(waits) if waits else None, sock_connect=connect, sock_read=read
    )
