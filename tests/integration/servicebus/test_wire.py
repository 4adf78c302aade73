"""The Service Bus adapter on the wire: the real azure-servicebus SDK, through the adapter's ``send()``, to an
AMQP 1.0 peer on the loopback that answers ``$cbs`` as Service Bus does and records every transfer.

The connection is the emulator's connection-string form (``UseDevelopmentEmulator=true``: plain AMQP,
the endpoint's own port). Failures must come back as the project's own errors within the webhook's bound.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import azure.servicebus.aio  # noqa: F401 (imported once here: a cold import takes ~1 s and is not a send)
import pytest

from provisioning.adapters.queue.servicebus import ServiceBusQueue, from_service_bus
from provisioning.domain.work import DeltaPass, LifecycleEvent, WorkMessage
from provisioning.errors import AuthError, TransientError
from tests.integration.servicebus.peers import (
    AmqpPeer,
    MutePort,
    closed_port_connection_string,
    elapsed_since,
)

QUEUE = "provisioning-work"
WEBHOOK_BOUND_SECONDS = 2.0  # the webhook answers Graph within this, whatever Service Bus does
DUE = datetime(2026, 11, 26, 12, 0, 30, tzinfo=UTC)
StartPeer = Callable[[str], AmqpPeer]


def send(connection_string: str, *batches: list[WorkMessage]) -> None:
    """Each batch through one adapter (one connection), then closed."""

    async def scenario() -> None:
        queue = ServiceBusQueue.from_connection_string(connection_string, QUEUE)
        try:
            for batch in batches:
                await queue.send(batch)
        finally:
            await queue.aclose()

    asyncio.run(scenario())


def transfers(peer: AmqpPeer) -> list[dict[str, Any]]:
    return [record for record in peer.records() if record["event"] == "transfer"]


def read_back(record: dict[str, Any]) -> WorkMessage:
    """What the worker makes of a message that arrived as recorded."""
    return from_service_bus(base64.b64decode(record["body"]), record["message_id"])


def failure_of(connection_string: str) -> tuple[BaseException, float]:
    """The error one send ends with, and how long ``send()`` took to give it (closing is not counted: the
    webhook has answered by then)."""

    async def scenario() -> tuple[BaseException, float]:
        queue = ServiceBusQueue.from_connection_string(connection_string, QUEUE)
        started = time.monotonic()
        try:
            await queue.send([WorkMessage(DeltaPass("notification"), "delta-1")])
        except (TransientError, AuthError) as error:
            return error, elapsed_since(started)
        finally:
            await queue.aclose()
        raise AssertionError("the send succeeded")

    return asyncio.run(scenario())


def test_messages_arrive_with_their_id_content_type_and_body(start_peer: StartPeer) -> None:
    peer = start_peer("accept")
    sent = [
        WorkMessage(DeltaPass("notification"), "delta-20261126T1200"),
        WorkMessage(LifecycleEvent("sub-1", "missed"), "lifecycle-sub-1"),
    ]
    send(peer.connection_string, sent)

    arrived = transfers(peer)
    assert [r["message_id"] for r in arrived] == ["delta-20261126T1200", "lifecycle-sub-1"]
    assert {r["content_type"] for r in arrived} == {"application/json"}
    assert {r["address"].rsplit("/", 1)[-1] for r in arrived} == {QUEUE}
    for record, message in zip(arrived, sent, strict=True):
        back = read_back(record)
        assert (back.kind, dict(back.body), back.message_id) == (
            message.kind,
            dict(message.body),
            message.message_id,
        )


def test_the_sdk_opens_one_connection_and_authenticates_with_a_put_token_for_the_queue(
    start_peer: StartPeer,
) -> None:
    peer = start_peer("accept")
    send(peer.connection_string, [WorkMessage(DeltaPass(), "a")], [WorkMessage(DeltaPass(), "b")])
    records = peer.records()
    # SASL only opens the connection (ANONYMOUS); the key proves itself in a token sent to $cbs
    assert [r for r in records if r["event"] == "connection"] == [
        {"event": "connection", "sasl": "ANONYMOUS"}
    ]
    tokens = [r for r in records if r["event"] == "put-token"]
    # one connection, one token, for both sends: the adapter reuses its sender
    assert tokens == [
        {
            "event": "put-token",
            "operation": "put-token",
            "type": tokens[0]["type"],
            "audience": f"sb://127.0.0.1:{peer.port}/{QUEUE}",
        }
    ]


def test_a_scheduled_message_carries_the_scheduled_enqueue_time(start_peer: StartPeer) -> None:
    peer = start_peer("accept")
    send(peer.connection_string, [WorkMessage(DeltaPass(), "now"), WorkMessage(DeltaPass(), "later", DUE)])
    now, later = transfers(peer)
    assert "x-opt-scheduled-enqueue-time" not in now["annotations"]
    # an AMQP timestamp, in milliseconds, as Service Bus reads it
    due = {"timestamp": int(DUE.timestamp() * 1000)}
    assert later["annotations"]["x-opt-scheduled-enqueue-time"] == due


@pytest.mark.parametrize("condition", ["com.microsoft:server-busy", "amqp:resource-limit-exceeded"])
def test_a_refused_link_is_a_transient_error_within_the_bound(start_peer: StartPeer, condition: str) -> None:
    peer = start_peer(f"refuse-link:{condition}")
    error, took = failure_of(peer.connection_string)
    assert isinstance(error, TransientError)
    assert took < WEBHOOK_BOUND_SECONDS
    assert transfers(peer) == []


@pytest.mark.parametrize("mode", ["silent-cbs", "no-settle"])
def test_a_peer_that_never_answers_is_a_transient_error_within_the_bound(
    start_peer: StartPeer, mode: str
) -> None:
    peer = start_peer(mode)
    error, took = failure_of(peer.connection_string)
    assert isinstance(error, TransientError)
    assert took < WEBHOOK_BOUND_SECONDS


def test_a_port_that_never_speaks_amqp_is_a_transient_error_within_the_bound(mute_port: MutePort) -> None:
    error, took = failure_of(mute_port.connection_string)
    assert isinstance(error, TransientError)
    assert took < WEBHOOK_BOUND_SECONDS


def test_a_refused_connection_is_a_transient_error_within_the_bound() -> None:
    error, took = failure_of(closed_port_connection_string())
    assert isinstance(error, TransientError)
    assert took < WEBHOOK_BOUND_SECONDS


def test_a_rejected_token_is_an_auth_error(start_peer: StartPeer) -> None:
    peer = start_peer("cbs-status:401")
    error, took = failure_of(peer.connection_string)
    assert isinstance(error, AuthError)
    assert took < WEBHOOK_BOUND_SECONDS


def test_after_a_send_times_out_the_next_one_opens_a_new_connection(start_peer: StartPeer) -> None:
    peer = start_peer("no-settle-once")

    async def scenario() -> None:
        queue = ServiceBusQueue.from_connection_string(peer.connection_string, QUEUE)
        try:
            with pytest.raises(TransientError):
                await queue.send([WorkMessage(DeltaPass(), "lost")])
            await queue.send([WorkMessage(DeltaPass(), "retried")])
        finally:
            await queue.aclose()

    asyncio.run(scenario())
    records = peer.records()
    assert [r["message_id"] for r in records if r["event"] == "transfer"] == ["lost", "retried"]
    assert len([r for r in records if r["event"] == "put-token"]) == 2  # a second connection, a second token
