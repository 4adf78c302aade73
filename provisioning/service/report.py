"""What a run did, counted the way the CLI's ``--json`` reports it."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum

from provisioning.domain.accounts import storable
from provisioning.domain.decisions import Decision, Outcome
from provisioning.domain.followups import Hold
from provisioning.domain.golive import CreatesVerdict
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
    safety: SafetyVerdict | None = None  # the mass-preserve guard's verdict on the plan
    stopped: str | None = None  # why a safety stop refused the plan as a whole, if one did
    notes: list[str] = field(default_factory=list)
    continuation: tuple[str, int] | None = None  # (pass id, slices done) when a slice left work
    pending: int = 0  # decisions left to the continuation
    held: list[Decision] = field(default_factory=list)  # accounts left as they are for now, and why
    refusals: list[Hold] = field(default_factory=list)  # writes Druva refused in this run
    writes_refused: Hold | None = None  # Druva refused the credential itself: no further writes
    next_look: datetime | None = None  # when a follow-up pass is due (notified changes, held accounts)
    # Durations come from this, never from the wall clock: a clock set back mid-run must not make a run
    # last minus two hours, nor one set forward make it last two days.
    started_monotonic: float = field(default_factory=time.monotonic)
    settled: set[str] = field(default_factory=set)  # accounts whose planned writes were done or failed
    to_write: dict[str, Outcome] = field(default_factory=dict)  # counted decisions with writes, by account

    def elapsed_seconds(self) -> float:
        return time.monotonic() - self.started_monotonic

    @property
    def safety_stopped(self) -> bool:
        return self.stopped is not None

    def count(self, decision: Decision) -> None:
        self.counts[decision.outcome.value] += 1
        self.planned[decision.outcome.value] += 1
        if decision.actions:  # counted as done before it is: withdrawn if the run stops first
            self.to_write[decision.entra_id] = decision.outcome

    def uncount(self, outcome: Outcome, entra_id: str = "") -> None:
        """An account decided twice in one pass (Graph sent it twice): the earlier decision is withdrawn."""
        self.counts[outcome.value] -= 1
        self.planned[outcome.value] -= 1
        self.to_write.pop(entra_id, None)

    def refuse(self, verdict: SafetyVerdict | CreatesVerdict) -> None:
        """A safety stop refused the plan as a whole: nothing planned was done, so it counts as skipped."""
        if isinstance(verdict, SafetyVerdict):
            self.safety = verdict
        self.stopped = verdict.message()
        for outcome in (Outcome.CREATED, Outcome.UPDATED, Outcome.PRESERVED, Outcome.REACTIVATED):
            self.counts[Outcome.SKIPPED.value] += self.counts.pop(outcome.value, 0)
        self.notes.append(verdict.message())

    def fail(self, decision: Decision, error: str, *, transient: bool) -> None:
        """A planned decision that could not be carried out: counted as failed instead."""
        self.settled.add(decision.entra_id)
        self.counts[decision.outcome.value] -= 1
        self.counts[FAILED] += 1
        failure = AccountFailure(decision.entra_id, storable(decision.principal), storable(error), transient)
        self.failures.append(failure)

    def refuse_account(self, principal: str, reason: str, entra_id: str = "") -> None:
        """An account that could not even be decided (unknown, malformed): a failure like any other."""
        self.counts[FAILED] += 1
        # What it could not be decided for may be in its name or its reason: both are kept escaped.
        self.failures.append(AccountFailure(storable(entra_id), storable(principal), storable(reason), False))

    def failures_kept(self) -> tuple[RunFailure, ...]:
        """The failures the run history and telemetry keep (bounded, one line each)."""
        return bounded_failures(RunFailure(f.entra_id, f.principal, f.error) for f in self.failures)

    def carried_out(self, decision: Decision) -> None:
        """The decision's writes are done (or it failed, and ``fail`` counted it): it counts as decided."""
        self.settled.add(decision.entra_id)

    def withdraw_unsettled(self) -> None:
        """The run stopped before carrying out some of its planned decisions (also while still reading and
        deciding): they did not happen, so they are not counted; the counts say what was done."""
        left = {i: o for i, o in self.to_write.items() if i not in self.settled}
        for outcome in left.values():
            self.counts[outcome.value] -= 1
        if left:
            self.notes.append(f"{len(left)} planned accounts were not carried out before the run stopped")
        self.to_write = {i: o for i, o in self.to_write.items() if i in self.settled}
        self.decisions = [d for d in self.decisions if not d.actions or d.entra_id in self.settled]

    def defer(self, decisions: Sequence[Decision], pass_id: str, slices_done: int) -> None:
        """Decisions left to the pass's next slice: not done by this run, so not counted as done."""
        for decision in decisions:
            self.counts[decision.outcome.value] -= 1
            self.to_write.pop(decision.entra_id, None)
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


_PARTIAL = "provisioning_partial_report"


def attach(error: BaseException, report: RunReport) -> None:
    """Keep what a run did before ``error`` ended it with the error: its counts are the honest ones."""
    setattr(error, _PARTIAL, report)


def partial_report(error: BaseException) -> RunReport | None:
    """What the run that ``error`` ended had done by then, if it says."""
    found = getattr(error, _PARTIAL, None)
    return found if isinstance(found, RunReport) else None
