"""The worker: one Service Bus message, parsed into typed work once, then one use case
(see ``provisioning.service.dispatch``)."""

from __future__ import annotations

import logging

import azure.functions as func

from provisioning.bootstrap import work_from_message
from provisioning.entrypoints.functions import runtime
from provisioning.service.dispatch import carry_out_work

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
            work = work_from_message(message.get_body(), message.message_id)
        with invocation.step(f"doing {work.kind} work"):
            now = runtime.clock().now()
            summary = await carry_out_work(work, runtime.run, runtime.endpoint(), runtime.queue(), now)
        log.info("%s", summary, extra={"message_id": message.message_id})
