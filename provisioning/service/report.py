"""What a run did, counted the way the CLI's ``--json`` reports it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum

from provisioning.domain.decisions import Decision, Outcome
from provisioning.domain.followups import Hold
from provisioning.domain.planner import SafetyVerdict
from provisioning.domain.state import RunFailure, RunKind, bounded_failures

# The keys of the counts, in the order the CLI and ``--json`` show them: one per decision outcome, and
# the decisions that failed.
FAILED = "failed"
COUNT_KEYS = (*(outcome.value for outcome in Outcome), FAILED)


class ExitCode(IntEnum):
    """The command line's exit codes, a public contract (see ``entrypoints/cli.py``)."""

    OK = 0
    FAILED = 1  # some accounts failed (the rest done), or a service failed
    BAD_INPUT = 2  # bad configuration or arguments
    SAFETY_STOP = 3  # the safety guard refused the run: nothing preserved


@dataclass(frozen=True)
class AccountFailure:
    entra_id: str
    principal: str
    error: str
    transient: bool


@dataclass
class RunReport:
    run_id: str
    kind: RunKind
    dry_run: bool
    decisions: list[Decision] = field(default_factory=list)  # those with actions, and manual ones
    counts: Counter[str] = field(default_factory=Counter)
    planned: Counter[str] = field(default_factory=Counter)  # what the plan held, before any refusal
    failures: list[AccountFailure] = field(default_factory=list)
    safety: SafetyVerdict | None = None
    notes: list[str] = field(default_factory=list)
    continuation: tuple[str, int] | None = None  # (pass id, slices done) when a slice left work
    pending: int = 0  # decisions left to the continuation
    held: list[Decision] = field(default_factory=list)  # accounts left as they are for now, and why
    refusals: list[Hold] = field(default_factory=list)  # writes Druva refused in this run
    writes_refused: Hold | None = None  # Druva refused the credential itself: no further writes
    next_look: datetime | None = None  # when a follow-up pass is due (notified changes, held accounts)

    @property
    def safety_stopped(self) -> bool:
        return self.safety is not None and not self.safety.allowed

    def count(self, decision: Decision) -> None:
        self.counts[decision.outcome.value] += 1
        self.planned[decision.outcome.value] += 1

    def uncount(self, outcome: Outcome) -> None:
        """An account decided twice in one pass (Graph sent it twice): the earlier decision is withdrawn."""
        self.counts[outcome.value] -= 1
        self.planned[outcome.value] -= 1

    def refuse(self, verdict: SafetyVerdict) -> None:
        """The safety guard refused the plan as a whole: nothing planned was done, so it counts as skipped."""
        self.safety = verdict
        for outcome in (Outcome.CREATED, Outcome.UPDATED, Outcome.PRESERVED, Outcome.REACTIVATED):
            self.counts[Outcome.SKIPPED.value] += self.counts.pop(outcome.value, 0)
        self.notes.append(verdict.message())

    def fail(self, decision: Decision, error: str, *, transient: bool) -> None:
        """A planned decision that could not be carried out: counted as failed instead."""
        self.counts[decision.outcome.value] -= 1
        self.counts[FAILED] += 1
        self.failures.append(AccountFailure(decision.entra_id, decision.principal, error, transient))

    def refuse_account(self, principal: str, reason: str) -> None:
        """A named account that could not even be decided (unknown, malformed): a failure like any other."""
        self.counts[FAILED] += 1
        self.failures.append(AccountFailure("", principal, reason, transient=False))

    def failures_kept(self) -> tuple[RunFailure, ...]:
        """The failures the run history and telemetry keep (bounded, one line each)."""
        return bounded_failures(RunFailure(f.entra_id, f.principal, f.error) for f in self.failures)

    def defer(self, decisions: Sequence[Decision], pass_id: str, slices_done: int) -> None:
        """Decisions left to the pass's next slice: not done by this run, so not counted as done."""
        for decision in decisions:
            self.counts[decision.outcome.value] -= 1
        self.pending += len(decisions)
        self.continuation = (pass_id, slices_done)
        left = len(decisions)
        self.notes.append(f"pass {pass_id}: slice {slices_done} done, {left} accounts left to the next")

    def totals(self) -> dict[str, int]:
        return {key: max(self.counts.get(key, 0), 0) for key in COUNT_KEYS}

    @property
    def exit_code(self) -> ExitCode:
        if self.safety_stopped:
            return ExitCode.SAFETY_STOP
        # the same figure the table and --json show
        return ExitCode.FAILED if self.totals()[FAILED] else ExitCode.OK
