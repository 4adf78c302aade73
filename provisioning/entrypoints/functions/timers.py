"""Timers: keep the subscriptions alive and run a delta pass as a safety net every 15 minutes;
reconcile everything once a night (drift that deltas miss, and the 7-day life of delta cursors)."""

from __future__ import annotations

import logging
from datetime import datetime

import azure.functions as func

from provisioning.domain.work import delta_hint, nightly_reconciliation_work
from provisioning.entrypoints.functions import runtime
from provisioning.errors import AuthError
from provisioning.service import telemetry
from provisioning.service.access import clear_refusal, record_refusal
from provisioning.service.subscriptions import keep_subscriptions

log = logging.getLogger("provisioning.timers")
bp = func.Blueprint()
UPKEEP = "subscription upkeep"  # what an access refusal of the upkeep is recorded as (status)


@bp.function_name("keep_watch")
@bp.timer_trigger(arg_name="timer", schedule="0 */15 * * * *", run_on_startup=False, use_monitor=True)
async def keep_watch(timer: func.TimerRequest) -> None:
    with runtime.reported(log, "keep_watch") as invocation:
        now = runtime.clock().now()
        try:
            with invocation.step("keeping the Graph subscriptions"):
                await _keep_subscriptions(now)
        finally:
            # The safety net goes out whatever happened to the subscriptions: it matters most when they fail.
            with invocation.step("asking for the safety-net delta pass"):
                await runtime.queue().send([delta_hint(now, "timer")])


async def _keep_subscriptions(now: datetime) -> None:
    """One upkeep record per run, ok or failed: the alert "subscription upkeep failing twice in a row"
    reads them."""
    endpoint = runtime.endpoint()
    if endpoint is None:
        missing = (
            "GRAPH_NOTIFICATION_URL and GRAPH_CLIENT_STATE must be set: no subscriptions, delta passes only"
        )
        log.error(missing)
        telemetry.emit(telemetry.upkeep_record([], error=missing))
        return
    try:
        async with runtime.services() as services:
            try:
                done = await keep_subscriptions(services, endpoint, now)
            except AuthError as refused:  # a Graph permission not granted yet: status says so
                await record_refusal(services.state, now, UPKEEP, refused)
                raise
            await clear_refusal(services.state, now, UPKEEP)
    except Exception as error:
        telemetry.emit(telemetry.upkeep_record([], error=f"{type(error).__name__}: {error}"))
        raise
    telemetry.emit(telemetry.upkeep_record(done))


@bp.function_name("nightly_reconciliation")
@bp.timer_trigger(arg_name="timer", schedule="0 30 3 * * *", run_on_startup=False, use_monitor=True)
async def nightly_reconciliation(timer: func.TimerRequest) -> None:
    with runtime.reported(log, "nightly_reconciliation") as invocation:
        today = runtime.clock().now().date().isoformat()
        with invocation.step("asking for the nightly full reconciliation"):
            await runtime.queue().send([nightly_reconciliation_work(today)])
