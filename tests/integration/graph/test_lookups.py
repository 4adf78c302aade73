"""Single-account fetch, group memberships of one user, group lookup, and the pre-flight probes."""

from __future__ import annotations

import pytest

from provisioning.adapters.graph import GraphDirectory, open_directory
from provisioning.domain.groups import GroupKind
from provisioning.errors import AmbiguousGroup, GroupNotFound, NotFoundError
from provisioning.settings import Settings
from simulators.graph import GraphSimulator
from simulators.tenants import DISTRIBUTION, MICROSOFT_365, Tenant, make_group

from .conftest import FAST_RETRIES

pytestmark = pytest.mark.anyio


async def test_get_user_by_id_or_upn_returns_the_selected_attributes(
    directory: GraphDirectory, tenant: Tenant
) -> None:
    by_id = await directory.get_user(tenant.user_id("alice"), ["officeLocation", "department"])
    by_upn = await directory.get_user("Alice@Contoso.com", ["officeLocation", "department"])

    assert by_id == by_upn
    assert by_id is not None and by_id.attribute("officeLocation") == "New York"
    assert by_id.attribute("department") == "Finance" and by_id.is_member


async def test_get_user_finds_a_guest_by_its_ext_upn_and_returns_none_for_nobody(
    directory: GraphDirectory, tenant: Tenant
) -> None:
    guest = await directory.get_user("gus_fabrikam.com#EXT#@contoso.com", [])

    assert guest is not None and guest.id == tenant.user_id("gus") and not guest.is_member
    assert await directory.get_user("nobody@contoso.com", []) is None


async def test_groups_of_a_user_direct_and_transitive(directory: GraphDirectory, tenant: Tenant) -> None:
    auditors, finance = tenant.group_id("US Finance Auditors"), tenant.group_id("US Finance")

    assert await directory.groups_of(tenant.user_id("ivan")) == {auditors}
    assert await directory.groups_of(tenant.user_id("ivan"), transitive=True) == {auditors, finance}
    assert await directory.groups_of(tenant.user_id("olivia"), transitive=True) == set()  # owner only
    with pytest.raises(NotFoundError):
        await directory.groups_of("00000000-0000-4000-8000-000000000001")


async def test_groups_of_a_user_in_many_groups_pages_through_them(
    directory: GraphDirectory, simulator: GraphSimulator, tenant: Tenant
) -> None:
    made = {simulator.add_group(make_group(f"Team {n}", DISTRIBUTION)) for n in range(7)}
    for group_id in made:
        simulator.add_member(group_id, "frank@contoso.com")
    simulator.page_sizes.list_max = 3  # so that $top=999 still needs several pages

    assert await directory.groups_of(tenant.user_id("frank")) == made
    assert simulator.counts["member of"] == 3


async def test_find_group_by_name_or_id_with_its_kind(directory: GraphDirectory, tenant: Tenant) -> None:
    finance = await directory.find_group("US Finance")
    sales = await directory.find_group(tenant.group_id("US Sales"))
    hr = await directory.find_group("  us hr ")  # Graph compares display names case-insensitively

    assert (finance.id, finance.kind) == (tenant.group_id("US Finance"), GroupKind.SECURITY)
    assert (sales.display_name, sales.kind) == ("US Sales", GroupKind.MICROSOFT_365)
    assert hr.kind is GroupKind.MAIL_ENABLED_SECURITY


async def test_an_unknown_group_name_lists_close_matches(directory: GraphDirectory) -> None:
    with pytest.raises(GroupNotFound) as raised:
        await directory.find_group("US Finanse")

    assert raised.value.suggestions[0] == "US Finance"
    assert "close matches: US Finance" in str(raised.value)


async def test_an_unknown_group_id_is_not_found(directory: GraphDirectory) -> None:
    with pytest.raises(GroupNotFound, match="00000000-0000-4000-8000-000000000002"):
        await directory.find_group("00000000-0000-4000-8000-000000000002")


async def test_two_groups_with_one_name_are_ambiguous(
    directory: GraphDirectory, simulator: GraphSimulator
) -> None:
    twin = simulator.add_group(
        make_group("US Sales", MICROSOFT_365, group_id="5a1e5000-0000-4000-8000-000000000001")
    )

    with pytest.raises(AmbiguousGroup) as raised:
        await directory.find_group("US Sales")

    assert len(raised.value.candidates) == 2 and any(twin in c for c in raised.value.candidates)


async def test_a_name_with_a_quote_is_escaped_in_the_filter(
    directory: GraphDirectory, simulator: GraphSimulator
) -> None:
    group_id = simulator.add_group(make_group("O'Brien's Team", DISTRIBUTION))

    found = await directory.find_group("O'Brien's Team")

    assert (found.id, found.kind) == (group_id, GroupKind.DISTRIBUTION)


async def test_check_access_passes_every_probe_on_a_healthy_tenant(directory: GraphDirectory) -> None:
    probes = await directory.check_access()

    assert [p.ok for p in probes] == [True, True, True, True]
    assert [p.check.split(" (")[0] for p in probes] == [
        "users readable",
        "groups and members readable",
        "mailbox settings readable",
        "subscriptions listable",
    ]


async def test_check_access_reports_missing_permissions_without_raising(
    directory: GraphDirectory, simulator: GraphSimulator
) -> None:
    simulator.inject(403, count=1, routes=["mailbox settings"])
    simulator.inject(403, count=1, routes=["subscriptions"])

    probes = {p.check.split(" (")[0]: p for p in await directory.check_access()}

    assert probes["users readable"].ok and probes["groups and members readable"].ok
    assert not probes["mailbox settings readable"].ok
    assert "MailboxSettings.Read" in probes["mailbox settings readable"].detail
    assert not probes["subscriptions listable"].ok


async def test_check_access_against_no_graph_at_all_reports_every_probe_failed() -> None:
    unreachable = Settings(GRAPH_API_URL="http://127.0.0.1:9/v1.0", GRAPH_ACCESS_TOKEN="test-token")
    directory = open_directory(unreachable, retry=FAST_RETRIES)
    try:
        probes = await directory.check_access()
    finally:
        await directory.aclose()

    assert len(probes) == 4 and not any(p.ok for p in probes)
    assert "cannot reach Graph" in probes[0].detail


async def test_several_groups_resolved_in_one_batch(
    directory: GraphDirectory, simulator: GraphSimulator, tenant: Tenant
) -> None:
    twin = make_group("US Sales", DISTRIBUTION, group_id="0f0f0f0f-0000-4000-8000-00000000beef")
    simulator.add_group(twin)  # a second group of that name
    finance = tenant.group_id("US Finance")
    simulator.reset_counts()

    found = await directory.find_groups(["US Finance", finance, "US Sales", "US Finanse", "US HR"])

    assert found["US Finance"] == found[finance]
    hr = found["US HR"]
    assert not isinstance(hr, Exception) and hr.kind is GroupKind.MAIL_ENABLED_SECURITY
    assert isinstance(found["US Sales"], AmbiguousGroup)
    missing = found["US Finanse"]
    assert isinstance(missing, GroupNotFound) and "US Finance" in missing.suggestions
    assert simulator.counts["batch"] == 1  # five lookups, one request (plus the close-match scan)
