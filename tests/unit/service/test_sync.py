"""The delta pass and full reconciliation, through the real service layer with fakes at the ports."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from provisioning.domain.druva import DruvaStatus, DruvaUser
from provisioning.domain.groups import EntraGroup, GroupKind
from provisioning.domain.links import LinkStatus
from provisioning.domain.mappings import GroupMatch, GroupRef, Policy
from provisioning.errors import CursorBusy, TransientError
from provisioning.service.context import Run, Services
from provisioning.service.report import RunReport
from provisioning.service.sync import run_sync
from tests.builders import FINANCE, account, mapping, seed_policy
from tests.fakes import FakeDirectory, FakeDruva, FixedClock, InMemoryState


class World:
    """A small tenant of the product brief's use case, and a Druva to provision it into."""

    def __init__(self, policy: Policy | None = None) -> None:
        self.directory = FakeDirectory()
        self.druva = FakeDruva()
        self.state = InMemoryState()
        self.clock = FixedClock()
        self.policy = policy or seed_policy()
        self.directory.add_group(EntraGroup(FINANCE.id, "US Finance", GroupKind.SECURITY))
        for name, office in [("ann", "Chicago"), ("ben", "New York"), ("cat", "Paris"), ("dan", "Chicago")]:
            self.directory.add_user(account(name, officeLocation=office))
        self.directory.add_user(account("fay", officeLocation="Chicago"))
        self.directory.add_member(FINANCE.id, "id-fay")
        self.directory.add_user(account("guest", user_type="Guest", officeLocation="Chicago"))
        self.directory.add_user(account("gone", enabled=False, mail="gone@contoso.com"), purpose="user")
        self.directory.add_user(account("help", enabled=False, mail="help@contoso.com"), purpose="shared")

    def sync(self, **kwargs: Any) -> RunReport:
        dry_run = kwargs.pop("dry_run", False)
        services = Services(self.directory, self.druva, self.state, self.clock)
        run = Run(services, kwargs.pop("policy", self.policy), dry_run=dry_run)
        return asyncio.run(run_sync(run, **kwargs))

    def druva_user(self, name: str) -> DruvaUser:
        found = self.druva.by_email(f"{name}@contoso.com")
        assert found is not None, name
        return found


@pytest.fixture
def world() -> World:
    return World()


def test_first_sync_creates_everyone_through_their_winning_mapping(world: World) -> None:
    report = world.sync()
    assert report.totals() == {
        "created": 6,
        "updated": 0,
        "preserved": 0,
        "reactivated": 0,
        "unchanged": 0,
        "skipped": 2,
        "failed": 0,
    }
    assert report.exit_code == 0
    assert (world.druva_user("fay").profile, world.druva_user("fay").storage) == ("Finance", "US-East")
    assert world.druva_user("ann").profile == "Standard"
    assert (world.druva_user("cat").storage) == "EU-West"
    assert world.druva_user("help").profile == "Mailboxes"
    assert world.druva.by_email("guest@contoso.com") is None
    assert world.druva.by_email("gone@contoso.com") is None
    link = asyncio.run(world.state.get_link("id-fay"))
    assert link is not None and link.mapping == "US Finance" and link.quota == "200 GB"
    assert world.state.runs[-1].counts["created"] == 6


def test_second_run_writes_nothing(world: World) -> None:
    world.sync()
    writes, state_writes = len(world.druva.writes), world.state.writes
    audit = len(world.state.audit)
    for full in (False, True):
        report = world.sync(full=full)
        assert report.decisions == []
        assert report.totals()["created"] == 0 and report.totals()["failed"] == 0
    assert len(world.druva.writes) == writes
    assert len(world.state.audit) == audit
    # only bookkeeping moved: cursors (2 per run) and memberships replaced by the full read
    assert world.state.writes - state_writes <= 6


def test_dry_run_writes_nothing_anywhere(world: World) -> None:
    report = world.sync(dry_run=True)
    assert report.totals()["created"] == 6
    assert [d.principal for d in report.decisions][:2] == ["ann@contoso.com", "ben@contoso.com"]
    assert world.druva.writes == [] and world.state.writes == 0 and world.state.runs == []
    assert asyncio.run(world.state.get_cursor("users")).value is None


def test_lifecycle_changes_after_the_first_sync() -> None:
    world = World(seed_policy(max_preserve_fraction=0.5))  # 2 preserves of 6 managed users
    world.sync()
    world.directory.add_user(account("new", officeLocation="Paris"))  # a new Finance hire
    world.directory.add_member(FINANCE.id, "id-new")
    world.directory.update_user("id-ann", account_enabled=False)  # a leaver
    world.directory.remove_member(FINANCE.id, "id-fay")  # a mover: Finance → Chicago office
    world.directory.delete_user("id-cat")
    report = world.sync()
    assert report.kind == "delta"
    assert report.totals() == {
        "created": 1,
        "updated": 1,
        "preserved": 2,
        "reactivated": 0,
        "unchanged": 0,
        "skipped": 0,
        "failed": 0,
    }
    assert world.druva_user("new").profile == "Finance"
    assert world.druva_user("ann").status is DruvaStatus.PRESERVED
    assert world.druva_user("cat").status is DruvaStatus.PRESERVED
    assert world.druva_user("fay").profile == "Standard"
    assert world.directory.calls["get_users"] == 1  # fay came from the membership change: one batched read
    assert world.directory.calls["get_user"] == 0

    world.directory.update_user("id-ann", account_enabled=True)  # the leaver returns
    again = world.sync()
    assert again.totals()["reactivated"] == 1
    assert world.druva_user("ann").status is DruvaStatus.ACTIVE
    link = asyncio.run(world.state.get_link("id-ann"))
    assert link is not None and link.status is LinkStatus.ACTIVE


def test_mass_preserve_guard_stops_the_whole_run(world: World) -> None:
    world.sync()
    cursor = asyncio.run(world.state.get_cursor("users")).value
    for name in ("ann", "ben", "cat"):
        world.directory.delete_user(f"id-{name}")
    writes = len(world.druva.writes)
    report = world.sync()
    assert report.exit_code == 3
    assert report.safety is not None and report.safety.preserves == 3
    assert report.totals()["preserved"] == 0 and report.planned["preserved"] == 3
    assert "would preserve 3 of 6 managed users" in report.notes[-1]
    assert len(world.druva.writes) == writes
    assert (
        asyncio.run(world.state.get_cursor("users")).value == cursor
    )  # the same changes come back next time


def test_cursor_expiry_falls_back_to_a_full_read_without_mass_preserve(world: World) -> None:
    world.sync()
    world.directory.expire_cursors()
    world.directory.add_user(account("eve", officeLocation="Chicago"))
    report = world.sync()
    assert report.kind == "full"
    assert "cursor expired" in report.notes[0]
    assert report.totals()["created"] == 1 and report.totals()["preserved"] == 0


def test_transient_failure_keeps_the_cursor_and_the_next_pass_retries(world: World) -> None:
    world.druva.fail_creates["ben@contoso.com"] = TransientError("429 from Druva")
    first = world.sync()
    assert first.totals()["failed"] == 1 and first.totals()["created"] == 5
    assert first.exit_code == 1
    assert first.failures[0].transient and first.failures[0].principal == "ben@contoso.com"
    assert asyncio.run(world.state.get_cursor("users")).value is None
    second = world.sync()
    assert second.totals()["created"] == 1 and second.totals()["failed"] == 0
    assert len([w for w in world.druva.writes if w[0] == "create"]) == 6


def test_existing_druva_user_with_the_same_email_is_adopted(world: World) -> None:
    world.druva.add(DruvaUser(555, "ANN@Contoso.com", "Ann", DruvaStatus.ACTIVE, "Standard", "US-East"))
    report = world.sync()
    assert report.totals()["created"] == 5 and report.totals()["updated"] == 1
    assert len([u for u in world.druva.accounts.values() if u.email_key == "ann@contoso.com"]) == 1
    link = asyncio.run(world.state.get_link("id-ann"))
    assert link is not None and link.druva_user_id == 555


def test_a_second_pass_cannot_run_beside_the_first(world: World) -> None:
    asyncio.run(world.state.claim_cursor("users", "someone-else", world.clock.now(), 600))
    with pytest.raises(CursorBusy):
        world.sync()
    world.clock.advance(601)  # the other pass's lease lapses
    assert world.sync().totals()["created"] == 6


def test_nested_groups_reach_members_of_subgroups() -> None:
    team = GroupRef("33333333-3333-3333-3333-333333333333", "FP&A team")
    nested = seed_policy(
        mappings=(mapping("Finance (nested)", GroupMatch((FINANCE,), nested=True), profile="Finance"),)
    )
    world = World(nested)
    world.directory.add_group(EntraGroup(team.id, team.display_name, GroupKind.SECURITY))
    world.directory.add_user(account("ida"))
    world.directory.add_member(team.id, "id-ida")
    world.directory.add_member(FINANCE.id, team.id, is_group=True)
    report = world.sync()
    assert {d.principal for d in report.decisions} == {"fay@contoso.com", "ida@contoso.com"}

    world.directory.add_user(account("joe"))
    world.directory.add_member(team.id, "id-joe")  # joins the subgroup only
    later = world.sync()
    assert [d.principal for d in later.decisions] == ["joe@contoso.com"]
    assert world.druva_user("joe").profile == "Finance"


def test_group_read_of_a_new_mapping_group_decides_its_members(world: World) -> None:
    world.sync()
    hr = GroupRef("22222222-2222-2222-2222-222222222222", "US HR")
    world.directory.add_group(EntraGroup(hr.id, hr.display_name, GroupKind.MICROSOFT_365))
    world.directory.add_member(hr.id, "id-ben")
    policy = dataclasses.replace(
        world.policy, mappings=(mapping("HR", GroupMatch((hr,)), profile="Finance"), *world.policy.mappings)
    )
    report = world.sync(policy=policy)
    assert [d.principal for d in report.decisions] == ["ben@contoso.com"]
    assert world.druva_user("ben").profile == "Finance"


def test_changed_mappings_decide_everyone_again(world: World) -> None:
    world.sync()
    everyone = world.policy.mappings[-1]
    moved = dataclasses.replace(everyone, target=dataclasses.replace(everyone.target, storage="US-East"))
    policy = dataclasses.replace(world.policy, mappings=(*world.policy.mappings[:-1], moved))
    report = world.sync(policy=policy)
    assert report.kind == "full"
    assert "the mappings changed" in report.notes[0]
    assert [d.principal for d in report.decisions] == ["cat@contoso.com"]  # the only one on the catch-all
    assert world.druva_user("cat").storage == "US-East"
    assert world.sync(policy=policy).kind == "delta"  # and back to deltas under the new policy


def test_a_delta_pass_looks_its_few_accounts_up_instead_of_sweeping(world: World) -> None:
    world.sync()
    assert world.druva.reads == {"list": 1}  # the first pass decides everyone: one sweep
    world.directory.update_user("id-ann", attributes={"officeLocation": "Paris"})  # linked: by id
    world.directory.add_user(account("eve", officeLocation="Chicago"))  # new: by e-mail
    world.druva.reads.clear()
    report = world.sync()
    assert report.totals()["created"] == 1 and report.totals()["updated"] == 1
    assert world.druva.reads == {"get": 1, "find": 1}


def test_a_failed_lookup_fails_the_pass_and_the_next_pass_decides_again(world: World) -> None:
    world.sync()
    cursor = asyncio.run(world.state.get_cursor("users")).value
    world.directory.update_user("id-ann", attributes={"officeLocation": "Paris"})
    world.directory.update_user("id-ben", attributes={"officeLocation": "Paris"})
    lookups = world.druva.get_user

    async def unavailable(user_id: int) -> DruvaUser | None:
        raise TransientError("Druva GET users: HTTP 503")

    world.druva.get_user = unavailable  # type: ignore[method-assign]
    with pytest.raises(TransientError, match="HTTP 503"):  # not taken for "not in Druva"
        world.sync()
    assert world.druva.writes[-1][0] == "create"  # nothing written by the failed pass
    assert asyncio.run(world.state.get_cursor("users")).value == cursor
    world.druva.get_user = lookups  # type: ignore[method-assign]
    assert world.sync().totals()["updated"] == 2
    assert world.druva_user("ann").storage == "EU-West"


def test_the_managed_accounts_are_counted_only_for_a_plan_that_preserves(world: World) -> None:
    world.sync()
    counts = 0
    count_managed = world.state.count_managed

    async def counting() -> int:
        nonlocal counts
        counts += 1
        return await count_managed()

    world.state.count_managed = counting  # type: ignore[method-assign]
    world.directory.update_user("id-ann", attributes={"officeLocation": "Paris"})
    assert world.sync().totals()["updated"] == 1
    assert counts == 0  # nothing preserved and a few lookups: no count needed
    world.directory.delete_user("id-ann")
    world.directory.delete_user("id-ben")
    report = world.sync()  # 2 of 6 preserved: above the default fraction, the guard stops it
    assert report.safety_stopped and report.safety is not None and report.safety.managed == 6
    assert counts == 1
