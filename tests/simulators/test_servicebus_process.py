"""The Service Bus stand-in in a process of its own: what a receiver that dies cannot take with it.

The broker runs as ``python -m simulators.servicebus_process`` on a free loopback port, with a short lock
so expiry shows in a second; the client is the same ``QueueBroker`` the local Functions host uses.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from provisioning.domain.work import DeltaPass, WorkMessage
from simulators.running import SimulatorProcess
from simulators.servicebus import Locked, MessageLockLost, ServiceBusRefused
from simulators.servicebus_process import RemoteServiceBus

LOCK = 0.6


@pytest.fixture
def broker() -> Iterator[tuple[str, RemoteServiceBus]]:
    process = SimulatorProcess.start(
        "servicebus_process", "--lock-seconds", str(LOCK), "--max-delivery-count", "2"
    )
    try:
        yield process.url, RemoteServiceBus(process.url)
    finally:
        process.stop()


def hint(message_id: str) -> WorkMessage:
    return WorkMessage(DeltaPass("test"), message_id=message_id)


def wait_for_message(bus: RemoteServiceBus, seconds: float = 5.0) -> Locked:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        locked = bus.receive()
        if locked is not None:
            return locked
        time.sleep(0.05)
    raise AssertionError("no message became receivable")


def test_settings_come_from_the_project_unless_overridden(broker: tuple[str, RemoteServiceBus]) -> None:
    _, bus = broker
    assert bus.settings.lock_duration == LOCK and bus.settings.max_delivery_count == 2
    assert bus.settings.max_auto_lock_renewal == 600.0  # host.json's maxAutoLockRenewalDuration


def test_duplicates_are_dropped_and_a_locked_message_is_invisible(
    broker: tuple[str, RemoteServiceBus],
) -> None:
    _, bus = broker
    assert bus.send([hint("m-1"), hint("m-1")]) == 1
    locked = bus.receive()
    assert locked is not None and locked.message_id == "m-1" and locked.delivery_count == 1
    assert bus.receive() is None  # locked: nobody else gets it
    assert bus.renew_lock(locked) > time.time()
    bus.complete(locked)
    with pytest.raises(MessageLockLost):
        bus.complete(locked)  # settled already
    assert bus.active() == [] and bus.counters.duplicates == 1


def test_an_expired_lock_is_lost_and_the_message_comes_back_then_dead_letters(
    broker: tuple[str, RemoteServiceBus],
) -> None:
    _, bus = broker
    bus.send([hint("m-2")])
    first = bus.receive()
    assert first is not None
    time.sleep(LOCK + 0.1)
    with pytest.raises(MessageLockLost):
        bus.complete(first)  # too late: the lock expired
    second = wait_for_message(bus)
    assert (second.message_id, second.delivery_count) == ("m-2", 2)
    bus.abandon(second)  # the second delivery was the last one allowed
    assert bus.active() == []
    [dead] = bus.dead_letters()
    assert (dead.message_id, dead.dead_letter_reason) == ("m-2", "MaxDeliveryCountExceeded")


def test_a_receiver_killed_holding_a_lock_loses_the_message_only_until_the_lock_expires(
    broker: tuple[str, RemoteServiceBus],
) -> None:
    url, bus = broker
    bus.send([hint("m-3")])
    receiver = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [
            sys.executable,
            "-c",
            "import sys, time; from simulators.servicebus_process import RemoteServiceBus; "
            f"got = RemoteServiceBus({url!r}).receive(); print(got.message_id, flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert receiver.stdout is not None and receiver.stdout.readline().strip() == "m-3"
    finally:
        receiver.kill()
        receiver.wait(timeout=10)
    killed_at = time.monotonic()
    assert bus.receive() is None  # the dead receiver's lock outlives it, as in Service Bus
    again = wait_for_message(bus)
    assert time.monotonic() - killed_at <= LOCK + 1.0
    assert (again.message_id, again.delivery_count) == ("m-3", 2)
    bus.complete(again)


def test_what_service_bus_refuses_is_refused_across_the_process_boundary(
    broker: tuple[str, RemoteServiceBus],
) -> None:
    _, bus = broker
    with pytest.raises(ServiceBusRefused, match="MessageId"):
        bus.send_raw([("x" * 129, b"{}", "delta", None)])
    with pytest.raises(ServiceBusRefused, match="bytes"):
        bus.send_raw([("big", b"x" * (256 * 1024 + 1), "delta", None)])
    assert bus.counters.refused == 2 and bus.active() == []
