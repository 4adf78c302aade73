"""Graph failures → the project's error taxonomy, in one place.

Graph answers errors in an ``{"error": {"code", "message"}}`` envelope. The SDK raises ``ODataError``
(an ``APIError``) for typed calls; raw-JSON calls hand back the response and are checked here. Transport
failures and credential failures are mapped too, so nothing SDK-specific crosses the port.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from azure.core.exceptions import ClientAuthenticationError
from kiota_abstractions.api_error import APIError

from provisioning.adapters.tls import certificate_refusal, untrusted_certificate
from provisioning.errors import (
    AuthError,
    CursorExpired,
    InvalidRequestError,
    NotFoundError,
    ProvisioningError,
    TransientError,
)

# Graph's signals that a delta cursor is no longer usable (delta-query-overview, "Synchronization reset").
SYNC_RESET_CODES = frozenset({"syncStateNotFound", "syncStateInvalid", "resyncRequired"})
# The application permissions this product is granted (infra/modules/graph-app-roles.bicep), and which
# one each Graph exchange needs. Graph's 403 does not say which permission is missing; this table does.
USERS_PERMISSION, GROUPS_PERMISSION, MAILBOX_PERMISSION = (
    "User.Read.All",
    "Group.Read.All",
    "MailboxSettings.Read",
)
REQUIRED_PERMISSIONS = (USERS_PERMISSION, GROUPS_PERMISSION, MAILBOX_PERMISSION)
SUBSCRIPTION_PERMISSIONS = {"users": USERS_PERMISSION, "groups": GROUPS_PERMISSION}
_ACTION_PERMISSIONS = {
    "users delta": USERS_PERMISSION,
    "users by id": USERS_PERMISSION,
    "get user": USERS_PERMISSION,
    "list users": USERS_PERMISSION,
    "groups delta": GROUPS_PERMISSION,
    "get group": GROUPS_PERMISSION,
    "find group": GROUPS_PERMISSION,
    "list groups": GROUPS_PERMISSION,
    "list members": GROUPS_PERMISSION,
    "member of": GROUPS_PERMISSION,
    "transitive member of": GROUPS_PERMISSION,
    "mailbox settings": MAILBOX_PERMISSION,
    **{f"create {resource} subscription": p for resource, p in SUBSCRIPTION_PERMISSIONS.items()},
}
PERMISSIONS_HINT = f"the app needs the application permissions {', '.join(REQUIRED_PERMISSIONS)}"


def permission_hint(action: str | None) -> str:
    """What a 403 on ``action`` means: the permission that exchange needs, or the whole list."""
    needed = _ACTION_PERMISSIONS.get(action or "")
    if needed is not None:
        return f"{action} needs the Microsoft Graph application permission {needed}, which the app lacks"
    if action in {"renew subscription", "reauthorize subscription", "delete subscription"}:
        listed = ", ".join(f"{p} for {r}" for r, p in SUBSCRIPTION_PERMISSIONS.items())
        return f"{action} needs the permission of the subscribed resource ({listed})"
    return PERMISSIONS_HINT


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """``Retry-After`` as seconds: Graph sends a number; an HTTP date is accepted too."""
    if not headers:
        return None
    raw = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


def error_for(
    status: int,
    code: str | None,
    message: str,
    headers: Mapping[str, str] | None = None,
    action: str | None = None,
) -> ProvisioningError:
    label = f"Graph {status}{f' {code}' if code else ''}: {message}".rstrip(": ")
    if status == 410 or code in SYNC_RESET_CODES:
        return CursorExpired(f"{label} (the delta cursor expired: a full read is needed)")
    if status == 401:
        return AuthError(f"{label} (credentials rejected)")
    if status == 403:
        return AuthError(f"{label} ({permission_hint(action)})")
    if status == 404:
        return NotFoundError(label)
    if status in (408, 429) or status >= 500:
        return TransientError(label, retry_after_seconds(headers))
    return InvalidRequestError(label, code, status)


def error_body(body: Any) -> tuple[str | None, str]:
    """``(code, message)`` of Graph's error envelope, tolerant of anything else."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return error.get("code"), str(error.get("message") or "")
    return None, ""


def raise_for_status(response: httpx.Response, action: str | None = None) -> None:
    """The mapped error of a raw response that failed; nothing for a success."""
    if response.status_code >= 400:
        try:
            body = response.json()
        except ValueError:
            body = None
        code, message = error_body(body)
        raise error_for(
            response.status_code, code, message or response.reason_phrase, response.headers, action
        )


def checked_json(response: httpx.Response, action: str | None = None) -> dict[str, Any]:
    """The JSON body of a raw response, or the mapped error."""
    raise_for_status(response, action)
    try:
        data = json.loads(response.content)
    except ValueError as bad:
        raise TransientError(f"Graph answered {response.status_code} with a body that is not JSON") from bad
    if not isinstance(data, dict):
        raise TransientError(f"Graph answered {response.status_code} with unexpected JSON")
    return data


def from_api_error(error: APIError, action: str | None = None) -> ProvisioningError:
    status = error.response_status_code or 0
    inner = getattr(error, "error", None)
    code = getattr(inner, "code", None)
    message = getattr(inner, "message", None) or error.message or type(error).__name__
    return error_for(status, code, str(message), error.response_headers, action)


@asynccontextmanager
async def graph_errors(action: str) -> AsyncIterator[None]:
    """Run one Graph exchange; whatever fails leaves as a ``ProvisioningError`` naming ``action``."""
    try:
        yield
    except ProvisioningError:
        raise
    except APIError as error:
        raise from_api_error(error, action) from error
    except ClientAuthenticationError as error:
        raise AuthError(f"{action}: could not get a Graph token: {error.message}") from error
    except httpx.TimeoutException as error:
        raise TransientError(f"{action}: Graph did not answer in time ({type(error).__name__})") from error
    except httpx.TransportError as error:
        why = untrusted_certificate(error)
        if why is not None:  # not retried in-process either way, but named for what it is
            raise TransientError(f"{action}: {certificate_refusal('Graph', 'GRAPH_API_URL', why)}") from error
        raise TransientError(f"{action}: cannot reach Graph ({type(error).__name__}: {error})") from error
