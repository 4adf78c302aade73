"""Timers: keep the subscriptions alive and run a delta pass as a safety net every 15 minutes;
reconcile everything once a night (drift that deltas miss, and the 7-day life of delta cursors)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import azure.functions as func

from provisioning.domain.work import Reconcile, WorkMessage
from provisioning.entrypoints.functions import runtime
from provisioning.service.notifications import delta_hint
from provisioning.service.subscriptions import keep_subscriptions

log = logging.getLogger("provisioning.timers")
bp = func.Blueprint()


@bp.function_name("keep_watch")
@bp.timer_trigger(arg_name="timer", schedule="0 */15 * * * *", run_on_startup=False, use_monitor=True)
async def keep_watch(timer: func.TimerRequest) -> None:
    now = datetime.now(UTC)
    try:
        await _keep(now)
    finally:
        # The safety net goes out whatever happened to the subscriptions: it matters most when they fail.
        await runtime.queue().send([delta_hint(now, "timer")])


async def _keep(now: datetime) -> None:
    endpoint = runtime.endpoint()
    if endpoint is None:
        log.error(
            "GRAPH_NOTIFICATION_URL and GRAPH_CLIENT_STATE must be set: no subscriptions, delta passes only"
        )
        return
    async with runtime.services() as services:  # if they cannot open, the invocation fails, visibly
        for line in await keep_subscriptions(services, endpoint, now):
            log.info("subscription %s", line)


@bp.function_name("nightly_reconciliation")
@bp.timer_trigger(arg_name="timer", schedule="0 30 3 * * *", run_on_startup=False, use_monitor=True)
async def nightly_reconciliation(timer: func.TimerRequest) -> None:
    today = datetime.now(UTC).date().isoformat()
    await runtime.queue().send([WorkMessage(Reconcile("nightly"), message_id=f"reconcile-{today}")])
