"""The worker: one queue message, one use case, chosen from one table by the kind of work.

Hints become delta passes; a pass already running absorbs them through one scheduled follow-up; passing
failures are retried later, not hot-looped. The work arrives typed (``provisioning.domain.work``): a
message that is not valid work never gets here, it was refused where it left the queue.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime
from typing import Any

from provisioning.domain.work import (
    FOLLOW_UP_SECONDS,
    LOOK,
    RETRY_SECONDS,
    ContinuePass,
    DeltaPass,
    LifecycleEvent,
    Reconcile,
    Watch,
    Work,
    WorkMessage,
    continuation,
    look,
    rescheduled,
)
from provisioning.errors import CursorBusy, NeedsHuman, TransientError
from provisioning.ports import WorkQueue
from provisioning.service import telemetry
from provisioning.service.binding import StateBoundElsewhere
from provisioning.service.context import Run
from provisioning.service.followups import first_look, promises_of
from provisioning.service.report import RunReport
from provisioning.service.subscriptions import Endpoint, on_lifecycle_event
from provisioning.service.sync import run_sync

log = logging.getLogger("provisioning")


class PoisonMessage(NeedsHuman):
    """Work that cannot be carried out as configured: dead-letter it instead of retrying it."""


Handler = Callable[[Any, Run, "Endpoint | None"], Awaitable[str]]


async def _delta(work: DeltaPass, run: Run, endpoint: Endpoint | None) -> str:
    notified_at = telemetry.received_at({telemetry.RECEIVED_AT: work.received_at})
    return _said(await run_pass_slice(run, full=False, notified_at=notified_at, look=work.reason == LOOK))


async def _reconcile(work: Reconcile, run: Run, endpoint: Endpoint | None) -> str:
    return _said(await run_pass_slice(run, full=True))


async def _continue(work: ContinuePass, run: Run, endpoint: Endpoint | None) -> str:
    # Carries on whatever pass the cursors record (the first pass to take them may have done so already:
    # then this one is an ordinary delta pass, and finds little or nothing to do).
    return _said(await run_pass_slice(run, full=False))


async def _lifecycle(work: LifecycleEvent, run: Run, endpoint: Endpoint | None) -> str:
    if endpoint is None:
        raise PoisonMessage("lifecycle work needs the webhook endpoint settings")
    return await on_lifecycle_event(run.services, endpoint, work.subscription_id, work.event, run.now())


async def _watch(work: Watch, run: Run, endpoint: Endpoint | None) -> str:
    """Remember what the notifications named, and make sure a look follows the hint passes: a change may
    become readable only after them."""
    promises = await promises_of(work, run.policy, run.services.state)
    if not promises:
        return "watch: no object the mappings read"
    followed = await run.services.state.notice(promises)
    if not followed:
        return "watch: every notified object was read already"
    await _look_at(run, first_look(work.received, run.now()))
    return f"watch: following {followed} notified object(s) until a delta read returns them"


async def _look_at(run: Run, due: datetime) -> None:
    """One look at ``due``, shared by every promise and hold that wants one in the same window."""
    if run.services.queue is not None:
        await run.services.queue.send([look(due)])


HANDLERS: dict[type[Work], Handler] = {
    DeltaPass: _delta,
    Reconcile: _reconcile,
    LifecycleEvent: _lifecycle,
    ContinuePass: _continue,
    Watch: _watch,
}


RunOpener = Callable[[], AbstractAsyncContextManager[Run]]


async def handle_work(message: WorkMessage, run: Run, endpoint: Endpoint | None) -> str:
    """Carry out one queue message with a run already open; returns a one-line summary for the log."""

    @asynccontextmanager
    async def opened() -> AsyncIterator[Run]:
        yield run

    return await carry_out_work(message, opened, endpoint, run.services.queue, run.now())


async def carry_out_work(
    message: WorkMessage,
    open_run: RunOpener,
    endpoint: Endpoint | None,
    queue: WorkQueue | None,
    now: datetime,
) -> str:
    """Carry out one queue message in a run ``open_run`` opens (resolving the mappings may already meet
    an outage: the same rule applies to it). A passing failure is tried again later: the message is
    rescheduled on ``queue``, never redelivered at once, so ten deliveries in an outage do not
    dead-letter work that only needed the outage to end. Returns a one-line summary for the log."""
    handler = HANDLERS.get(type(message.work))
    if handler is None:
        raise PoisonMessage(f"no handler for {message.kind} work")
    try:
        async with open_run() as run:
            return await handler(message.work, run, endpoint)
    except StateBoundElsewhere as elsewhere:
        # Only an admin can settle it (status says so); redelivering would only fill the dead letters,
        # and the timer asks for a pass every 15 minutes, which reads from the cursors once it is settled.
        log.error("%s: refused: %s", message.kind, elsewhere)
        return f"{message.kind}: refused, the state belongs to other tenants (see status)"
    except CursorBusy:
        if queue is not None:
            await queue.send([rescheduled(message, now, FOLLOW_UP_SECONDS)])
        return f"{message.kind}: a pass is running; follow-up scheduled"
    except TransientError as error:
        delay = error.retry_after or RETRY_SECONDS
        if queue is None:
            raise
        await queue.send([rescheduled(message, now, delay)])
        return f"{message.kind}: {error}; retry in {delay:g}s"


def _said(report: RunReport) -> str:
    totals = ", ".join(f"{k} {v}" for k, v in report.totals().items() if v)
    return f"{report.kind} pass {report.run_id}: {totals or 'nothing to do'}" + (
        f"; {report.notes[-1]}" if report.notes else ""
    )


async def run_pass_slice(
    run: Run, *, full: bool, notified_at: datetime | None = None, look: bool = False
) -> RunReport:
    """One slice of a pass (a delta pass, a reconciliation, or a continuation, which carries on whatever
    pass the cursors record as in progress). When work remains, a continuation message carries it on;
    its id names the pass and the slice, so a redelivered slice cannot enqueue it twice. ``look``: a
    follow-up look, which reads the groups delta only when a group promise is pending."""
    report = await run_sync(run, full=full, whole=False, notified_at=notified_at, look=look)
    if report.continuation is not None and run.services.queue is not None:
        pass_id, slices_done = report.continuation
        await run.services.queue.send([continuation(pass_id, slices_done + 1)])
    if report.next_look is not None:
        await _look_at(run, report.next_look)
    return report
