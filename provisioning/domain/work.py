"""Work items carried by the queue between the webhook, the timer and the worker.

Each kind of work is a small typed value, parsed once where it leaves the queue (``parse_work``): a body
that is not exactly one of these is refused there, so Service Bus dead-letters it instead of the worker
guessing. Adding a kind means one dataclass here, one line in ``KINDS`` and one handler in the worker's
table.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

MAX_MESSAGE_ID = 128  # Service Bus refuses a longer MessageId
# Hints collapse per window of this many seconds (service/notifications.py); follow-up looks are
# anchored to the same windows (domain/followups.py).
HINT_WINDOW_SECONDS = 2
LIFECYCLE_EVENTS = frozenset({"reauthorizationRequired", "subscriptionRemoved", "missed"})


class MalformedWork(ValueError):
    """A message body that is not a work message: refused at the queue edge, so it dead-letters."""


@dataclass(frozen=True)
class DeltaPass:
    """Read what changed since the cursors (a change notification, the timer, a follow-up)."""

    kind: ClassVar[str] = "delta"
    reason: str = ""
    received_at: str = ""  # ISO 8601: when the notification that asked for it arrived (for latency figures)


@dataclass(frozen=True)
class Reconcile:
    """Read everyone (nightly, or when deltas cannot be trusted)."""

    kind: ClassVar[str] = "reconcile"
    reason: str = ""


@dataclass(frozen=True)
class LifecycleEvent:
    """Graph said something about one of our subscriptions."""

    kind: ClassVar[str] = "lifecycle"
    subscription_id: str
    event: str

    def __post_init__(self) -> None:
        if self.event not in LIFECYCLE_EVENTS:
            raise MalformedWork(f"unknown lifecycle event {self.event!r}")
        if not self.subscription_id:
            raise MalformedWork("a lifecycle event needs a subscription id")


@dataclass(frozen=True)
class ContinuePass:
    """Carry on the long pass the cursors record as in progress, with its next slice."""

    kind: ClassVar[str] = "continue"
    pass_id: str

    def __post_init__(self) -> None:
        if not self.pass_id:
            raise MalformedWork("a continuation needs the id of its pass")


MAX_WATCHED = 100  # objects per Watch message (Graph posts at most about that many notifications at once)
# An object id; a group's may name one member ("group:member"), whose membership change is followed.
_OBJECT_ID = re.compile(r"[0-9A-Za-z-]{1,64}(:[0-9A-Za-z-]{1,64})?")


@dataclass(frozen=True)
class Watch:
    """Follow the objects these change notifications named until a delta read returns them (a
    notification may arrive before its change is readable). Ids are space-separated; a group's may be
    ``group:member``, a membership change of that member."""

    kind: ClassVar[str] = "watch"
    received_at: str  # ISO 8601: when the webhook received the notifications
    users: str = ""
    groups: str = ""

    def __post_init__(self) -> None:
        try:
            received = datetime.fromisoformat(self.received_at)
        except ValueError:
            raise MalformedWork(f"watch work: received_at {self.received_at!r:.80} is not a time") from None
        if received.tzinfo is None:
            raise MalformedWork("watch work: received_at needs a time zone")
        ids = [*self.user_ids, *self.group_ids]
        if not ids or len(ids) > MAX_WATCHED or not all(_OBJECT_ID.fullmatch(i) for i in ids):
            raise MalformedWork(f"watch work needs 1..{MAX_WATCHED} object ids")

    @property
    def user_ids(self) -> tuple[str, ...]:
        return tuple(self.users.split())

    @property
    def group_ids(self) -> tuple[str, ...]:
        return tuple(self.groups.split())

    @property
    def received(self) -> datetime:
        return datetime.fromisoformat(self.received_at)


Work = DeltaPass | Reconcile | LifecycleEvent | ContinuePass | Watch
KINDS: dict[str, type[Work]] = {
    kind.kind: kind for kind in (DeltaPass, Reconcile, LifecycleEvent, ContinuePass, Watch)
}
# The wire names of each kind's fields (the body is JSON written by earlier versions too: camelCase).
_WIRE = {"subscription_id": "subscriptionId", "pass_id": "pass"}


@dataclass(frozen=True)
class WorkMessage:
    """One unit of work on the queue. ``message_id`` is deterministic so the queue can drop duplicates;
    ``not_before`` delays delivery (a scheduled message)."""

    work: Work
    message_id: str = ""
    not_before: datetime | None = None

    def __post_init__(self) -> None:
        if len(self.message_id) > MAX_MESSAGE_ID:
            raise ValueError(f"a message id of {len(self.message_id)} characters (at most {MAX_MESSAGE_ID})")

    @property
    def kind(self) -> str:
        return self.work.kind

    @property
    def body(self) -> dict[str, str]:
        return encode_body(self.work)


def encode_body(work: Work) -> dict[str, str]:
    """The body on the wire; an optional field left at its default is not written."""
    return {
        _WIRE.get(f.name, f.name): getattr(work, f.name)
        for f in fields(work)
        if f.default is MISSING or getattr(work, f.name) != f.default
    }


def parse_work(kind: Any, body: Any) -> Work:
    """The typed work for a queue message's ``kind`` and ``body``; MalformedWork for anything else."""
    if not isinstance(kind, str) or kind not in KINDS:
        raise MalformedWork(f"unknown work kind {kind!r}")
    if not isinstance(body, Mapping):
        raise MalformedWork(f"{kind} work needs an object body")
    cls = KINDS[kind]
    values = {}
    for item in fields(cls):
        name = _WIRE.get(item.name, item.name)
        value = body.get(name, item.default)
        if value is MISSING:
            raise MalformedWork(f"{kind} work: {name} is missing")
        if not isinstance(value, str):
            raise MalformedWork(f"{kind} work: {name} must be text, not {value!r:.80}")
        values[item.name] = value
    return cls(**values)


def bounded_id(*parts: str) -> str:
    """A MessageId from parts, at most 128 printable ASCII characters whatever the parts hold: anything
    longer or stranger (Graph's ids are not ours to trust) is replaced by a hash of the whole."""
    text = "-".join(parts)
    if len(text) <= MAX_MESSAGE_ID and text.isascii() and text.isprintable():
        return text
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    prefix = "".join(c for c in text[:MAX_MESSAGE_ID] if c.isascii() and c.isprintable())
    return f"{prefix[: MAX_MESSAGE_ID - len(digest) - 1]}-{digest}"


# The messages, and their MessageIds ---------------------------------------------------------------------
# Service Bus keeps one message per MessageId within its duplicate-detection window: each scheme below is
# chosen for what it must collapse and what it must never collapse.
FOLLOW_UP_SECONDS = HINT_WINDOW_SECONDS  # a busy cursor is asked again at the next window's end
RETRY_SECONDS = 60
LOOK = "look"  # a pass that follows notified objects: it reads the groups delta only for group promises


# Hints collapse per window (HINT_WINDOW_SECONDS): the first one of a window asks for a pass now (low
# latency), and every one asks for a pass scheduled at the window's end, which Service Bus keeps once
# (duplicate detection on MessageId). That scheduled pass starts after every notification of its window
# was received, so a notification arriving while the first pass reads the delta is never lost; a burst
# costs at most two passes per window, however many notifications it carries.
def _window(moment: datetime) -> int:
    return int(moment.timestamp()) // HINT_WINDOW_SECONDS


def _window_end(window: int) -> datetime:
    return datetime.fromtimestamp((window + 1) * HINT_WINDOW_SECONDS, UTC)


def delta_hint(now: datetime, reason: str, *, notified: bool = False) -> WorkMessage:
    """A pass now, with the same MessageId for every hint in the same window so the queue keeps one.
    ``notified``: a change notification asked for it, so its arrival time feeds the latency figure."""
    received = now.isoformat() if notified else ""
    return WorkMessage(DeltaPass(reason, received), message_id=f"delta-{_window(now)}")


def delta_hints(now: datetime, reason: str) -> list[WorkMessage]:
    """A pass now (the window's first hint wins) and one at the window's end that covers the rest."""
    window = _window(now)
    trailing = WorkMessage(
        DeltaPass(reason, now.isoformat()), message_id=f"delta-{window}-end", not_before=_window_end(window)
    )
    return [delta_hint(now, reason, notified=True), trailing]


LOOK = "look"  # a pass that follows notified objects: it reads the groups delta only for group promises


def look(due: datetime) -> WorkMessage:
    """A follow-up look at ``due``, once whoever asks for it: looks fall on a lattice of moments
    (``followups.next_look``), so passes that ask at different times ask for the same moment. The id is
    that moment to the millisecond, not its window: a look asked for later in the window of the look now
    running must not be taken for it."""
    return WorkMessage(DeltaPass(LOOK), message_id=f"look-{round(due.timestamp() * 1000)}", not_before=due)


def follow_up(now: datetime, delay_seconds: float, *, slot_seconds: int | None = None) -> WorkMessage:
    """The pass after the one in progress: one per window, delivered at that window's end, so every
    hint that asked for it (all sent before that moment) is covered.

    ``slot_seconds`` (a retry after a failure): the pass goes at the first slot boundary at least
    ``delay_seconds`` away, one message per slot. While a service is down every pass fails; without
    slots each failed hint would start a retry chain of its own (a 4-hour outage: dozens of chains, a
    retry every few seconds); with them the passes that failed within one slot share one retry."""
    due = now + timedelta(seconds=delay_seconds)
    if slot_seconds is None or slot_seconds <= HINT_WINDOW_SECONDS:
        window = _window(due)
        return WorkMessage(
            DeltaPass("follow-up"), message_id=f"delta-followup-{window}", not_before=_window_end(window)
        )
    slot = -(-int(due.timestamp()) // slot_seconds)  # the first boundary at or after ``due``
    return WorkMessage(
        DeltaPass("follow-up"),
        message_id=f"delta-retry-{slot_seconds}-{slot}",
        not_before=datetime.fromtimestamp(slot * slot_seconds, UTC),
    )


def watches(changed: dict[str, set[str]], now: datetime) -> list[WorkMessage]:
    """The objects these notifications named, to follow until a delta read returns them (a change may
    become readable after its notification). One message per ``MAX_WATCHED`` objects; its id is the
    window and the objects, so the same notifications posted twice in a window are enqueued once."""
    named = [("users", i) for i in sorted(changed["users"])] + [
        ("groups", i) for i in sorted(changed["groups"])
    ]
    messages = []
    for start in range(0, len(named), MAX_WATCHED):
        chunk = named[start : start + MAX_WATCHED]
        users = " ".join(i for kind, i in chunk if kind == "users")
        groups = " ".join(i for kind, i in chunk if kind == "groups")
        digest = hashlib.sha256(f"{users}|{groups}".encode()).hexdigest()[:32]
        messages.append(
            WorkMessage(Watch(now.isoformat(), users, groups), message_id=f"watch-{_window(now)}-{digest}")
        )
    return messages


def lifecycle_work(subscription: str, event: str, expires: str) -> WorkMessage:
    """Graph's lifecycle notification as work. The id is the subscription, the event and the expiry Graph
    stated: Graph's redeliveries of one event collapse, the next expiry's event does not."""
    return WorkMessage(
        LifecycleEvent(subscription, event), message_id=bounded_id("lifecycle", subscription, event, expires)
    )


def continuation(pass_id: str, slice_number: int) -> WorkMessage:
    """The next slice of a pass. The id names the pass and the slice: a slice redelivered after it ran
    cannot enqueue its continuation twice."""
    return WorkMessage(ContinuePass(pass_id), message_id=bounded_id("continue", pass_id, str(slice_number)))


def nightly_reconciliation_work(day: str) -> WorkMessage:
    """The nightly full reconciliation. The id is the day: a timer that fires twice (a restart, two
    instances) asks once."""
    return WorkMessage(Reconcile("nightly"), message_id=f"reconcile-{day}")


def rescheduled(message: WorkMessage, now: datetime, delay: float) -> WorkMessage:
    """The same work again after ``delay``: a delta pass becomes the window's one follow-up (a busy
    cursor), or the retry slot's one pass (a failure: every pass that failed meanwhile waits on it)."""
    if isinstance(message.work, DeltaPass):
        # Slots no longer than the delay asked for: a short Retry-After is not stretched to a minute.
        slot = int(min(delay, RETRY_SECONDS)) if delay > FOLLOW_UP_SECONDS else None
        return follow_up(now, delay, slot_seconds=slot)
    due = now + timedelta(seconds=delay)
    retry_id = bounded_id(message.message_id, "retry", str(int(due.timestamp())))
    return WorkMessage(message.work, message_id=retry_id, not_before=due)
