"""The delta pass and the full reconciliation: read Entra, decide every touched account, apply.

A pass holds the leases of both delta cursors (one writer per cursor, kept alive by a heartbeat: see
``provisioning.service.lease``), reads membership then users, plans every decision before writing
anything (so the mass-preserve guard can refuse the plan as a whole), carries it out, and only then
moves the cursors on. If an account failed for a reason worth retrying, the cursors stay where they
were: the next pass reads the same changes again and the accounts that succeeded are no-ops by then.

Long passes work in slices (``SliceBound``: at most N accounts or T seconds per invocation). In the
worker a pass carries out one slice, records in the users cursor that the pass is still in progress
(its id, kind and slice number; the delta cursors themselves do not move), and hands over to a
continuation message. The continuation, or any pass that comes first, sees the pass in progress and
carries it on: it reads from the same unmoved cursors, plans again (the guard judges the remaining
plan as a whole again; accounts finished by earlier slices are no-ops through their links) and does
the next slice. Only the slice that finishes the plan moves the cursors. The command line runs every
slice of a pass in one process, through the same loop, without planning again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta

from provisioning.domain.cursor import UsersCursor
from provisioning.domain.golive import ModeRecord, check_creates
from provisioning.domain.planner import check_safety
from provisioning.domain.state import RunKind, RunSummary
from provisioning.errors import AuthError
from provisioning.service import slicing, telemetry
from provisioning.service.access import clear_refusal, record_refusal
from provisioning.service.binding import check_binding
from provisioning.service.context import Run
from provisioning.service.golive import (
    MODE_COMMAND,
    first_apply_done,
    first_apply_goes_on,
    keep_mode,
    mode_of,
    record_plan,
)
from provisioning.service.lease import CursorLeases
from provisioning.service.planning import GROUPS, USERS, Plan, commit, follow_up, plan_pass
from provisioning.service.report import RunReport, attach
from provisioning.service.slicing import SliceBound, Slicer

log = logging.getLogger("provisioning")


async def run_sync(
    run: Run,
    *,
    full: bool = False,
    bound: SliceBound | None = None,
    whole: bool = True,
    notified_at: datetime | None = None,
    look: bool = False,
) -> RunReport:
    """One pass (``whole``), or its next slice (the worker). ``look``: a follow-up look (see
    ``provisioning.domain.followups``), which reads the groups delta only for a pending group promise.
    Raises ``CursorBusy`` if another pass holds the cursors, ``LeaseLost`` if this one lost them mid-way
    (it stopped before its next write). ``report.continuation`` is set when a slice left work for a
    continuation. Every pass that took the
    cursors emits one telemetry record, also one that ends in an error; ``notified_at`` (when the
    notification behind it was received, if known) adds the notification → Druva latency. A pass that
    Graph or Druva refuses access (``AuthError``) is remembered for ``status`` until one gets through."""
    state = run.services.state
    try:
        report = await _pass(run, full=full, bound=bound, whole=whole, notified_at=notified_at, look=look)
    except AuthError as refused:
        if not run.dry_run:
            await record_refusal(state, run.now(), "a pass", refused)
        raise
    if not run.dry_run:
        await clear_refusal(state, run.now(), "a pass")
    return report


async def _pass(
    run: Run,
    *,
    full: bool,
    bound: SliceBound | None,
    whole: bool,
    notified_at: datetime | None,
    look: bool,
) -> RunReport:
    started = run.now()
    report = RunReport(run.run_id, RunKind.FULL if full else RunKind.DELTA, run.dry_run)
    bound_now = await check_binding(run)  # before anything is read: a state of other tenants is refused
    if bound_now:
        report.notes.append(bound_now)
    mode = await mode_of(run.services.state, run.initial_mode)
    if mode.first_apply_pending and not full:  # a dry run too: it shows what the next pass will do
        full = True  # what the plan-only passes decided was never carried out: read everyone
        report.kind = RunKind.FULL
        report.notes.append("the first pass that applies reads everyone")
    report.dry_run = run.dry_run or mode.plan_only
    if not run.dry_run:
        mode = await keep_mode(run, mode)  # the mode it runs in, recorded: every reader sees the same
    if run.dry_run:  # a dry run only reads the cursors: it must write nothing, leases included
        with _telling(run, report, started, notified_at):
            await _dry_pass(run, report, full=full)
        _tell(run, report, started, notified_at)
        return report
    async with CursorLeases(run.services.state, run.services.clock, run.run_id, (USERS, GROUPS)) as leases:
        with _telling(run, report, started, notified_at):
            await _leased_pass(
                run,
                report,
                leases,
                mode,
                full=full,
                bound=bound or slicing.WORKER_SLICE,
                whole=whole,
                look=look,
            )
    await run.services.state.record_run(_tell(run, report, started, notified_at))
    return report


async def _dry_pass(run: Run, report: RunReport, *, full: bool) -> None:
    claims = {USERS: await run.services.state.get_cursor(USERS)}
    claims[GROUPS] = await run.services.state.get_cursor(GROUPS)
    ongoing = UsersCursor.parse(claims[USERS].value)
    await plan_pass(run, claims, report, full=full or ongoing.full_in_progress)
    await _judge(run, report)


async def _leased_pass(
    run: Run,
    report: RunReport,
    leases: CursorLeases,
    mode: ModeRecord,
    *,
    full: bool,
    bound: SliceBound,
    whole: bool,
    look: bool,
) -> None:
    clock_started = time.monotonic()
    fenced = replace(run, fence=leases.fence)  # every write of this pass is fenced by its own leases
    cursor = UsersCursor.parse(leases.claims[USERS].value)
    ongoing = cursor.in_progress
    if ongoing is not None:
        report.notes.append(f"carrying on pass {ongoing.pass_id} (slice {ongoing.slices_done + 1})")
    plan = await plan_pass(
        fenced,
        dict(leases.claims),
        report,
        full=full or cursor.full_in_progress,
        look=look and ongoing is None,
    )
    if mode.plan_only:
        await _plan_only(fenced, report, leases, plan)
    elif await _judge(fenced, report, mode):
        await Slicer(fenced, plan, report, leases, bound, clock_started).carry_out(ongoing, whole=whole)
        if mode.first_apply_pending:
            await _first_apply_progress(fenced, report, mode)


async def _first_apply_progress(run: Run, report: RunReport, mode: ModeRecord) -> None:
    """The first applying pass's limit on creates holds over all its slices; it is done once a slice
    finishes it with no account failed for a passing reason (those the plan-only passes moved the
    delta cursor past: the next pass reads everyone again for them)."""
    if report.continuation is not None:
        await first_apply_goes_on(run, mode, report.totals()["created"])
    elif not any(f.transient for f in report.failures):
        await first_apply_done(run, mode)


async def _plan_only(run: Run, report: RunReport, leases: CursorLeases, plan: Plan) -> None:
    """Plan-only mode: record the plan and move the cursors on, writing nothing to Druva. (The first pass
    that applies reads everyone, so nothing decided here is lost.)"""
    preserves = any(d.preserves for d in report.decisions)
    managed = await run.services.state.count_managed() if preserves else 0
    verdict = check_safety(report.decisions, managed, run.policy.max_preserve_fraction)
    stopped = None if verdict.allowed else verdict.message()
    summary = await record_plan(run, report, stopped)
    if stopped:
        report.notes.append(f"applied, this plan would be refused: {stopped}")
    creates = f"; {summary.creates} Druva users to create" if summary.creates else ""
    report.notes.append(
        f"plan-only mode: nothing was written to Druva{creates}. When the plan is right: "
        f"{MODE_COMMAND} apply --confirm-creates N (N: the creates of the latest full plan)"
    )
    await commit(run, leases, plan)
    await follow_up(run, plan, report)


@contextmanager
def _telling(run: Run, report: RunReport, started: datetime, notified_at: datetime | None) -> Iterator[None]:
    """A pass that ends in an error still emits its one record, with the error, and the error carries
    what the pass did before it (the command line reports those counts, not zeros)."""
    try:
        yield
    except Exception as error:
        if not report.dry_run:
            report.withdraw_unsettled()
        attach(error, report)
        _tell(run, report, started, notified_at, error=f"{type(error).__name__}: {error}")
        raise


def _tell(
    run: Run, report: RunReport, started: datetime, notified_at: datetime | None, error: str | None = None
) -> RunSummary:
    """Emit the pass's one telemetry record; returns its summary for the run history."""
    summary = _summary(run, report, started)
    failures_total = len(report.failures)
    telemetry.emit(
        telemetry.pass_record(
            summary,
            failures_total=failures_total,
            error=error,
            notified_at=notified_at,
            held=len(report.held),
        )
    )
    return summary


async def _judge(run: Run, report: RunReport, mode: ModeRecord | None = None) -> bool:
    """The safety stops, on the whole plan, before any write: the first applying pass's limit on creates
    (``domain.golive``), then the mass-preserve guard. A plan that preserves no one passes whatever the
    count, so the managed accounts (in Table Storage a read of every link) are counted only for a plan
    that preserves someone."""
    creates = check_creates(mode, report.decisions) if mode is not None else None
    if creates is not None and not creates.allowed:
        report.refuse(creates)
        return False
    preserves = any(d.preserves for d in report.decisions)
    managed = await run.services.state.count_managed() if preserves else 0
    verdict = check_safety(report.decisions, managed, run.policy.max_preserve_fraction)
    report.safety = verdict
    if not verdict.allowed:
        report.refuse(verdict)
    return verdict.allowed


def _summary(run: Run, report: RunReport, started: datetime) -> RunSummary:
    return RunSummary(
        run_id=run.run_id,
        kind=report.kind,
        started_at=started,
        finished_at=started + timedelta(seconds=report.elapsed_seconds()),
        counts=report.totals(),
        dry_run=report.dry_run,
        stopped=report.stopped,
        failures=report.failures_kept(),
    )
