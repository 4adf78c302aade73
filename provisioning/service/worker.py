"""The worker: one queue message, one use case. Hints become delta passes; a pass already running
absorbs them through one scheduled follow-up; passing failures are retried later, not hot-looped."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from provisioning.domain.work import WorkMessage
from provisioning.errors import CursorBusy, TransientError
from provisioning.service.context import Run
from provisioning.service.notifications import DELTA, LIFECYCLE, RECONCILE, follow_up
from provisioning.service.report import RunReport
from provisioning.service.subscriptions import Endpoint, on_lifecycle_event
from provisioning.service.sync import run_sync

log = logging.getLogger("provisioning")

FOLLOW_UP_SECONDS = 30
RETRY_SECONDS = 60


CONTINUE = "continue"  # the next slice of a long pass (see provisioning.service.sync)
KINDS = frozenset({DELTA, RECONCILE, LIFECYCLE, CONTINUE})


class PoisonMessage(ValueError):
    """A message no handler understands: dead-letter it instead of retrying it."""


def require_known(message: WorkMessage) -> WorkMessage:
    if message.kind not in KINDS:
        raise PoisonMessage(f"unknown work kind {message.kind!r}")
    return message


async def handle_work(message: WorkMessage, run: Run, endpoint: Endpoint | None) -> str:
    """Carry out one queue message; returns a one-line summary for the log."""
    require_known(message)
    queue, now = run.services.queue, run.now()
    try:
        if message.kind == LIFECYCLE:
            if endpoint is None:
                raise PoisonMessage("lifecycle work needs the webhook endpoint settings")
            body = message.body
            return await on_lifecycle_event(
                run.services, endpoint, str(body["subscriptionId"]), str(body["event"]), now
            )
        report = await run_pass_slice(run, full=message.kind == RECONCILE)
    except CursorBusy:
        if queue is not None:
            await queue.send([_later(message, now, FOLLOW_UP_SECONDS)])
        return f"{message.kind}: a pass is running; follow-up scheduled"
    except TransientError as error:
        delay = error.retry_after or RETRY_SECONDS
        if queue is None:
            raise
        await queue.send([_later(message, now, delay)])
        return f"{message.kind}: {error}; retry in {delay:g}s"
    totals = ", ".join(f"{k} {v}" for k, v in report.totals().items() if v)
    return f"{report.kind} pass {report.run_id}: {totals or 'nothing to do'}" + (
        f"; {report.notes[-1]}" if report.notes else ""
    )


async def run_pass_slice(run: Run, *, full: bool) -> RunReport:
    """One slice of a pass (a delta pass, a reconciliation, or a continuation, which carries on whatever
    pass the cursors record as in progress). When work remains, a continuation message carries it on;
    its id names the pass and the slice, so a redelivered slice cannot enqueue it twice."""
    report = await run_sync(run, full=full, whole=False)
    if report.continuation is not None and run.services.queue is not None:
        pass_id, slices_done = report.continuation
        await run.services.queue.send(
            [WorkMessage(CONTINUE, {"pass": pass_id}, message_id=f"continue-{pass_id}-{slices_done + 1}")]
        )
    return report


def _later(message: WorkMessage, now: datetime, delay: float) -> WorkMessage:
    if message.kind == DELTA:
        return follow_up(now, delay)
    due = now + timedelta(seconds=delay)
    return WorkMessage(
        message.kind,
        message.body,
        message_id=f"{message.message_id}-retry-{int(due.timestamp())}",
        not_before=due,
    )
