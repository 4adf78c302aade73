"""The state rules, written once over the few storage primitives each backend implements.

As a persistence layer with one base and thin backends: the lease, cursor, link and membership rules
(what may be written, what a conflict is, which record a write becomes) live here; SQLite and Table
Storage implement only how a record is written conditionally (a version column, an ETag) and how rows
are read. Query paths stay in each backend, where partition scans and SQL differ.
"""

from __future__ import annotations

import contextlib
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Collection, Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from provisioning.adapters.state.encoding import (
    check_link,
    check_run,
    check_text,
    failures_text,
    time_text,
    to_json,
    utc,
)
from provisioning.domain.directory import MembershipChange
from provisioning.domain.followups import Hold, Promise, PromiseRecord, Sighting, noticed, sighted
from provisioning.domain.groups import MembershipPlan, plan_memberships
from provisioning.domain.links import AccountLink
from provisioning.domain.state import CursorState, RunSummary
from provisioning.errors import ConcurrencyConflict, CursorBusy, TransientError
from provisioning.ports import Clock

PROMISE_ATTEMPTS = 5  # conflicting writes of a followed change before giving up on this call

# Every accepted lease write, at DEBUG (off unless a tool turns it on): the lease history the local
# benchmarks read to show that no two passes ever held a cursor at the same time.
lease_history = logging.getLogger("provisioning.lease.history")

# Cursor leases: the rule is the contract, so both stores compute it here and differ only in how they
# make the write conditional (a version column, an ETag).


def claimed(current: CursorState, owner: str, now: datetime, lease_seconds: float) -> CursorState:
    if current.leased_to_other(owner, now):
        until = time_text(current.lease_until)
        raise CursorBusy(f"cursor {current.name!r} is leased to {current.lease_owner} until {until}")
    return replace(current, lease_owner=owner, lease_until=utc(now) + timedelta(seconds=lease_seconds))


def renewed(claim: CursorState, now: datetime, lease_seconds: float) -> CursorState:
    """The heartbeat: the same holder, the same value, a lease running ``lease_seconds`` from now."""
    if claim.lease_owner is None:
        raise CursorBusy(f"cursor {claim.name!r} is not leased: there is nothing to renew")
    return replace(claim, lease_until=utc(now) + timedelta(seconds=lease_seconds))


def advanced(claim: CursorState, value: str | None, now: datetime, *, release: bool) -> CursorState:
    check_text(f"the value of cursor {claim.name!r}", value)
    kept = not release
    return replace(
        claim,
        value=value,
        updated_at=utc(now),
        lease_owner=claim.lease_owner if kept else None,
        lease_until=claim.lease_until if kept else None,
    )


def released(claim: CursorState) -> CursorState:
    return replace(claim, lease_owner=None, lease_until=None)


class StateRules(ABC):
    """The rule half of a ``StateStore``; a backend adds the storage primitives below."""

    _clock: Clock

    # storage primitives

    @abstractmethod
    async def get_cursor(self, name: str) -> CursorState: ...

    @abstractmethod
    async def _write_cursor(self, state: CursorState, expected: str | None) -> CursorState:
        """Write ``state`` if the stored cursor is still at version ``expected`` (None: must not exist
        yet); raise ``ConcurrencyConflict`` otherwise. Returns ``state`` newly versioned."""

    @abstractmethod
    async def _write_link(self, link: AccountLink) -> AccountLink:
        """``put_link``'s conditional write, on a link already checked against the size limits."""

    @abstractmethod
    async def _write_memberships(self, plan: MembershipPlan) -> None: ...

    @abstractmethod
    async def _write_run(self, summary: RunSummary, counts: str, failures: str | None) -> None:
        """Record ``summary`` with its counts and failures as stored (checked against the limits)."""

    @abstractmethod
    async def _promise_records(self, object_ids: Collection[str] | None = None) -> dict[str, PromiseRecord]:
        """The records of these objects (None: every followed object, a few hundred at most in a busy
        minute), by object id."""

    @abstractmethod
    async def _write_promise_records(
        self, writes: Sequence[PromiseRecord], forget: Sequence[PromiseRecord]
    ) -> None:
        """Write ``writes`` and delete ``forget``, each only if the stored record is still at the
        record's version (None: must not exist yet); raise ``ConcurrencyConflict`` otherwise."""

    @abstractmethod
    async def _write_holds(self, holds: Sequence[Hold]) -> None:
        """Write (replace) these holds, already checked against the size limits."""

    # rules

    async def claim_cursor(self, name: str, owner: str, now: datetime, lease_seconds: float) -> CursorState:
        current = await self.get_cursor(name)
        return _told(
            "claim", await self._write_cursor(claimed(current, owner, now, lease_seconds), current.version)
        )

    async def renew_cursor(self, claim: CursorState, now: datetime, lease_seconds: float) -> CursorState:
        return _told("renew", await self._write_cursor(renewed(claim, now, lease_seconds), claim.version))

    async def save_cursor(
        self, claim: CursorState, value: str | None, *, release: bool = True
    ) -> CursorState:
        saved = advanced(claim, value, self._clock.now(), release=release)
        return _told("save", await self._write_cursor(saved, claim.version), claim.lease_owner)

    async def release_cursor(self, claim: CursorState) -> None:
        try:
            _told("release", await self._write_cursor(released(claim), claim.version), claim.lease_owner)
        except ConcurrencyConflict:
            return  # taken over since: the lease is no longer ours to release

    async def put_link(self, link: AccountLink) -> AccountLink:
        check_link(link)
        return await self._write_link(link)

    async def apply_memberships(
        self,
        changes: Sequence[MembershipChange],
        reset_groups: Collection[str] = (),
        removed_groups: Collection[str] = (),
    ) -> None:
        await self._write_memberships(plan_memberships(changes, reset_groups, removed_groups))

    async def put_holds(self, holds: Sequence[Hold]) -> None:
        for hold in holds:
            check_text(f"the hold of account {hold.entra_id}", hold.detail, hold.advice, hold.principal)
        if holds:
            await self._write_holds(holds)

    async def promises(self) -> list[Promise]:
        return _pending(await self._promise_records())

    # A Watch (notice) and a pass (sighted) may change the same record at once: each reads, decides and
    # writes conditionally, and on a conflict reads again (the other writer's change is then seen).

    async def notice(self, promises: Sequence[Promise]) -> int:
        ids = {p.object_id for p in promises}
        for _ in range(PROMISE_ATTEMPTS):
            writes = noticed(await self._promise_records(ids), promises)
            try:
                await self._write_promise_records(writes, ())
            except ConcurrencyConflict:
                continue
            return len(writes)
        raise TransientError("followed changes kept changing under this notice: try it again later")

    async def sighted(self, sighting: Sighting, *, mark: bool) -> list[Promise]:
        for _ in range(PROMISE_ATTEMPTS):
            known = await self._promise_records()
            writes, forget = sighted(known, sighting, self._clock.now(), mark=mark)
            try:
                await self._write_promise_records(writes, forget)
            except ConcurrencyConflict:
                continue
            gone = {r.object_id for r in forget}
            after = {**known, **{w.object_id: w for w in writes}}
            return _pending({i: r for i, r in after.items() if i not in gone})
        raise TransientError("followed changes kept changing under this pass: they are read again later")

    async def forget_promises(self, promises: Sequence[Promise]) -> None:
        """Forget these promises, each only if no later notification renewed it meanwhile."""
        if not promises:
            return
        known = await self._promise_records({p.object_id for p in promises})
        stale = [
            known[p.object_id]
            for p in promises
            if p.object_id in known and known[p.object_id].notified_at == p.notified_at
        ]
        with contextlib.suppress(ConcurrencyConflict):  # renewed since: the next pass judges it
            await self._write_promise_records((), stale)

    async def record_run(self, summary: RunSummary) -> None:
        counts, failures = to_json(summary.counts), failures_text(summary.failures)
        check_run(summary, counts, failures)
        await self._write_run(summary, counts, failures)


def _pending(records: dict[str, PromiseRecord]) -> list[Promise]:
    promises = (record.promise for record in records.values())
    return sorted((p for p in promises if p is not None), key=lambda p: p.notified_at)


def _told(action: str, written: CursorState, holder: str | None = None) -> CursorState:
    """Log one accepted lease write: who holds the cursor after it, and until when (None: released)."""
    if lease_history.isEnabledFor(logging.DEBUG):
        until = written.lease_until.timestamp() if written.lease_until else None
        lease_history.debug(
            "%s %s",
            action,
            written.name,
            extra={
                "lease": {
                    "at": time.time(),
                    "action": action,
                    "cursor": written.name,
                    "holder": written.lease_owner or holder,
                    "until": until,
                    "version": written.version,
                }
            },
        )
    return written
