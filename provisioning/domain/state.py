"""Records the state store keeps besides links: delta cursors, audit entries and run summaries."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


@dataclass(frozen=True)
class CursorState:
    """A delta cursor and who may advance it.

    ``value`` is the opaque resume point (a Graph deltaLink, or several as JSON); None means "read from
    the start". ``lease_owner``/``lease_until`` serialise passes: one writer per cursor. ``version`` is
    the store's optimistic-concurrency token (ETag in Table Storage, a counter in SQLite).
    """

    name: str
    value: str | None = None
    lease_owner: str | None = None
    lease_until: datetime | None = None
    updated_at: datetime | None = None
    version: str | None = None

    def leased_to_other(self, owner: str, now: datetime) -> bool:
        return bool(
            self.lease_owner and self.lease_owner != owner and self.lease_until and self.lease_until > now
        )


class RunKind(StrEnum):
    """What a run was: recorded in the run history, reported by the command line and telemetry."""

    DELTA = "delta"
    FULL = "full"
    IMPORT = "import"
    NOTIFICATION = "notification"


class AuditOutcome(StrEnum):
    """How one action in the audit trail ended."""

    DONE = "done"
    FAILED = "failed"
    PLANNED = "planned"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class AuditEntry:
    """One decision or action about one account, with its reason and how it ended."""

    at: datetime
    entra_id: str
    principal: str
    action: str  # the action's stable ``name`` (create, adopt, patch, preserve, activate)
    outcome: AuditOutcome
    reason: str
    run_id: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunFailure:
    """One account a run could not bring in step, and why, in one line."""

    entra_id: str
    principal: str
    reason: str


@dataclass(frozen=True)
class RunSummary:
    """``failures`` lists at most ``MAX_RUN_FAILURES`` accounts, lowest Entra id first: the same accounts
    stay listed run after run, so an account failing again and again can be recognised. Runs recorded
    before failures were kept read back with none."""

    run_id: str
    kind: RunKind
    started_at: datetime
    finished_at: datetime
    counts: dict[str, int]
    dry_run: bool = False
    stopped: str | None = None  # why the run stopped early (safety stop, cursor expired, ...)
    failures: tuple[RunFailure, ...] = ()


MAX_RUN_FAILURES = 20
MAX_REASON_CHARS = 200


def bounded_failures(failures: Iterable[RunFailure]) -> tuple[RunFailure, ...]:
    """The failures a run keeps: one line each, at most ``MAX_REASON_CHARS``, the first
    ``MAX_RUN_FAILURES`` by Entra id (one per account)."""
    by_account: dict[str, RunFailure] = {}
    for failure in failures:
        by_account.setdefault(failure.entra_id, failure)
    kept = sorted(by_account.values(), key=lambda f: f.entra_id)[:MAX_RUN_FAILURES]
    return tuple(RunFailure(f.entra_id, f.principal[:MAX_REASON_CHARS], one_line(f.reason)) for f in kept)


def one_line(text: str, limit: int = MAX_REASON_CHARS) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
