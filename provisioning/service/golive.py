"""The state's mode (plan-only or apply) and the plans recorded while it plans: see
``provisioning.domain.golive``. Both are records every state store already keeps (cursor records)."""

from __future__ import annotations

import json
import logging
from datetime import datetime

from provisioning.config import ConfigError
from provisioning.domain.golive import Mode, ModeRecord, PlanSummary, assumed_mode, summarise
from provisioning.errors import ConcurrencyConflict, CursorBusy
from provisioning.ports import StateStore
from provisioning.service import telemetry
from provisioning.service.context import Run
from provisioning.service.report import RunReport

log = logging.getLogger("provisioning")

MODE = "mode"
USERS_CURSOR = "users"  # the users delta cursor (service.sync): moved by every pass that finished
PLANS = "plans"  # the latest plan of each kind (delta, full)
LEASE_SECONDS = 30.0
MODE_COMMAND = "python -m provisioning mode"


async def mode_of(state: StateStore, initial: Mode) -> ModeRecord:
    """The state's mode. One not recorded yet is ``initial`` for a fresh state (no pass has moved the
    users cursor, nobody is linked) and apply for one that ran before this record existed."""
    value = (await state.get_cursor(MODE)).value
    if value:
        return ModeRecord.parse(value, initial)
    fresh = (await state.get_cursor(USERS_CURSOR)).value is None and await state.count_managed() == 0
    return ModeRecord.parse(None, assumed_mode(initial, fresh=fresh))


async def keep_mode(run: Run, mode: ModeRecord) -> ModeRecord:
    """The first pass that writes records the mode it runs in, so that every later reader (the command
    line without ``PROVISIONING_INITIAL_MODE``, a redeploy with another one) sees the same. An admin's
    switch made meanwhile wins."""
    if mode.recorded:
        return mode
    state = run.services.state
    claim = await state.claim_cursor(MODE, run.run_id, run.now(), LEASE_SECONDS)
    if claim.value:  # written meanwhile
        await state.release_cursor(claim)
        return ModeRecord.parse(claim.value, mode.mode)
    kept = ModeRecord(mode.mode, run.now())
    await state.save_cursor(claim, kept.to_json())
    return kept


async def latest_plans(state: StateStore) -> dict[str, PlanSummary]:
    """The latest plan recorded of each kind; an unreadable record reads as none."""
    value = (await state.get_cursor(PLANS)).value
    try:
        stored = json.loads(value) if value else {}
        return {kind: PlanSummary.from_json(plan) for kind, plan in dict(stored).items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        log.warning("the recorded plans cannot be read; the next plan-only pass writes them again")
        return {}


async def switch_mode(
    state: StateStore, now: datetime, initial: Mode, mode: Mode, *, confirm_creates: int | None = None
) -> ModeRecord:
    """An admin's switch. To apply, the number of Druva users the first applying pass may create must be
    confirmed (``confirm_creates``: the plan's creates, read first); to plan, nothing is asked."""
    current = await mode_of(state, initial)
    if mode is Mode.PLAN:
        wanted = current.planning(now)
    else:
        if confirm_creates is None or confirm_creates < 0:
            plans = await latest_plans(state)
            full = plans.get("full")
            seen = f"the latest full plan creates {full.creates}" if full else "no full plan is recorded yet"
            raise ConfigError(
                [
                    f"switching to apply needs --confirm-creates N, the number of Druva users the first "
                    f"applying pass may create ({seen}; read it with `python -m provisioning sync --dry-run "
                    "--full`)"
                ]
            )
        wanted = current.applying(confirm_creates, now)
    await _save(state, MODE, wanted.to_json(), "mode-switch", now)
    log.warning("mode switched from %s to %s", current.mode.value, wanted.mode.value)
    return wanted


async def record_plan(run: Run, report: RunReport, stopped: str | None = None) -> PlanSummary:
    """Record what this plan-only pass would have done, for status and the admin's go-live decision;
    ``stopped``: the safety stop that would refuse it if it applied."""
    plan = summarise(run.run_id, report.kind.value, run.now(), report.decisions).with_stop(stopped)
    plans = await latest_plans(run.services.state)
    plans[plan.kind] = plan
    plans_json = json.dumps({kind: p.to_json() for kind, p in plans.items()}, sort_keys=True)
    await _save(run.services.state, PLANS, plans_json, run.run_id, run.now())
    telemetry.emit(telemetry.plan_record(plan))
    return plan


async def first_apply_done(run: Run, record: ModeRecord) -> None:
    """The first applying pass is over: its limit on creates goes. Unless an admin switched the mode
    while it ran: then their record stands."""
    await _replace(run, record, record.first_apply_done())


async def first_apply_goes_on(run: Run, record: ModeRecord, created: int) -> ModeRecord:
    """A slice of the first applying pass ended with work left: count its creates for the next slices."""
    going_on = record.first_apply_goes_on(created)
    return going_on if await _replace(run, record, going_on) else record


async def _replace(run: Run, expected: ModeRecord, wanted: ModeRecord) -> bool:
    """Write ``wanted`` if the record is still ``expected``; False when an admin changed it meanwhile."""
    state = run.services.state
    try:
        claim = await state.claim_cursor(MODE, run.run_id, run.now(), LEASE_SECONDS)
    except (CursorBusy, ConcurrencyConflict):
        return False  # an admin is switching right now: the next pass sees their record
    if ModeRecord.parse(claim.value, run.initial_mode) != expected:
        await state.release_cursor(claim)
        return False
    await state.save_cursor(claim, wanted.to_json())
    return True


async def _save(state: StateStore, name: str, value: str, owner: str, now: datetime) -> None:
    try:
        claim = await state.claim_cursor(name, owner, now, LEASE_SECONDS)
    except (CursorBusy, ConcurrencyConflict) as busy:
        raise CursorBusy(f"the {name} record is being written by another run") from busy
    await state.save_cursor(claim, value)
