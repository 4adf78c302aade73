"""Graph change notifications are hints: validate them, then turn a burst into a few delta passes.

The webhook must answer within Graph's 3-second budget (slow endpoints get throttled, then dropped),
so it never calls Graph, Druva or the state store: it checks what it received, enqueues, and returns.
Every notification in a POST is checked on its own (Graph batches several, possibly for different
subscriptions): one that fails a check, whatever it holds, is dropped and counted, the others still count.
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from provisioning.domain.work import (
    LIFECYCLE_EVENTS,
    DeltaPass,
    LifecycleEvent,
    Reconcile,
    WorkMessage,
    delta_hints,
    lifecycle_work,
    watches,
)

DELTA, LIFECYCLE, RECONCILE = DeltaPass.kind, LifecycleEvent.kind, Reconcile.kind
RESOURCE = re.compile(r"(users|groups)/[0-9A-Za-z-]{1,64}", re.IGNORECASE)  # matched in full
CHANGE_TYPES = frozenset({"created", "updated", "deleted"})
MAX_BODY_BYTES = 1_000_000
REASONS_SHOWN = 3


@dataclass
class Triage:
    """What a POST carried: the work to enqueue and why anything was dropped."""

    messages: list[WorkMessage] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    accepted: int = 0
    changed: dict[str, set[str]] = field(default_factory=lambda: {"users": set(), "groups": set()})

    def summary(self) -> str:
        """One line for the log, however large a forged POST was: counts and the first few reasons."""
        shown = "; ".join(self.rejected[:REASONS_SHOWN])
        more = len(self.rejected) - REASONS_SHOWN
        return f"{self.accepted} accepted, {len(self.rejected)} refused: {shown}" + (
            f"; and {more} more" if more > 0 else ""
        )


def triage(
    body: bytes,
    client_states: Sequence[str],
    tenant_id: str | None,
    known_subscriptions: Sequence[str] | None,
    now: datetime,
) -> Triage:
    """Validate a change- or lifecycle-notification POST; never raises, whatever the body.

    ``client_states``: the accepted secrets (two during a rotation). ``tenant_id``: when set, a
    notification for another tenant is refused. ``known_subscriptions``: when given, notifications
    for other subscription ids are refused. Each item is judged alone: a bad one never spoils the others.
    """
    result = Triage()
    for index, item in enumerate(_items(body, result)):
        try:
            problem = _problem(item, client_states, tenant_id, known_subscriptions)
        except Exception as error:  # whatever a hostile item holds, it costs only itself
            problem = f"unreadable ({type(error).__name__})"
        if problem:
            result.rejected.append(f"notification {index}: {problem}")
            continue
        result.accepted += 1
        if "lifecycleEvent" in item:
            result.messages.append(_lifecycle(item))
        else:
            resource, _, object_id = str(item["resource"]).partition("/")
            result.changed[resource.lower()].update(_followed(resource.lower(), object_id.lower(), item))
    if result.accepted:
        result.messages.extend(delta_hints(now, "change notification"))
        result.messages.extend(watches(result.changed, now))
    return result


MAX_MEMBERS_FOLLOWED = 20  # members named by one group notification; more: the group as a whole


def _followed(resource: str, object_id: str, item: dict[str, Any]) -> set[str]:
    """What a notification asks to follow: the user; or each member a group notification names in its
    ``members@delta`` (Graph sends it for membership changes, though not as a documented contract) as
    ``group:member``, since one group changes many times at once and a read that returns the group for
    one member's change says nothing about another's; otherwise the group as a whole."""
    if resource != "groups":
        return {object_id}
    data = item.get("resourceData")
    delta = data.get("members@delta") if isinstance(data, dict) else None
    members = [m.get("id") for m in delta if isinstance(m, dict)] if isinstance(delta, list) else []
    named = {str(m).lower() for m in members if isinstance(m, str) and _MEMBER.fullmatch(m)}
    if not named or len(named) > MAX_MEMBERS_FOLLOWED or len(named) != len(members):
        return {object_id}
    return {f"{object_id}:{member}" for member in named}


_MEMBER = re.compile(r"[0-9A-Za-z-]{1,64}")


def _items(body: bytes, result: Triage) -> list[Any]:
    if len(body) > MAX_BODY_BYTES:
        result.rejected.append(f"body of {len(body)} bytes is larger than any Graph notification")
        return []
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        result.rejected.append("body is not JSON (or nested too deep)")
        return []
    if not isinstance(payload, dict) or not isinstance(payload.get("value"), list):
        result.rejected.append("body has no 'value' list")
        return []
    items: list[Any] = payload["value"]
    return items


def _problem(
    item: Any, client_states: Sequence[str], tenant_id: str | None, known: Sequence[str] | None
) -> str | None:
    if not isinstance(item, dict):
        return "not an object"
    if not _client_state_ok(item.get("clientState"), client_states):
        return "clientState does not match"
    subscription = item.get("subscriptionId")
    if not isinstance(subscription, str) or not subscription:
        return "no subscriptionId"
    if known is not None and subscription not in known:
        return f"unknown subscription {subscription!r:.80}"
    tenant = item.get("tenantId", "")
    if tenant_id and (not isinstance(tenant, str) or tenant.lower() != tenant_id.lower()):
        return "tenantId is not this tenant"
    if "lifecycleEvent" in item:
        event = item["lifecycleEvent"]
        return (
            None
            if isinstance(event, str) and event in LIFECYCLE_EVENTS
            else f"unknown lifecycleEvent {event!r:.80}"
        )
    change = item.get("changeType")
    if not isinstance(change, str) or change not in CHANGE_TYPES:
        return f"unknown changeType {change!r:.80}"
    resource = item.get("resource")
    if not isinstance(resource, str) or not RESOURCE.fullmatch(resource):
        return f"resource {resource!r:.80} is not a user or group"
    return None


def _client_state_ok(received: Any, accepted: Sequence[str]) -> bool:
    if not isinstance(received, str) or not accepted:
        return False
    # Compare against every accepted secret without stopping early: timing says nothing about which.
    # surrogatepass: a lone surrogate in a forged clientState is just another wrong value.
    given = received.encode("utf-8", "surrogatepass")
    matches = [hmac.compare_digest(given, secret.encode()) for secret in accepted if secret]
    return any(matches)


def _lifecycle(item: dict[str, Any]) -> WorkMessage:
    expires = item.get("subscriptionExpirationDateTime")
    expiry = expires if isinstance(expires, str) else ""
    return lifecycle_work(item["subscriptionId"], item["lifecycleEvent"], expiry)
