"""A small loopback JSON HTTP server shared by the Graph and Druva simulators.

Standard library only, so the simulators start in milliseconds inside tests and need nothing installed.
HTTP/1.1 with keep-alive, one thread per connection; routes are regular expressions; every request is
counted per route name so tests and benchmarks can assert how many calls a run made.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import signal
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

LOOPBACK = "127.0.0.1"


@dataclass
class Request:
    method: str
    path: str  # percent-decoded, without the query string
    query: dict[str, str]  # first value of each parameter, decoded
    headers: dict[str, str]  # lower-case names
    body: bytes
    params: dict[str, str] = field(default_factory=dict)  # named groups of the route pattern
    raw_path: str = ""  # as received, query string included
    # The header names as the client spelt them, in order (``headers`` has them lower-cased): HTTP says
    # names are case-insensitive, but Druva's GovCloud asks for ``Accept`` and ``Authorization`` so.
    header_names: tuple[str, ...] = ()

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass
class Response:
    status: int = 200
    body: Any = None  # dict/list → JSON; str → text/plain; bytes → as is
    headers: dict[str, str] = field(default_factory=dict)
    drop_connection: bool = False  # close the socket without answering (a "lost response")


Handler = Callable[[Request], Response]


class DropConnection(Exception):
    """Raised by a handler to close the connection without any response."""


@dataclass
class Route:
    name: str
    method: str
    pattern: re.Pattern[str]
    handler: Handler


class Router:
    def __init__(self) -> None:
        self.routes: list[Route] = []
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self.latency_seconds = 0.0

    def add(self, method: str, pattern: str, handler: Handler, name: str | None = None) -> None:
        self.routes.append(Route(name or f"{method} {pattern}", method, re.compile(f"^{pattern}$"), handler))

    def route(self, method: str, pattern: str, name: str | None = None) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.add(method, pattern, handler, name)
            return handler

        return register

    def count(self, name: str) -> None:
        with self._lock:
            self.counts[name] += 1

    def reset_counts(self) -> None:
        with self._lock:
            self.counts.clear()

    def dispatch(self, request: Request) -> Response:
        allowed = False
        for route in self.routes:
            found = route.pattern.match(request.path)
            if not found:
                continue
            allowed = True
            if route.method != request.method:
                continue
            request.params = {k: unquote(v) for k, v in found.groupdict().items() if v is not None}
            self.count(route.name)
            if self.latency_seconds and not route.name.startswith("admin"):
                time.sleep(self.latency_seconds)
            return route.handler(request)
        if allowed:
            return Response(405, {"error": f"{request.method} not allowed on {request.path}"})
        return Response(404, {"error": f"no route for {request.method} {request.path}"})


def request_from(method: str, raw_path: str, headers: Iterable[tuple[str, str]], body: bytes) -> Request:
    """The request as a route sees it, from what arrived: the request line, the headers and the body."""
    split = urlsplit(raw_path)
    received = list(headers)
    return Request(
        method=method,
        path=unquote(split.path),
        query={k: v[0] for k, v in parse_qs(split.query, keep_blank_values=True).items()},
        headers={k.lower(): v for k, v in received},
        body=body,
        raw_path=raw_path,
        header_names=tuple(k for k, _ in received),
    )


def answer(router: Router, request: Request) -> Response | None:
    """The router's answer; None for a connection closed without one."""
    try:
        response = router.dispatch(request)
    except DropConnection:
        return None
    except Exception as error:  # a simulator bug must show up as a 500, not a hung client
        response = Response(500, {"error": f"simulator error: {type(error).__name__}: {error}"})
    return None if response.drop_connection else response


def on_the_wire(response: Response) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (with Content-Type and Content-Length) and body, as the server writes them."""
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


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in two writes; with Nagle on, the body waits for the client's delayed ACK
    # (~40 ms on Linux) and every keep-alive request pays it.
    disable_nagle_algorithm = True
    router: Router

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read counters, not logs
        return

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        response = answer(self.router, request_from(self.command, self.path, self.headers.items(), body))
        if response is None:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        status, headers, payload = on_the_wire(response)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-answer (a timeout, a test that stops early) is not a simulator
        # fault; anything else still surfaces as the standard traceback.
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


class SimulatorServer:
    """Runs a router on 127.0.0.1 in a background thread; ``port=0`` picks a free port."""

    def __init__(self, router: Router, port: int = 0) -> None:
        handler = type("Handler", (_RequestHandler,), {"router": router})
        self.router = router
        self._server = _Server((LOOPBACK, port), handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="simulator", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> SimulatorServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_from_command_line(
    name: str, build: Callable[[str | None], Router], argv: list[str] | None = None
) -> None:
    """``python -m simulators.<name> --port N [--seed FILE]``: serve until interrupted."""
    parser = argparse.ArgumentParser(prog=f"python -m simulators.{name}")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--seed", default=None, help="JSON file with the initial data")
    args = parser.parse_args(argv)
    server = SimulatorServer(build(args.seed), args.port).start()
    print(f"{name} simulator listening on {server.url}", flush=True)
    try:
        wait_until_stopped()
    finally:
        server.stop()


def wait_until_stopped() -> None:
    """Block until SIGTERM (how tests and ``make local`` stop a process, by PID) or Ctrl-C."""
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    with contextlib.suppress(KeyboardInterrupt):
        stopped.wait()
