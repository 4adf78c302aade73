"""Following changes until they are seen, and holding accounts the product must not act on yet.

A change notification is a promise that something changed; delta is the truth, and Graph may make the
change readable seconds or minutes after notifying (its delta documentation's "processing delays").
So a notified object is followed with looks (delta passes) whose spacing keeps lateness proportionate:
a change readable D seconds after its notification is looked for within max(``MIN_STEP``,
``STEP_RATIO`` × D) of becoming readable, which is what the target max(10 s, D/4) leaves once a pass's
own time is taken off. Looks fall on a lattice of the epoch (``next_look``), so every look serves every
pending promise and a burst shares its looks. A promise is kept when a delta read that began at or after
the notification returns the object; after ``HORIZON`` the 15-minute safety-net pass takes over, and the
object is read directly once (a restore a ``$select`` users delta never shows).

An account the product must leave as it is for now gets a hold: its kind could not be read (a 403 or
404 on its mailbox, a read that missed it right after a change), it is new in Entra and still settling
(its properties and group memberships arrive over minutes: created now it would keep a passing quota
for good), or Druva refused a write only a human can unblock. A hold says why, what to do, and when the
account is read again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from provisioning.domain.accounts import storable

MIN_STEP = timedelta(seconds=8)  # looks while a change is young; the target's 10 s less a pass's time
STEP_RATIO = 0.2  # then a fifth of its age: the target's quarter, less the same margin
HORIZON = timedelta(minutes=11)  # past the 10 minutes the targets cover; the timer's net then
# How long a read is remembered as having seen an object: a copy of a notification the read answered may
# arrive this late (Graph posts them up to a minute late, and again on a failed delivery).
SEEN_MARKER_LIFE = timedelta(minutes=5)
SEEN_MARKERS_PER_PASS = 1000  # a busier pass is not a quiet tenant: promises it missed cost only looks

UNREADABLE_FIRST_RECHECK = timedelta(seconds=30)  # replication: seconds to a couple of minutes
UNREADABLE_LONGEST_RECHECK = timedelta(hours=1)  # a mailbox being provisioned: minutes to hours
UNREADABLE_GIVE_UP = timedelta(days=1)  # the nightly reconciliation reads everyone anyway
REFUSED_RECHECK = timedelta(days=1)  # a refusal only a human can lift is tried again once a day
TENANT_WIDE = "*"  # the account id of a hold on every write (Druva refused the credential itself)


class HoldReason(StrEnum):
    UNREADABLE = "unreadable"
    SETTLING = "settling"
    REFUSED = "refused"
    MISMATCHED = "mismatched"  # linked to a Druva user whose e-mail is not the account's: a human decides


@dataclass(frozen=True)
class HoldRequest:
    """What the planner asks for: leave the account as it is, and why. ``until``: when it may change
    (the end of a settle window); None lets the back-off decide."""

    reason: HoldReason
    detail: str
    until: datetime | None = None
    advice: str | None = None


@dataclass(frozen=True)
class Hold:
    """An account left as it is, as the state remembers it between passes."""

    entra_id: str
    reason: HoldReason
    detail: str
    since: datetime
    recheck_at: datetime
    principal: str = ""
    attempts: int = 1
    advice: str | None = None
    kind: str | None = None  # the kind of a Druva refusal
    signature: str | None = None  # the refused writes: another plan for the account is tried at once

    def due(self, now: datetime) -> bool:
        return now >= self.recheck_at

    def given_up(self, now: datetime) -> bool:
        """An unreadable account held for a day is let go: the nightly reconciliation reads everyone."""
        return self.reason is HoldReason.UNREADABLE and now - self.since >= UNREADABLE_GIVE_UP

    def describe(self) -> str:
        advice = f"; {self.advice}" if self.advice else ""
        return f"{self.reason.value} since {self.since:%Y-%m-%d %H:%M} UTC: {self.detail}{advice}"


def hold_for(entra_id: str, principal: str, request: HoldRequest, before: Hold | None, now: datetime) -> Hold:
    """The hold to record for ``request``: the same one again keeps its start and backs off further."""
    again = before is not None and before.reason is request.reason
    attempts = before.attempts + 1 if again and before is not None else 1
    since = before.since if again and before is not None else now
    if request.until is not None:
        recheck = request.until
    elif request.reason in (HoldReason.REFUSED, HoldReason.MISMATCHED):
        recheck = now + REFUSED_RECHECK
    else:
        recheck = now + min(UNREADABLE_FIRST_RECHECK * 2 ** (attempts - 1), UNREADABLE_LONGEST_RECHECK)
    # What a hold says comes from Graph and Druva (an e-mail, a message): kept as a store can hold it.
    advice = storable(request.advice) if request.advice else None
    detail, principal = storable(request.detail), storable(principal)
    return Hold(entra_id, request.reason, detail, since, recheck, principal, attempts, advice)


def refused(
    entra_id: str, principal: str, *, detail: str, advice: str, kind: str, signature: str, now: datetime
) -> Hold:
    return Hold(
        entra_id,
        HoldReason.REFUSED,
        storable(detail),
        now,
        now + REFUSED_RECHECK,
        storable(principal),
        advice=storable(advice),
        kind=kind,
        signature=signature,
    )


def still_refused(hold: Hold | None, signature: str, now: datetime) -> bool:
    """Whether a refusal still stands for a plan with this ``signature``: the same writes, within the
    back-off. A different plan (the account or the mappings changed) is tried at once."""
    return (
        hold is not None
        and hold.reason is HoldReason.REFUSED
        and hold.signature == signature
        and not hold.due(now)
    )


def signature_of(parts: Iterable[str]) -> str:
    """A short fingerprint of what was refused (the actions' descriptions, the credential)."""
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


# promises ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Promise:
    """A notification said ``object_id`` (a user or a group) changed; received at ``notified_at``."""

    object_id: str
    resource: str  # "users" | "groups"
    notified_at: datetime


@dataclass(frozen=True)
class Sighting:
    """A delta read that began at ``read_at`` returned these objects."""

    read_at: datetime
    ids: frozenset[str]

    def keeps(self, promise: Promise) -> bool:
        return promise.object_id in self.ids and promise.notified_at <= self.read_at


def look_step(age: timedelta) -> timedelta:
    """How far apart looks for a promise of this age may be: the largest power-of-two multiple of
    ``MIN_STEP`` within max(``MIN_STEP``, ``STEP_RATIO`` × age)."""
    allowed, step = max(MIN_STEP, age * STEP_RATIO), MIN_STEP
    while step * 2 <= allowed:
        step *= 2
    return step


def next_look(promises: Sequence[Promise], now: datetime) -> datetime | None:
    """The first look after ``now`` that a pending promise (not past the horizon) wants. Looks fall on a
    lattice of the epoch, every ``look_step`` of the promise's age: promises of similar age, however
    their notifications were spread, want the same moments, and passes that ask at different times ask
    for the same moments too, which the queue keeps once. So a burst shares its looks, and looks never
    run as parallel chains."""
    wanted = [
        (_lattice_after(now, look_step(now - p.notified_at)), p.notified_at + HORIZON) for p in promises
    ]
    return min((at for at, horizon in wanted if at < horizon), default=None)


def _lattice_after(now: datetime, step: timedelta) -> datetime:
    seconds = step.total_seconds()
    return datetime.fromtimestamp((now.timestamp() // seconds + 1) * seconds, now.tzinfo)


def past_horizon(promise: Promise, now: datetime) -> bool:
    return now - promise.notified_at >= HORIZON


def renewed(promise: Promise, notified_at: datetime) -> Promise:
    """A later notification of the same object: the promise now covers the later change too."""
    return replace(promise, notified_at=max(promise.notified_at, notified_at))


@dataclass(frozen=True)
class PromiseRecord:
    """What the state keeps per followed object: the latest notification still waiting to be seen (None
    once kept), and when a delta read last returned the object (None: not recently)."""

    object_id: str
    resource: str
    notified_at: datetime | None = None
    seen_at: datetime | None = None
    version: str | None = None  # the store's: a write of this record expects it unchanged (None: absent)

    @property
    def promise(self) -> Promise | None:
        if self.notified_at is None:
            return None
        return Promise(self.object_id, self.resource, self.notified_at)


def noticed(known: dict[str, PromiseRecord], promises: Iterable[Promise]) -> list[PromiseRecord]:
    """The records to write for new notifications. One that a read already answered (the object was
    returned by a read that began at or after the notification arrived: its pass ran before the
    notification's own follow-up was recorded) is not followed again; a later one extends the promise."""
    written: dict[str, PromiseRecord] = {}
    for promise in promises:
        record = written.get(promise.object_id) or known.get(promise.object_id)
        if record is not None and record.seen_at is not None and promise.notified_at <= record.seen_at:
            continue
        notified = promise.notified_at
        if record is not None and record.notified_at is not None:
            notified = max(notified, record.notified_at)
        seen = record.seen_at if record is not None else None
        version = record.version if record is not None else None
        written[promise.object_id] = PromiseRecord(
            promise.object_id, promise.resource, notified, seen, version
        )
    return list(written.values())


def sighted(
    known: dict[str, PromiseRecord], sighting: Sighting, now: datetime, *, mark: bool
) -> tuple[list[PromiseRecord], list[PromiseRecord]]:
    """The records to write and those to forget after a pass saw ``sighting.ids``: kept promises are
    cleared (remembered as seen when ``mark``, so a copy of their notification that arrives later is not
    followed again), markers of objects without a promise are written when ``mark``, stale markers
    forgotten. Each carries the version it was read at: the store writes it only if still unchanged."""
    writes: list[PromiseRecord] = []
    forget: list[PromiseRecord] = []
    for object_id, record in known.items():
        seen_now = object_id in sighting.ids
        promise = record.promise
        kept = promise is not None and seen_now and sighting.keeps(promise)
        notified = None if kept else record.notified_at
        seen = sighting.read_at if seen_now and mark else record.seen_at
        if seen is not None and now - seen >= SEEN_MARKER_LIFE:
            seen = None
        if notified is None and seen is None:
            forget.append(record)
        elif (notified, seen) != (record.notified_at, record.seen_at):
            writes.append(PromiseRecord(object_id, record.resource, notified, seen, record.version))
    if mark:
        new = sorted(sighting.ids - known.keys())[:SEEN_MARKERS_PER_PASS]
        writes.extend(PromiseRecord(i, "", None, sighting.read_at) for i in new)
    return writes, forget
