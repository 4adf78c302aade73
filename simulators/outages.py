"""The outages a simulator can be put through, in one vocabulary for Graph and Druva.

A service is down in one of five ways, and a client must survive each: nothing listens on its port
(``refused``), it answers 5xx (``errors``), it answers 429 (``throttled``), it answers late (``slow``),
or it accepts connections and never answers (``hang``). Each simulator renders ``errors`` and
``throttled`` the way its service does (Graph: 503 ``serviceNotAvailable`` and 429 ``TooManyRequests``;
Druva: 500 ``InsyncCappmaster-1006`` with ``retryable`` and 429 ``InsyncCappmaster-1429``). ``refused`` and
``hang`` belong to the server, not to the simulator's routes: a running handle (``running.py``) applies
them. Service-specific faults stay with their simulator (Graph: any status for the next N requests;
Druva: lost responses, a rate limit).

Set the same way on both simulators: ``simulator.apply_outage(Outage(...))`` and ``clear_faults()`` in
process; ``POST /_admin/outages`` (the outage as JSON) and ``DELETE /_admin/outages`` over HTTP.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from simulators.http import Request, Response, Router


class OutageKind(StrEnum):
    REFUSED = "refused"  # nothing listens: every connection is refused
    ERRORS = "errors"  # the service's own 5xx
    THROTTLED = "throttled"  # 429, with Retry-After when ``retry_after`` is set
    SLOW = "slow"  # every request answered ``seconds`` late
    HANG = "hang"  # connections accepted, requests never answered


SERVER_OUTAGES = frozenset({OutageKind.REFUSED, OutageKind.HANG})  # what only the server can do


@dataclass(frozen=True)
class Outage:
    kind: OutageKind
    fraction: float = 1.0  # errors, throttled: the share of matching requests answered so
    routes: tuple[str, ...] | None = None  # errors, throttled: route names; None: every API route
    retry_after: int | None = None  # errors, throttled: Retry-After in whole seconds
    seconds: float = 0.0  # slow: added to every API request

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", OutageKind(self.kind))
        if self.routes is not None:
            object.__setattr__(self, "routes", tuple(self.routes))
        if not 0 < self.fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], not {self.fraction!r}")
        if (self.kind == OutageKind.SLOW) != (self.seconds > 0):
            raise ValueError("seconds (greater than 0) goes with a slow outage, and only with it")
        rated = self.kind in (OutageKind.ERRORS, OutageKind.THROTTLED)
        if not rated and (self.fraction != 1.0 or self.routes is not None or self.retry_after is not None):
            raise ValueError(f"fraction, routes and retry_after go with errors or throttled, not {self.kind}")
        if self.retry_after is not None and self.retry_after < 0:
            raise ValueError("retry_after must be at least 0")

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"kind": str(self.kind)}
        defaults = Outage(OutageKind.ERRORS)
        for name in ("fraction", "routes", "retry_after", "seconds"):
            value = getattr(self, name)
            if value != getattr(defaults, name):
                body[name] = list(value) if name == "routes" else value
        return body

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Outage:
        if not isinstance(data, Mapping) or "kind" not in data:
            raise ValueError('an outage is {"kind": "refused|errors|throttled|slow|hang", ...}')
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown outage settings: {', '.join(sorted(unknown))}")
        routes = data.get("routes")
        if routes is not None and not (isinstance(routes, list) and all(isinstance(r, str) for r in routes)):
            raise ValueError("routes must be a list of route names")
        return cls(**{**data, "routes": None if routes is None else tuple(routes)})


class Simulator(Protocol):
    """What both simulators offer: their routes, and outages switched on and off in process."""

    router: Router

    def apply_outage(self, outage: Outage) -> None: ...

    def clear_faults(self) -> None: ...


def refuse_server_outage(outage: Outage) -> None:
    """The simulators' own check: ``refused`` and ``hang`` need the server, so the running handle."""
    if outage.kind in SERVER_OUTAGES:
        raise ValueError(f"a {outage.kind} outage belongs to the server: apply it through the running handle")


def add_outage_routes(router: Router, simulator: Simulator) -> None:
    """``POST /_admin/outages`` (an outage as JSON) and ``DELETE /_admin/outages`` (every fault off)."""

    def apply(request: Request) -> Response:
        try:
            simulator.apply_outage(Outage.from_json(request.json()))
        except (ValueError, TypeError) as problem:
            return Response(400, {"error": str(problem)})
        return Response(204)

    def clear(request: Request) -> Response:
        simulator.clear_faults()
        return Response(204)

    router.add("POST", "/_admin/outages", apply, "admin apply outage")
    router.add("DELETE", "/_admin/outages", clear, "admin clear outages")
