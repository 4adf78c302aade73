"""Work messages over Azure Service Bus, sent with the SDK.

The Functions output binding cannot set ``MessageId`` (nor schedule a message), and duplicate detection
on ``MessageId`` is what collapses a burst of hints into one pass, so sends go through the SDK. The
client is opened once per process and reused: an AMQP connection and its token cost more than the
3 seconds Graph gives the webhook would comfortably allow on every call.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from provisioning.domain.work import MalformedWork, WorkMessage, parse_work

CONTENT_TYPE = "application/json"

__all__ = ["MalformedWork", "ServiceBusQueue", "encode_work", "from_service_bus", "to_service_bus_message"]


def encode_work(message: WorkMessage) -> bytes:
    """The message body on the wire: ``{"kind": …, "body": {…}}`` as JSON (ASCII: no surrogate survives)."""
    return json.dumps({"kind": message.kind, "body": message.body}).encode()


def from_service_bus(body: bytes, message_id: str | None) -> WorkMessage:
    """Parse a received body into typed work, once; MalformedWork (so it dead-letters) for anything else."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as error:
        raise MalformedWork(f"message {message_id}: body is not JSON") from error
    if not isinstance(data, dict):
        raise MalformedWork(f"message {message_id}: not a work message")
    try:
        work = parse_work(data.get("kind"), data.get("body", {}))
    except MalformedWork as error:
        raise MalformedWork(f"message {message_id}: {error}") from None
    return WorkMessage(work, message_id=message_id or "")


def to_service_bus_message(message: WorkMessage) -> Any:
    from azure.servicebus import ServiceBusMessage

    return ServiceBusMessage(
        encode_work(message),
        message_id=message.message_id or None,
        subject=message.kind,
        content_type=CONTENT_TYPE,
        scheduled_enqueue_time_utc=message.not_before,
    )


class ServiceBusQueue:
    def __init__(self, namespace: str, queue_name: str, credential: Any, *, client: Any = None) -> None:
        self._namespace, self._queue_name, self._credential = namespace, queue_name, credential
        self._client = client
        self._sender: Any = None

    async def _open_sender(self) -> Any:
        if self._sender is None:
            if self._client is None:
                from azure.servicebus.aio import ServiceBusClient

                self._client = ServiceBusClient(self._namespace, self._credential)
            self._sender = self._client.get_queue_sender(self._queue_name)
        return self._sender

    async def send(self, messages: Sequence[WorkMessage]) -> None:
        if not messages:
            return
        sender = await self._open_sender()
        await sender.send_messages([to_service_bus_message(m) for m in messages])

    async def aclose(self) -> None:
        if self._sender is not None:
            await self._sender.close()
        if self._client is not None:
            await self._client.close()
        self._sender = self._client = None
