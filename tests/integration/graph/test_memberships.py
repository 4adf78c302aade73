"""Direct membership of mapped groups through groups delta: full reads, increments, resets, expiry."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from provisioning.adapters.graph import GraphDirectory
from provisioning.adapters.graph.client import connect
from provisioning.adapters.graph.directory import GraphDirectory as Directory
from provisioning.domain.directory import MembershipPage
from provisioning.errors import CursorExpired
from provisioning.settings import Settings
from simulators.graph import GraphSimulator
from simulators.tenants import SECURITY, Tenant, make_group, make_user

from .conftest import FAST_RETRIES

pytestmark = pytest.mark.anyio
MISSING_GROUP = "00000000-0000-4000-8000-00000000dead"


class Index:
    """Applies pages the way the state store's contract says: forget reset and removed groups, then
    apply the changes in order."""

    def __init__(self) -> None:
        self.members: dict[str, set[tuple[str, bool]]] = {}

    def apply(self, pages: list[MembershipPage]) -> str:
        for page in pages:
            for group_id in page.reset_groups | page.removed_groups:
                self.members.pop(group_id, None)
            for change in page.changes:
                kept = {m for m in self.members.get(change.group_id, set()) if m[0] != change.member_id}
                if not change.removed:
                    kept.add((change.member_id, change.member_is_group))
                self.members[change.group_id] = kept
        assert pages[-1].cursor is not None
        assert all(page.cursor is None for page in pages[:-1])
        return pages[-1].cursor


def truth(simulator: GraphSimulator, *group_ids: str) -> dict[str, set[tuple[str, bool]]]:
    store = simulator.store
    return {g: {(m, store.is_group(m)) for m in store.members[g]} for g in group_ids if g in store.groups}


async def read(directory: GraphDirectory, cursor: str | None, groups: list[str]) -> list[MembershipPage]:
    return [page async for page in directory.read_memberships(cursor, groups)]


@pytest.fixture
async def two_per_round(simulator: GraphSimulator) -> AsyncIterator[Directory]:
    settings = Settings(GRAPH_API_URL=simulator.graph_url, GRAPH_ACCESS_TOKEN="test-token")
    opened = Directory(connect(settings, FAST_RETRIES), filter_limit=2)
    yield opened
    await opened.aclose()


async def test_a_first_read_resets_the_groups_and_sends_direct_members_only(
    directory: GraphDirectory, simulator: GraphSimulator, tenant: Tenant
) -> None:
    finance, sales = tenant.group_id("US Finance"), tenant.group_id("US Sales")
    index = Index()

    pages = await read(directory, None, [finance, sales])
    index.apply(pages)

    assert pages[0].reset_groups == {finance, sales}
    assert all(not page.reset_groups for page in pages[1:])
    assert index.members == truth(simulator, finance, sales)
    auditors = tenant.group_id("US Finance Auditors")
    assert (auditors, True) in index.members[finance]  # a nested group is a group-typed member
    assert (tenant.user_id("ivan"), False) not in index.members[finance]  # transitive: the caller's job
    assert all(m[0] != tenant.user_id("olivia") for m in index.members[finance])  # owner, not member


async def test_a_large_group_split_over_pages_merges(
    directory: GraphDirectory, simulator: GraphSimulator, tenant: Tenant
) -> None:
    sales = tenant.group_id("US Sales")
    for n in range(10):
        simulator.add_user(make_user(f"rep{n}", department="Sales"))
        simulator.add_member(sales, f"rep{n}@contoso.com")
    index = Index()

    pages = await read(directory, None, [sales])
    index.apply(pages)

    assert len(index.members[sales]) == 13
    assert index.members == truth(simulator, sales)
    assert sum(1 for page in pages if page.changes) == 5  # 3 members per page
    assert simulator.counts["groups delta"] == 5


async def test_incremental_reads_carry_adds_removals_and_group_members(
    directory: GraphDirectory, simulator: GraphSimulator, tenant: Tenant
) -> None:
    finance, hr = tenant.group_id("US Finance"), tenant.group_id("US HR")
    index = Index()
    cursor = index.apply(await read(directory, None, [finance, hr]))
    simulator.add_member(finance, "carol@contoso.com")
    simulator.remove_member(finance, "bob@contoso.com")
    simulator.add_member(hr, tenant.group_id("US Sales"))
    simulator.delete_user("heidi@contoso.com")  # a soft delete takes the user out of their groups
    simulator.add_owner(hr, "frank@contoso.com")  # owners are not members: no change
    simulator.reset_counts()

    pages = await read(directory, cursor, [finance, hr])
    index.apply(pages)

    assert not any(page.reset_groups for page in pages)
    changes = {(c.group_id, c.member_id, c.member_is_group, c.removed) for p in pages for c in p.changes}
    assert changes == {
        (finance, tenant.user_id("carol"), False, False),
        (finance, tenant.user_id("bob"), False, True),
        (hr, tenant.group_id("US Sales"), True, False),
        (hr, tenant.user_id("heidi"), False, True),
    }
    assert index.members == truth(simulator, finance, hr)
    assert simulator.counts == {"groups delta": 2}


async def test_deleted_and_unknown_groups_are_reported_removed(
    directory: GraphDirectory, simulator: GraphSimulator, tenant: Tenant
) -> None:
    finance, hr = tenant.group_id("US Finance"), tenant.group_id("US HR")
    first = await read(directory, None, [finance, hr, MISSING_GROUP])
    assert MISSING_GROUP in frozenset().union(*(p.removed_groups for p in first))
    simulator.delete_group(hr)

    pages = await read(directory, first[-1].cursor, [finance, hr, MISSING_GROUP])

    assert frozenset().union(*(p.removed_groups for p in pages)) == {hr}


async def test_a_group_newly_mapped_is_read_in_full_and_the_others_incrementally(
    directory: GraphDirectory, simulator: GraphSimulator, tenant: Tenant
) -> None:
    finance, sales = tenant.group_id("US Finance"), tenant.group_id("US Sales")
    index = Index()
    cursor = index.apply(await read(directory, None, [finance]))
    simulator.add_member(finance, "frank@contoso.com")
    simulator.reset_counts()

    pages = await read(directory, cursor, [finance, sales])
    index.apply(pages)

    assert frozenset().union(*(p.reset_groups for p in pages)) == {sales}
    finance_changes = [c for p in pages for c in p.changes if c.group_id == finance]
    assert [(c.member_id, c.removed) for c in finance_changes] == [(tenant.user_id("frank"), False)]
    assert index.members == truth(simulator, finance, sales)


async def test_a_group_no_longer_mapped_leaves_the_cursor_and_comes_back_in_full(
    directory: GraphDirectory, simulator: GraphSimulator, tenant: Tenant
) -> None:
    finance, sales = tenant.group_id("US Finance"), tenant.group_id("US Sales")
    cursor = Index().apply(await read(directory, None, [finance, sales]))
    simulator.add_member(sales, "frank@contoso.com")

    only_finance = await read(directory, cursor, [finance])
    assert all(c.group_id == finance for p in only_finance for c in p.changes)
    simulator.add_member(finance, "erin@contoso.com")

    both = await read(directory, only_finance[-1].cursor, [finance, sales])
    index = Index()
    index.members[finance] = truth(simulator, finance)[finance]
    index.apply(both)
    assert frozenset().union(*(p.reset_groups for p in both)) == {sales}
    assert index.members == truth(simulator, finance, sales)


async def test_more_groups_than_one_filter_takes_are_read_in_several_rounds(
    two_per_round: Directory, simulator: GraphSimulator, tenant: Tenant
) -> None:
    groups = [tenant.group_id(name) for name in ("US Finance", "US Sales", "US HR")]
    index = Index()

    cursor = index.apply(await read(two_per_round, None, groups))

    assert index.members == truth(simulator, *groups)
    simulator.add_member(groups[2], "alice@contoso.com")
    simulator.add_group(make_group("Late", SECURITY, members=[tenant.user_id("bob")]))
    simulator.reset_counts()
    index.apply(await read(two_per_round, cursor, groups))
    assert index.members == truth(simulator, *groups)
    assert simulator.counts == {"groups delta": 2}  # one incremental round per deltaLink


async def test_no_groups_means_no_requests_and_an_empty_cursor(
    directory: GraphDirectory, simulator: GraphSimulator
) -> None:
    pages = await read(directory, None, [])

    assert len(pages) == 1 and pages[0].changes == () and pages[0].cursor
    assert simulator.counts == {}


async def test_an_expired_membership_cursor_asks_for_a_full_read(
    directory: GraphDirectory, simulator: GraphSimulator, tenant: Tenant
) -> None:
    finance = tenant.group_id("US Finance")
    cursor = Index().apply(await read(directory, None, [finance]))
    simulator.expire_cursors()

    with pytest.raises(CursorExpired):
        await read(directory, cursor, [finance])
    with pytest.raises(CursorExpired, match="unreadable"):
        await read(directory, "garbage", [finance])


async def test_new_members_of_a_new_user_arrive_with_the_group(
    directory: GraphDirectory, simulator: GraphSimulator, tenant: Tenant
) -> None:
    finance = tenant.group_id("US Finance")
    index = Index()
    cursor = index.apply(await read(directory, None, [finance]))
    newcomer = simulator.add_user(make_user("nina", department="Finance"))
    simulator.add_member(finance, newcomer)

    index.apply(await read(directory, cursor, [finance]))

    assert (newcomer, False) in index.members[finance]
