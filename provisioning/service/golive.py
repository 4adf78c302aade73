"""The state's mode (plan-only or apply) and the plans recorded while it plans: see
``provisioning.domain.golive``. Both are records every state store already keeps (cursor records)."""

from __future__ import annotations

import json
import logging
from datetime import datetime

from provisioning.config import ConfigError
from provisioning.domain.golive import Mode, ModeRecord, PlanSummary, summarise
from provisioning.errors import ConcurrencyConflict, CursorBusy
from provisioning.ports import StateStore
from provisioning.service import telemetry
from provisioning.service.context import Run
from provisioning.service.report import RunReport

log = logging.getLogger("provisioning")

MODE = "mode"
PLANS = "plans"  # the latest plan of each kind (delta, full)
LEASE_SECONDS = 30.0
MODE_COMMAND = "python -m provisioning mode"


async def mode_of(state: StateStore, initial: Mode) -> ModeRecord:
    return ModeRecord.parse((await state.get_cursor(MODE)).value, initial)


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


async def record_plan(run: Run, report: RunReport) -> PlanSummary:
    """Record what this plan-only pass would have done, for status and the admin's go-live decision."""
    plan = summarise(run.run_id, report.kind.value, run.now(), report.decisions)
    plans = await latest_plans(run.services.state)
    plans[plan.kind] = plan
    plans_json = json.dumps({kind: p.to_json() for kind, p in plans.items()}, sort_keys=True)
    await _save(run.services.state, PLANS, plans_json, run.run_id, run.now())
    telemetry.emit(telemetry.plan_record(plan))
    return plan


async def first_apply_done(run: Run, record: ModeRecord) -> None:
    """The first applying pass is over: its limit on creates goes. Unless an admin switched the mode
    while it ran: then their record stands."""
    state = run.services.state
    try:
        claim = await state.claim_cursor(MODE, run.run_id, run.now(), LEASE_SECONDS)
    except (CursorBusy, ConcurrencyConflict):
        return  # an admin is switching right now: the next applying pass sees their record
    if ModeRecord.parse(claim.value, run.initial_mode) != record:
        await state.release_cursor(claim)
        return
    await state.save_cursor(claim, record.first_apply_done().to_json())


async def _save(state: StateStore, name: str, value: str, owner: str, now: datetime) -> None:
    try:
        claim = await state.claim_cursor(name, owner, now, LEASE_SECONDS)
    except (CursorBusy, ConcurrencyConflict) as busy:
        raise CursorBusy(f"the {name} record is being written by another run") from busy
    await state.save_cursor(claim, value)
