"""Manual search through the real msgraph-sdk adapter against the Graph simulator: one request for the
search whatever the text, exact matches for names holding OData and URL specials, and batched groups."""

from __future__ import annotations

import pytest

from provisioning.adapters.graph import GraphDirectory
from provisioning.adapters.graph.delta import account
from simulators.graph import GraphSimulator
from simulators.tenants import make_user, seed_use_case
from tests.fakes import FakeDirectory

pytestmark = pytest.mark.anyio

SPECIAL_NAMES = {
    "obrien": "Seán O'Brien",
    "quote": "' or 1 eq 1",
    "paren": "Paren) Person",
    "percent": "100% Sure",
    "amp": "R&D Team",
    "hash": "#1 Fan",
    "plus": "A+B Consulting",
    "yamada": "山田 太郎",
}


@pytest.fixture
def special(simulator: GraphSimulator) -> GraphSimulator:
    for name, display in SPECIAL_NAMES.items():
        simulator.add_user(make_user(name, display_name=display))
    return simulator


async def test_search_finds_by_any_name_property_in_one_request(
    directory: GraphDirectory, simulator: GraphSimulator
) -> None:
    simulator.reset_counts()
    found = await directory.search_users("ALI", ["officeLocation"], 25)
    assert [a.user_principal_name for a in found.accounts] == ["alice@contoso.com"]
    assert found.accounts[0].attribute("officeLocation") == "New York" and not found.more
    assert simulator.graph_requests() == 1 and simulator.counts["users"] == 1

    by_mail = await directory.search_users("heidi@", [], 25)
    assert [a.user_principal_name for a in by_mail.accounts] == ["heidi@contoso.com"]


@pytest.mark.parametrize("name", sorted(SPECIAL_NAMES))
async def test_odata_and_url_specials_find_exactly_their_account(
    directory: GraphDirectory, special: GraphSimulator, name: str
) -> None:
    found = await directory.search_users(SPECIAL_NAMES[name], [], 25)
    assert [a.user_principal_name for a in found.accounts] == [f"{name}@contoso.com"]


@pytest.mark.parametrize("text", ["' or 1 eq 1 or '", "') or (1 eq 1", "%", "&$top=1", "#", "*", "\\"])
async def test_no_text_widens_the_query(
    directory: GraphDirectory, simulator: GraphSimulator, text: str
) -> None:
    found = await directory.search_users(text, [], 999)
    assert found.accounts == () and not found.more


async def test_a_limit_below_the_matches_says_more_match(directory: GraphDirectory) -> None:
    found = await directory.search_users("g", [], 2)  # grace, gus, gina
    assert len(found.accounts) == 2 and found.more
    with pytest.raises(ValueError, match=r"1\.\.999"):
        await directory.search_users("g", [], 1000)


async def test_groups_of_many_users_come_in_one_batch_and_agree_with_one_by_one(
    directory: GraphDirectory, simulator: GraphSimulator
) -> None:
    tenant = seed_use_case()
    ids = [tenant.user_id(name) for name in ("alice", "ivan", "carol", "frank")]
    simulator.reset_counts()
    direct = await directory.groups_of_each(ids)
    transitive = await directory.groups_of_each(ids, transitive=True)
    assert simulator.graph_requests() == 2 and simulator.counts["batch"] == 2
    for user_id in ids:
        assert direct[user_id] == await directory.groups_of(user_id)
        assert transitive[user_id] == await directory.groups_of(user_id, transitive=True)
    assert transitive[tenant.user_id("ivan")] == {
        tenant.group_id("US Finance Auditors"),
        tenant.group_id("US Finance"),
    }
    assert direct[tenant.user_id("frank")] == frozenset()


async def test_a_throttled_batch_step_is_asked_again_on_its_own(
    directory: GraphDirectory, simulator: GraphSimulator
) -> None:
    alice = seed_use_case().user_id("alice")
    simulator.inject(429, count=1, retry_after=1, routes=["member of"])
    assert await directory.groups_of_each([alice]) == {
        alice: frozenset({seed_use_case().group_id("US Finance")})
    }


@pytest.mark.parametrize("text", ["a", "ALI", "g", "heidi@", "Finance S", "gus_", "Obr", "zz"])
async def test_the_fake_directory_searches_as_the_adapter_does(directory: GraphDirectory, text: str) -> None:
    """The service tests' fake keeps the port's contract: the same accounts for the same text."""
    fake = FakeDirectory()
    for user in seed_use_case().users:
        fake.add_user(account(user))
    real, faked = await directory.search_users(text, [], 999), await fake.search_users(text, [], 999)
    assert sorted(a.user_principal_name for a in real.accounts) == sorted(
        a.user_principal_name for a in faked.accounts
    )
    assert real.more == faked.more is False
