"""When the product needs a human: the one rule behind ``status``'s exit code.

Healthy means none of the problems below. The time-based rules (a recent pass, a recent full
reconciliation, subscriptions kept alive) apply only where the event path runs, i.e. once Graph
subscriptions are recorded: a laptop that syncs by hand now and then is not unhealthy for being idle.
The Azure Monitor alerts (``infra/modules/alerts.bicep``) watch the same conditions from telemetry.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from provisioning.domain.directory import Subscription
from provisioning.domain.followups import TENANT_WIDE, Hold, HoldReason
from provisioning.domain.golive import ModeRecord, PlanSummary
from provisioning.domain.state import CursorState, RunKind, RunSummary

PASS_KINDS = frozenset({"delta", "full"})  # imports are manual, and not passes
NO_PASS_WITHIN = timedelta(hours=1)  # the timer enqueues a pass every 15 minutes
NO_FULL_WITHIN = timedelta(hours=48)  # the nightly reconciliation, missed once, is forgiven
SUBSCRIPTION_EXPIRES_WITHIN = timedelta(hours=24)  # renewed 7 days ahead: by now upkeep failed for days
LEASE_OVERDUE_AFTER = timedelta(minutes=15)  # a lease past its end for longer: its pass died, none since
FAILING_PASSES = 3  # an account failing in this many consecutive passes needs a look
# Right after a change an account is often briefly unreadable (replication); held this long, it is not.
UNREADABLE_FOR = timedelta(hours=1)
EXAMPLES = 3

# Problem codes: stable, for scripts reading ``status --json``.
NO_RECENT_PASS = "no_recent_pass"  # noqa: S105 (a problem code, not a secret)
NO_RECENT_FULL = "no_recent_full_reconciliation"
SUBSCRIPTION_EXPIRING = "subscription_expiring"
SUBSCRIPTION_MISSING = "subscription_missing"
SAFETY_STOP = "safety_stop"
ACCOUNT_FAILING = "account_failing"
LEASE_OVERDUE = "lease_overdue"
DRUVA_REFUSED = "druva_refused"  # writes Druva refused that a human must unblock (licence, privacy, ...)
DRUVA_WRITES_REFUSED = "druva_writes_refused"  # the credential itself may not write: nothing is written
ACCOUNTS_UNREADABLE = "accounts_unreadable"  # accounts left as they are because Graph would not say
LINKS_MISMATCHED = "links_mismatched"  # linked Druva users whose e-mail is not their account's
STATE_BOUND_ELSEWHERE = "state_bound_elsewhere"  # runs refused: the settings name other tenants
PLAN_ONLY = "plan_only"  # nothing is written to Druva until an admin has read the plan and switched
ACCESS_REFUSED = "access_refused"  # Graph or Druva refused the app's credential: no pass gets through

RESOURCES = ("users", "groups")


@dataclass(frozen=True)
class Problem:
    code: str
    detail: str


@dataclass(frozen=True)
class FailingAccount:
    entra_id: str
    principal: str
    reason: str  # from the newest pass it failed in
    consecutive: int  # how many of the newest passes, in a row, it failed in


@dataclass(frozen=True)
class HealthFacts:
    """What the state store knows. ``runs`` newest first; ``subscriptions`` by resource (None: none)."""

    now: datetime
    runs: Sequence[RunSummary]
    subscriptions: dict[str, Subscription | None]
    cursors: Sequence[CursorState]
    holds: Sequence[Hold] = ()
    bound_elsewhere: str | None = None  # why runs are refused the state (service.binding), if they are
    mode: ModeRecord | None = None  # None: apply, as a state that never planned
    plans: Mapping[str, PlanSummary] = field(default_factory=dict)  # the latest plan of each kind
    access_refused: str | None = None  # the latest access refusal no pass has got past since


def passes(runs: Sequence[RunSummary]) -> list[RunSummary]:
    """Delta passes and full reconciliations that wrote (not dry runs, not imports), newest first."""
    return [run for run in runs if run.kind in PASS_KINDS and not run.dry_run]


def succeeded(run: RunSummary) -> bool:
    """Ran to the end without a safety stop (a pass that errored is never recorded at all)."""
    return run.stopped is None


def failing_accounts(runs: Sequence[RunSummary]) -> list[FailingAccount]:
    """Accounts that failed in the newest pass, with how many passes in a row they have been failing."""
    recent = passes(runs)
    if not recent:
        return []
    found = []
    for failure in recent[0].failures:
        streak = 0
        for run in recent:
            if not any(f.entra_id == failure.entra_id for f in run.failures):
                break
            streak += 1
        found.append(FailingAccount(failure.entra_id, failure.principal, failure.reason, streak))
    return found


def last_full(runs: Sequence[RunSummary]) -> RunSummary | None:
    return next((run for run in passes(runs) if run.kind == RunKind.FULL and succeeded(run)), None)


def assess(facts: HealthFacts) -> list[Problem]:
    """Every reason the product needs a human now; an empty list is healthy."""
    problems = _latest_pass(facts) + _failing(facts) + _leases(facts) + _held(facts)
    if facts.bound_elsewhere:
        problems.insert(0, Problem(STATE_BOUND_ELSEWHERE, facts.bound_elsewhere))
    if facts.mode is not None and facts.mode.plan_only:
        problems.insert(0, Problem(PLAN_ONLY, plan_only_detail(facts.mode, facts.plans)))
    if facts.access_refused:
        detail = (
            f"{facts.access_refused}; run `python -m provisioning doctor`. A missing Graph permission is "
            "granted by a Privileged Role Administrator (the hand-over the deployment printed)"
        )
        problems.insert(0, Problem(ACCESS_REFUSED, detail))
    if any(facts.subscriptions.values()):  # the event path runs here
        problems += _staleness(facts) + _subscriptions(facts)
    return problems


def _latest_pass(facts: HealthFacts) -> list[Problem]:
    recent = passes(facts.runs)
    if recent and recent[0].stopped:
        return [Problem(SAFETY_STOP, f"the latest pass {recent[0].run_id} stopped: {recent[0].stopped}")]
    return []


def _failing(facts: HealthFacts) -> list[Problem]:
    return [
        Problem(
            ACCOUNT_FAILING,
            f"{account.principal} ({account.entra_id}) failed in the last {account.consecutive} passes: "
            f"{account.reason}",
        )
        for account in failing_accounts(facts.runs)
        if account.consecutive >= FAILING_PASSES
    ]


def _leases(facts: HealthFacts) -> list[Problem]:
    return [
        Problem(
            LEASE_OVERDUE,
            f"cursor {cursor.name!r} is still leased to {cursor.lease_owner}, whose lease ended "
            f"{age(facts.now - cursor.lease_until)} ago: that pass died and none has run since",
        )
        for cursor in facts.cursors
        if cursor.lease_owner and cursor.lease_until and facts.now - cursor.lease_until > LEASE_OVERDUE_AFTER
    ]


def _held(facts: HealthFacts) -> list[Problem]:
    """Refusals that need a human, by kind, with what to do; accounts unreadable for over an hour."""
    problems = []
    for hold in facts.holds:
        if hold.entra_id == TENANT_WIDE and hold.reason is HoldReason.REFUSED:
            problems.append(Problem(DRUVA_WRITES_REFUSED, f"{hold.detail}; to do: {hold.advice}"))
    refused: dict[tuple[str, str], list[Hold]] = {}  # by kind and what to do about it
    for hold in facts.holds:
        if hold.reason is HoldReason.REFUSED and hold.entra_id != TENANT_WIDE:
            refused.setdefault((hold.kind or "other", hold.advice or ""), []).append(hold)
    for (kind, advice), holds in sorted(refused.items()):
        to_do = f"; to do: {advice}" if advice else ""
        problems.append(
            Problem(
                DRUVA_REFUSED,
                f"{len(holds)} account(s) refused by Druva ({kind}), e.g. {_examples(holds)}{to_do}",
            )
        )
    mismatched = [h for h in facts.holds if h.reason is HoldReason.MISMATCHED]
    if mismatched:
        problems.append(
            Problem(
                LINKS_MISMATCHED,
                f"{len(mismatched)} account(s) left as they are because their linked Druva user's e-mail "
                f"is not theirs, e.g. {_examples(mismatched)}; to do: {mismatched[0].advice}",
            )
        )
    stuck = [
        h for h in facts.holds if h.reason is HoldReason.UNREADABLE and facts.now - h.since >= UNREADABLE_FOR
    ]
    if stuck:
        problems.append(
            Problem(
                ACCOUNTS_UNREADABLE,
                f"{len(stuck)} account(s) left as they are for over an hour because Graph would not say "
                f"what they are, e.g. {_examples(stuck)}",
            )
        )
    return problems


def _examples(holds: Sequence[Hold]) -> str:
    shown = sorted(holds, key=lambda h: h.since)[:EXAMPLES]
    more = f" and {len(holds) - len(shown)} more" if len(holds) > len(shown) else ""
    return "; ".join(f"{h.principal or h.entra_id}: {h.detail}" for h in shown) + more


def _staleness(facts: HealthFacts) -> list[Problem]:
    """Passes that should have run: in plan-only mode, the plans they recorded."""
    problems = []
    last, full = _last_pass_times(facts)
    if last is None or facts.now - last > NO_PASS_WITHIN:
        since = f"the last one started {age(facts.now - last)} ago" if last else "none yet"
        problems.append(Problem(NO_RECENT_PASS, f"no successful pass in the last hour ({since})"))
    if full is None or facts.now - full > NO_FULL_WITHIN:
        since = f"the last one started {age(facts.now - full)} ago" if full else "none recorded"
        problems.append(Problem(NO_RECENT_FULL, f"no full reconciliation in the last 48 hours ({since})"))
    return problems


def _last_pass_times(facts: HealthFacts) -> tuple[datetime | None, datetime | None]:
    """When the latest successful pass and full reconciliation started (or planned, in plan-only mode)."""
    if facts.mode is not None and facts.mode.plan_only:
        full_plan = facts.plans.get(RunKind.FULL.value)
        latest = max((plan.at for plan in facts.plans.values()), default=None)
        return latest, full_plan.at if full_plan else None
    recent = [run for run in passes(facts.runs) if succeeded(run)]
    full = last_full(facts.runs)
    return (recent[0].started_at if recent else None), (full.started_at if full else None)


def plan_only_detail(mode: ModeRecord, plans: Mapping[str, PlanSummary]) -> str:
    """What plan-only mode means now: the latest full plan, by mapping, with examples, and how to go live."""
    since = f" since {mode.since:%Y-%m-%d %H:%M} UTC" if mode.since else ""
    text = f"plan-only mode{since}: nothing is written to Druva"
    full = plans.get(RunKind.FULL.value)
    if full is None:
        return f"{text}; no full plan recorded yet (the first pass records one)"
    mappings = "; ".join(
        f"{name}: " + ", ".join(f"{n} {outcome}" for outcome, n in counts.items() if n)
        for name, counts in full.by_mapping.items()
    )
    examples = "; ".join(f"{e.principal} {e.outcome} ({e.what})" for e in full.examples[:EXAMPLES])
    return (
        f"{text}. Latest plan: {full.describe()}"
        + (f"; by mapping: {mappings}" if mappings else "")
        + (f"; e.g. {examples}" if examples else "")
        + f". To go live: python -m provisioning mode apply --confirm-creates {full.creates}"
    )


def _subscriptions(facts: HealthFacts) -> list[Problem]:
    problems = []
    for resource in RESOURCES:
        subscription = facts.subscriptions.get(resource)
        if subscription is None:
            problems.append(Problem(SUBSCRIPTION_MISSING, f"no {resource} subscription: changes are missed"))
        elif subscription.expires_at - facts.now <= SUBSCRIPTION_EXPIRES_WITHIN:
            left = subscription.expires_at - facts.now
            when = f"expired {age(-left)} ago" if left <= timedelta(0) else f"expires in {age(left)}"
            problems.append(Problem(SUBSCRIPTION_EXPIRING, f"the {resource} subscription {when}"))
    return problems


def age(delta: timedelta) -> str:
    """A duration the way an operator reads it: 45 s, 12 min, 5 h 3 min, 3 d 4 h."""
    seconds = max(int(delta.total_seconds()), 0)
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"
