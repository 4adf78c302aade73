"""Cursor leases with a heartbeat: one writer per delta cursor, and a dead writer's lease lapses fast.

A pass claims both cursors for ``LEASE_SECONDS`` (a minute) and renews them every
``HEARTBEAT_SECONDS`` while it is alive. A holder killed with ``kill -9`` (or a Functions instance that
vanished) stops renewing, so its lease lapses within a minute and the next pass takes over. Every renewal
and every save is conditional on the version the holder last wrote (fencing): a holder whose lease was
taken over gets ``ConcurrencyConflict`` there, marks the lease lost and, through ``fence()``, stops before
its next Druva or state write. A holder that merely stalled (a paused process, a starved event loop)
fences itself too, as soon as its own view of the lease is past its end minus a safety margin: it never
writes on a lease another pass may already hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from types import TracebackType

from provisioning.domain.state import CursorState
from provisioning.errors import ConcurrencyConflict, CursorBusy, LeaseLost
from provisioning.ports import Clock, StateStore

log = logging.getLogger("provisioning")

LEASE_SECONDS = 60.0
HEARTBEAT_SECONDS = LEASE_SECONDS / 4
# A holder stops writing this long before its lease ends by its own clock: room for the clock skew
# between instances and for one write already on the wire.
FENCE_MARGIN_SECONDS = LEASE_SECONDS / 6


class CursorLeases:
    """The leases of the named cursors held by one pass, renewed in the background while it runs.

    Use as ``async with CursorLeases(...) as leases``: entering claims every cursor (or raises
    ``CursorBusy``), leaving stops the heartbeat and gives back what is still ours.
    """

    def __init__(
        self,
        state: StateStore,
        clock: Clock,
        owner: str,
        names: tuple[str, ...],
        *,
        lease_seconds: float | None = None,
        heartbeat_seconds: float | None = None,
    ) -> None:
        self._state, self._clock, self._owner, self._names = state, clock, owner, names
        # Read at call time, not import time, so a test can shorten the whole cycle in one place.
        self._ttl = lease_seconds or LEASE_SECONDS
        self._heartbeat = heartbeat_seconds or min(HEARTBEAT_SECONDS, self._ttl / 4)
        self._margin = timedelta(seconds=min(FENCE_MARGIN_SECONDS, self._ttl / 6))
        self._claims: dict[str, CursorState] = {}
        self._writing = asyncio.Lock()  # a renewal and a save of the same record must not cross
        self._lost: str | None = None
        self._beating: asyncio.Task[None] | None = None

    @property
    def claims(self) -> Mapping[str, CursorState]:
        return self._claims

    async def __aenter__(self) -> CursorLeases:
        now = self._clock.now()
        try:
            for name in self._names:
                self._claims[name] = await self._state.claim_cursor(name, self._owner, now, self._ttl)
        except BaseException as error:
            await self._release()
            if isinstance(error, ConcurrencyConflict):
                # Another pass claimed the same cursor a moment before us (including the very first
                # claim of a fresh cursor): that is "another pass is running", not a failure.
                raise CursorBusy(f"another pass claimed the cursors first ({error})") from error
            raise
        self._beating = asyncio.create_task(self._beat(), name=f"lease heartbeat {self._owner}")
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._beating is not None:
            # Stop the heartbeat between two renewals, never during one: a renewal cancelled on the wire
            # may have been written while its new version is never recorded here, and the release,
            # conditional on the version we hold, would then silently leave the lease to lapse.
            async with self._writing:
                self._beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beating
        await self._release()

    def fence(self) -> None:
        """Raise ``LeaseLost`` unless this holder may still write."""
        if self._lost is not None:
            raise LeaseLost(self._lost)
        deadline = min((c.lease_until for c in self._claims.values() if c.lease_until), default=None)
        now = self._clock.now()
        if deadline is None or now >= deadline - self._margin:
            late = f", {(now - deadline).total_seconds():.0f} s ago" if deadline and now > deadline else ""
            self._lost = (
                f"this pass's own lease on the cursors ran out (at {deadline:%Y-%m-%d %H:%M:%S} UTC{late}) "
                "before its heartbeat renewed it: the clock jumped or the process stalled. What it wrote "
                "so far stands; the next pass carries on from the same cursors"
                if deadline
                else "this pass holds no lease on the cursors"
            )
            raise LeaseLost(self._lost)

    async def save(self, name: str, value: str | None, *, release: bool = True) -> CursorState:
        """Move a cursor on (conditional on the lease version); ``release=False`` keeps holding it."""
        self.fence()
        async with self._writing:
            try:
                saved = await self._state.save_cursor(self._claims[name], value, release=release)
            except ConcurrencyConflict as error:
                self._lost = f"cursor {name!r} was taken over by another pass ({error})"
                raise LeaseLost(self._lost) from error
            self._claims[name] = saved
        return saved

    async def renew(self, now: datetime | None = None) -> None:
        """One heartbeat: extend every lease still ours. Losing one marks the whole set lost."""
        now = now or self._clock.now()
        async with self._writing:
            for name, claim in list(self._claims.items()):
                if claim.lease_owner is None or self._lost:
                    continue
                try:
                    self._claims[name] = await self._state.renew_cursor(claim, now, self._ttl)
                except ConcurrencyConflict as error:
                    self._lost = f"cursor {name!r} was taken over by another pass ({error})"
                    log.warning("lease lost", extra={"owner": self._owner, "cursor": name})

    async def _beat(self) -> None:
        while self._lost is None:
            await asyncio.sleep(self._heartbeat)
            try:
                await self.renew()
            except Exception as error:  # a passing store failure: the next beat tries again
                log.warning("lease heartbeat failed: %s", error, extra={"owner": self._owner})

    async def _release(self) -> None:
        for claim in self._claims.values():
            if claim.lease_owner is not None:
                # Conditional on the version we hold: a no-op if another pass took the lease over.
                with contextlib.suppress(Exception):
                    await self._state.release_cursor(claim)
