"""No notification is lost to de-duplication: proven over the local Service Bus semantics.

Invariant: every accepted notification is followed by a delta pass that *starts after* it was received,
whatever the arrival times, pass durations, duplicates, failed passes (redeliveries) and concurrent
receivers. And bursts stay cheap: one window of notifications costs a small constant number of passes.

The queue is the stand-in (duplicate detection, scheduling, peek-lock, delivery count); the hints, the
follow-up and the worker's reaction to a busy cursor are the product's own functions. Time is virtual.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from provisioning.domain.work import (
    FOLLOW_UP_SECONDS,
    HINT_WINDOW_SECONDS,
    DeltaPass,
    WorkMessage,
    delta_hints,
    rescheduled,
)
from simulators.servicebus import LocalServiceBus, Locked, QueueSettings

START = 1_800_000_003.0  # an arbitrary moment, not aligned on a window


@dataclass
class World:
    """Receivers that run delta passes under one lease, on a virtual clock."""

    durations: list[float]
    failures: list[bool]
    receivers: int
    now: float = START
    lease_until: float = 0.0  # the running pass holds the cursor lease until then
    passes: list[float] = field(default_factory=list)  # when each pass that finished started
    started: int = 0
    running: list[tuple[float, float, Locked, bool]] = field(
        default_factory=list
    )  # end, start, message, fails

    def __post_init__(self) -> None:
        self.bus = LocalServiceBus(QueueSettings(max_concurrent_calls=self.receivers), clock=lambda: self.now)

    def notify(self, received: float) -> None:
        self.advance(received)
        self.bus.send(delta_hints(datetime.fromtimestamp(received, UTC), "change notification"))

    def advance(self, until: float) -> None:
        """Run the receivers until ``until``: deliveries, passes ending, busy cursors answered."""
        while True:
            self._start_ready()
            moments = [end for end, _, _, _ in self.running]
            due = self.bus.seconds_until_due()
            if due is not None and len(self.running) < self.receivers:
                moments.append(self.now + max(due, 1e-3))
            following = min(moments, default=None)
            if following is None or following > until:
                self.now = max(self.now, until)
                return
            self.now = following
            self._finish_ended()

    def _start_ready(self) -> None:
        while len(self.running) < self.receivers:
            envelope = self.bus.receive()
            if envelope is None:
                return
            if self.now < self.lease_until:  # a pass is running: one follow-up, then complete
                message = WorkMessage(DeltaPass(), message_id=envelope.message_id)
                follow = rescheduled(message, datetime.fromtimestamp(self.now, UTC), FOLLOW_UP_SECONDS)
                self.bus.send([follow])
                self.bus.complete(envelope)
                continue
            duration = self.durations[self.started % len(self.durations)]
            fails = bool(self.failures) and self.failures.pop(0)
            self.started += 1
            self.lease_until = self.now + duration
            self.running.append((self.now + duration, self.now, envelope, fails))

    def _finish_ended(self) -> None:
        for ended in [r for r in self.running if r[0] <= self.now]:
            self.running.remove(ended)
            _, start, envelope, fails = ended
            if fails:  # the pass raised: the lease is released, the message abandoned and delivered again
                self.lease_until = 0.0
                self.bus.abandon(envelope)
            else:
                self.passes.append(start)
                self.bus.complete(envelope)

    def finished(self) -> list[float]:
        return self.passes


ARRIVALS = st.lists(st.floats(0, 60, allow_nan=False), min_size=1, max_size=60)


@settings(max_examples=300, deadline=None)
@given(
    arrivals=ARRIVALS,
    duplicates=st.lists(st.integers(0, 59), max_size=10),
    durations=st.lists(st.floats(0.01, 40, allow_nan=False), min_size=1, max_size=8),
    failures=st.lists(st.booleans(), max_size=5),
    receivers=st.integers(1, 4),
    running_for=st.floats(0, 30, allow_nan=False),
)
def test_every_notification_is_followed_by_a_pass_that_starts_after_it(
    *,
    arrivals: list[float],
    duplicates: list[int],
    durations: list[float],
    failures: list[bool],
    receivers: int,
    running_for: float,
) -> None:
    world = World(durations, failures, receivers)
    world.lease_until = START + running_for  # a pass is already running when the first hint arrives
    received = sorted(START + a for a in arrivals + [arrivals[i % len(arrivals)] for i in duplicates])
    for moment in received:
        world.notify(moment)
    world.advance(START + 3600)
    starts = world.finished()
    for moment in received:
        assert any(start > moment for start in starts), (
            f"nothing read the change received at {moment - START:.3f}"
        )
    assert world.bus.dead_letters() == []


@settings(max_examples=200, deadline=None)
@given(
    offsets=st.lists(st.floats(0, HINT_WINDOW_SECONDS - 0.01, allow_nan=False), min_size=1, max_size=300),
    duration=st.floats(0.01, 30, allow_nan=False),
    receivers=st.integers(1, 4),
)
def test_a_burst_in_one_window_costs_a_constant_number_of_passes(
    offsets: list[float], duration: float, receivers: int
) -> None:
    window_start = (START // HINT_WINDOW_SECONDS) * HINT_WINDOW_SECONDS
    world = World([duration], [], receivers, now=window_start)
    for moment in sorted(window_start + o for o in offsets):
        world.notify(moment)
    world.advance(window_start + 3600)
    assert 1 <= len(world.finished()) <= 3  # now, the window's end, and one follow-up if it was busy
