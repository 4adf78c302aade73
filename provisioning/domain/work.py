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
from datetime import datetime
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
