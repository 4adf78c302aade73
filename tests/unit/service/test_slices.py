"""Long passes in slices: one slice per invocation, a continuation for the rest, the cursors moved
only by the last slice, and a pass that lost its lease stopping before its next write."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest

from provisioning.domain.druva import DruvaUser
from provisioning.domain.work import ContinuePass, WorkMessage, delta_hint
from provisioning.errors import LeaseLost
from provisioning.service import lease, slicing
from provisioning.service.context import Run, Services
from provisioning.service.dispatch import handle_work
from provisioning.service.lease import LEASE_SECONDS
from provisioning.service.report import RunReport
from provisioning.service.slicing import SliceBound
from provisioning.service.sync import run_sync
from tests.builders import account
from tests.queue_fake import InProcessQueue
from tests.unit.service.test_sync import World

TWO = SliceBound(accounts=2, seconds=600)
CREATED = {"ann", "ben", "cat", "dan", "fay", "help"}


def slice_of(world: World, *, full: bool = False, bound: SliceBound = TWO, whole: bool = False) -> RunReport:
    services = Services(world.directory, world.druva, world.state, world.clock)
    return asyncio.run(run_sync(Run(services, world.policy), full=full, bound=bound, whole=whole))


def stored(world: World) -> dict[str, object]:
    value = asyncio.run(world.state.get_cursor("users")).value
    return json.loads(value) if value else {}


def creates(world: World) -> list[object]:
    return [what for kind, what in world.druva.writes if kind == "create"]


def test_a_pass_goes_on_slice_by_slice_and_only_the_last_moves_the_cursors() -> None:
    world = World()
    first = slice_of(world)

    assert len(creates(world)) == 2 and first.pending == 4
    assert first.continuation == (first.run_id, 1)
    assert first.totals()["created"] == 2
    assert stored(world)["pass"] == {"id": first.run_id, "kind": "full", "slices": 1}
    assert "delta" not in stored(world)  # the cursors have not moved
    assert asyncio.run(world.state.get_cursor("groups")).value is None

    second = slice_of(world)
    assert second.continuation == (first.run_id, 2) and len(creates(world)) == 4
    assert any(f"carrying on pass {first.run_id}" in note for note in second.notes)
    last = slice_of(world)

    assert last.continuation is None and last.pending == 0
    assert sorted(str(e).split("@")[0] for e in creates(world)) == sorted(CREATED)  # each once
    assert "pass" not in stored(world) and stored(world)["delta"]
    assert asyncio.run(world.state.get_cursor("groups")).value is not None
    writes = len(world.druva.writes)
    assert slice_of(world).totals()["created"] == 0 and len(world.druva.writes) == writes


def test_a_reconciliation_in_progress_is_carried_on_as_one_by_whichever_pass_comes_next() -> None:
    world = World()
    world.sync()  # the cursors exist: a delta pass would read only what changed
    for name in ("gil", "hal", "ida"):
        world.directory.add_user(account(name, officeLocation="Chicago"))

    first = slice_of(world, full=True, bound=SliceBound(accounts=1, seconds=600))
    assert first.kind == "full" and first.pending == 2
    assert stored(world)["pass"] == {"id": first.run_id, "kind": "full", "slices": 1}

    hint = slice_of(world, full=False, bound=SliceBound(accounts=1, seconds=600))  # a delta hint
    assert hint.kind == "full" and hint.pending == 1  # it carried the reconciliation on
    assert stored(world)["pass"] == {"id": first.run_id, "kind": "full", "slices": 2}
    slice_of(world)
    assert "pass" not in stored(world) and len(creates(world)) == 9


def test_the_command_line_runs_every_slice_in_one_process() -> None:
    world = World()
    report = slice_of(world, whole=True)

    assert report.continuation is None and report.totals()["created"] == 6
    assert len(creates(world)) == 6
    assert "pass" not in stored(world) and stored(world)["delta"]


def test_the_guard_judges_the_whole_plan_before_the_first_slice() -> None:
    world = World()
    world.sync()
    for name in ("ann", "ben", "cat"):
        world.directory.delete_user(f"id-{name}")
    writes = len(world.druva.writes)

    report = slice_of(world, bound=SliceBound(accounts=1, seconds=600))

    assert report.safety_stopped and report.exit_code == 3
    assert len(world.druva.writes) == writes  # not even the first slice


def test_the_worker_hands_a_long_pass_to_continuations(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(slicing, "WORKER_SLICE", TWO)
    world, queue = World(), InProcessQueue()
    services = Services(world.directory, world.druva, world.state, world.clock, queue)
    said = asyncio.run(handle_work(delta_hint(world.clock.now(), "test"), Run(services, world.policy), None))
    assert "created 2" in said
    handled: list[WorkMessage] = []

    async def worker(message: WorkMessage) -> None:
        handled.append(message)
        await handle_work(message, Run(services, world.policy), None)

    assert asyncio.run(queue.drain(worker)) == 2
    assert [m.kind for m in handled] == [ContinuePass.kind, ContinuePass.kind]
    assert [m.message_id.rsplit("-", 1)[1] for m in handled] == ["2", "3"]
    assert len(creates(world)) == 6 and "pass" not in stored(world)


def test_a_continuation_for_a_pass_already_finished_writes_nothing() -> None:
    world, queue = World(), InProcessQueue()
    world.sync()
    services = Services(world.directory, world.druva, world.state, world.clock, queue)
    writes = len(world.druva.writes)
    said = asyncio.run(
        handle_work(
            WorkMessage(ContinuePass("gone"), message_id="continue-gone-2"),
            Run(services, world.policy),
            None,
        )
    )
    assert "nothing to do" in said and len(world.druva.writes) == writes and queue.pending() == []


def test_a_pass_whose_lease_ran_out_stops_before_its_next_write() -> None:
    world = World()
    services = Services(world.directory, world.druva, world.state, world.clock)
    real_create = world.druva.create_user

    async def slow_create(user: object) -> DruvaUser:
        created = await real_create(user)  # type: ignore[arg-type]
        world.clock.advance(LEASE_SECONDS)  # the process stalled past its lease, no heartbeat got in
        return created

    world.druva.create_user = slow_create  # type: ignore[method-assign]
    run = Run(services, world.policy, concurrency=1)

    with pytest.raises(LeaseLost):
        asyncio.run(run_sync(run, bound=SliceBound(accounts=100, seconds=600)))

    assert len(creates(world)) == 1
    created = world.druva.by_email(str(creates(world)[0]))
    assert created is not None
    owner = asyncio.run(world.state.owner_of(created.user_id))
    assert owner is not None  # the write it had made is linked: the next pass will not redo it
    world.druva.create_user = real_create  # type: ignore[method-assign]
    report = slice_of(world, whole=True)
    assert report.totals()["created"] == 5 and len(creates(world)) == 6


def test_a_pass_whose_lease_was_taken_over_stops_and_the_other_keeps_the_cursors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(lease, "HEARTBEAT_SECONDS", 0.01)
    world = World()
    services = Services(world.directory, world.druva, world.state, world.clock)
    real_create = world.druva.create_user

    async def create_then_lose_the_lease(user: object) -> DruvaUser:
        created = await real_create(user)  # type: ignore[arg-type]
        if len(creates(world)) == 1:  # another pass takes the cursors over (its clock is ahead)
            later = world.clock.now() + timedelta(seconds=LEASE_SECONDS + 1)
            for name in ("users", "groups"):
                await world.state.claim_cursor(name, "other-pass", later, LEASE_SECONDS)
        await asyncio.sleep(0.05)  # long enough for a heartbeat to find out
        return created

    world.druva.create_user = create_then_lose_the_lease  # type: ignore[method-assign]
    run = Run(services, world.policy, concurrency=1)

    with pytest.raises(LeaseLost, match="taken over"):
        asyncio.run(run_sync(run, bound=SliceBound(accounts=100, seconds=600)))

    assert len(creates(world)) == 1
    held = asyncio.run(world.state.get_cursor("users"))
    assert held.lease_owner == "other-pass" and held.value is None
