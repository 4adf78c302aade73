"""A local stand-in for the Service Bus queue between the webhook, the timers and the worker.

Development and test tooling, not part of the product. It keeps the semantics the design relies on, with
the numbers the deployment uses (``infra/main.bicep`` for the queue, ``host.json`` for the trigger):

- duplicate detection on MessageId over the history window (a duplicate send is accepted and dropped);
- scheduled delivery (``not_before``);
- peek-lock: a received message is invisible for the lock duration; completing or renewing with a lost
  lock fails (``MessageLockLost``); an expired lock makes the message visible again;
- a delivery count per message; a message abandoned (or whose lock expired) after ``maxDeliveryCount``
  deliveries goes to the dead-letter queue with ``MaxDeliveryCountExceeded``;
- what Service Bus refuses: a MessageId longer than 128 characters, a body over 256 KB (Standard tier).

Bodies go through the real adapter's ``encode_work``/``from_service_bus``. Time comes from ``clock`` (a
function returning seconds), so property tests can run hours of queue time in milliseconds.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from provisioning.adapters.queue.servicebus import encode_work
from provisioning.domain.work import MAX_MESSAGE_ID, WorkMessage
from simulators import REPOSITORY

MAX_BODY_BYTES = 256 * 1024  # Standard tier


class ServiceBusRefused(ValueError):
    """What the real service would refuse at send time."""


class MessageLockLost(RuntimeError):
    """The lock expired (or the message was settled) before this settlement or renewal."""


def _iso_duration(text: str) -> float:
    """``PT5M``, ``PT10M``, ``P14D``, ``PT30S`` → seconds (the forms the Bicep uses)."""
    found = re.fullmatch(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?", text)
    if not found:
        raise ValueError(f"unsupported ISO 8601 duration {text!r}")
    days, hours, minutes, seconds = (int(g or 0) for g in found.groups())
    return float(((days * 24 + hours) * 60 + minutes) * 60 + seconds)


def timespan_seconds(text: str) -> float:
    """``00:05:00`` (a .NET TimeSpan, as host.json writes it) → seconds."""
    hours, minutes, seconds = (float(part) for part in text.split(":"))
    return hours * 3600 + minutes * 60 + seconds


@dataclass(frozen=True)
class QueueSettings:
    lock_duration: float = 300.0
    max_delivery_count: int = 10
    duplicate_window: float = 600.0
    max_auto_lock_renewal: float = 300.0
    max_concurrent_calls: int = 16
    auto_complete: bool = True

    @classmethod
    def from_project(cls, root: Path = REPOSITORY) -> QueueSettings:
        """The queue's properties from ``infra/main.bicep`` and the trigger's from ``host.json``."""
        bicep = (root / "infra" / "main.bicep").read_text()
        queue = bicep[bicep.index("resource provisioningQueue") :]
        queue = queue[: queue.index("\n}")]

        def prop(name: str) -> str:
            found = re.search(rf"^\s*{name}:\s*'?([^'\s]+)'?", queue, re.MULTILINE)
            if not found:
                raise ValueError(f"infra/main.bicep: the provisioning queue has no {name}")
            return found.group(1)

        trigger = json.loads((root / "host.json").read_text())["extensions"]["serviceBus"]
        return cls(
            lock_duration=_iso_duration(prop("lockDuration")),
            max_delivery_count=int(prop("maxDeliveryCount")),
            duplicate_window=_iso_duration(prop("duplicateDetectionHistoryTimeWindow")),
            max_auto_lock_renewal=timespan_seconds(trigger.get("maxAutoLockRenewalDuration", "00:05:00")),
            max_concurrent_calls=int(trigger.get("maxConcurrentCalls", 16)),
            auto_complete=bool(trigger.get("autoCompleteMessages", True)),
        )


@dataclass
class Envelope:
    """A message as the broker holds it."""

    message_id: str
    body: bytes
    subject: str
    enqueued_at: float
    visible_at: float  # scheduled time, or when an expired lock makes it visible again
    sequence: int
    delivery_count: int = 0
    lock_token: str | None = None
    locked_until: float = 0.0
    dead_letter_reason: str | None = None


@dataclass(frozen=True)
class Locked:
    """What one receiver got: the message and the lock token it holds (stale once the lock is lost)."""

    envelope: Envelope
    token: str

    @property
    def message_id(self) -> str:
        return self.envelope.message_id

    @property
    def body(self) -> bytes:
        return self.envelope.body

    @property
    def delivery_count(self) -> int:
        return self.envelope.delivery_count


@dataclass
class Counters:
    sent: int = 0
    duplicates: int = 0
    delivered: int = 0
    completed: int = 0
    abandoned: int = 0
    lock_expired: int = 0
    dead_lettered: int = 0
    refused: int = 0


@dataclass
class LocalServiceBus:
    settings: QueueSettings = field(default_factory=QueueSettings)
    clock: Callable[[], float] = time.time
    counters: Counters = field(default_factory=Counters)

    def __post_init__(self) -> None:
        self._active: list[Envelope] = []
        self._dead: list[Envelope] = []
        self._seen: dict[str, float] = {}  # MessageId → when it was accepted
        self._sequence = itertools.count(1)
        self._lock = threading.Lock()
        self._on_send: list[Callable[[], None]] = []

    # sending -------------------------------------------------------------------------------------
    def send(self, messages: Sequence[WorkMessage]) -> int:
        """Accept a batch, all or nothing, as the SDK's send_messages does; returns how many were new."""
        encoded = [(m.message_id, encode_work(m), m.kind, m.not_before) for m in messages]
        return self.send_raw([(i, b, s, n.timestamp() if n else None) for i, b, s, n in encoded])

    def send_raw(self, messages: Sequence[tuple[str, bytes, str, float | None]]) -> int:
        """(message id, body, subject, scheduled time or None): for bodies no work message would make."""
        for message_id, body, _, _ in messages:
            self._refuse(message_id, body)
        added = 0
        with self._lock:
            now = self.clock()
            self._forget_old_ids(now)
            for message_id, body, subject, scheduled in messages:
                self.counters.sent += 1
                if message_id in self._seen:
                    self.counters.duplicates += 1
                    continue
                self._seen[message_id] = now
                visible = max(now, scheduled) if scheduled is not None else now
                self._active.append(Envelope(message_id, body, subject, now, visible, next(self._sequence)))
                added += 1
        for listener in self._on_send:
            listener()
        return added

    def _refuse(self, message_id: str, body: bytes) -> None:
        problem = None
        if not message_id:
            problem = "a MessageId is required (duplicate detection is on)"
        elif len(message_id) > MAX_MESSAGE_ID:
            problem = f"MessageId of {len(message_id)} characters; the maximum is {MAX_MESSAGE_ID}"
        elif len(body) > MAX_BODY_BYTES:
            problem = f"message of {len(body)} bytes; the maximum is {MAX_BODY_BYTES}"
        if problem:
            with self._lock:
                self.counters.refused += 1
            raise ServiceBusRefused(problem)

    def _forget_old_ids(self, now: float) -> None:
        window = self.settings.duplicate_window
        for message_id in [k for k, at in self._seen.items() if now - at >= window]:
            del self._seen[message_id]

    def on_send(self, listener: Callable[[], None]) -> None:
        """Called (from the sender's thread) after every send: lets a receiver wake up."""
        self._on_send.append(listener)

    # receiving (peek-lock) -----------------------------------------------------------------------
    def receive(self) -> Locked | None:
        """Lock and return the next visible message in order, or None."""
        with self._lock:
            now = self.clock()
            self._expire_locks(now)
            ready = [e for e in self._active if e.lock_token is None and e.visible_at <= now]
            if not ready:
                return None
            envelope = min(ready, key=lambda e: (e.visible_at, e.sequence))
            envelope.delivery_count += 1
            envelope.lock_token = f"lock-{envelope.sequence}-{envelope.delivery_count}"
            envelope.locked_until = now + self.settings.lock_duration
            self.counters.delivered += 1
            return Locked(envelope, envelope.lock_token)

    def seconds_until_due(self) -> float | None:
        """How long until a message becomes receivable (0: now); None when nothing is waiting."""
        with self._lock:
            now = self.clock()
            self._expire_locks(now)
            moments = [e.visible_at if e.lock_token is None else e.locked_until for e in self._active]
            return max(0.0, min(moments) - now) if moments else None

    def renew_lock(self, locked: Locked) -> float:
        with self._lock:
            envelope = self._held(locked)
            envelope.locked_until = self.clock() + self.settings.lock_duration
            return envelope.locked_until

    def complete(self, locked: Locked) -> None:
        with self._lock:
            envelope = self._held(locked)
            self._active.remove(envelope)
            envelope.lock_token = None
            self.counters.completed += 1

    def abandon(self, locked: Locked) -> None:
        with self._lock:
            envelope = self._held(locked)
            self.counters.abandoned += 1
            self._release(envelope, self.clock())

    def dead_letter(self, locked: Locked, reason: str) -> None:
        with self._lock:
            self._to_dead_letters(self._held(locked), reason)

    def holding(self, sequence: int, token: str) -> Locked:
        """The lock a receiver elsewhere holds, named by the message's sequence number and its lock
        token (what the out-of-process stand-in gets over the wire); ``MessageLockLost`` if it is gone."""
        with self._lock:
            for envelope in self._active:
                if envelope.sequence == sequence:
                    return Locked(envelope, token)
        raise MessageLockLost(f"message {sequence} is no longer on the queue")

    def _held(self, locked: Locked) -> Envelope:
        self._expire_locks(self.clock())
        envelope = locked.envelope
        if envelope.lock_token != locked.token or envelope not in self._active:
            raise MessageLockLost(f"the lock on {envelope.message_id} was lost")
        return envelope

    def _expire_locks(self, now: float) -> None:
        for envelope in [e for e in self._active if e.lock_token is not None and e.locked_until <= now]:
            self.counters.lock_expired += 1
            self._release(envelope, envelope.locked_until)

    def _release(self, envelope: Envelope, now: float) -> None:
        envelope.lock_token = None
        if envelope.delivery_count >= self.settings.max_delivery_count:
            self._to_dead_letters(envelope, "MaxDeliveryCountExceeded")
        else:
            envelope.visible_at = now

    def _to_dead_letters(self, envelope: Envelope, reason: str) -> None:
        self._active.remove(envelope)
        envelope.lock_token, envelope.dead_letter_reason = None, reason
        self._dead.append(envelope)
        self.counters.dead_lettered += 1

    # looking -------------------------------------------------------------------------------------
    def active(self) -> list[Envelope]:
        with self._lock:
            return list(self._active)

    def dead_letters(self) -> list[Envelope]:
        with self._lock:
            return list(self._dead)

    def describe(self) -> dict[str, Any]:
        with self._lock:
            now = self.clock()
            return {
                "active": len(self._active),
                "due": sum(1 for e in self._active if e.lock_token is not None or e.visible_at <= now),
                "dead_lettered": len(self._dead),
                "counters": vars(self.counters).copy(),
                "settings": vars(self.settings).copy(),
            }


class QueueBroker(Protocol):
    """What the local Functions host and the queue port need of a broker: the stand-in in this process
    (``LocalServiceBus``) or in a process of its own (``simulators.servicebus_process``)."""

    @property
    def settings(self) -> QueueSettings: ...

    @property
    def counters(self) -> Counters: ...

    def send(self, messages: Sequence[WorkMessage]) -> int: ...

    def receive(self) -> Locked | None: ...

    def seconds_until_due(self) -> float | None: ...

    def renew_lock(self, locked: Locked) -> float: ...

    def complete(self, locked: Locked) -> None: ...

    def abandon(self, locked: Locked) -> None: ...

    def dead_letter(self, locked: Locked, reason: str) -> None: ...

    def on_send(self, listener: Callable[[], None]) -> None: ...

    def active(self) -> list[Envelope]: ...

    def dead_letters(self) -> list[Envelope]: ...

    def describe(self) -> dict[str, Any]: ...


class LocalQueue:
    """The product's ``WorkQueue`` port over the stand-in: what ``runtime.queue()`` is on the local host."""

    def __init__(self, bus: QueueBroker) -> None:
        self.bus = bus

    async def send(self, messages: Sequence[WorkMessage]) -> None:
        if messages:
            self.bus.send(messages)

    async def aclose(self) -> None:
        return None
