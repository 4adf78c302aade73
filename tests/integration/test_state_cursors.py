"""State store contract, delta cursors: one writer each, through a lease and optimistic concurrency."""

from __future__ import annotations

from datetime import timedelta

import pytest

from provisioning.adapters.state.encoding import MAX_TEXT_CHARS
from provisioning.domain.state import CursorState
from provisioning.errors import ConcurrencyConflict, CursorBusy, InvalidRequestError
from provisioning.ports import StateStore
from tests.builders import NOW
from tests.integration.conftest import Backend, race

pytestmark = pytest.mark.anyio

LEASE = 60.0


async def test_an_unknown_cursor_reads_from_the_start(store: StateStore) -> None:
    assert await store.get_cursor("users") == CursorState(name="users")


async def test_claim_save_and_release(store: StateStore, backend: Backend) -> None:
    claim = await store.claim_cursor("users", "pass-1", NOW, LEASE)
    assert claim.lease_owner == "pass-1"
    assert claim.lease_until == NOW + timedelta(seconds=LEASE)
    assert claim.version is not None
    assert await store.get_cursor("users") == claim

    backend.clock.moment = NOW + timedelta(seconds=5)
    saved = await store.save_cursor(claim, "https://graph/delta?token=1")

    assert saved.value == "https://graph/delta?token=1"
    assert saved.updated_at == NOW + timedelta(seconds=5)
    assert (saved.lease_owner, saved.lease_until) == (None, None)
    assert saved.version not in (None, claim.version)
    assert await store.get_cursor("users") == saved
    assert (await store.claim_cursor("users", "pass-2", NOW, LEASE)).value == saved.value


async def test_saving_without_release_keeps_the_lease(store: StateStore) -> None:
    claim = await store.claim_cursor("users", "pass-1", NOW, LEASE)
    kept = await store.save_cursor(claim, "page-2", release=False)

    assert kept.lease_owner == "pass-1"
    with pytest.raises(CursorBusy):
        await store.claim_cursor("users", "pass-2", NOW, LEASE)
    done = await store.save_cursor(kept, "page-3")
    assert (await store.get_cursor("users")) == done
    assert done.lease_owner is None


async def test_a_held_lease_makes_other_owners_wait(store: StateStore) -> None:
    claim = await store.claim_cursor("users", "pass-1", NOW, LEASE)

    with pytest.raises(CursorBusy, match="pass-1"):
        await store.claim_cursor("users", "pass-2", NOW + timedelta(seconds=59), LEASE)
    again = await store.claim_cursor("users", "pass-1", NOW + timedelta(seconds=30), LEASE)

    assert again.lease_until == NOW + timedelta(seconds=30 + LEASE)  # its own lease is extended
    with pytest.raises(ConcurrencyConflict):
        await store.save_cursor(claim, "stale")  # the first claim's version is gone


async def test_an_expired_lease_is_taken_over_and_the_old_holder_cannot_save(store: StateStore) -> None:
    stalled = await store.claim_cursor("users", "pass-1", NOW, LEASE)

    taken = await store.claim_cursor("users", "pass-2", NOW + timedelta(seconds=LEASE + 1), LEASE)

    assert taken.lease_owner == "pass-2"
    with pytest.raises(ConcurrencyConflict):
        await store.save_cursor(stalled, "from-the-stalled-pass")
    await store.release_cursor(stalled)  # a lease no longer ours: releasing it does nothing
    assert await store.get_cursor("users") == taken
    saved = await store.save_cursor(taken, "from-the-live-pass")
    assert (await store.get_cursor("users")).value == saved.value == "from-the-live-pass"


async def test_release_lets_another_owner_claim_at_once(store: StateStore) -> None:
    claim = await store.claim_cursor("groups", "pass-1", NOW, LEASE)
    await store.release_cursor(claim)

    released = await store.get_cursor("groups")
    assert (released.lease_owner, released.lease_until) == (None, None)
    assert (await store.claim_cursor("groups", "pass-2", NOW, LEASE)).lease_owner == "pass-2"


async def test_cursors_are_independent_and_names_may_hold_any_character(store: StateStore) -> None:
    odd = "groups/delta?#\\%\x01"
    users = await store.claim_cursor("users", "pass-1", NOW, LEASE)
    groups = await store.claim_cursor(odd, "pass-2", NOW, LEASE)

    await store.save_cursor(users, "u")
    await store.save_cursor(groups, "g")

    assert (await store.get_cursor("users")).value == "u"
    assert (await store.get_cursor(odd)).value == "g"
    assert (await store.get_cursor(odd)).name == odd


async def test_a_long_cursor_value_round_trips_and_can_shrink(store: StateStore) -> None:
    long_value = "".join(f"{i:07d}é" for i in range(25_000))  # 200,000 characters, non-ASCII too
    claim = await store.claim_cursor("groups", "pass-1", NOW, LEASE)

    saved = await store.save_cursor(claim, long_value, release=False)
    assert (await store.get_cursor("groups")).value == long_value

    await store.save_cursor(saved, "short")
    assert (await store.get_cursor("groups")).value == "short"


async def test_an_absurd_cursor_value_is_refused_and_nothing_changes(store: StateStore) -> None:
    claim = await store.claim_cursor("users", "pass-1", NOW, LEASE)

    with pytest.raises(InvalidRequestError, match="at most"):
        await store.save_cursor(claim, "x" * (MAX_TEXT_CHARS + 1))

    assert await store.get_cursor("users") == claim


async def test_a_cursor_reset_to_the_start(store: StateStore) -> None:
    claim = await store.claim_cursor("users", "pass-1", NOW, LEASE)
    saved = await store.save_cursor(claim, "token", release=False)
    await store.save_cursor(saved, None)  # cursor expired: the next pass reads everything
    assert (await store.get_cursor("users")).value is None


def test_two_writers_saving_one_claim_exactly_one_wins(backend: Backend) -> None:
    async def claim(store: StateStore) -> CursorState:
        return await store.claim_cursor("users", "pass-1", NOW, LEASE)

    [(_, held)] = race(backend, claim, writers=1)
    assert isinstance(held, CursorState)

    async def save(store: StateStore) -> object:
        return await store.save_cursor(held, "next")

    outcomes = race(backend, save)

    assert sorted(kind for kind, _ in outcomes) == ["lost", "won"]
    [lost] = [result for kind, result in outcomes if kind == "lost"]
    assert isinstance(lost, ConcurrencyConflict)


def test_two_passes_claiming_one_cursor_exactly_one_gets_it(backend: Backend) -> None:
    owners = ["pass-a", "pass-b"]

    async def claim(store: StateStore) -> object:
        return await store.claim_cursor("users", owners.pop(), NOW, LEASE)

    outcomes = race(backend, claim)

    assert sorted(kind for kind, _ in outcomes) == ["lost", "won"]
    [won] = [result for kind, result in outcomes if kind == "won"]
    [lost] = [result for kind, result in outcomes if kind == "lost"]
    # Whoever read after the winner wrote sees the lease; whoever read before loses the write.
    assert isinstance(lost, CursorBusy | ConcurrencyConflict)

    async def current(store: StateStore) -> object:
        return await store.get_cursor("users")

    [(_, stored)] = race(backend, current, writers=1)
    assert stored == won
