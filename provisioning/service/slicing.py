"""Carrying a judged plan out, slice by slice: at most ``SliceBound`` per invocation, recording between
slices in the users cursor that the pass goes on, and stopping at the next step when an admin switches
the state to plan-only mode.

In the worker a pass carries out one slice and hands over to a continuation message; the command line
runs every slice in one process, through the same loop, without planning again.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from provisioning.domain.cursor import PassInProgress, UsersCursor
from provisioning.domain.decisions import Decision
from provisioning.service.context import Run
from provisioning.service.execute import carry_out_all
from provisioning.service.golive import mode_of
from provisioning.service.lease import CursorLeases
from provisioning.service.planning import USERS, Plan, commit, follow_up
from provisioning.service.report import RunReport

STEP = 500  # decisions carried out together: the time bound is checked between steps


@dataclass(frozen=True)
class SliceBound:
    """How much one invocation may do: at most ``accounts`` decisions carried out, and no new step
    begun once ``seconds`` have passed since the invocation started (planning included). The limits
    test checks that this fits inside the Service Bus lock renewal and the function timeout.

    The time bound is what keeps an invocation inside its lock; the account bound only caps a slice
    where Druva is fast. It is set to what 150 s allows at 200 requests a second, because every slice
    plans again (reads Entra, sweeps Druva): a 20,000-account import in 5,000-account slices took 2.25×
    the rate limit's bound, in one slice 1.20× (``make bench-scale``, part d)."""

    accounts: int = 30_000
    seconds: float = 150.0

    def __post_init__(self) -> None:
        if self.accounts < 1 or self.seconds <= 0:
            raise ValueError(f"a slice must allow some work, not {self}")


WORKER_SLICE = SliceBound()


@dataclass
class Slicer:
    """Carries out a judged plan slice by slice, recording between slices that the pass goes on."""

    run: Run
    plan: Plan
    report: RunReport
    leases: CursorLeases
    bound: SliceBound
    started: float  # time.monotonic() when this invocation began
    halted: bool = False  # an admin switched to plan-only mode while this pass wrote

    async def carry_out(self, ongoing: PassInProgress | None, *, whole: bool) -> None:
        todo, done, leases = self.report.decisions, 0, self.leases
        progress = ongoing or PassInProgress(self.run.run_id, self.report.kind, 0)
        while True:
            done += await self._one_slice(todo, done)
            progress = progress.next_slice()
            if done >= len(todo):
                break
            # Unfinished: record that the pass goes on (the delta cursors themselves do not move).
            going_on = UsersCursor.parse(leases.claims[USERS].value).going_on(progress)
            await leases.save(USERS, going_on.dump(), release=False)
            if self.halted:
                left = len(todo) - done
                self.report.notes.append(f"switched to plan-only mode: {left} accounts not written")
            if not whole or self.halted:
                # Refusals are recorded as the slice ends: the next slice plans again and must hold
                # them back, not ask Druva again.
                await self.run.services.state.put_holds(self.report.refusals)
                self.report.defer(todo[done:], progress.pass_id, progress.slices_done)
                return
            self.started = time.monotonic()  # the command line: the next slice, in the same process
        if any(f.transient for f in self.report.failures):
            self.report.notes.append("some accounts failed for a passing reason: the next pass retries them")
            if ongoing is not None:  # this pass is over; what failed is retried by the next one
                over = UsersCursor.parse(leases.claims[USERS].value).going_on(None)
                await leases.save(USERS, over.dump(), release=False)
        else:
            await commit(self.run, leases, self.plan)
        await follow_up(self.run, self.plan, self.report)

    async def _one_slice(self, todo: Sequence[Decision], start: int) -> int:
        """Carry out decisions from ``start`` until the slice is full; returns how many it took."""
        end = min(len(todo), start + self.bound.accounts)
        position = start
        while position < end:
            if position > start and time.monotonic() - self.started >= self.bound.seconds:
                break
            if position > start and await self._switched_to_plan():
                self.halted = True
                break
            step = todo[position : min(end, position + STEP)]
            await carry_out_all(
                self.run, step, self.plan.links, self.report, done_before=position, total=len(todo)
            )
            position += len(step)
        return position - start

    async def _switched_to_plan(self) -> bool:
        """Whether an admin ran ``mode plan`` since the pass began: it writes no further step."""
        return (await mode_of(self.run.services.state, self.run.initial_mode)).plan_only
