"""Health at a glance, from the state store alone: recent passes, subscriptions, cursors and their
leases, failing accounts, the last full reconciliation, and the verdict of ``domain.health``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from provisioning.domain.directory import Subscription
from provisioning.domain.followups import Hold
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

    @property
    def healthy(self) -> bool:
        return not self.problems

    def to_json(self, shown_runs: int) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
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


async def read_status(state: StateStore, now: datetime) -> Status:
    """Reads only: never claims, saves or records anything."""
    runs = await state.recent_runs(HISTORY)
    subscriptions = {resource: await state.get_subscription(resource) for resource in RESOURCES}
    cursors = [await state.get_cursor(name) for name in CURSORS]
    held = sorted((await state.holds()).values(), key=lambda h: h.since)
    facts = HealthFacts(now=now, runs=runs, subscriptions=subscriptions, cursors=cursors, holds=held)
    return Status(
        now=now,
        runs=runs,
        subscriptions=subscriptions,
        cursors=cursors,
        problems=assess(facts),
        failing=failing_accounts(runs),
        last_full=last_full(runs),
        held=held,
    )


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
