"""The health rule behind ``status``'s exit code: one table, each row one situation and its verdict."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import pytest

from provisioning.domain.directory import Subscription
from provisioning.domain.followups import TENANT_WIDE, Hold, HoldReason
from provisioning.domain.health import (
    ACCOUNT_FAILING,
    ACCOUNTS_UNREADABLE,
    DRUVA_REFUSED,
    DRUVA_WRITES_REFUSED,
    LEASE_OVERDUE,
    NO_RECENT_FULL,
    NO_RECENT_PASS,
    SAFETY_STOP,
    SUBSCRIPTION_EXPIRING,
    SUBSCRIPTION_MISSING,
    HealthFacts,
    age,
    assess,
    failing_accounts,
    last_full,
)
from provisioning.domain.state import CursorState, RunFailure, RunKind, RunSummary
from tests.builders import NOW


def ago(**delta: float) -> timedelta:
    return timedelta(**delta)


def run(
    minutes_ago: float,
    kind: str = "delta",
    *,
    failed: tuple[str, ...] = (),
    stopped: str | None = None,
    dry_run: bool = False,
) -> RunSummary:
    started = NOW - timedelta(minutes=minutes_ago)
    return RunSummary(
        run_id=f"run-{minutes_ago:g}-{kind}",
        kind=RunKind(kind),
        started_at=started,
        finished_at=started + timedelta(seconds=4),
        counts={"failed": len(failed)},
        dry_run=dry_run,
        stopped=stopped,
        failures=tuple(RunFailure(i, f"{i}@contoso.com", "Druva answered 500") for i in failed),
    )


def subscription(resource: str, expires_in: timedelta) -> Subscription:
    return Subscription(f"sub-{resource}", resource, NOW + expires_in, "https://app/api/graph/notifications")


LIVE = {"users": subscription("users", ago(days=20)), "groups": subscription("groups", ago(days=20))}
NONE: dict[str, Subscription | None] = {"users": None, "groups": None}
FRESH_CURSORS = (CursorState("users"), CursorState("groups"))
HEALTHY_RUNS = (run(10), run(25), run(300, "full"))


@dataclass(frozen=True)
class Case:
    name: str
    runs: tuple[RunSummary, ...] = HEALTHY_RUNS
    subscriptions: dict[str, Subscription | None] = field(default_factory=lambda: dict(LIVE))
    cursors: tuple[CursorState, ...] = FRESH_CURSORS
    problems: tuple[str, ...] = ()


CASES = [
    Case("all well: a pass 10 minutes ago, a full one 5 hours ago, subscriptions live"),
    Case("no subscriptions, no runs: a laptop that never synced", runs=(), subscriptions=NONE),
    Case("no subscriptions: idle for a month is fine by hand", runs=(run(60 * 24 * 30),), subscriptions=NONE),
    Case("event path but no pass ever", runs=(), problems=(NO_RECENT_PASS, NO_RECENT_FULL)),
    Case("last pass 61 minutes ago", runs=(run(61), run(300, "full")), problems=(NO_RECENT_PASS,)),
    Case("last pass 59 minutes ago", runs=(run(59), run(300, "full"))),
    Case(
        "only a safety-stopped pass within the hour",
        runs=(run(5, stopped="would preserve 40 %"), run(70), run(300, "full")),
        problems=(SAFETY_STOP, NO_RECENT_PASS),
    ),
    Case(
        "a safety stop long ago, passes since: healthy",
        runs=(run(5), run(600, stopped="would preserve 40 %"), run(700, "full")),
    ),
    Case(
        "a pass with account failures still counts as a pass", runs=(run(5, failed=("a",)), run(300, "full"))
    ),
    Case(
        "dry runs are not passes",
        runs=(run(5, dry_run=True), run(90), run(300, "full")),
        problems=(NO_RECENT_PASS,),
    ),
    Case(
        "imports are not passes",
        runs=(run(5, "import"), run(90), run(300, "full")),
        problems=(NO_RECENT_PASS,),
    ),
    Case("full reconciliation 49 hours ago", runs=(run(5), run(49 * 60, "full")), problems=(NO_RECENT_FULL,)),
    Case(
        "a safety-stopped full reconciliation does not count",
        runs=(run(5), run(60, "full", stopped="would preserve 40 %"), run(49 * 60, "full")),
        problems=(NO_RECENT_FULL,),
    ),
    Case(
        "an account failing in 3 consecutive passes",
        runs=(
            run(5, failed=("a", "b")),
            run(20, failed=("a",)),
            run(35, failed=("a", "b")),
            run(300, "full"),
        ),
        problems=(ACCOUNT_FAILING,),
    ),
    Case(
        "failing in 3 passes but not in a row",
        runs=(
            run(5, failed=("a",)),
            run(20, failed=("a",)),
            run(35),
            run(50, failed=("a",)),
            run(300, "full"),
        ),
    ),
    Case(
        "failed 3 times, then succeeded",
        runs=(
            run(5),
            run(20, failed=("a",)),
            run(35, failed=("a",)),
            run(50, failed=("a",)),
            run(300, "full"),
        ),
    ),
    Case(
        "a dry run between failing passes does not break the streak",
        runs=(run(5, failed=("a",)), run(10, dry_run=True), run(20, failed=("a",)), run(35, failed=("a",))),
        problems=(ACCOUNT_FAILING, NO_RECENT_FULL),
    ),
    Case(
        "the account-failing rule holds without subscriptions too",
        runs=(run(5, failed=("a",)), run(20, failed=("a",)), run(35, failed=("a",))),
        subscriptions=NONE,
        problems=(ACCOUNT_FAILING,),
    ),
    Case(
        "users subscription expires in 23 hours",
        subscriptions={"users": subscription("users", ago(hours=23)), "groups": LIVE["groups"]},
        problems=(SUBSCRIPTION_EXPIRING,),
    ),
    Case(
        "groups subscription expired an hour ago",
        subscriptions={"users": LIVE["users"], "groups": subscription("groups", -ago(hours=1))},
        problems=(SUBSCRIPTION_EXPIRING,),
    ),
    Case(
        "users subscription expires in 25 hours",
        subscriptions={"users": subscription("users", ago(hours=25)), "groups": LIVE["groups"]},
    ),
    Case(
        "one subscription of the two is missing",
        subscriptions={"users": LIVE["users"], "groups": None},
        problems=(SUBSCRIPTION_MISSING,),
    ),
    Case(
        "a lease past its end for 20 minutes: its pass died",
        cursors=(
            CursorState("users", lease_owner="run-x", lease_until=NOW - ago(minutes=20)),
            FRESH_CURSORS[1],
        ),
        problems=(LEASE_OVERDUE,),
    ),
    Case(
        "a lease that ended 10 minutes ago: the next pass takes it over",
        cursors=(
            CursorState("users", lease_owner="run-x", lease_until=NOW - ago(minutes=10)),
            FRESH_CURSORS[1],
        ),
    ),
    Case(
        "a lease held now: a pass is running",
        cursors=(
            CursorState("users", lease_owner="run-x", lease_until=NOW + ago(minutes=14)),
            FRESH_CURSORS[1],
        ),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_health(case: Case) -> None:
    facts = HealthFacts(NOW, list(case.runs), case.subscriptions, list(case.cursors))

    problems = assess(facts)

    assert sorted(p.code for p in problems) == sorted(case.problems)
    assert all(p.detail for p in problems)


def test_failing_accounts_count_the_streak_from_the_newest_pass() -> None:
    runs = [run(5, failed=("a", "b")), run(20, failed=("a",)), run(35, failed=("a", "b")), run(50)]

    found = {account.entra_id: account.consecutive for account in failing_accounts(runs)}

    assert found == {"a": 3, "b": 1}
    assert failing_accounts([]) == []


def test_the_failing_account_problem_names_the_account_and_why() -> None:
    runs = [run(5, failed=("a",)), run(20, failed=("a",)), run(35, failed=("a",))]

    (problem,) = assess(HealthFacts(NOW, runs, NONE, []))

    assert "a@contoso.com (a)" in problem.detail and "Druva answered 500" in problem.detail


def test_last_full_skips_deltas_dry_runs_and_safety_stops() -> None:
    wanted = run(300, "full")
    runs = [run(5), run(10, "full", dry_run=True), run(20, "full", stopped="too many"), wanted]

    assert last_full(runs) == wanted
    assert last_full([run(5)]) is None


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(seconds=45), "45 s"),
        (timedelta(minutes=12, seconds=5), "12 min"),
        (timedelta(hours=5), "5 h"),
        (timedelta(hours=5, minutes=3), "5 h 3 min"),
        (timedelta(days=3, hours=4, minutes=59), "3 d 4 h"),
        (timedelta(days=2), "2 d"),
        (timedelta(seconds=-5), "0 s"),
    ],
)
def test_age(delta: timedelta, text: str) -> None:
    assert age(delta) == text


# holds -------------------------------------------------------------------------------------------------
def _hold(entra_id: str, reason: str, *, since_minutes: float, kind: str | None = None) -> Hold:
    return Hold(
        entra_id,
        HoldReason(reason),
        f"detail of {entra_id}",
        NOW - timedelta(minutes=since_minutes),
        NOW + timedelta(minutes=5),
        f"{entra_id}@contoso.com",
        advice="do this" if reason == "refused" else None,
        kind=kind,
    )


@pytest.mark.parametrize(
    ("holds", "codes"),
    [
        ([], []),
        ([_hold("a", "settling", since_minutes=2)], []),  # settling is not a problem
        ([_hold("a", "unreadable", since_minutes=5)], []),  # briefly unreadable right after a change
        ([_hold("a", "unreadable", since_minutes=61)], [ACCOUNTS_UNREADABLE]),
        ([_hold("a", "refused", since_minutes=0, kind="licence")], [DRUVA_REFUSED]),
        (
            [
                _hold("a", "refused", since_minutes=0, kind="licence"),
                _hold("b", "refused", since_minutes=0, kind="licence"),
                _hold("c", "refused", since_minutes=0, kind="privacy"),
            ],
            [DRUVA_REFUSED, DRUVA_REFUSED],  # one per kind, with the advice of that kind
        ),
        ([_hold(TENANT_WIDE, "refused", since_minutes=0, kind="permission")], [DRUVA_WRITES_REFUSED]),
    ],
)
def test_held_accounts_that_need_a_human_are_problems(holds: list[Hold], codes: list[str]) -> None:
    facts = HealthFacts(NOW, [run(5)], NONE, FRESH_CURSORS, holds)
    found = assess(facts)
    assert [p.code for p in found] == codes
    if codes == [DRUVA_REFUSED, DRUVA_REFUSED]:
        assert "2 account(s)" in found[0].detail and "do this" in found[0].detail
