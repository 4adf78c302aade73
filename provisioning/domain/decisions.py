"""Decisions are data: the CLI's plan and explain, the audit trail and the worker all use this object."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

from provisioning.domain.druva import DruvaStatus
from provisioning.domain.followups import HoldRequest
from provisioning.domain.mappings import MappingCheck, Target


class Outcome(StrEnum):
    """How a decision is counted in run summaries (the CLI's ``--json`` keys)."""

    CREATED = "created"
    UPDATED = "updated"
    PRESERVED = "preserved"
    REACTIVATED = "reactivated"
    UNCHANGED = "unchanged"
    SKIPPED = "skipped"


class RetireReason(StrEnum):
    DISABLED = "disabled"
    DELETED = "deleted"
    UNMAPPED = "unmapped"


@dataclass(frozen=True)
class Create:
    # Stored in the audit trail: renaming the class must not change recorded history.
    name: ClassVar[str] = "create"
    email: str
    user_name: str
    target: Target

    def describe(self) -> str:
        return f"create {self.email} ({self.target.describe()})"


@dataclass(frozen=True)
class Adopt:
    """Link an existing Druva user with the same e-mail instead of creating a duplicate."""

    # Stored in the audit trail: renaming the class must not change recorded history.
    name: ClassVar[str] = "adopt"
    user_id: int
    email: str

    def describe(self) -> str:
        return f"adopt existing Druva user {self.user_id} ({self.email})"


@dataclass(frozen=True)
class FieldChange:
    field: str  # user_name | profile | storage
    old: str
    new: str


@dataclass(frozen=True)
class Patch:
    # Stored in the audit trail: renaming the class must not change recorded history.
    name: ClassVar[str] = "patch"
    user_id: int
    changes: tuple[FieldChange, ...]

    def value(self, field: str) -> str | None:
        return next((c.new for c in self.changes if c.field == field), None)

    def describe(self) -> str:
        return "patch " + ", ".join(f"{c.field} {c.old!r} → {c.new!r}" for c in self.changes)


@dataclass(frozen=True)
class Preserve:
    # Stored in the audit trail: renaming the class must not change recorded history.
    name: ClassVar[str] = "preserve"
    user_id: int
    reason: RetireReason

    def describe(self) -> str:
        return f"preserve Druva user {self.user_id} ({self.reason.value})"


@dataclass(frozen=True)
class Activate:
    # Stored in the audit trail: renaming the class must not change recorded history.
    name: ClassVar[str] = "activate"
    user_id: int

    def describe(self) -> str:
        return f"activate Druva user {self.user_id}"


Action = Create | Adopt | Patch | Preserve | Activate


@dataclass(frozen=True)
class Desired:
    """What Druva should hold for the account once the actions are done (and what the link records)."""

    status: DruvaStatus
    mapping: str | None
    target: Target | None


@dataclass(frozen=True)
class Decision:
    entra_id: str
    principal: str  # the UPN, or the Entra id when the account is gone
    email: str | None
    outcome: Outcome
    winner: MappingCheck | None
    checks: tuple[MappingCheck, ...]
    actions: tuple[Action, ...]
    desired: Desired | None  # None: nothing of ours to hold (not managed, or skipped)
    notes: tuple[str, ...] = ()
    druva_user_id: int | None = None
    hold: HoldRequest | None = None  # left as it is for now: why, and until when
    druva_email: str | None = None  # the e-mail of the Druva user it concerns, as Druva has it

    @property
    def preserves(self) -> bool:
        return any(isinstance(a, Preserve) for a in self.actions)

    def describe(self) -> str:
        """One line for logs and progress output."""
        actions = "; ".join(a.describe() for a in self.actions) or "no action"
        why = self.winner.describe() if self.winner else (self.notes[0] if self.notes else "")
        return f"{self.principal}: {self.outcome.value}: {actions}" + (f" — {why}" if why else "")
