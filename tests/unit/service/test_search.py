"""Manual search through the service layer, with fakes at the ports: the text's rules, and that every
account found is decided by the one planner, as a manual import would decide it."""

from __future__ import annotations

import asyncio

import pytest

from provisioning.domain.decisions import Outcome
from provisioning.domain.druva import DruvaStatus, DruvaUser
from provisioning.service.context import Run, Services
from provisioning.service.import_and_explain import import_accounts
from provisioning.service.search import MAX_TEXT, BadSearch, SearchResult, search, search_text
from tests.builders import account
from tests.unit.service.test_sync import World


def run_for(world: World) -> Run:
    return Run(Services(world.directory, world.druva, world.state, world.clock), world.policy)


def find(world: World, text: str, limit: int = 25) -> SearchResult:
    return asyncio.run(search(run_for(world), text, limit))


@pytest.mark.parametrize(
    "text",
    ["a", "O'Brien", "' or 1 eq 1", ")", "100%", "R&D", "#1", "Zoë Ångström", "山田", "x" * MAX_TEXT, " ali"],
)
def test_search_text_accepts_any_printable_text_unchanged(text: str) -> None:
    assert search_text(text) == text


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("x" * (MAX_TEXT + 1), "257 characters long; at most 256"),
        ("ali\n", r"control character \(U\+000A\) at position 4"),
        ("a\tb", r"U\+0009"),
        ("a\x00", r"U\+0000"),
        ("\x1b[31mred", r"U\+001B"),
        ("a\x7f", r"U\+007F"),
        ("a\x85", r"U\+0085"),  # C1 next line
        ("a\u2028b", r"U\+2028"),  # line separator
        ("a\udcff", r"U\+DCFF"),  # an undecodable byte on the command line
    ],
)
def test_search_text_refuses_empty_long_and_control_characters(text: str, problem: str) -> None:
    with pytest.raises(BadSearch, match=problem):
        search_text(text)


def test_each_account_found_is_decided_as_a_manual_import_would() -> None:
    world = World()
    world.directory.add_user(account("fayette", officeLocation="Paris"))
    result = find(world, "fa")
    by_upn = {f.account.user_principal_name: f for f in result.found}

    assert list(by_upn) == ["fay@contoso.com", "fayette@contoso.com"]  # sorted by display name
    fay = by_upn["fay@contoso.com"]
    assert fay.decision.winner is not None and fay.decision.winner.mapping == "US Finance"
    assert fay.decision.outcome is Outcome.CREATED and fay.importable and fay.druva is None
    assert by_upn["fayette@contoso.com"].decision.winner.mapping == "Everyone else"  # type: ignore[union-attr]
    assert result.importable == ["fay@contoso.com", "fayette@contoso.com"] and not result.more
    assert world.druva.writes == [] and world.state.writes == 0  # a search writes nothing


def test_guests_leavers_and_shared_mailboxes_get_their_kind_and_reason() -> None:
    world = World()
    found = {f.account.user_principal_name: f for f in find(world, "g").found + find(world, "help").found}

    guest, gone, help_ = found["guest@contoso.com"], found["gone@contoso.com"], found["help@contoso.com"]
    assert not guest.importable and "only Member accounts are provisioned" in str(guest.why_not)
    assert not gone.importable and str(gone.why_not).startswith("disabled in Entra")
    assert help_.importable and help_.decision.winner.mapping == "Shared mailboxes"  # type: ignore[union-attr]
    assert world.directory.calls["mailbox_purposes"] == 2  # one batched read per search, not per account


def test_an_account_already_in_druva_shows_its_status_and_is_not_importable_twice() -> None:
    world = World()
    asyncio.run(import_accounts(run_for(world), ["fay@contoso.com"]))
    fay = find(world, "fay").found[0]
    assert fay.druva is not None and fay.druva.status is DruvaStatus.ACTIVE
    assert not fay.importable and fay.why_not == "already active in Druva: nothing to import"


def test_a_user_someone_else_preserved_is_importable_because_import_reactivates_it() -> None:
    world = World()
    world.druva.add(DruvaUser(9, "ann@contoso.com", "Ann", DruvaStatus.PRESERVED, "Standard", "US-East"))
    ann = find(world, "ann").found[0]
    assert ann.importable and ann.decision.outcome is Outcome.REACTIVATED
    assert ann.druva is not None and ann.druva.status is DruvaStatus.PRESERVED


def test_a_guest_already_in_druva_is_shown_there_though_never_provisioned() -> None:
    world = World()
    world.druva.add(DruvaUser(7, "guest@contoso.com", "Guest", DruvaStatus.ACTIVE, "Standard", "US-East"))
    guest = find(world, "guest").found[0]
    assert guest.druva is not None and guest.druva.user_id == 7 and not guest.importable


def test_the_limit_cuts_the_list_and_says_more_match() -> None:
    world = World()
    result = find(world, "g", limit=1)  # guest and gone match
    assert len(result.found) == 1 and result.more
    assert not find(world, "g", limit=2).more


def test_memberships_are_read_in_one_batched_call_for_all_members() -> None:
    world = World()
    find(world, "f")
    assert world.directory.calls["groups_of_each"] == 1
    assert world.directory.calls["get_user"] == 0 and world.directory.calls["read_users"] == 0


def test_the_service_refuses_bad_text_and_limits_itself() -> None:
    world = World()
    with pytest.raises(BadSearch):
        find(world, "a\nb")
    with pytest.raises(BadSearch, match=r"1\.\.999"):
        find(world, "a", limit=1000)
    assert world.directory.calls["search_users"] == 0
