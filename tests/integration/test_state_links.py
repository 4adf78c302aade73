"""State store contract, account links: conditional writes, the owner index, listing and counting."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from provisioning.domain.links import AccountLink, LinkStatus
from provisioning.errors import ConcurrencyConflict, InvalidRequestError
from provisioning.ports import StateStore
from tests.builders import NOW, link
from tests.integration.conftest import Backend, race

pytestmark = pytest.mark.anyio

GUID = "5c1f3f7e-2b7d-4a8e-9a51-0f6a1d2b9c11"


def unversioned(saved: AccountLink) -> AccountLink:
    return replace(saved, version=None)


async def test_a_new_link_round_trips_with_a_version(store: StateStore) -> None:
    wanted = replace(link("alice"), entra_id=GUID, decided_at=NOW + timedelta(microseconds=123_456))
    assert await store.get_link(GUID) is None

    saved = await store.put_link(wanted)

    assert saved.version is not None
    assert unversioned(saved) == wanted
    assert await store.get_link(GUID) == saved


async def test_optional_fields_and_large_druva_ids_round_trip(store: StateStore) -> None:
    wanted = AccountLink(
        entra_id="id-bob",
        druva_user_id=2**40 + 7,  # beyond 32 bits: stored as Int64 in Table Storage
        email="bob@contoso.com",
        mapping=None,
        profile=None,
        storage=None,
        quota=None,
        status=LinkStatus.PRESERVED,
        decided_at=NOW,
    )
    saved = await store.put_link(wanted)
    assert await store.get_link("id-bob") == saved
    assert await store.owner_of(2**40 + 7) == "id-bob"


async def test_a_new_link_for_an_account_already_linked_conflicts(store: StateStore) -> None:
    await store.put_link(link("alice", user_id=1))
    with pytest.raises(ConcurrencyConflict):
        await store.put_link(link("alice", user_id=1))


async def test_updates_need_the_current_version(store: StateStore) -> None:
    first = await store.put_link(link("alice", user_id=1))
    second = await store.put_link(replace(first, profile="Finance"))
    assert second.version not in (None, first.version)

    with pytest.raises(ConcurrencyConflict):
        await store.put_link(replace(first, profile="Stale"))  # first's version is stale now
    with pytest.raises(ConcurrencyConflict):
        await store.put_link(replace(link("carol"), version=second.version))  # no such link yet
    assert await store.get_link("id-alice") == second


async def test_a_version_issued_by_another_store_is_a_conflict(store: StateStore) -> None:
    saved = await store.put_link(link("alice"))
    with pytest.raises(ConcurrencyConflict):
        await store.put_link(replace(saved, version="not-a-version-of-this-store"))


async def test_owner_of_follows_the_link(store: StateStore) -> None:
    saved = await store.put_link(link("alice", user_id=1))
    assert await store.owner_of(1) == "id-alice"
    assert await store.owner_of(2) is None

    moved = await store.put_link(replace(saved, druva_user_id=2))  # Druva user re-created: new id

    assert await store.owner_of(1) is None
    assert await store.owner_of(2) == "id-alice"
    await store.put_link(replace(moved, status=LinkStatus.PRESERVED))  # same user: owner unchanged
    assert await store.owner_of(2) == "id-alice"


async def test_one_druva_user_is_linked_to_one_account(store: StateStore) -> None:
    alice = await store.put_link(link("alice", user_id=1))
    bob = await store.put_link(link("bob", user_id=2))

    with pytest.raises(ConcurrencyConflict, match="already linked"):
        await store.put_link(link("carol", user_id=1))
    with pytest.raises(ConcurrencyConflict):
        await store.put_link(replace(bob, druva_user_id=1))

    assert await store.get_link("id-carol") is None
    assert await store.get_link("id-bob") == bob
    assert await store.owner_of(1) == "id-alice"
    await store.put_link(replace(alice, druva_user_id=3))  # alice lets go of user 1 ...
    carol = await store.put_link(link("carol", user_id=1))  # ... so carol may take it
    assert await store.owner_of(1) == carol.entra_id


async def test_get_links_returns_the_known_ones(store: StateStore) -> None:
    names = [f"user{i:02d}" for i in range(30)]  # more than one query's worth of ids in Table Storage
    saved = {s.entra_id: s for s in [await store.put_link(link(n, user_id=i)) for i, n in enumerate(names)]}

    found = await store.get_links([f"id-{n}" for n in names] + ["id-nobody"])

    assert found == saved
    assert await store.get_links([]) == {}


async def test_links_lists_every_link_and_count_managed_counts_active_ones(store: StateStore) -> None:
    for i in range(12):
        status = LinkStatus.PRESERVED if i % 3 == 0 else LinkStatus.ACTIVE
        await store.put_link(link(f"user{i:02d}", user_id=100 + i, status=status))

    listed = [item async for item in store.links()]

    assert sorted(item.entra_id for item in listed) == [f"id-user{i:02d}" for i in range(12)]
    assert all(item.version for item in listed)
    assert await store.count_managed() == 8


async def test_an_empty_store_counts_nothing(store: StateStore) -> None:
    assert [item async for item in store.links()] == []
    assert await store.count_managed() == 0


async def test_a_value_too_long_for_table_storage_is_refused(store: StateStore) -> None:
    with pytest.raises(InvalidRequestError, match="at most 32,768"):
        await store.put_link(replace(link("alice"), email="a" * 40_000 + "@contoso.com"))
    assert await store.get_link("id-alice") is None


def test_two_writers_of_one_link_version_one_wins(backend: Backend) -> None:
    async def seed(store: StateStore) -> AccountLink:
        return await store.put_link(link("alice", user_id=1))

    [(_, seeded)] = race(backend, seed, writers=1)
    assert isinstance(seeded, AccountLink)

    async def update(store: StateStore) -> object:
        return await store.put_link(replace(seeded, profile="Finance"))

    outcomes = race(backend, update)

    assert sorted(kind for kind, _ in outcomes) == ["lost", "won"]
    assert all(isinstance(result, ConcurrencyConflict) for kind, result in outcomes if kind == "lost")


def test_two_accounts_racing_for_one_druva_user_one_wins(backend: Backend) -> None:
    chosen = ["alice", "bob"]  # each writer takes one (list.pop is atomic)

    async def adopt(store: StateStore) -> object:
        return await store.put_link(link(chosen.pop(), user_id=7))

    outcomes = race(backend, adopt)

    assert sorted(kind for kind, _ in outcomes) == ["lost", "won"]
    [winner] = [result for kind, result in outcomes if kind == "won"]
    assert isinstance(winner, AccountLink)

    async def owner(store: StateStore) -> object:
        return await store.owner_of(7)

    [(_, found)] = race(backend, owner, writers=1)
    assert found == winner.entra_id
