"""Graph change notifications are hints: validate them, then turn a burst into one delta pass.

The webhook must answer within Graph's 3-second budget (slow endpoints get throttled, then dropped),
so it never calls Graph, Druva or the state store: it checks what it received, enqueues, and returns.
Every notification in a POST is checked (Graph batches several, possibly for different subscriptions);
one that fails a check is dropped and logged, the others still count.
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from provisioning.domain.work import WorkMessage

DELTA = "delta"
LIFECYCLE = "lifecycle"
RECONCILE = "reconcile"
HINT_WINDOW_SECONDS = 10  # hints within one window collapse into one pass (queue duplicate detection)
RESOURCE = re.compile(r"^(users|groups)/[0-9A-Za-z-]+$", re.IGNORECASE)
LIFECYCLE_EVENTS = {"reauthorizationRequired", "subscriptionRemoved", "missed"}
CHANGE_TYPES = {"created", "updated", "deleted"}
MAX_BODY_BYTES = 1_000_000


@dataclass
class Triage:
    """What a POST carried: the work to enqueue and why anything was dropped."""

    messages: list[WorkMessage] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    accepted: int = 0


def delta_hint(now: datetime, reason: str) -> WorkMessage:
    """A request for a delta pass, identical for every hint in the same window so the queue keeps one."""
    window = int(now.timestamp()) // HINT_WINDOW_SECONDS
    return WorkMessage(DELTA, {"reason": reason}, message_id=f"delta-{window}")


def follow_up(now: datetime, delay_seconds: float) -> WorkMessage:
    """The pass to run after the one in progress; one per window, delivered later."""
    due = now + timedelta(seconds=delay_seconds)
    window = int(due.timestamp()) // HINT_WINDOW_SECONDS
    return WorkMessage(DELTA, {"reason": "follow-up"}, message_id=f"delta-followup-{window}", not_before=due)


def triage(
    body: bytes,
    client_states: Sequence[str],
    tenant_id: str | None,
    known_subscriptions: Sequence[str] | None,
    now: datetime,
) -> Triage:
    """Validate a change- or lifecycle-notification POST.

    ``client_states``: the accepted secrets (two during a rotation). ``tenant_id``: when set, a
    notification for another tenant is refused. ``known_subscriptions``: when given, notifications
    for other subscription ids are refused.
    """
    result = Triage()
    items = _items(body, result)
    for index, item in enumerate(items):
        problem = _problem(item, client_states, tenant_id, known_subscriptions)
        if problem:
            result.rejected.append(f"notification {index}: {problem}")
            continue
        result.accepted += 1
        event = item.get("lifecycleEvent")
        if event:
            result.messages.append(_lifecycle(item, event))
    if result.accepted:
        result.messages.append(delta_hint(now, "change notification"))
    return result


def _items(body: bytes, result: Triage) -> list[Any]:
    if len(body) > MAX_BODY_BYTES:
        result.rejected.append(f"body of {len(body)} bytes is larger than any Graph notification")
        return []
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        result.rejected.append("body is not JSON")
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
        return f"unknown subscription {subscription}"
    if tenant_id and str(item.get("tenantId", "")).lower() != tenant_id.lower():
        return "tenantId is not this tenant"
    event = item.get("lifecycleEvent")
    if event is not None:
        return None if event in LIFECYCLE_EVENTS else f"unknown lifecycleEvent {event!r}"
    if item.get("changeType") not in CHANGE_TYPES:
        return f"unknown changeType {item.get('changeType')!r}"
    if not isinstance(item.get("resource"), str) or not RESOURCE.match(item["resource"]):
        return f"resource {item.get('resource')!r} is not a user or group"
    return None


def _client_state_ok(received: Any, accepted: Sequence[str]) -> bool:
    if not isinstance(received, str) or not accepted:
        return False
    # Compare against every accepted secret without stopping early: timing says nothing about which.
    matches = [hmac.compare_digest(received.encode(), secret.encode()) for secret in accepted if secret]
    return any(matches)


def _lifecycle(item: dict[str, Any], event: str) -> WorkMessage:
    subscription = item["subscriptionId"]
    expires = item.get("subscriptionExpirationDateTime", "")
    return WorkMessage(
        LIFECYCLE,
        {"subscriptionId": subscription, "event": event},
        message_id=f"lifecycle-{subscription}-{event}-{expires}",
    )
