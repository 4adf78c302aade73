"""State store contract, membership index: forward (per group) and reverse (per member) kept in step."""

from __future__ import annotations

import pytest

from provisioning.domain.directory import MembershipChange
from provisioning.domain.groups import MembershipIndex
from provisioning.ports import StateStore

pytestmark = pytest.mark.anyio


def add(group: str, member: str, *, is_group: bool = False) -> MembershipChange:
    return MembershipChange(group, member, member_is_group=is_group)


def remove(group: str, member: str, *, is_group: bool = False) -> MembershipChange:
    return MembershipChange(group, member, member_is_group=is_group, removed=True)


async def test_an_empty_index(store: StateStore) -> None:
    assert await store.load_memberships() == MembershipIndex()
    assert await store.memberships_of("alice") == frozenset()


async def test_members_and_subgroups_are_kept_apart(store: StateStore) -> None:
    await store.apply_memberships(
        [add("finance", "alice"), add("finance", "emea", is_group=True), add("emea", "bob"), add("hr", "bob")]
    )

    index = await store.load_memberships()

    assert index.members == {"finance": {"alice"}, "emea": {"bob"}, "hr": {"bob"}}
    assert index.subgroups == {"finance": {"emea"}}
    assert index.transitive_groups_of("bob") == {"emea", "finance", "hr"}
    assert await store.memberships_of("bob") == {"emea", "hr"}
    assert await store.memberships_of("emea") == {"finance"}  # a group is a member too


async def test_load_only_the_groups_asked_for(store: StateStore) -> None:
    await store.apply_memberships([add("finance", "alice"), add("hr", "bob"), add("it", "carol")])

    index = await store.load_memberships(["finance", "it", "unknown"])

    assert index.members == {"finance": {"alice"}, "it": {"carol"}}
    assert (await store.load_memberships([])).members == {}


async def test_removals_keep_both_directions_in_step(store: StateStore) -> None:
    await store.apply_memberships([add("finance", "alice"), add("hr", "alice"), add("hr", "bob")])

    await store.apply_memberships([remove("hr", "alice"), remove("hr", "nobody")])  # unknown: harmless

    assert (await store.load_memberships()).members == {"finance": {"alice"}, "hr": {"bob"}}
    assert await store.memberships_of("alice") == {"finance"}
    assert await store.memberships_of("nobody") == frozenset()


async def test_changes_apply_in_order(store: StateStore) -> None:
    await store.apply_memberships(
        [add("g1", "alice"), remove("g1", "alice"), remove("g2", "bob"), add("g2", "bob")]
    )
    assert (await store.load_memberships()).members == {"g2": {"bob"}}
    assert await store.memberships_of("alice") == frozenset()


async def test_a_reset_group_forgets_what_was_known_before_the_changes(store: StateStore) -> None:
    await store.apply_memberships([add("finance", "alice"), add("finance", "bob"), add("hr", "alice")])

    await store.apply_memberships([add("finance", "carol"), add("finance", "bob")], reset_groups=["finance"])

    assert (await store.load_memberships()).members == {"finance": {"bob", "carol"}, "hr": {"alice"}}
    assert await store.memberships_of("alice") == {"hr"}
    assert await store.memberships_of("bob") == {"finance"}


async def test_a_removed_group_is_forgotten_as_a_group_and_as_a_member(store: StateStore) -> None:
    await store.apply_memberships(
        [add("finance", "emea", is_group=True), add("emea", "bob"), add("finance", "alice")]
    )

    await store.apply_memberships([], removed_groups=["emea"])

    index = await store.load_memberships()
    assert index.members == {"finance": {"alice"}}
    assert index.subgroups == {}
    assert await store.memberships_of("bob") == frozenset()
    assert await store.memberships_of("emea") == frozenset()


async def test_more_changes_than_one_transaction_holds(store: StateStore) -> None:
    members = [f"user-{i:03d}" for i in range(250)]
    groups = [f"group-{i:03d}" for i in range(120)]
    await store.apply_memberships(
        [add("big", member) for member in members] + [add(group, "everywhere") for group in groups]
    )

    index = await store.load_memberships()
    assert index.members["big"] == set(members)
    assert await store.memberships_of("everywhere") == set(groups)
    assert await store.memberships_of("user-042") == {"big"}

    leaving = members[:150]
    strangers = [f"stranger-{i}" for i in range(30)]  # never members: their removals are no-ops
    await store.apply_memberships(
        [remove("big", member) for member in leaving + strangers]
        + [remove(g, "everywhere") for g in groups[:101]]
    )

    index = await store.load_memberships(["big"])
    assert index.members["big"] == set(members[150:])
    assert await store.memberships_of("user-042") == frozenset()
    assert await store.memberships_of("user-200") == {"big"}
    assert await store.memberships_of("everywhere") == set(groups[101:])


async def test_resetting_a_large_group(store: StateStore) -> None:
    await store.apply_memberships([add("big", f"user-{i:03d}") for i in range(230)])

    await store.apply_memberships([add("big", "user-007")], reset_groups=["big"])

    assert (await store.load_memberships()).members == {"big": {"user-007"}}
    assert await store.memberships_of("user-100") == frozenset()
    assert await store.memberships_of("user-007") == {"big"}


async def test_ids_with_characters_table_storage_refuses_in_keys(store: StateStore) -> None:
    odd_group, odd_member = "sales/emea#1", "odd?member\\x"
    await store.apply_memberships([add(odd_group, odd_member), add(odd_group, "plain")])

    assert (await store.load_memberships([odd_group])).members == {odd_group: {odd_member, "plain"}}
    assert await store.memberships_of(odd_member) == {odd_group}
    await store.apply_memberships([remove(odd_group, odd_member)])
    assert await store.memberships_of(odd_member) == frozenset()
