"""Manual import and explain, through the service layer with fakes at the ports."""

from __future__ import annotations

import asyncio

import pytest

from provisioning.domain.decisions import Outcome
from provisioning.domain.druva import DruvaStatus, DruvaUser
from provisioning.service.context import Run, Services
from provisioning.service.import_and_explain import UnknownAccount, explain, import_accounts
from tests.unit.service.test_sync import World


def run_for(world: World) -> Run:
    return Run(Services(world.directory, world.druva, world.state, world.clock), world.policy)


def test_import_provisions_named_members_and_refuses_the_rest() -> None:
    world = World()
    report = asyncio.run(
        import_accounts(run_for(world), ["fay@contoso.com", "guest@contoso.com", "nobody@x.com"])
    )
    assert world.druva.by_email("fay@contoso.com") is not None
    assert world.druva.by_email("guest@contoso.com") is None
    assert report.totals()["created"] == 1 and report.totals()["failed"] == 2
    assert report.exit_code == 1
    assert "only Member accounts are provisioned" in report.failures[0].error
    assert "no Entra account" in report.failures[1].error
    assert world.directory.calls["read_users"] == 0  # one account at a time, no delta read


def test_import_reactivates_a_user_someone_else_preserved() -> None:
    world = World()
    world.druva.add(DruvaUser(9, "ann@contoso.com", "Ann", DruvaStatus.PRESERVED, "Standard", "US-East"))
    report = asyncio.run(import_accounts(run_for(world), ["ann@contoso.com"]))
    assert report.decisions[0].outcome is Outcome.REACTIVATED
    assert world.druva.accounts[9].status is DruvaStatus.ACTIVE
    assert report.exit_code == 0


def test_import_twice_writes_nothing_the_second_time() -> None:
    world = World()
    asyncio.run(import_accounts(run_for(world), ["ann@contoso.com"]))
    writes, state_writes = len(world.druva.writes), world.state.writes
    report = asyncio.run(import_accounts(run_for(world), ["ann@contoso.com"]))
    assert report.totals()["unchanged"] == 1 and report.exit_code == 0
    assert len(world.druva.writes) == writes and world.state.writes == state_writes


def test_explain_shows_the_winner_lower_matches_and_history() -> None:
    world = World()
    world.sync()
    explanation = asyncio.run(explain(run_for(world), "fay@contoso.com"))
    decision = explanation.decision
    assert decision.outcome is Outcome.UNCHANGED
    assert decision.winner is not None and decision.winner.mapping == "US Finance"
    assert [c.mapping for c in explanation.lower] == ["US offices", "Everyone else"]
    assert explanation.druva is not None and explanation.druva.profile == "Finance"
    assert [e.action for e in explanation.history] == ["create"]
    assert world.druva.writes[-1] == ("create", "help@contoso.com")  # explain wrote nothing


def test_explain_an_unknown_account() -> None:
    world = World()
    with pytest.raises(UnknownAccount, match=r"nobody@contoso\.com"):
        asyncio.run(explain(run_for(world), "nobody@contoso.com"))
