"""The Service Bus adapter at the SDK boundary: the messages it builds, and that it reuses its sender."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from provisioning.adapters.queue.servicebus import (
    MalformedWork,
    ServiceBusQueue,
    from_service_bus,
    to_service_bus_message,
)
from provisioning.domain.work import DeltaPass, LifecycleEvent, Reconcile, WorkMessage
from tests.queue_fake import InProcessQueue

DUE = datetime(2026, 11, 26, 12, 0, 30, tzinfo=UTC)


def test_messages_carry_the_id_subject_schedule_and_a_json_body() -> None:
    built = to_service_bus_message(WorkMessage(DeltaPass("timer"), "delta-123", DUE))
    assert built.message_id == "delta-123"
    assert built.subject == "delta"
    assert built.content_type == "application/json"
    assert built.scheduled_enqueue_time_utc == DUE
    assert json.loads(b"".join(built.body)) == {"kind": "delta", "body": {"reason": "timer"}}


def test_a_message_round_trips() -> None:
    sent = WorkMessage(LifecycleEvent("s", "missed"), "m")
    built = to_service_bus_message(sent)
    assert json.loads(b"".join(built.body)) == {
        "kind": "lifecycle",
        "body": {"subscriptionId": "s", "event": "missed"},
    }
    assert from_service_bus(b"".join(built.body), "m") == sent


@pytest.mark.parametrize(
    "raw",
    [
        b"\xff",
        b"[]",
        b'{"kind": 1}',
        b'{"kind": "delta", "body": []}',
        b'{"kind": "explode", "body": {}}',
        b'{"kind": "delta", "body": {"reason": 3}}',
        b'{"kind": "lifecycle", "body": {"subscriptionId": "s", "event": "bogusEvent"}}',
        b'{"kind": "lifecycle", "body": {"subscriptionId": "s", "event": null}}',
        b'{"kind": "lifecycle", "body": {"subscriptionId": "s"}}',
        b'{"kind": "lifecycle", "body": {"subscriptionId": "", "event": "missed"}}',
        b"[" * 5000,
    ],
)
def test_malformed_bodies_are_refused(raw: bytes) -> None:
    with pytest.raises(MalformedWork):
        from_service_bus(raw, "m")


class FakeSender:
    def __init__(self) -> None:
        self.batches: list[list[Any]] = []
        self.closed = False

    async def send_messages(self, messages: list[Any], timeout: float | None = None) -> None:  # noqa: ASYNC109 (the SDK's signature)
        assert timeout is not None  # every send is bounded
        self.batches.append(messages)

    async def close(self) -> None:
        self.closed = True


class FakeClient:
    def __init__(self) -> None:
        self.senders: list[FakeSender] = []
        self.closed = False

    def get_queue_sender(self, queue_name: str) -> FakeSender:
        assert queue_name == "provisioning-work"
        self.senders.append(FakeSender())
        return self.senders[-1]

    async def close(self) -> None:
        self.closed = True


def test_one_sender_serves_every_send_and_closes_once() -> None:
    client = FakeClient()
    queue = ServiceBusQueue("ns.servicebus.windows.net", "provisioning-work", credential=None, client=client)

    async def scenario() -> None:
        await queue.send([WorkMessage(DeltaPass(), "a"), WorkMessage(Reconcile(), "b")])
        await queue.send([])
        await queue.send([WorkMessage(DeltaPass(), "c")])
        await queue.aclose()

    asyncio.run(scenario())
    assert len(client.senders) == 1
    assert [[m.message_id for m in batch] for batch in client.senders[0].batches] == [["a", "b"], ["c"]]
    assert client.senders[0].closed and client.closed


def test_in_process_queue_drops_duplicates_and_holds_scheduled_messages() -> None:
    queue = InProcessQueue()
    handled: list[str] = []

    async def handle(message: WorkMessage) -> None:
        handled.append(message.message_id)
        if message.message_id == "a":
            await queue.send([WorkMessage(DeltaPass(), "c")])

    async def scenario() -> None:
        await queue.send(
            [
                WorkMessage(DeltaPass(), "a"),
                WorkMessage(DeltaPass(), "a"),
                WorkMessage(DeltaPass(), "later", DUE),
            ]
        )
        assert await queue.drain(handle, now=DUE.replace(second=0)) == 2
        assert await queue.drain(handle, now=DUE) == 1

    asyncio.run(scenario())
    assert handled == ["a", "c", "later"]
