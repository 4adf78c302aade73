"""Going live: a deployment plans before it writes.

A fresh deployment starts in plan-only mode (``PROVISIONING_INITIAL_MODE``): its passes read Entra, keep
the subscriptions and cursors going and decide every account as usual, but write nothing to Druva; each
pass records its plan (how many creates, re-maps and preserves, by mapping, with examples) for ``status``
and telemetry. An admin reads it, then switches to apply, confirming how many Druva users the first pass
may create. The first pass that applies reads everyone (what the plan-only passes decided was never
carried out) and stops before its first write if it would create more than the admin confirmed; after it,
the usual safety stops are the only ones. Switching back to plan is one command too.

The mode is the state's, not the deployment's: a redeploy does not reset it, and every instance and the
command line see the same one.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum

from provisioning.domain.decisions import Create, Decision, Outcome

EXAMPLES_PER_OUTCOME = 3
MAX_MAPPINGS_SHOWN = 50  # a plan record must stay small (one Table Storage property holds 64 KB)
PLANNED = (Outcome.CREATED, Outcome.UPDATED, Outcome.PRESERVED, Outcome.REACTIVATED)


class Mode(StrEnum):
    PLAN = "plan"  # decide and record the plan; write nothing to Druva
    APPLY = "apply"  # carry the plan out


@dataclass(frozen=True)
class ModeRecord:
    """The state's mode. ``confirmed_creates``: how many Druva users the first applying pass may create
    (None once that pass is done, or when the state was never in plan mode)."""

    mode: Mode
    since: datetime | None = None
    confirmed_creates: int | None = None
    first_apply_pending: bool = False
    created_so_far: int = 0  # creates the first applying pass made in the slices before this one
    recorded: bool = True  # False: no record yet, the mode is what a state in its situation starts with

    @property
    def plan_only(self) -> bool:
        return self.mode is Mode.PLAN

    def applying(self, confirmed_creates: int, now: datetime) -> ModeRecord:
        return ModeRecord(Mode.APPLY, now, confirmed_creates, first_apply_pending=True)

    def planning(self, now: datetime) -> ModeRecord:
        return ModeRecord(Mode.PLAN, now)

    def first_apply_done(self) -> ModeRecord:
        return replace(self, confirmed_creates=None, first_apply_pending=False, created_so_far=0)

    def first_apply_goes_on(self, created: int) -> ModeRecord:
        """A slice of the first applying pass ended with work left: what it created counts against the
        confirmed number for the slices after it."""
        return replace(self, created_so_far=self.created_so_far + created)

    def to_json(self) -> str:
        return json.dumps(
            {
                "mode": self.mode.value,
                "since": self.since.isoformat() if self.since else None,
                "confirmed_creates": self.confirmed_creates,
                "first_apply_pending": self.first_apply_pending,
                "created_so_far": self.created_so_far,
            },
            sort_keys=True,
        )

    @classmethod
    def parse(cls, value: str | None, assumed: Mode) -> ModeRecord:
        """The stored record; none stored means ``assumed`` (see ``assumed_mode``), not recorded yet. An
        unreadable record is taken as plan-only: writing on a guess is what this record prevents."""
        if not value:
            return cls(assumed, recorded=False)
        try:
            data = json.loads(value)
            since = data.get("since")
            return cls(
                Mode(data["mode"]),
                datetime.fromisoformat(since) if isinstance(since, str) else None,
                _count(data.get("confirmed_creates")),
                bool(data.get("first_apply_pending", False)),
                _count(data.get("created_so_far")) or 0,
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            return cls(Mode.PLAN)


def assumed_mode(initial: Mode, *, fresh: bool) -> Mode:
    """The mode of a state that records none: ``initial`` (``PROVISIONING_INITIAL_MODE``) for a fresh
    state, apply for one that has run before (a deployment live before modes existed must not stop
    creating users when it is upgraded)."""
    return initial if fresh else Mode.APPLY


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


@dataclass(frozen=True)
class CreatesVerdict:
    """The first applying pass's own safety stop: no more creates than the admin confirmed."""

    creates: int
    confirmed: int

    @property
    def allowed(self) -> bool:
        return self.creates <= self.confirmed

    def message(self) -> str:
        return (
            f"safety stop: the first pass that applies would create {self.creates} Druva users, more than "
            f"the {self.confirmed} confirmed when switching to apply; nothing was written. Read the plan "
            "(python -m provisioning sync --dry-run --full), then confirm it: "
            f"python -m provisioning mode apply --confirm-creates {self.creates}"
        )


def check_creates(record: ModeRecord, decisions: Iterable[Decision]) -> CreatesVerdict | None:
    """The verdict on the first applying pass's plan (with what its earlier slices created); None for
    any other pass."""
    if not record.first_apply_pending or record.confirmed_creates is None:
        return None
    return CreatesVerdict(record.created_so_far + creates_in(decisions), record.confirmed_creates)


def creates_in(decisions: Iterable[Decision]) -> int:
    return sum(1 for d in decisions if any(isinstance(a, Create) for a in d.actions))


@dataclass(frozen=True)
class PlanExample:
    principal: str
    outcome: str
    mapping: str | None
    what: str  # the actions, described


@dataclass(frozen=True)
class PlanSummary:
    """What a plan-only pass would have done: counts by outcome and by mapping, with a few examples."""

    run_id: str
    kind: str  # delta | full
    at: datetime
    counts: dict[str, int]
    by_mapping: dict[str, dict[str, int]] = field(default_factory=dict)
    examples: tuple[PlanExample, ...] = ()
    stopped: str | None = None  # the safety stop that would refuse this plan when it applies

    def with_stop(self, stopped: str | None) -> PlanSummary:
        return replace(self, stopped=stopped)

    @property
    def creates(self) -> int:
        return self.counts.get(Outcome.CREATED.value, 0)

    def describe(self) -> str:
        done = ", ".join(f"{n} {o}" for o, n in self.counts.items() if n) or "nothing to do"
        stop = f" (applied, it would be refused: {self.stopped})" if self.stopped else ""
        return f"{self.kind} plan {self.run_id} at {self.at:%Y-%m-%d %H:%M} UTC: {done}{stop}"

    def to_json(self) -> dict[str, object]:
        return {
            "run_id": self.run_id,
            "kind": self.kind,
            "at": self.at.isoformat(),
            "counts": self.counts,
            "by_mapping": self.by_mapping,
            "examples": [
                {"principal": e.principal, "outcome": e.outcome, "mapping": e.mapping, "what": e.what}
                for e in self.examples
            ],
            "stopped": self.stopped,
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> PlanSummary:
        examples = data.get("examples")
        return cls(
            str(data["run_id"]),
            str(data["kind"]),
            datetime.fromisoformat(str(data["at"])),
            {str(k): int(v) for k, v in dict(data["counts"]).items()},  # type: ignore[call-overload]
            {
                str(m): {str(k): int(v) for k, v in dict(c).items()}
                for m, c in dict(data.get("by_mapping") or {}).items()  # type: ignore[call-overload]
            },
            tuple(
                PlanExample(str(e["principal"]), str(e["outcome"]), e.get("mapping"), str(e["what"]))
                for e in (examples if isinstance(examples, list) else [])
            ),
            str(data["stopped"]) if data.get("stopped") else None,
        )


def summarise(run_id: str, kind: str, at: datetime, decisions: Iterable[Decision]) -> PlanSummary:
    """The plan of ``decisions``: what each outcome would do, by the mapping it goes through."""
    counts: Counter[str] = Counter()
    by_mapping: dict[str, Counter[str]] = {}
    examples: list[PlanExample] = []
    shown: Counter[str] = Counter()
    for decision in decisions:
        if decision.outcome not in PLANNED or not decision.actions:
            continue
        outcome = decision.outcome.value
        mapping = decision.desired.mapping if decision.desired else None
        counts[outcome] += 1
        key = mapping or "(no mapping)"
        if key in by_mapping or len(by_mapping) < MAX_MAPPINGS_SHOWN:
            by_mapping.setdefault(key, Counter())[outcome] += 1
        if shown[outcome] < EXAMPLES_PER_OUTCOME:
            shown[outcome] += 1
            what = "; ".join(a.describe() for a in decision.actions)[:300]
            examples.append(PlanExample(decision.principal[:200], outcome, mapping, what))
    ordered = {o.value: counts[o.value] for o in PLANNED}
    return PlanSummary(
        run_id, kind, at, ordered, {m: dict(c) for m, c in by_mapping.items()}, tuple(examples)
    )
