"""Druva's answers turned into the project's error taxonomy.

Druva wraps errors in ``{"code", "message", "retryable", "data"}``; 404 bodies may be empty; 429 comes
without ``Retry-After``. The two private transient kinds exist because they change what the client
does next: a throttled request waits longer, and an ambiguous one (the request went out but no answer
came back, or a 5xx) may have been applied, so a create must look before posting again.
"""

from __future__ import annotations

import email.utils
import time
from dataclasses import dataclass
from typing import Any

import httpx

from provisioning.adapters.druva.payloads import parse_bool
from provisioning.errors import (
    AuthError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    ProvisioningError,
    TransientError,
)


class Throttled(TransientError):
    """HTTP 429: Druva asks us to slow down."""


class AmbiguousOutcome(TransientError):
    """The request may or may not have been applied (lost answer, timeout after sending, 5xx)."""


@dataclass(frozen=True)
class Envelope:
    code: str | None = None
    message: str | None = None
    retryable: bool = False

    @classmethod
    def of(cls, response: httpx.Response) -> Envelope:
        try:
            body: Any = response.json() if response.content.strip() else None
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return cls()
        code, message = body.get("code"), body.get("message")
        return cls(
            code=str(code) if code else None,
            message=str(message) if message else None,
            retryable=parse_bool(body.get("retryable")) is True,
        )

    def describe(self, status: int) -> str:
        return " ".join(part for part in (f"HTTP {status}", self.code, self.message) if part)


def error_for(what: str, response: httpx.Response) -> ProvisioningError:
    """The typed error for a non-2xx answer to ``what`` (e.g. "PATCH /usermanagement/v1/users/7")."""
    status = response.status_code
    envelope = Envelope.of(response)
    message = f"Druva {what}: {envelope.describe(status)}"
    if status == 429:
        return Throttled(message, retry_after=retry_after(response))
    if status >= 500:
        return AmbiguousOutcome(message, retry_after=retry_after(response))
    if status in (401, 403):
        return AuthError(message)
    if envelope.retryable:
        return TransientError(message, retry_after=retry_after(response))
    if status == 404:
        return NotFoundError(message)
    if status == 409:
        return ConflictError(message)
    return InvalidRequestError(message, code=envelope.code, status=status)


def retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds (delta or HTTP date), or None when absent or unreadable."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
