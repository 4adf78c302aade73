"""The worker: one queue message, one use case. Hints become delta passes; a pass already running
absorbs them through one scheduled follow-up; passing failures are retried later, not hot-looped."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from provisioning.domain.work import WorkMessage
from provisioning.errors import CursorBusy, TransientError
from provisioning.service import telemetry
from provisioning.service.context import Run
from provisioning.service.notifications import DELTA, LIFECYCLE, RECONCILE, follow_up
from provisioning.service.subscriptions import Endpoint, on_lifecycle_event
from provisioning.service.sync import run_sync

log = logging.getLogger("provisioning")

FOLLOW_UP_SECONDS = 30
RETRY_SECONDS = 60


KINDS = frozenset({DELTA, RECONCILE, LIFECYCLE})


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
        report = await run_sync(
            run, full=message.kind == RECONCILE, notified_at=telemetry.received_at(message.body)
        )
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
