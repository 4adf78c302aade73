"""Health at a glance, from the state store alone: recent passes, subscriptions, cursors and their
leases, failing accounts, the last full reconciliation, and the verdict of ``domain.health``."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from provisioning.config import ConfigError
from provisioning.domain.directory import Subscription
from provisioning.domain.followups import Hold
from provisioning.domain.golive import Mode, ModeRecord, PlanSummary
from provisioning.domain.health import (
    RESOURCES,
    FailingAccount,
    HealthFacts,
    Problem,
    assess,
    failing_accounts,
    last_full,
)
from provisioning.domain.state import CursorState, RunSummary
from provisioning.ports import StateStore
from provisioning.service.access import refused_access
from provisioning.service.binding import BINDING, Binding, mismatch_text, parse
from provisioning.service.golive import latest_plans, mode_of

CURSORS = ("users", "groups")  # the delta cursors a pass holds (service.sync)
HISTORY = 1000  # runs read: two days of passes every 15 minutes and their follow-ups, in one page


@dataclass(frozen=True)
class Status:
    now: datetime
    runs: list[RunSummary]  # newest first
    subscriptions: dict[str, Subscription | None]
    cursors: list[CursorState]
    problems: list[Problem]
    failing: list[FailingAccount]
    last_full: RunSummary | None
    held: list[Hold]  # accounts left as they are for now (unreadable, settling, refused), oldest first
    bound_to: Binding | None = None  # the tenants the state was built against (service.binding)
    mode: ModeRecord | None = None  # plan-only or apply (service.golive)
    plans: dict[str, PlanSummary] = field(default_factory=dict)  # the latest plan of each kind

    @property
    def healthy(self) -> bool:
        return not self.problems

    def to_json(self, shown_runs: int) -> dict[str, Any]:
        bound = self.bound_to
        return {
            "healthy": self.healthy,
            "bound_to": {"entra_tenant": bound.entra, "druva_credential": bound.druva} if bound else None,
            "mode": self.mode.mode.value if self.mode else "apply",
            "plans": {kind: plan.to_json() for kind, plan in self.plans.items()},
            "checked_at": self.now.isoformat(),
            "problems": [{"code": p.code, "detail": p.detail} for p in self.problems],
            "passes": [_run_json(run) for run in self.runs[:shown_runs]],
            "subscriptions": [
                {
                    "resource": resource,
                    "id": sub.id if sub else None,
                    "expires_at": sub.expires_at.isoformat() if sub else None,
                }
                for resource, sub in self.subscriptions.items()
            ],
            "cursors": [
                {
                    "name": cursor.name,
                    "updated_at": _iso(cursor.updated_at),
                    "age_seconds": _seconds(self.now, cursor.updated_at),
                    "lease_owner": cursor.lease_owner,
                    "lease_until": _iso(cursor.lease_until),
                }
                for cursor in self.cursors
            ],
            "failing_accounts": [
                {
                    "entra_id": a.entra_id,
                    "principal": a.principal,
                    "reason": a.reason,
                    "consecutive_passes": a.consecutive,
                }
                for a in self.failing
            ],
            "last_full_reconciliation": _iso(self.last_full.started_at) if self.last_full else None,
            "held_accounts": [
                {
                    "entra_id": h.entra_id,
                    "principal": h.principal,
                    "reason": h.reason.value,
                    "detail": h.detail,
                    "advice": h.advice,
                    "since": h.since.isoformat(),
                    "recheck_at": h.recheck_at.isoformat(),
                }
                for h in self.held
            ],
        }


async def read_status(state: StateStore, now: datetime, initial_mode: Mode = Mode.APPLY) -> Status:
    """Reads only: never claims, saves or records anything."""
    runs = await state.recent_runs(HISTORY)
    subscriptions = {resource: await state.get_subscription(resource) for resource in RESOURCES}
    cursors = [await state.get_cursor(name) for name in CURSORS]
    held = sorted((await state.holds()).values(), key=lambda h: h.since)
    bound, elsewhere = await _binding(state)
    mode, plans = await mode_of(state, initial_mode), await latest_plans(state)
    refused = await refused_access(state)
    facts = HealthFacts(
        now=now,
        runs=runs,
        subscriptions=subscriptions,
        cursors=cursors,
        holds=held,
        bound_elsewhere=elsewhere,
        mode=mode,
        plans=plans,
        access_refused="; ".join(r.describe() for r in refused) or None,
    )
    return Status(
        now=now,
        runs=runs,
        subscriptions=subscriptions,
        cursors=cursors,
        problems=assess(facts),
        failing=failing_accounts(runs),
        last_full=last_full(runs),
        held=held,
        bound_to=bound,
        mode=mode,
        plans=plans,
    )


async def _binding(state: StateStore) -> tuple[Binding | None, str | None]:
    """The tenants the state is bound to, and why runs are refused it (None: they are not)."""
    try:
        recorded = parse((await state.get_cursor(BINDING)).value)
    except ConfigError as error:
        return None, error.problems[0]
    if recorded.binding is None or recorded.refused is None:
        return recorded.binding, None
    when = f" (last at {recorded.refused_at:%Y-%m-%d %H:%M} UTC)" if recorded.refused_at else ""
    return recorded.binding, mismatch_text(recorded.binding, recorded.refused, f"runs are refused{when}")


def _run_json(run: RunSummary) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "kind": run.kind,
        "started_at": run.started_at.isoformat(),
        "duration_seconds": round((run.finished_at - run.started_at).total_seconds(), 3),
        "counts": run.counts,
        "stopped": run.stopped,
        "failures": [
            {"entra_id": f.entra_id, "principal": f.principal, "reason": f.reason} for f in run.failures
        ],
    }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _seconds(now: datetime, moment: datetime | None) -> float | None:
    return round((now - moment).total_seconds(), 3) if moment else None
