"""The follow-up rules: the look schedule, keeping promises, and holds with their back-off."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from provisioning.domain.followups import (
    HORIZON,
    MIN_STEP,
    REFUSED_RECHECK,
    SEEN_MARKER_LIFE,
    UNREADABLE_LONGEST_RECHECK,
    HoldReason,
    HoldRequest,
    Promise,
    PromiseRecord,
    Sighting,
    hold_for,
    next_look,
    noticed,
    sighted,
)
from tests.builders import NOW

LATENESS_TARGET = 10.0  # seconds, or a quarter of the delay: the target for a change's lateness


def looks(promise: Promise) -> list[datetime]:
    """Every look one pending promise asks for, pass after pass, until its horizon."""
    found: list[datetime] = []
    at = next_look([promise], promise.notified_at)
    while at is not None:
        found.append(at)
        at = next_look([promise], at)
    return found


@given(st.floats(min_value=0.0, max_value=600.0), st.floats(min_value=0.0, max_value=30.0))
def test_a_change_readable_up_to_ten_minutes_late_is_looked_for_within_the_target(
    delay: float, offset: float
) -> None:
    """Whatever the delay D, the first look after the change became readable comes within max(10 s, D/4)
    less a pass's time (the spacing keeps 2 s or 5 % for it)."""
    notified = NOW + timedelta(seconds=offset)  # anywhere on the lattice
    readable = notified + timedelta(seconds=delay)
    first = next(at for at in looks(Promise("u", "users", notified)) if at >= readable)
    lateness = (first - readable).total_seconds()
    assert lateness <= max(LATENESS_TARGET, delay / 4) - min(2.0, 0.05 * delay) + 1e-6


def test_looks_end_at_the_horizon_and_are_few() -> None:
    found = looks(Promise("u", "users", NOW))
    assert found[0] - NOW <= MIN_STEP and found[-1] < NOW + HORIZON
    assert len(found) <= 26
    assert next_look([Promise("u", "users", NOW)], NOW + HORIZON) is None


@given(st.lists(st.floats(min_value=0.0, max_value=60.0), min_size=1, max_size=200))
def test_a_burst_shares_its_looks(offsets: list[float]) -> None:
    """Notifications spread over a minute want the same few moments: at most one look in any 8 s."""
    burst = [Promise(f"u{n}", "users", NOW + timedelta(seconds=o)) for n, o in enumerate(offsets)]
    moments = {at for p in burst for at in looks(p) if at > NOW + timedelta(seconds=60)}
    spaced = sorted(moments)
    assert all(b - a >= MIN_STEP for a, b in itertools.pairwise(spaced))


@given(st.floats(min_value=0.0, max_value=600.0), st.floats(min_value=0.0, max_value=600.0))
def test_passes_at_different_moments_ask_for_the_same_look(first: float, second: float) -> None:
    """Every look asked for is one of the promise's lattice moments: two passes never start two chains."""
    promise = Promise("u", "users", NOW)
    for after in (first, second):
        at = next_look([promise], NOW + timedelta(seconds=after))
        assert at is None or at.timestamp() % MIN_STEP.total_seconds() == 0


def test_the_youngest_promise_sets_the_pace() -> None:
    old, young = Promise("a", "users", NOW), Promise("b", "users", NOW + timedelta(seconds=300))
    now = NOW + timedelta(seconds=301)
    assert next_look([old, young], now) == next_look([young], now)
    assert next_look([old, young], now) - now <= MIN_STEP  # type: ignore[operator]


def test_a_promise_is_kept_only_by_a_read_that_began_after_it() -> None:
    known = {r.object_id: r for r in noticed({}, [Promise("u", "users", NOW)])}
    writes, forget = sighted(known, Sighting(NOW - timedelta(seconds=1), frozenset({"u"})), NOW, mark=True)
    assert [w.notified_at for w in writes] == [NOW]  # still pending, now also marked seen
    writes, forget = sighted(known, Sighting(NOW, frozenset({"u"})), NOW, mark=False)
    assert writes == [] and [r.object_id for r in forget] == ["u"]


def test_a_mark_answers_a_notification_that_arrives_after_the_read_and_then_fades() -> None:
    marked = {"u": PromiseRecord("u", "", None, NOW)}
    assert noticed(marked, [Promise("u", "users", NOW - timedelta(seconds=3))]) == []
    assert noticed(marked, [Promise("u", "users", NOW + timedelta(seconds=1))])
    _, forget = sighted(marked, Sighting(NOW, frozenset()), NOW + SEEN_MARKER_LIFE, mark=True)
    assert [r.object_id for r in forget] == ["u"]


def test_unreadable_holds_back_off_and_refusals_wait_a_day() -> None:
    request = HoldRequest(HoldReason.UNREADABLE, "403")
    hold = hold_for("u", "u@x", request, None, NOW)
    waits = []
    for _ in range(12):
        waits.append((hold.recheck_at - NOW).total_seconds())
        hold = hold_for("u", "u@x", request, hold, NOW)
    assert waits[:4] == [30, 60, 120, 240] and max(waits) == UNREADABLE_LONGEST_RECHECK.total_seconds()
    assert hold.since == NOW and hold.attempts == 13
    refused = hold_for("u", "u@x", HoldRequest(HoldReason.REFUSED, "no licence"), None, NOW)
    assert refused.recheck_at == NOW + REFUSED_RECHECK
    until = NOW + timedelta(minutes=4)
    settling = hold_for("u", "u@x", HoldRequest(HoldReason.SETTLING, "new", until=until), hold, NOW)
    assert settling.recheck_at == until and settling.attempts == 1  # another reason starts afresh
