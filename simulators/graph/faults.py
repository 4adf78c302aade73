"""Graph's answers to injected faults: a status (429 with ``Retry-After``, 503, 403, ...) for the next N
requests to the named routes, or a fraction of them."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from simulators.graph.wire import error
from simulators.http import Response

_CODES = {429: "TooManyRequests", 503: "serviceNotAvailable", 403: "Authorization_RequestDenied"}


@dataclass
class Fault:
    """Answer matching requests with ``status``: the next ``remaining`` of them, or a ``fraction``."""

    status: int
    retry_after: int | None = None
    remaining: int | None = None
    fraction: float | None = None
    routes: frozenset[str] | None = None  # route names; None: every Graph route

    def response(self) -> Response:
        headers = {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}
        message = "Too many requests" if self.status == 429 else f"injected fault {self.status}"
        return error(self.status, _CODES.get(self.status, "generalException"), message, headers)


class InjectedFaults:
    """The faults in force, first injected first served; draws for fractions come from ``draws``."""

    def __init__(self, draws: random.Random) -> None:
        self.active: list[Fault] = []
        self._random = draws
        self._lock = threading.Lock()

    def inject(
        self,
        status: int,
        *,
        count: int | None = None,
        fraction: float | None = None,
        retry_after: int | None = None,
        routes: Iterable[str] | None = None,
    ) -> Fault:
        if (count is None) == (fraction is None):
            raise ValueError("give either count (the next N requests) or fraction")
        fault = Fault(status, retry_after, count, fraction, None if routes is None else frozenset(routes))
        with self._lock:
            self.active.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self.active.clear()

    def answer(self, route_name: str) -> Response | None:
        """The injected answer for a request to ``route_name``, or None to serve it."""
        with self._lock:
            for fault in list(self.active):
                if fault.routes is not None and route_name not in fault.routes:
                    continue
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self.active.remove(fault)
                    return fault.response()
                if fault.fraction is not None and self._random.random() < fault.fraction:
                    return fault.response()
        return None
