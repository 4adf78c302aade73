"""Druva's answers turned into the project's error taxonomy.

Druva wraps errors in ``{"code", "message", "retryable", "data"}``; 404 bodies may be empty; 429 comes
without ``Retry-After``. The private transient kinds exist because they change what the client does
next: a throttled request waits longer, an ambiguous one (the request went out but no answer came back,
or a 5xx) may have been applied, so a create must look before posting again, and one refused for
Druva's TLS certificate is not tried again in this run at all.

A write Druva refuses until a human acts is a ``DruvaRefused`` of its kind: a credential that may not
write (403 that is not an expired session), no free licence, a privacy conflict on a profile change.
Druva documents a code only for the first (``InsyncAdmanagement-1221``); the others are recognised by
the words of Druva's message (see ``_refusal_kind``).
"""

from __future__ import annotations

import email.utils
import re
import time
from dataclasses import dataclass
from typing import Any

import httpx

from provisioning.adapters.druva.payloads import parse_bool
from provisioning.adapters.tls import certificate_refusal, untrusted_certificate
from provisioning.errors import (
    AuthError,
    ConflictError,
    DruvaRefused,
    InvalidRequestError,
    NotFoundError,
    ProvisioningError,
    RefusalKind,
    TransientError,
)

# Druva's answer to an expired or unknown token (its FAQ: "Auth session expired").
SESSION_EXPIRED = "InsyncCappmaster-1009"
_EXPIRED = re.compile(r"expired", re.IGNORECASE)
# Druva documents no code for "no free licence" or "privacy settings conflict": the simulator's codes
# (InsyncUsermanagement-1016 and -1018) are its own invention, so they are not trusted here. The words
# of the message are the defence, whatever code the real Druva sends, in either spelling of licence.
_REFUSAL_WORDS = (
    (re.compile(r"licen[cs]e", re.IGNORECASE), RefusalKind.LICENCE),
    (re.compile(r"privacy", re.IGNORECASE), RefusalKind.PRIVACY),
    (
        re.compile(r"\bKMS\b|\bBYOK\b|key management|encryption key", re.IGNORECASE),
        RefusalKind.KEY_MANAGEMENT,
    ),
)


class Throttled(TransientError):
    """HTTP 429: Druva asks us to slow down."""


class AmbiguousOutcome(TransientError):
    """The request may or may not have been applied (lost answer, timeout after sending, 5xx)."""


class CertificateRefused(TransientError):
    """Druva's TLS certificate was not trusted, so nothing was sent. Every attempt would meet the same
    certificate: it is named at once, never retried as a network outage. Still transient for the run
    as a whole (the worker tries again later, as for Graph), since the fix is made elsewhere."""


def certificate_refused(what: str, error: httpx.TransportError) -> CertificateRefused | None:
    """The error for ``what`` (e.g. "POST /token") when ``error`` is a refused certificate, else None."""
    why = untrusted_certificate(error)
    if why is None:
        return None
    return CertificateRefused(f"Druva {what}: {certificate_refusal('Druva', 'DRUVA_API_URL', why)}")


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
        # "Message" is how the API gateway in front of Druva spells it (e.g. a token's explicit deny).
        code, message = body.get("code"), body.get("message") or body.get("Message")
        return cls(
            code=str(code) if code else None,
            message=str(message) if message else None,
            retryable=parse_bool(body.get("retryable")) is True,
        )

    def describe(self, status: int) -> str:
        return " ".join(part for part in (f"HTTP {status}", self.code, self.message) if part)


def error_for(what: str, response: httpx.Response, *, write: bool = False) -> ProvisioningError:
    """The typed error for a non-2xx answer to ``what`` (e.g. "PATCH /usermanagement/v1/users/7");
    ``write`` when the request would have changed something (anything but a GET)."""
    status = response.status_code
    envelope = Envelope.of(response)
    message = f"Druva {what}: {envelope.describe(status)}"
    if status == 429:
        return Throttled(message, retry_after=retry_after(response))
    if status >= 500:
        return AmbiguousOutcome(message, retry_after=retry_after(response))
    if status == 403 and write and not _session_expired(envelope):
        # The client refreshes the token once on any 403 before asking this, so what still refuses
        # the write is not the session. The credential's role (Druva documents -1221 "Access restricted
        # due to insufficient permissions.") holds every write back; any other 403 only this account's.
        whose = RefusalKind.PERMISSION if _role_refused(envelope) else RefusalKind.OTHER
        return DruvaRefused(message, whose, code=envelope.code, status=status)
    if status in (401, 403):
        return AuthError(message)
    if envelope.retryable:
        return TransientError(message, retry_after=retry_after(response))
    if status == 404:
        return NotFoundError(message)
    if status == 409:
        return ConflictError(message)
    kind = _refusal_kind(envelope) if write else None
    if kind is not None:
        return DruvaRefused(message, kind, code=envelope.code, status=status)
    return InvalidRequestError(message, code=envelope.code, status=status)


def _session_expired(envelope: Envelope) -> bool:
    # By Druva's code, or by its words ("Auth session expired") should the code ever change.
    return envelope.code == SESSION_EXPIRED or bool(envelope.message and _EXPIRED.search(envelope.message))


def _refusal_kind(envelope: Envelope) -> RefusalKind | None:
    """A refusal only a human can lift, read from the words of Druva's message."""
    for words, kind in _REFUSAL_WORDS:
        if envelope.message and words.search(envelope.message):
            return kind
    return None


def _role_refused(envelope: Envelope) -> bool:
    """A refusal of the credential rather than of one account: Druva's documented permission code
    (…-1221), words that say so ("permission", the gateway's "explicit deny"), or a bare 403 with no
    Druva envelope at all (the gateway's). A 403 with another Druva code concerns its account only."""
    words = (envelope.message or "").lower()
    if envelope.code is None and envelope.message is None:
        return True
    return (envelope.code or "").endswith("-1221") or "permission" in words or "deny" in words


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
