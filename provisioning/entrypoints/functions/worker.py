"""The worker: one Service Bus message, parsed into typed work once, then one use case
(see ``provisioning.service.worker``)."""

from __future__ import annotations

import logging

import azure.functions as func

from provisioning.adapters.queue.servicebus import MalformedWork, from_service_bus
from provisioning.entrypoints.functions import runtime
from provisioning.errors import TransientError
from provisioning.service.worker import RETRY_SECONDS, handle_work, rescheduled

log = logging.getLogger("provisioning.worker")
bp = func.Blueprint()


@bp.function_name("worker")
@bp.service_bus_queue_trigger(
    arg_name="message", queue_name="%PROVISIONING_QUEUE%", connection="ServiceBusConnection"
)
async def worker(message: func.ServiceBusMessage) -> None:
    try:
        work = from_service_bus(message.get_body(), message.message_id)
    except MalformedWork as error:
        # Raising makes Service Bus redeliver and, after maxDeliveryCount, dead-letter it for a human.
        log.error("unprocessable message: %s", error)
        raise
    try:
        async with runtime.run() as run:
            summary = await handle_work(work, run, runtime.endpoint())
    except TransientError as error:
        # Graph or Druva unreachable before the work could start (resolving the mappings' groups and
        # catalog): later, as handle_work does. Raising would redeliver at once and, ten deliveries
        # later, dead-letter a message that only needed the outage to end.
        delay = error.retry_after or RETRY_SECONDS
        await runtime.queue().send([rescheduled(work, runtime.clock().now(), delay)])
        summary = f"{work.kind}: {error}; retry in {delay:g}s"
    log.info("%s", summary, extra={"message_id": message.message_id})
