"""The follow-up rules: the look schedule, keeping promises, and holds with their back-off."""

from __future__ import annotations

from datetime import timedelta

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
    looks_of,
    next_look,
    noticed,
    sighted,
)
from tests.builders import NOW

LATENESS_TARGET = 10.0  # seconds, or a quarter of the delay: the target for a change's lateness


@given(st.floats(min_value=0.0, max_value=600.0), st.floats(min_value=0.0, max_value=1.999))
def test_a_change_readable_up_to_ten_minutes_late_is_looked_for_within_the_target(
    delay: float, offset: float
) -> None:
    """Whatever the delay D, the first look after the change became readable comes within max(10 s, D/4)
    less a pass's time (the schedule keeps 2 s or 5 % for it)."""
    notified = NOW + timedelta(seconds=offset)  # anywhere in its hint window
    readable = notified + timedelta(seconds=delay)
    first = next(at for at in looks_of(Promise("u", "users", notified)) if at >= readable)
    lateness = (first - readable).total_seconds()
    assert lateness <= max(LATENESS_TARGET, delay / 4) - min(2.0, 0.05 * delay) + 1e-6


def test_looks_end_at_the_horizon_and_are_few() -> None:
    looks = list(looks_of(Promise("u", "users", NOW)))
    assert looks[0] == NOW + MIN_STEP and looks[-1] < NOW + HORIZON
    assert len(looks) <= 22
    assert next_look([Promise("u", "users", NOW)], NOW + HORIZON) is None


@given(st.floats(min_value=0.0, max_value=600.0), st.floats(min_value=0.0, max_value=600.0))
def test_passes_at_different_moments_ask_for_the_same_look(first: float, second: float) -> None:
    """The schedule is the promise's own: two passes never start two chains of looks."""
    promise = Promise("u", "users", NOW)
    a = next_look([promise], NOW + timedelta(seconds=first))
    b = next_look([promise], NOW + timedelta(seconds=second))
    looks = set(looks_of(promise))
    assert a is None or a in looks
    assert b is None or b in looks


def test_the_youngest_promise_sets_the_pace() -> None:
    old, young = Promise("a", "users", NOW), Promise("b", "users", NOW + timedelta(seconds=300))
    now = NOW + timedelta(seconds=301)
    assert next_look([old, young], now) == NOW + timedelta(seconds=300) + MIN_STEP


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
