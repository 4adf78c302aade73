"""The local Service Bus stand-in refuses and delivers what Service Bus does (virtual time)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from provisioning.adapters.queue.servicebus import from_service_bus
from provisioning.domain.work import DeltaPass, Reconcile, WorkMessage
from simulators.servicebus import (
    LocalServiceBus,
    MessageLockLost,
    QueueSettings,
    ServiceBusRefused,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def bus(**settings: float) -> tuple[LocalServiceBus, Clock]:
    clock = Clock()
    return LocalServiceBus(QueueSettings(**settings), clock=clock), clock  # type: ignore[arg-type]


def test_settings_come_from_the_bicep_queue_and_host_json() -> None:
    found = QueueSettings.from_project()
    assert (found.lock_duration, found.max_delivery_count, found.duplicate_window) == (60, 10, 600)
    assert (found.max_auto_lock_renewal, found.max_concurrent_calls, found.auto_complete) == (600, 4, True)


def test_a_duplicate_message_id_is_dropped_within_the_history_window_only() -> None:
    queue, clock = bus(duplicate_window=600)
    assert queue.send([WorkMessage(DeltaPass("a"), "m"), WorkMessage(DeltaPass("b"), "m")]) == 1
    clock.now += 599
    assert queue.send([WorkMessage(DeltaPass("c"), "m")]) == 0
    clock.now += 1
    assert queue.send([WorkMessage(DeltaPass("d"), "m")]) == 1
    assert queue.counters.duplicates == 2


def test_the_body_is_the_real_adapters_encoding() -> None:
    queue, _ = bus()
    queue.send([WorkMessage(Reconcile("nightly"), "r")])
    envelope = queue.receive()
    assert envelope is not None
    assert from_service_bus(envelope.body, envelope.message_id) == WorkMessage(Reconcile("nightly"), "r")


def test_a_scheduled_message_is_invisible_until_its_time() -> None:
    queue, clock = bus()
    due = datetime.fromtimestamp(clock.now + 30, UTC)
    queue.send([WorkMessage(DeltaPass(), "later", due)])
    assert queue.receive() is None and queue.seconds_until_due() == 30
    clock.now += 30
    assert queue.receive() is not None


def test_what_service_bus_refuses_is_refused() -> None:
    queue, _ = bus()
    with pytest.raises(ServiceBusRefused, match="MessageId of 129"):
        queue.send_raw([("x" * 129, b"{}", "delta", None)])
    with pytest.raises(ServiceBusRefused, match="maximum is 262144"):
        queue.send_raw([("big", b" " * 262_145, "delta", None)])
    with pytest.raises(ServiceBusRefused, match="MessageId is required"):
        queue.send_raw([("", b"{}", "delta", None)])
    assert queue.active() == [] and queue.counters.refused == 3


def test_a_lock_hides_the_message_and_its_expiry_redelivers_it() -> None:
    queue, clock = bus(lock_duration=60)
    queue.send([WorkMessage(DeltaPass(), "m")])
    first = queue.receive()
    assert first is not None and queue.receive() is None
    clock.now += 30
    queue.renew_lock(first)
    clock.now += 59
    assert queue.receive() is None  # renewed: still locked
    clock.now += 1
    again = queue.receive()
    assert again is not None and again.envelope is first.envelope and again.delivery_count == 2
    with pytest.raises(MessageLockLost):  # the first receiver's lock was lost with the expiry
        queue.complete(first)
    queue.complete(again)
    assert queue.active() == [] and queue.counters.lock_expired == 1


def test_after_max_delivery_count_the_message_is_dead_lettered() -> None:
    queue, _ = bus(max_delivery_count=3)
    queue.send([WorkMessage(DeltaPass(), "poison")])
    for _ in range(3):
        envelope = queue.receive()
        assert envelope is not None
        queue.abandon(envelope)
    assert queue.receive() is None
    (dead,) = queue.dead_letters()
    assert (dead.message_id, dead.delivery_count, dead.dead_letter_reason) == (
        "poison",
        3,
        "MaxDeliveryCountExceeded",
    )


def test_completing_twice_fails() -> None:
    queue, _ = bus()
    queue.send([WorkMessage(DeltaPass(), "m")])
    envelope = queue.receive()
    assert envelope is not None
    queue.complete(envelope)
    with pytest.raises(MessageLockLost):
        queue.complete(envelope)
