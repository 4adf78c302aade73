"""Change-notification subscriptions of the Graph simulator: the validation handshake and delivery.

Faithful to Graph where it matters to a client: a subscription is created only after its
notificationUrl (and lifecycleNotificationUrl) echo ``validationToken`` as text/plain with 200 within the
timeout, else 400; expirations beyond 41,760 minutes are refused and those under 45 minutes are raised
to 45; an expired subscription is gone (404). Notifications are basic (no resource data beyond the id,
and ``members@delta`` for groups, as observed from Graph), carry the clientState, are batched per URL
and delivered at least once on a background thread. Deliveries can be held (queued until released) or
dropped to test the safety nets. Unlike Graph, URLs must be loopback (the simulator never leaves the
machine) and plain http is accepted.

A notification can be posted at once (``notify``) or scheduled for a moment on the clock (``schedule``):
a scheduled one is posted by ``release_due`` once that moment has passed, whoever calls it (the
simulator when it catches up, its clockwork thread under real time, ``flush`` before it waits), so a
clock that jumps releases everything it jumped over, in the order it fell due.
"""

from __future__ import annotations

import heapq
import itertools
import json
import queue
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

MAX_MINUTES = 41_760
MIN_MINUTES = 45
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
CHANGE_TYPES = frozenset({"updated", "deleted"})
RESOURCES = {"users": "users", "groups": "groups"}


class SubscriptionRefused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class Delivery:
    url: str
    notifications: int
    status: int | None  # None: no answer (refused, timed out)
    lifecycle: bool = False


@dataclass(frozen=True)
class Notice:
    """One change as its notification tells it: ``Users/{id}`` or ``Groups/{id}``, and the resource data
    beyond the id (``members@delta`` for a membership change)."""

    resource: str  # users | groups
    object_id: str
    change_type: str  # updated | deleted
    resource_data: dict[str, Any] = field(default_factory=dict)


Posted = Callable[[datetime], None]  # told the moment a scheduled notification was posted


def is_loopback(url: str) -> bool:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme in ("http", "https") and (parts.hostname or "") in LOOPBACK_HOSTS


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# Loopback needs no proxy, whatever the environment says.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _post(url: str, body: bytes, content_type: str, timeout: float) -> tuple[int | None, str, str]:
    # callers pass only URLs that is_loopback() accepted: http(s) to this machine
    request = urllib.request.Request(  # noqa: S310
        url, data=body, method="POST", headers={"Content-Type": content_type}
    )
    try:
        with _DIRECT.open(request, timeout=timeout) as answer:
            return answer.status, answer.headers.get("Content-Type", ""), answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", ""), ""
    except (OSError, TimeoutError):
        return None, "", ""


class Webhooks:
    """Subscriptions and their delivery. ``clock`` returns aware UTC datetimes (tests can move time)."""

    def __init__(
        self,
        tenant_id: str,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        validation_timeout: float = 10.0,
        delivery_timeout: float = 3.0,
        delivery_attempts: int = 3,
        retry_pause: float = 0.05,
    ) -> None:
        self.tenant_id = tenant_id
        self.clock = clock
        self.validation_timeout = validation_timeout
        self.delivery_timeout = delivery_timeout
        self.delivery_attempts = delivery_attempts
        self.retry_pause = retry_pause
        self.subscriptions: dict[str, dict[str, Any]] = {}
        self.mode = "deliver"  # deliver | hold | drop
        self.deliveries: list[Delivery] = []
        self.dropped = 0
        self._held: list[tuple[str, dict[str, Any], bool]] = []
        self._scheduled: list[tuple[datetime, int, Notice, Posted | None]] = []
        self._order = itertools.count()
        self._lock = threading.RLock()
        self._queue: queue.Queue[list[tuple[str, dict[str, Any], bool]]] = queue.Queue()
        self._idle = threading.Condition(self._lock)
        self._in_flight = 0
        self._worker = threading.Thread(target=self._deliver_forever, name="graph-notifications", daemon=True)
        self._worker.start()

    # subscriptions ---------------------------------------------------------------------------------
    def create(self, body: dict[str, Any], application_id: str) -> dict[str, Any]:
        resource = str(body.get("resource") or "").strip("/")
        if resource not in RESOURCES:
            raise SubscriptionRefused(400, "InvalidRequest", f"resource {resource!r} is not supported here")
        change_types = [c.strip() for c in str(body.get("changeType") or "").split(",") if c.strip()]
        if not change_types or not set(change_types) <= CHANGE_TYPES:
            raise SubscriptionRefused(
                400, "InvalidRequest", "changeType must be updated and/or deleted for users and groups"
            )
        client_state = body.get("clientState")
        if client_state is not None and len(str(client_state)) > 128:
            raise SubscriptionRefused(400, "InvalidRequest", "clientState is longer than 128 characters")
        expires = self._checked_expiry(body.get("expirationDateTime"))
        urls = [body.get("notificationUrl"), body.get("lifecycleNotificationUrl")]
        for url in filter(None, urls):
            if not is_loopback(str(url)):
                raise SubscriptionRefused(
                    400, "InvalidRequest", "the simulator delivers to loopback URLs only"
                )
        if not urls[0]:
            raise SubscriptionRefused(400, "InvalidRequest", "notificationUrl is required")
        for url in filter(None, urls):
            if not self.validate(str(url)):
                raise SubscriptionRefused(
                    400,
                    "ValidationError",
                    "Subscription validation request failed. Notification endpoint must respond with "
                    "200 OK to validation request.",
                )
        subscription = {
            "id": str(uuid.uuid4()),
            "resource": resource,
            "changeType": ",".join(change_types),
            "clientState": client_state,
            "notificationUrl": urls[0],
            "lifecycleNotificationUrl": urls[1],
            "expirationDateTime": _iso(expires),
            "applicationId": application_id,
            "creatorId": application_id,
            "latestSupportedTlsVersion": body.get("latestSupportedTlsVersion") or "v1_2",
            "includeResourceData": False,
        }
        with self._lock:
            self.subscriptions[subscription["id"]] = {**subscription, "_paused": False}
        return subscription

    def validate(self, url: str) -> bool:
        """Graph's handshake: POST ?validationToken=… and expect the decoded token back, as text/plain."""
        token = (
            f"Validation: Testing client application reachability for subscription Request-Id: {uuid.uuid4()}"
        )
        separator = "&" if urllib.parse.urlsplit(url).query else "?"
        target = f"{url}{separator}{urllib.parse.urlencode({'validationToken': token})}"
        status, content_type, text = _post(target, b"", "text/plain; charset=utf-8", self.validation_timeout)
        return status == 200 and content_type.lower().startswith("text/plain") and text == token

    def _checked_expiry(self, value: Any) -> datetime:
        if not value:
            raise SubscriptionRefused(400, "InvalidRequest", "expirationDateTime is required")
        try:
            expires = _parse_time(str(value))
        except ValueError:
            raise SubscriptionRefused(
                400, "InvalidRequest", f"invalid expirationDateTime {value!r}"
            ) from None
        now = self.clock()
        if expires > now + timedelta(minutes=MAX_MINUTES):
            raise SubscriptionRefused(
                400,
                "InvalidRequest",
                f"Subscription expiration can only be {MAX_MINUTES} minutes in the future.",
            )
        if expires <= now:
            raise SubscriptionRefused(400, "InvalidRequest", "expirationDateTime is in the past")
        return max(expires, now + timedelta(minutes=MIN_MINUTES))

    def _live(self, subscription_id: str) -> dict[str, Any]:
        with self._lock:
            self._forget_expired()
            if subscription_id not in self.subscriptions:
                raise SubscriptionRefused(
                    404, "ResourceNotFound", f"The object was not found: subscription {subscription_id}"
                )
            return self.subscriptions[subscription_id]

    def _forget_expired(self) -> None:
        now = self.clock()
        for key in [k for k, s in self.subscriptions.items() if _parse_time(s["expirationDateTime"]) <= now]:
            del self.subscriptions[key]

    def get(self, subscription_id: str) -> dict[str, Any]:
        return _public(self._live(subscription_id))

    def live(self) -> list[dict[str, Any]]:
        with self._lock:
            self._forget_expired()
            return [_public(s) for s in self.subscriptions.values()]

    def renew(self, subscription_id: str, body: dict[str, Any]) -> dict[str, Any]:
        subscription = self._live(subscription_id)
        if "expirationDateTime" in body:
            subscription["expirationDateTime"] = _iso(self._checked_expiry(body["expirationDateTime"]))
            subscription["_paused"] = False  # renewing also reauthorizes
        if body.get("notificationUrl"):
            if not is_loopback(str(body["notificationUrl"])):
                raise SubscriptionRefused(
                    400, "InvalidRequest", "the simulator delivers to loopback URLs only"
                )
            subscription["notificationUrl"] = body["notificationUrl"]
        return _public(subscription)

    def reauthorize(self, subscription_id: str) -> None:
        self._live(subscription_id)["_paused"] = False

    def delete(self, subscription_id: str) -> None:
        self._live(subscription_id)
        with self._lock:
            del self.subscriptions[subscription_id]

    def expire(self, subscription_id: str) -> None:
        """Admin: as if the owner had not renewed in time."""
        self._live(subscription_id)["expirationDateTime"] = _iso(self.clock() - timedelta(seconds=1))

    def require_reauthorization(self, subscription_id: str) -> None:
        """Admin: pause the subscription and send ``reauthorizationRequired`` to its lifecycle URL."""
        subscription = self._live(subscription_id)
        subscription["_paused"] = True
        self._lifecycle(subscription, "reauthorizationRequired")

    def remove(self, subscription_id: str) -> None:
        """Admin: Graph removed the subscription (e.g. credentials revoked): ``subscriptionRemoved``."""
        subscription = self._live(subscription_id)
        with self._lock:
            del self.subscriptions[subscription_id]
        self._lifecycle(subscription, "subscriptionRemoved")

    def missed(self, subscription_id: str) -> None:
        """Admin: Graph could not deliver some notifications (they are gone) and says so: ``missed``."""
        self._lifecycle(self._live(subscription_id), "missed")

    def _lifecycle(self, subscription: dict[str, Any], event_name: str) -> None:
        if subscription["lifecycleNotificationUrl"]:
            event = {
                "subscriptionId": subscription["id"],
                "subscriptionExpirationDateTime": subscription["expirationDateTime"],
                "tenantId": self.tenant_id,
                "clientState": subscription["clientState"],
                "lifecycleEvent": event_name,
            }
            self._enqueue(subscription["lifecycleNotificationUrl"], event, lifecycle=True)

    # notifications ---------------------------------------------------------------------------------
    def notify(
        self, resource: str, object_id: str, change_type: str, resource_data: dict[str, Any] | None = None
    ) -> None:
        """One change of a user or group, fanned out to every live subscription on that collection.
        A paused subscription (reauthorization required) gets nothing: those changes are lost, as in
        Graph, and only a delta pass recovers them."""
        label = "Users" if resource == "users" else "Groups"
        odata_type = "#Microsoft.Graph.User" if resource == "users" else "#Microsoft.Graph.Group"
        with self._lock:
            self._forget_expired()
            targets = [
                s
                for s in self.subscriptions.values()
                if s["resource"] == resource
                and change_type in s["changeType"].split(",")
                and not s["_paused"]
            ]
        for subscription in targets:
            notification = {
                "id": str(uuid.uuid4()),
                "subscriptionId": subscription["id"],
                "subscriptionExpirationDateTime": subscription["expirationDateTime"],
                "clientState": subscription["clientState"],
                "changeType": change_type,
                "resource": f"{label}/{object_id}",
                "tenantId": self.tenant_id,
                "resourceData": {
                    "@odata.type": odata_type,
                    "@odata.id": f"{label}/{object_id}",
                    "id": object_id,
                    "organizationId": self.tenant_id,
                    **(resource_data or {}),
                },
            }
            self._enqueue(subscription["notificationUrl"], notification, lifecycle=False)

    def post(self, notice: Notice) -> None:
        self.notify(notice.resource, notice.object_id, notice.change_type, notice.resource_data)

    def schedule(self, due: datetime, notice: Notice, posted: Posted | None = None) -> None:
        """Post ``notice`` once the clock has passed ``due`` (see ``release_due``)."""
        with self._lock:
            heapq.heappush(self._scheduled, (due, next(self._order), notice, posted))

    def next_due(self) -> datetime | None:
        with self._lock:
            return self._scheduled[0][0] if self._scheduled else None

    def release_due(self) -> int:
        """Post every scheduled notification whose moment has passed, in the order they fell due."""
        now, released = self.clock(), 0
        with self._lock:  # two releasers must not swap the order of what they release
            while self._scheduled and self._scheduled[0][0] <= now:
                _, _, notice, posted = heapq.heappop(self._scheduled)
                self.post(notice)
                if posted is not None:
                    posted(now)
                released += 1
        return released

    def set_mode(self, mode: str) -> None:
        if mode not in ("deliver", "hold", "drop"):
            raise ValueError(f"unknown delivery mode {mode!r}")
        with self._lock:
            self.mode = mode
            held, self._held = self._held, []
            if mode == "hold":
                self._held, held = held, []
            elif mode == "drop":
                self.dropped += len(held)
                held = []
        if held:
            self._put(held)  # released together: they go out in as few POSTs as Graph would use

    def _enqueue(self, url: str, notification: dict[str, Any], *, lifecycle: bool) -> None:
        with self._lock:
            if self.mode == "drop":
                self.dropped += 1
                return
            if self.mode == "hold":
                self._held.append((url, notification, lifecycle))
                return
        self._put([(url, notification, lifecycle)])

    def _put(self, items: list[tuple[str, dict[str, Any], bool]]) -> None:
        with self._lock:
            self._in_flight += len(items)
        self._queue.put(items)

    def flush(self, timeout: float = 5.0) -> bool:
        """Post the scheduled notifications that are due, then wait until every queued notification has
        been delivered (or given up on). Those due later stay scheduled."""
        self.release_due()
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def _deliver_forever(self) -> None:
        while True:
            batch = self._queue.get()
            while len(batch) < 100:  # whatever queued meanwhile goes in the same POST
                try:
                    batch.extend(self._queue.get_nowait())
                except queue.Empty:
                    break
            by_url: dict[tuple[str, bool], list[dict[str, Any]]] = {}
            for url, notification, lifecycle in batch:
                by_url.setdefault((url, lifecycle), []).append(notification)
            for (url, lifecycle), notifications in by_url.items():
                self._deliver(url, notifications, lifecycle)
            with self._idle:
                self._in_flight -= len(batch)
                self._idle.notify_all()

    def _deliver(self, url: str, notifications: list[dict[str, Any]], lifecycle: bool) -> None:
        body = json.dumps({"value": notifications}).encode()
        status: int | None = None
        for attempt in range(self.delivery_attempts):
            if attempt:
                time.sleep(self.retry_pause * attempt)
            status, _, _ = _post(url, body, "application/json; charset=utf-8", self.delivery_timeout)
            if status is not None and 200 <= status < 300:
                break
        with self._lock:
            self.deliveries.append(Delivery(url, len(notifications), status, lifecycle))


def _public(subscription: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in subscription.items() if not k.startswith("_")}
