"""The worker: one Service Bus message, parsed into typed work once, then one use case
(see ``provisioning.service.worker``)."""

from __future__ import annotations

import logging

import azure.functions as func

from provisioning.adapters.queue.servicebus import MalformedWork, from_service_bus
from provisioning.entrypoints.functions import runtime
from provisioning.service.worker import handle_work

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
    async with runtime.run() as run:
        summary = await handle_work(work, run, runtime.endpoint())
    log.info("%s", summary, extra={"message_id": message.message_id})
