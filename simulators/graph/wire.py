"""Graph's wire format, shared by every route of the simulator: the error envelope, opaque tokens,
``$select``, and links that point at the host the client used."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from simulators.http import Handler, Request, Response

PREFIX = "/v1.0"
REF = r"(?P<ref>[^/()]+)"  # an object's id (or a user's UPN) in a route pattern


def error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    """Graph's ``{"error": {code, message, innerError}}`` envelope."""
    stamp = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "")
    body = {"error": {"code": code, "message": message, "innerError": {"date": stamp}}}
    return Response(status, body, dict(headers or {}))


def not_found(ref: str) -> Response:
    return error(
        404,
        "Request_ResourceNotFound",
        f"Resource '{ref}' does not exist or one of its queried reference-property objects are not present.",
    )


def encode(data: dict[str, Any]) -> str:
    """An opaque token (``$skiptoken``, ``$deltatoken``): what the next request needs, URL-safe."""
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")


def decode(token: str) -> dict[str, Any]:
    padded = token + "=" * (-len(token) % 4)
    data = json.loads(base64.urlsafe_b64decode(padded.encode()))
    if not isinstance(data, dict):
        raise ValueError(token)
    return data


def selected(request: Request) -> tuple[str, ...] | None:
    """The ``$select`` properties, or None for the defaults."""
    raw = request.query.get("$select")
    return tuple(p.strip() for p in raw.split(",") if p.strip()) if raw else None


def base_url(request: Request) -> str:
    """Graph's root as the client addressed it, so links work through any host name."""
    return f"http://{request.headers.get('host', '127.0.0.1')}{PREFIX}"


@dataclass(frozen=True)
class GraphRoute:
    """A Graph endpoint as a route module declares it; the simulator adds authentication, faults and
    permissions around ``handler`` (and the directory's lock when ``locked``)."""

    method: str
    pattern: str  # after /v1.0
    name: str  # what permissions.py, faults and the request counts call it
    handler: Handler
    locked: bool = True
