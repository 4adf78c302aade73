"""Cursor leases with a heartbeat, against both state stores: renewal, expiry, fencing, races.

The store's clock is a fake moved by hand; the heartbeat itself runs on the event loop, so the tests
give it a short real interval.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from provisioning.domain.state import CursorState
from provisioning.errors import ConcurrencyConflict, CursorBusy, LeaseLost
from provisioning.ports import StateStore
from provisioning.service.lease import CursorLeases
from tests.builders import NOW
from tests.integration.conftest import Backend, race

pytestmark = pytest.mark.anyio

TTL = 60.0
NAMES = ("users", "groups")


def leases(store: StateStore, backend: Backend, owner: str, heartbeat: float = 3600.0) -> CursorLeases:
    return CursorLeases(store, backend.clock, owner, NAMES, lease_seconds=TTL, heartbeat_seconds=heartbeat)


async def until(condition: object, seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.02)):
        if callable(condition) and await condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


async def test_renewing_extends_the_lease_and_keeps_the_value(store: StateStore, backend: Backend) -> None:
    claim = await store.claim_cursor("users", "pass-1", NOW, TTL)
    kept = await store.save_cursor(claim, "token", release=False)

    renewed = await store.renew_cursor(kept, NOW + timedelta(seconds=45), TTL)

    assert renewed.lease_until == NOW + timedelta(seconds=45 + TTL)
    assert (renewed.value, renewed.lease_owner) == ("token", "pass-1")
    assert renewed.version != kept.version
    assert await store.get_cursor("users") == renewed
    with pytest.raises(CursorBusy):
        await store.claim_cursor("users", "pass-2", NOW + timedelta(seconds=TTL + 1), TTL)


async def test_a_lease_taken_over_cannot_be_renewed(store: StateStore) -> None:
    stalled = await store.claim_cursor("users", "pass-1", NOW, TTL)
    taken = await store.claim_cursor("users", "pass-2", NOW + timedelta(seconds=TTL + 1), TTL)

    with pytest.raises(ConcurrencyConflict):
        await store.renew_cursor(stalled, NOW + timedelta(seconds=TTL + 2), TTL)
    assert await store.get_cursor("users") == taken


async def test_the_heartbeat_keeps_a_live_holder_s_lease(store: StateStore, backend: Backend) -> None:
    async with leases(store, backend, "pass-1", heartbeat=0.02) as held:
        backend.clock.moment = NOW + timedelta(seconds=50)

        async def renewed() -> bool:
            until_ = (await store.get_cursor("groups")).lease_until
            return until_ is not None and until_ >= NOW + timedelta(seconds=50 + TTL)

        await until(renewed)
        backend.clock.moment = NOW + timedelta(seconds=TTL + 10)  # past the first lease's end
        with pytest.raises(CursorBusy):
            async with leases(await backend.open(), backend, "pass-2"):
                pass
        held.fence()  # still ours
    assert (await store.get_cursor("users")).lease_owner is None  # given back on the way out


async def test_a_dead_holder_s_lease_lapses_within_the_ttl(store: StateStore, backend: Backend) -> None:
    for name in NAMES:  # a holder that claimed, then died without a heartbeat or a release
        await store.claim_cursor(name, "dead-pass", NOW, TTL)

    backend.clock.moment = NOW + timedelta(seconds=TTL - 1)
    with pytest.raises(CursorBusy, match="dead-pass"):
        async with leases(store, backend, "pass-2"):
            pass
    backend.clock.moment = NOW + timedelta(seconds=TTL)
    async with leases(store, backend, "pass-2") as taken:
        assert {c.lease_owner for c in taken.claims.values()} == {"pass-2"}


async def test_a_holder_that_lost_its_lease_is_fenced_before_its_next_write(
    store: StateStore, backend: Backend
) -> None:
    async with leases(store, backend, "stalled") as stalled:
        stalled.fence()
        backend.clock.moment = NOW + timedelta(seconds=TTL + 1)  # it stalled past its lease
        other = await backend.open()
        async with leases(other, backend, "live") as live:
            await live.save("users", "from-the-live-pass", release=False)

            await stalled.renew()  # its heartbeat finds the lease taken over
            with pytest.raises(LeaseLost, match="taken over"):
                stalled.fence()
            with pytest.raises(LeaseLost):
                await stalled.save("users", "from-the-stalled-pass")
            assert (await store.get_cursor("users")).value == "from-the-live-pass"
            assert (await store.get_cursor("users")).lease_owner == "live"
        await other.aclose()


async def test_a_holder_fences_itself_when_its_own_clock_says_the_lease_is_ending(
    store: StateStore, backend: Backend
) -> None:
    async with leases(store, backend, "slow") as slow:
        backend.clock.moment = NOW + timedelta(seconds=TTL * 0.9)  # no heartbeat got through
        with pytest.raises(LeaseLost, match="ran out"):
            slow.fence()


def test_two_passes_taking_fresh_cursors_exactly_one_runs_the_other_is_told_busy(backend: Backend) -> None:
    owners = ["pass-a", "pass-b"]

    async def take(store: StateStore) -> object:
        held = CursorLeases(store, backend.clock, owners.pop(), NAMES, lease_seconds=TTL)
        await held.__aenter__()  # and keep it: the winner is still running when the loser tries
        return dict(held.claims)

    outcomes = race(backend, take)

    assert sorted(kind for kind, _ in outcomes) == ["lost", "won"]
    [lost] = [result for kind, result in outcomes if kind == "lost"]
    assert type(lost) is CursorBusy  # never a bare ConcurrencyConflict: "another sync is running"
    [won] = [result for kind, result in outcomes if kind == "won"]
    assert isinstance(won, dict) and all(isinstance(c, CursorState) for c in won.values())


class _SlowAnswers:
    """The store, except that a renewal's answer takes a while to come back after it was written."""

    def __init__(self, store: StateStore) -> None:
        self._store = store
        self.renewal_on_the_wire = asyncio.Event()

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)

    async def renew_cursor(self, claim: CursorState, now: object, ttl: float) -> CursorState:
        renewed = await self._store.renew_cursor(claim, now, ttl)  # type: ignore[arg-type]
        self.renewal_on_the_wire.set()
        await asyncio.sleep(0.2)
        return renewed


async def test_a_pass_ending_during_a_renewal_still_gives_its_lease_back(
    store: StateStore, backend: Backend
) -> None:
    slow = _SlowAnswers(store)
    held = CursorLeases(slow, backend.clock, "pass-1", NAMES, lease_seconds=TTL, heartbeat_seconds=0.01)  # type: ignore[arg-type]
    async with held:
        await asyncio.wait_for(slow.renewal_on_the_wire.wait(), 5)
    # Had the heartbeat been cancelled with the renewal's answer still on the wire, the release would
    # have used the version before it and silently left both leases to lapse a minute later.
    assert {(await store.get_cursor(name)).lease_owner for name in NAMES} == {None}
