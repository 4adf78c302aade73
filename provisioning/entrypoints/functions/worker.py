"""The worker: one Service Bus message, parsed into typed work once, then one use case
(see ``provisioning.service.worker``)."""

from __future__ import annotations

import logging

import azure.functions as func

from provisioning.adapters.queue.servicebus import from_service_bus
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
    with runtime.reported(log, f"worker (message {message.message_id})") as invocation:
        # Unreadable work raises: Service Bus redelivers it and, after maxDeliveryCount, dead-letters it
        # for a human.
        with invocation.step("reading the message"):
            work = from_service_bus(message.get_body(), message.message_id)
        try:
            with invocation.step(f"doing {work.kind} work"):
                async with runtime.run() as run:
                    summary = await handle_work(work, run, runtime.endpoint())
        except TransientError as error:
            # Graph or Druva unreachable before the work could start (resolving the mappings' groups and
            # catalog): later, as handle_work does. Raising would redeliver at once and, ten deliveries
            # later, dead-letter a message that only needed the outage to end.
            delay = error.retry_after or RETRY_SECONDS
            with invocation.step(f"rescheduling {work.kind} work in {delay:g}s"):
                await runtime.queue().send([rescheduled(work, runtime.clock().now(), delay)])
            summary = f"{work.kind}: {error}; retry in {delay:g}s"
        log.info("%s", summary, extra={"message_id": message.message_id})
