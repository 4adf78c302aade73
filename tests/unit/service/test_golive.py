"""Going live: a deployment plans before it writes, and the first pass that applies creates no more Druva
users than the admin confirmed (``provisioning.domain.golive``, ``provisioning.service.golive``)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from provisioning.config import ConfigError
from provisioning.domain.directory import Subscription
from provisioning.domain.golive import Mode, ModeRecord, summarise
from provisioning.domain.health import NO_RECENT_PASS, PLAN_ONLY
from provisioning.domain.state import RunKind
from provisioning.service import telemetry
from provisioning.service.context import Run, Services
from provisioning.service.golive import latest_plans, mode_of, switch_mode
from provisioning.service.report import ExitCode, RunReport
from provisioning.service.slicing import SliceBound
from provisioning.service.status import read_status
from provisioning.service.sync import run_sync
from tests.builders import account, seed_policy
from tests.unit.service.test_sync import World


class Deployment(World):
    """The World, as a fresh deployment sees it: its state starts in plan-only mode."""

    def run(self, *, dry_run: bool = False) -> Run:
        services = Services(self.directory, self.druva, self.state, self.clock)
        return Run(services, self.policy, dry_run=dry_run, initial_mode=Mode.PLAN)

    def sync(self, **kwargs: Any) -> RunReport:
        run = self.run(dry_run=kwargs.pop("dry_run", False))
        return asyncio.run(run_sync(run, **kwargs))

    def switch(self, mode: Mode, confirm: int | None = None) -> ModeRecord:
        return asyncio.run(
            switch_mode(self.state, self.clock.now(), Mode.PLAN, mode, confirm_creates=confirm)
        )

    def mode(self) -> ModeRecord:
        return asyncio.run(mode_of(self.state, Mode.PLAN))


def status_codes(world: Deployment) -> list[str]:
    status = asyncio.run(read_status(world.state, world.clock.now(), Mode.PLAN))
    return [p.code for p in status.problems]


def test_a_fresh_deployment_plans_and_writes_nothing_to_druva() -> None:
    world = Deployment()
    report = world.sync()
    assert world.druva.writes == [] and asyncio.run(world.state.count_managed()) == 0
    assert report.dry_run and report.totals()["created"] == 6
    assert any(
        "plan-only mode: nothing was written to Druva; 6 Druva users to create" in n for n in report.notes
    )
    plans = asyncio.run(latest_plans(world.state))
    full = plans[RunKind.FULL.value]  # no cursor yet: the first pass reads everyone
    assert full.creates == 6
    assert full.by_mapping["US Finance"] == {"created": 1}
    assert sum(counts.get("created", 0) for counts in full.by_mapping.values()) == 6
    assert 1 <= len([e for e in full.examples if e.outcome == "created"]) <= 3
    assert world.state.runs[-1].dry_run  # recorded, and marked as writing nothing


def test_plan_only_passes_move_the_cursors_so_the_event_path_stays_cheap() -> None:
    world = Deployment()
    world.sync()
    world.directory.add_user(account("new", officeLocation="Paris"))
    second = world.sync()
    assert second.kind is RunKind.DELTA and second.totals()["created"] == 1
    assert asyncio.run(latest_plans(world.state))[RunKind.DELTA.value].creates == 1
    assert world.druva.writes == []


def test_status_says_it_awaits_a_human_with_the_plan_and_the_command() -> None:
    world = Deployment()
    world.sync()
    status = asyncio.run(read_status(world.state, world.clock.now(), Mode.PLAN))
    problem = status.problems[0]
    assert problem.code == PLAN_ONLY
    assert "nothing is written to Druva" in problem.detail and "US Finance: 1 created" in problem.detail
    assert problem.detail.endswith("python -m provisioning mode apply --confirm-creates 6")
    assert (
        status.to_json(1)["mode"] == "plan" and status.to_json(1)["plans"]["full"]["counts"]["created"] == 6
    )


def test_plans_count_as_passes_for_staleness_in_plan_only_mode() -> None:
    world = Deployment()
    for resource in ("users", "groups"):  # the event path runs: passes are expected
        expires = world.clock.now() + timedelta(days=3)
        asyncio.run(
            world.state.put_subscription(Subscription(f"sub-{resource}", resource, expires, "https://x"))
        )
    world.sync()
    world.clock.advance(1800)
    assert NO_RECENT_PASS not in status_codes(world)
    world.clock.advance(2 * 3600)
    assert NO_RECENT_PASS in status_codes(world)


def test_switching_to_apply_asks_for_the_number_of_creates() -> None:
    world = Deployment()
    world.sync()
    with pytest.raises(ConfigError, match=r"needs --confirm-creates N, .*the latest full plan creates 6"):
        world.switch(Mode.APPLY)
    assert world.mode().plan_only


def test_the_first_pass_that_applies_reads_everyone_and_creates_what_was_confirmed() -> None:
    world = Deployment()
    world.sync()
    world.sync()  # a delta plan: the full plan's accounts are not in it
    world.switch(Mode.APPLY, 6)
    report = world.sync()  # asked for a delta pass, as the timer does
    assert report.kind is RunKind.FULL and not report.dry_run
    assert report.totals()["created"] == 6 and len(world.druva.writes) == 6
    assert not world.mode().first_apply_pending and world.mode().confirmed_creates is None
    assert PLAN_ONLY not in status_codes(world)
    assert world.sync().kind is RunKind.DELTA  # afterwards, passes as usual


def test_the_first_pass_that_applies_stops_before_creating_more_than_confirmed() -> None:
    world = Deployment()
    world.sync()
    world.switch(Mode.APPLY, 3)
    stopped = world.sync()
    assert stopped.safety_stopped and stopped.exit_code is ExitCode.SAFETY_STOP
    assert world.druva.writes == []
    assert (
        stopped.stopped is not None
        and "would create 6 Druva users, more than the 3 confirmed" in stopped.stopped
    )
    assert "--confirm-creates 6" in stopped.stopped
    assert world.mode().first_apply_pending  # still waiting for a plan the admin confirmed
    world.switch(Mode.APPLY, 6)
    assert world.sync().totals()["created"] == 6


def test_the_first_pass_that_applies_in_slices_keeps_its_limit_until_the_last_slice() -> None:
    world = Deployment()
    world.sync()
    world.switch(Mode.APPLY, 6)
    run = world.run()
    first = asyncio.run(run_sync(run, bound=SliceBound(accounts=2, seconds=600), whole=False))
    assert first.continuation is not None and world.mode().first_apply_pending
    for _ in range(5):
        if not world.mode().first_apply_pending:
            break
        asyncio.run(run_sync(world.run(), bound=SliceBound(accounts=2, seconds=600), whole=False))
    assert not world.mode().first_apply_pending
    assert len([w for w in world.druva.writes if w[0] == "create"]) == 6


def test_switching_back_to_plan_stops_the_writes_at_once() -> None:
    world = Deployment()
    world.sync()
    world.switch(Mode.APPLY, 6)
    world.sync()
    world.switch(Mode.PLAN)
    writes = len(world.druva.writes)
    world.directory.add_user(account("new", officeLocation="Paris"))
    report = world.sync()
    assert report.dry_run and report.totals()["created"] == 1 and len(world.druva.writes) == writes


def test_a_dry_run_in_plan_only_mode_records_nothing() -> None:
    world = Deployment()
    world.sync(dry_run=True)
    assert asyncio.run(latest_plans(world.state)) == {} and world.state.writes == 0


def test_a_state_that_never_planned_applies_as_it_always_did() -> None:
    world = World()  # the command line's default: PROVISIONING_INITIAL_MODE unset
    assert world.sync().totals()["created"] == 6 and len(world.druva.writes) == 6


@pytest.mark.parametrize(
    "stored",
    ["", None, "{", '{"mode": "yolo"}', '["apply"]', '{"mode": "apply", "confirmed_creates": "6"}'],
)
def test_a_mode_record_that_cannot_be_read_plans(stored: str | None) -> None:
    record = ModeRecord.parse(stored, Mode.APPLY)
    if stored:
        assert record.mode is Mode.PLAN or (record.mode is Mode.APPLY and record.confirmed_creates is None)
    else:
        assert record.mode is Mode.APPLY


def test_the_mode_record_round_trips() -> None:
    now = datetime(2026, 12, 8, tzinfo=UTC)
    record = ModeRecord(Mode.PLAN).applying(42, now)
    assert ModeRecord.parse(record.to_json(), Mode.PLAN) == record
    assert ModeRecord.parse(record.first_apply_done().to_json(), Mode.PLAN).first_apply_pending is False


def test_a_plan_summary_counts_only_what_would_be_written() -> None:
    world = World()
    report = world.sync(dry_run=True)
    plan = summarise("r", "full", datetime(2026, 12, 8, tzinfo=UTC), report.decisions)
    assert plan.counts == {"created": 6, "updated": 0, "preserved": 0, "reactivated": 0}
    assert type(plan).from_json(plan.to_json()) == plan


def test_a_plan_only_pass_emits_its_plan_to_telemetry(caplog: pytest.LogCaptureFixture) -> None:
    world = Deployment()
    with caplog.at_level("INFO", logger=telemetry.LOGGER):
        world.sync()
    plans = [r for r in caplog.records if getattr(r, telemetry.EVENT, None) == telemetry.PLAN_EVENT]
    assert len(plans) == 1
    record = plans[0].__dict__
    assert record["count_created"] == 6 and json.loads(record[telemetry.BY_MAPPING])["US Finance"] == {
        "created": 1
    }
    assert (
        set(telemetry.plan_record(asyncio.run(latest_plans(world.state))["full"]))
        <= telemetry.PLAN_DIMENSIONS
    )
    assert "plan-only mode, nothing written" in plans[0].getMessage()


def test_a_pass_refused_access_is_named_by_status_until_one_gets_through(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A deployment whose Graph grant was handed over and not done yet: status says so at once."""
    from provisioning.domain.health import ACCESS_REFUSED
    from provisioning.errors import AuthError

    world = World()
    real = world.directory.read_users

    def refused(*args: object, **kwargs: object) -> object:
        raise AuthError("Graph GET /users/delta: 403 Authorization_RequestDenied (User.Read.All)")

    monkeypatch.setattr(world.directory, "read_users", refused)
    with pytest.raises(AuthError):
        world.sync()
    status = asyncio.run(read_status(world.state, world.clock.now()))
    assert status.problems[0].code == ACCESS_REFUSED
    assert "User.Read.All" in status.problems[0].detail and "doctor" in status.problems[0].detail
    with pytest.raises(AuthError):
        world.sync(dry_run=True)  # a dry run records nothing, and clears nothing
    monkeypatch.setattr(world.directory, "read_users", real)
    world.sync()
    status = asyncio.run(read_status(world.state, world.clock.now()))
    assert ACCESS_REFUSED not in [p.code for p in status.problems]


def test_the_first_pass_records_the_mode_so_every_reader_sees_it() -> None:
    world = Deployment()
    assert not world.mode().recorded
    world.sync()
    recorded = asyncio.run(mode_of(world.state, Mode.APPLY))  # the command line without the setting
    assert recorded.recorded and recorded.plan_only


def test_a_state_live_before_modes_existed_keeps_applying_after_an_upgrade() -> None:
    world = World()
    world.sync()
    claim = asyncio.run(world.state.claim_cursor("mode", "test", world.clock.now(), 30))
    asyncio.run(
        world.state.save_cursor(claim, None)
    )  # links and cursors, no mode: an earlier release's state
    upgraded = Deployment.__new__(Deployment)
    upgraded.__dict__.update(world.__dict__)  # the same tenant, now deployed with initialMode plan
    assert upgraded.mode().mode is Mode.APPLY
    upgraded.directory.add_user(account("new", officeLocation="Paris"))
    assert upgraded.sync().totals()["created"] == 1
    assert asyncio.run(mode_of(world.state, Mode.PLAN)).recorded


def test_switching_to_plan_stops_a_pass_that_is_writing_at_its_next_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from provisioning.service import slicing

    monkeypatch.setattr(slicing, "STEP", 2)
    world = Deployment()
    world.sync()
    world.switch(Mode.APPLY, 6)
    real = world.druva.create_user
    made = 0

    async def create_then_switch(user: object) -> object:
        nonlocal made
        made += 1
        if made == 2:  # an admin runs `mode plan` while the pass writes
            await switch_mode(world.state, world.clock.now(), Mode.PLAN, Mode.PLAN)
        return await real(user)  # type: ignore[arg-type]

    world.druva.create_user = create_then_switch  # type: ignore[method-assign,assignment]
    report = world.sync()
    assert made == 2 and any("switched to plan-only mode: 4 accounts not written" in n for n in report.notes)
    world.druva.create_user = real  # type: ignore[method-assign]
    again = world.sync()
    assert again.dry_run and len([w for w in world.druva.writes if w[0] == "create"]) == 2


def test_the_first_pass_that_applies_stays_pending_while_an_account_failed_for_a_passing_reason() -> None:
    from provisioning.errors import TransientError

    world = Deployment()
    world.sync()
    world.switch(Mode.APPLY, 6)
    world.druva.fail_creates["ann@contoso.com"] = TransientError("Druva answered 503")
    first = world.sync()
    assert first.totals()["created"] == 5 and world.mode().first_apply_pending
    second = world.sync()  # read everyone again: ann was decided only by plan-only passes before
    assert second.kind is RunKind.FULL and second.totals()["created"] == 1
    assert not world.mode().first_apply_pending


def test_the_first_applying_pass_counts_its_creates_over_all_its_slices() -> None:
    world = Deployment()
    world.sync()
    world.switch(Mode.APPLY, 6)
    bound = SliceBound(accounts=2, seconds=600)
    asyncio.run(run_sync(world.run(), bound=bound, whole=False))
    for name in ("new1", "new2"):  # hires between the slices: 8 would be more than confirmed
        world.directory.add_user(account(name, officeLocation="Paris"))
    stopped = None
    for _ in range(5):
        report = asyncio.run(run_sync(world.run(), bound=bound, whole=False))
        if report.safety_stopped:
            stopped = report
            break
    assert stopped is not None and "would create 8 Druva users, more than the 6" in (stopped.stopped or "")
    assert len([w for w in world.druva.writes if w[0] == "create"]) <= 6


def test_a_plan_the_safety_guard_would_stop_says_so() -> None:
    world = Deployment(seed_policy(max_preserve_fraction=0.2))
    world.sync()
    world.switch(Mode.APPLY, 6)
    world.sync()
    world.switch(Mode.PLAN)
    for name in ("ann", "ben", "cat"):  # 3 leavers of 6 managed: more than 20 % would be preserved
        world.directory.update_user(f"id-{name}", account_enabled=False)
    report = world.sync()
    assert any("applied, this plan would be refused: safety stop" in note for note in report.notes)
    plan = asyncio.run(latest_plans(world.state))["delta"]
    assert plan.stopped is not None and "preserve 3 of 6" in plan.stopped
    status = asyncio.run(read_status(world.state, world.clock.now(), Mode.PLAN))
    assert status.problems[0].code == PLAN_ONLY


def test_a_dry_run_while_the_first_apply_is_pending_shows_the_full_pass_it_will_be() -> None:
    world = Deployment()
    world.sync()
    world.sync()  # the cursors moved: a delta dry run would see nothing
    world.switch(Mode.APPLY, 6)
    report = world.sync(dry_run=True)
    assert report.kind is RunKind.FULL and report.totals()["created"] == 6 and world.druva.writes == []
