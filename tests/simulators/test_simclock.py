"""The simulated clock: real speed between jumps, jumps only forward, and never a step back for a reader."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from simulators.simclock import SimClock

START = datetime(2026, 1, 1, tzinfo=UTC)


class RealTime:
    """``time.perf_counter`` as the test sets it; each reading takes a microsecond, and one reading may
    be followed by a preemption: the thread loses ``preempt`` seconds while another one runs."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.preempt = 0.0
        self.meanwhile: Callable[[], None] = lambda: None

    def __call__(self) -> float:
        reading = self.seconds
        self.seconds += 1e-6
        if self.preempt:
            self.seconds += self.preempt
            self.preempt = 0.0
            self.meanwhile()
        return reading


@pytest.fixture
def real(monkeypatch: pytest.MonkeyPatch) -> RealTime:
    real = RealTime()
    monkeypatch.setattr(time, "perf_counter", real)  # what simclock reads (for this test only)
    return real


def test_it_runs_at_real_speed_and_jumps_only_forward(real: RealTime) -> None:
    clock = SimClock(START)
    real.seconds = 2.0
    clock.advance_to(START + timedelta(hours=1))
    assert clock.jumped == timedelta(hours=1) - timedelta(seconds=2)  # the 2 s ran at real speed
    clock.advance_to(START)  # already passed: nothing changes
    real.seconds += 1.0
    assert timedelta(seconds=1) <= clock.now() - (START + timedelta(hours=1)) < timedelta(seconds=1.0001)


def test_a_reader_during_a_jump_never_sees_the_clock_step_back(real: RealTime) -> None:
    """Another thread reads the clock while a jump is half done, the jumping thread having lost 5 ms; a
    jump shorter than that must not take the clock back behind what that reader saw."""
    clock = SimClock(START)
    readings: list[datetime] = []
    real.meanwhile = lambda: readings.append(clock.now())
    for _ in range(5):
        readings.append(clock.now())
        real.preempt = 0.005  # at the jump's first reading of the real clock
        clock.advance_to(readings[-1] + timedelta(milliseconds=1))
        readings.append(clock.now())
    assert len(readings) == 15 and readings == sorted(readings)
