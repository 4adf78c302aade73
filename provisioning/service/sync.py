"""The delta pass and the full reconciliation: read Entra, decide every touched account, apply.

A pass holds the leases of both delta cursors (one writer per cursor, kept alive by a heartbeat: see
``provisioning.service.lease``), reads membership then users, plans every decision before writing
anything (so the mass-preserve guard can refuse the plan as a whole), carries it out, and only then
moves the cursors on. If an account failed for a reason worth retrying, the cursors stay where they
were: the next pass reads the same changes again and the accounts that succeeded are no-ops by then.

Long passes work in slices (``SliceBound``: at most N accounts or T seconds per invocation). In the
worker a pass carries out one slice, records in the users cursor that the pass is still in progress
(its id, kind and slice number; the delta cursors themselves do not move), and hands over to a
continuation message. The continuation, or any pass that comes first, sees the pass in progress and
carries it on: it reads from the same unmoved cursors, plans again (the guard judges the remaining
plan as a whole again; accounts finished by earlier slices are no-ops through their links) and does
the next slice. Only the slice that finishes the plan moves the cursors. The command line runs every
slice of a pass in one process, through the same loop, without planning again.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from provisioning.domain.accounts import EntraAccount, object_id_problem, text_problem
from provisioning.domain.decisions import Decision, Outcome
from provisioning.domain.directory import UserChange, UserRemoved, UserUnreadable
from provisioning.domain.followups import Sighting
from provisioning.domain.golive import ModeRecord, check_creates
from provisioning.domain.groups import MembershipIndex
from provisioning.domain.links import AccountLink
from provisioning.domain.planner import Situation, check_safety, decide
from provisioning.domain.state import CursorState, RunKind, RunSummary
from provisioning.errors import AuthError, CursorBusy, CursorExpired, TransientError
from provisioning.service import telemetry
from provisioning.service.access import clear_refusal, record_refusal
from provisioning.service.account_facts import (
    DruvaLookup,
    druva_query,
    situation_for,
    with_memberships_and_purpose,
)
from provisioning.service.binding import check_binding
from provisioning.service.context import Run
from provisioning.service.execute import carry_out_all, needs_carrying_out
from provisioning.service.followups import PassFollowUps
from provisioning.service.golive import (
    MODE_COMMAND,
    first_apply_done,
    first_apply_goes_on,
    keep_mode,
    mode_of,
    record_plan,
)
from provisioning.service.lease import CursorLeases
from provisioning.service.memberships import (
    MembershipPass,
    MembershipView,
    affected_accounts,
    read_memberships,
)
from provisioning.service.report import RunReport, attach

log = logging.getLogger("provisioning")

USERS, GROUPS = "users", "groups"
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


@dataclass(frozen=True)
class PassInProgress:
    """What the users cursor records while a sliced pass is unfinished."""

    pass_id: str
    kind: RunKind
    slices_done: int

    def as_json(self) -> dict[str, object]:
        return {"id": self.pass_id, "kind": self.kind, "slices": self.slices_done}


@dataclass
class Plan:
    """What a pass read: the links its decisions start from, and what to commit once they are done.

    ``decided``: the decisions follow-ups care about (held ones, and those of accounts that had a hold).
    ``seen``: every object the pass's delta reads returned, read from ``read_at`` on; ``complete``: the
    pass read everyone (a full pass)."""

    membership: MembershipPass
    followups: PassFollowUps
    read_at: datetime
    users_cursor: str | None = None
    links: dict[str, AccountLink] = field(default_factory=dict)
    decided: dict[str, Decision] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)
    complete: bool = False
    outcomes: dict[str, Outcome] = field(default_factory=dict)  # a full pass: what each account got
    todo: dict[str, Decision] = field(default_factory=dict)  # a full pass: decisions to carry out

    def sighting(self, unsettled: Collection[str] = ()) -> Sighting:
        """What the pass's delta reads returned, less ``unsettled`` (accounts whose writes failed for a
        passing reason: the next pass reads them again). A full pass returns everyone's state as it is
        readable now, which says nothing of a change not readable yet: it keeps no promise."""
        if self.complete:
            return Sighting(self.read_at, frozenset())
        seen = (self.seen | self.membership.groups_seen()) - set(unsettled)
        return Sighting(self.read_at, frozenset(seen))


async def run_sync(
    run: Run,
    *,
    full: bool = False,
    bound: SliceBound | None = None,
    whole: bool = True,
    notified_at: datetime | None = None,
    look: bool = False,
) -> RunReport:
    """One pass (``whole``), or its next slice (the worker). ``look``: a follow-up look (see
    ``provisioning.domain.followups``), which reads the groups delta only for a pending group promise.
    Raises ``CursorBusy`` if another pass holds the cursors, ``LeaseLost`` if this one lost them mid-way
    (it stopped before its next write). ``report.continuation`` is set when a slice left work for a
    continuation. Every pass that took the
    cursors emits one telemetry record, also one that ends in an error; ``notified_at`` (when the
    notification behind it was received, if known) adds the notification → Druva latency. A pass that
    Graph or Druva refuses access (``AuthError``) is remembered for ``status`` until one gets through."""
    state = run.services.state
    try:
        report = await _pass(run, full=full, bound=bound, whole=whole, notified_at=notified_at, look=look)
    except AuthError as refused:
        if not run.dry_run:
            await record_refusal(state, run.now(), "a pass", refused)
        raise
    if not run.dry_run:
        await clear_refusal(state, run.now(), "a pass")
    return report


async def _pass(
    run: Run,
    *,
    full: bool,
    bound: SliceBound | None,
    whole: bool,
    notified_at: datetime | None,
    look: bool,
) -> RunReport:
    started = run.now()
    report = RunReport(run.run_id, RunKind.FULL if full else RunKind.DELTA, run.dry_run)
    bound_now = await check_binding(run)  # before anything is read: a state of other tenants is refused
    if bound_now:
        report.notes.append(bound_now)
    mode = await mode_of(run.services.state, run.initial_mode)
    if mode.first_apply_pending and not full:  # a dry run too: it shows what the next pass will do
        full = True  # what the plan-only passes decided was never carried out: read everyone
        report.kind = RunKind.FULL
        report.notes.append("the first pass that applies reads everyone")
    report.dry_run = run.dry_run or mode.plan_only
    if not run.dry_run:
        mode = await keep_mode(run, mode)  # the mode it runs in, recorded: every reader sees the same
    if run.dry_run:  # a dry run only reads the cursors: it must write nothing, leases included
        with _telling(run, report, started, notified_at):
            await _dry_pass(run, report, full=full)
        _tell(run, report, started, notified_at)
        return report
    async with CursorLeases(run.services.state, run.services.clock, run.run_id, (USERS, GROUPS)) as leases:
        with _telling(run, report, started, notified_at):
            await _leased_pass(
                run, report, leases, mode, full=full, bound=bound or WORKER_SLICE, whole=whole, look=look
            )
    await run.services.state.record_run(_tell(run, report, started, notified_at))
    return report


async def _dry_pass(run: Run, report: RunReport, *, full: bool) -> None:
    claims = {USERS: await run.services.state.get_cursor(USERS)}
    claims[GROUPS] = await run.services.state.get_cursor(GROUPS)
    ongoing = _in_progress(claims[USERS].value)
    await _plan_pass(run, claims, report, full=full or _is_full(ongoing))
    await _judge(run, report)


async def _leased_pass(
    run: Run,
    report: RunReport,
    leases: CursorLeases,
    mode: ModeRecord,
    *,
    full: bool,
    bound: SliceBound,
    whole: bool,
    look: bool,
) -> None:
    clock_started = time.monotonic()
    outer_fence, run.fence = run.fence, leases.fence
    try:
        ongoing = _in_progress(leases.claims[USERS].value)
        if ongoing is not None:
            report.notes.append(f"carrying on pass {ongoing.pass_id} (slice {ongoing.slices_done + 1})")
        plan = await _plan_pass(
            run, dict(leases.claims), report, full=full or _is_full(ongoing), look=look and ongoing is None
        )
        if mode.plan_only:
            await _plan_only(run, report, leases, plan)
        elif await _judge(run, report, mode):
            await _Slicer(run, plan, report, leases, bound, clock_started).carry_out(ongoing, whole=whole)
            if mode.first_apply_pending:
                await _first_apply_progress(run, report, mode)
    finally:
        run.fence = outer_fence


async def _first_apply_progress(run: Run, report: RunReport, mode: ModeRecord) -> None:
    """The first applying pass's limit on creates holds over all its slices; it is done once a slice
    finishes it with no account failed for a passing reason (those the plan-only passes moved the
    delta cursor past: the next pass reads everyone again for them)."""
    if report.continuation is not None:
        await first_apply_goes_on(run, mode, report.totals()["created"])
    elif not any(f.transient for f in report.failures):
        await first_apply_done(run, mode)


async def _plan_only(run: Run, report: RunReport, leases: CursorLeases, plan: Plan) -> None:
    """Plan-only mode: record the plan and move the cursors on, writing nothing to Druva. (The first pass
    that applies reads everyone, so nothing decided here is lost.)"""
    preserves = any(d.preserves for d in report.decisions)
    managed = await run.services.state.count_managed() if preserves else 0
    verdict = check_safety(report.decisions, managed, run.policy.max_preserve_fraction)
    stopped = None if verdict.allowed else verdict.message()
    summary = await record_plan(run, report, stopped)
    if stopped:
        report.notes.append(f"applied, this plan would be refused: {stopped}")
    creates = f"; {summary.creates} Druva users to create" if summary.creates else ""
    report.notes.append(
        f"plan-only mode: nothing was written to Druva{creates}. When the plan is right: "
        f"{MODE_COMMAND} apply --confirm-creates N (N: the creates of the latest full plan)"
    )
    await _commit(run, leases, plan)
    await _follow_up(run, plan, report)


@contextmanager
def _telling(run: Run, report: RunReport, started: datetime, notified_at: datetime | None) -> Iterator[None]:
    """A pass that ends in an error still emits its one record, with the error, and the error carries
    what the pass did before it (the command line reports those counts, not zeros)."""
    try:
        yield
    except Exception as error:
        if not report.dry_run:
            report.withdraw_unsettled()
        attach(error, report)
        _tell(run, report, started, notified_at, error=f"{type(error).__name__}: {error}")
        raise


def _tell(
    run: Run, report: RunReport, started: datetime, notified_at: datetime | None, error: str | None = None
) -> RunSummary:
    """Emit the pass's one telemetry record; returns its summary for the run history."""
    summary = _summary(run, report, started)
    failures_total = len(report.failures)
    telemetry.emit(
        telemetry.pass_record(
            summary,
            failures_total=failures_total,
            error=error,
            notified_at=notified_at,
            held=len(report.held),
        )
    )
    return summary


async def _judge(run: Run, report: RunReport, mode: ModeRecord | None = None) -> bool:
    """The safety stops, on the whole plan, before any write: the first applying pass's limit on creates
    (``domain.golive``), then the mass-preserve guard. A plan that preserves no one passes whatever the
    count, so the managed accounts (in Table Storage a read of every link) are counted only for a plan
    that preserves someone."""
    creates = check_creates(mode, report.decisions) if mode is not None else None
    if creates is not None and not creates.allowed:
        report.refuse(creates)
        return False
    preserves = any(d.preserves for d in report.decisions)
    managed = await run.services.state.count_managed() if preserves else 0
    verdict = check_safety(report.decisions, managed, run.policy.max_preserve_fraction)
    report.safety = verdict
    if not verdict.allowed:
        report.refuse(verdict)
    return verdict.allowed


@dataclass
class _Slicer:
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
            progress = PassInProgress(progress.pass_id, progress.kind, progress.slices_done + 1)
            if done >= len(todo):
                break
            # Unfinished: record that the pass goes on (the delta cursors themselves do not move).
            await leases.save(USERS, _with_progress(leases.claims[USERS].value, progress), release=False)
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
                await leases.save(USERS, _with_progress(leases.claims[USERS].value, None), release=False)
        else:
            await _commit(self.run, leases, self.plan)
        await _follow_up(self.run, self.plan, self.report)

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


def _in_progress(value: str | None) -> PassInProgress | None:
    try:
        stored = json.loads(value) if value else None
        ongoing = stored.get("pass") if isinstance(stored, dict) else None
        if not ongoing:
            return None
        return PassInProgress(str(ongoing["id"]), RunKind(str(ongoing["kind"])), int(ongoing["slices"]))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def _is_full(ongoing: PassInProgress | None) -> bool:
    return ongoing is not None and ongoing.kind == RunKind.FULL


def _with_progress(value: str | None, progress: PassInProgress | None) -> str:
    """The users cursor's stored value with the pass in progress recorded (or cleared); the policy and
    Graph's cursor in it are unchanged."""
    try:
        stored = json.loads(value) if value else {}
    except ValueError:
        stored = {}
    stored = stored if isinstance(stored, dict) else {}
    if progress is None:
        stored.pop("pass", None)
    else:
        stored["pass"] = progress.as_json()
    return json.dumps(stored)


async def _plan_pass(
    run: Run, claims: dict[str, CursorState], report: RunReport, *, full: bool, look: bool = False
) -> Plan:
    policy, delta = _stored(claims[USERS].value)
    groups_cursor = claims[GROUPS].value
    read_at, credential = run.now(), run.services.druva.credential
    plan: Plan | None = None
    if not full and delta and groups_cursor:
        if policy == run.policy.fingerprint():
            try:
                followups = await PassFollowUps.load(run.services.state, read_at, credential, promises=True)
                groups = not look or followups.groups_needed(read_at)
                plan = await _plan_incremental(
                    run, (delta, groups_cursor), report, followups, read_at, groups=groups
                )
            except CursorExpired as expired:
                log.warning("delta cursor expired", extra={"run_id": run.run_id, "error": str(expired)})
                report.notes.append("delta cursor expired: read everything again (full reconciliation)")
        else:
            report.notes.append("the mappings changed since the last pass: every account is decided again")
    if plan is None:
        report.kind = RunKind.FULL
        followups = await PassFollowUps.load(run.services.state, read_at, credential, promises=False)
        plan = await _plan_full(run, report, followups, read_at)
    report.held = [d for d in plan.decided.values() if d.hold is not None]
    writes_held = followups.writes_refused(read_at)
    if writes_held is not None:
        report.notes.append(f"no Druva writes: {writes_held.describe()}")
    return plan


def _stored(value: str | None) -> tuple[str | None, str | None]:
    """The users cursor as stored: the policy it was read under, and Graph's cursor."""
    if not value:
        return None, None
    try:
        stored = json.loads(value)
        delta = stored.get("delta")
        return str(stored["policy"]), str(delta) if delta else None
    except (ValueError, KeyError, TypeError, AttributeError):
        return None, None  # an unreadable cursor is no cursor: read everything


def _to_store(policy: str, delta: str | None) -> str | None:
    return json.dumps({"policy": policy, "delta": delta}) if delta else None


async def _plan_full(run: Run, report: RunReport, followups: PassFollowUps, read_at: datetime) -> Plan:
    """Everyone, from the start: mark every account seen, sweep the links of those not seen.

    What must be in one place is kept compact: the links (read in one sweep of the store, with their
    repeated texts shared), the Druva sweep, the membership index and the ids seen. Entra is read page by
    page and decided as it comes; only the decisions with work to do are kept. Graph may send an account
    twice in one round: the later copy replaces the earlier decision."""
    services, policy, state = run.services, run.policy, run.services.state
    membership, index = await read_memberships(services.directory, policy, None, MembershipIndex())
    view = MembershipView(state, membership, index)
    links = {link.entra_id: _compact(link) async for link in state.links()}
    owners = {link.druva_user_id: entra_id for entra_id, link in links.items()}
    lookup = await DruvaLookup.sweep(services.druva)
    plan = Plan(membership, followups, read_at, complete=True)

    async def owner_of(user_id: int) -> str | None:
        return owners.get(user_id)

    refused: set[str] = set()  # in Entra, but not decided: never "deleted"
    async for page in services.directory.read_users(None, sorted(policy.attributes)):
        accounts = [c for c in _well_formed(page.changes, report, refused) if isinstance(c, EntraAccount)]
        enriched = await _complete(run, accounts, view, links)
        decided: list[tuple[str, EntraAccount | UserUnreadable | None]] = [(a.id, a) for a in enriched]
        await _decide_all(run, plan, report, decided, links, lookup=lookup, owner_of=owner_of)
        plan.seen.update(sys.intern(a.id) for a in enriched)
        plan.users_cursor = page.cursor or plan.users_cursor
        run.progress("reading Entra users", len(plan.seen), None)
    gone: list[tuple[str, EntraAccount | UserUnreadable | None]] = [
        (entra_id, None) for entra_id in links if entra_id not in plan.seen and entra_id not in refused
    ]
    await _decide_all(run, plan, report, gone, links, lookup=lookup, owner_of=owner_of)
    report.decisions.extend(plan.todo.values())
    return plan


def _compact(link: AccountLink) -> AccountLink:
    """The same link with its id and its few distinct texts (mapping, profile, storage, quota) shared
    across all links: a 200,000-account pass holds every link at once."""
    shared = {
        name: sys.intern(value) if value is not None else None
        for name, value in (
            ("entra_id", link.entra_id),
            ("mapping", link.mapping),
            ("profile", link.profile),
            ("storage", link.storage),
            ("quota", link.quota),
        )
    }
    return replace(link, **shared)  # type: ignore[arg-type]


async def _plan_incremental(
    run: Run,
    cursors: tuple[str, str],
    report: RunReport,
    followups: PassFollowUps,
    read_at: datetime,
    *,
    groups: bool = True,
) -> Plan:
    """Only what changed since the cursors (users, groups): changed users, accounts whose memberships
    changed, and accounts due to be read again (held ones, notified ones never seen). ``groups`` False
    (a look for users only) leaves the groups delta for the next pass: its cursor does not move."""
    services, policy, state = run.services, run.policy, run.services.state
    delta, groups_cursor = cursors
    known = await state.load_memberships() if policy.nested_group_ids else MembershipIndex()
    if groups:
        membership, after = await read_memberships(services.directory, policy, groups_cursor, known)
    else:
        membership, after = MembershipPass(groups_cursor), known
    changed: dict[str, UserChange] = {}
    users_cursor = None
    async for page in services.directory.read_users(delta, sorted(policy.attributes)):
        changed.update((c.id, c) for c in _well_formed(page.changes, report))
        users_cursor = page.cursor or users_cursor
    seen = set(changed)

    if membership.structural:
        if not policy.nested_group_ids:
            known = await state.load_memberships()
            after = membership.apply_to(known)
        touched = affected_accounts(known, after, membership.members_touched())
        view = MembershipView(state, membership, after)
    else:
        touched = membership.members_touched()
        view = MembershipView(state, membership, None)
    rechecks = followups.rechecks(read_at)
    missing = sorted((touched | rechecks) - changed.keys())
    if missing:
        read = _well_formed(await services.directory.get_users(missing, sorted(policy.attributes)), report)
        unseen = followups.unseen_users - touched
        changed.update((c.id, c) for c in read if not (isinstance(c, UserUnreadable) and c.id in unseen))

    links = await state.get_links(list(changed))
    accounts = [c for c in changed.values() if isinstance(c, EntraAccount)]
    enriched = {a.id: a for a in await _complete(run, accounts, view, links)}
    plan = Plan(membership, followups, read_at, users_cursor, seen=seen)
    accounts_by_id = [(i, _account_of(c, enriched)) for i, c in changed.items()]
    queries = [
        druva_query(account, links.get(i), policy)
        for i, account in accounts_by_id
        if not isinstance(account, UserUnreadable)
    ]
    wanted = [q for q in queries if q is not None]
    lookup = await DruvaLookup.for_run(services.druva, wanted, state.count_managed)
    await _decide_all(run, plan, report, accounts_by_id, links, lookup=lookup, owner_of=state.owner_of)
    return plan


def _well_formed(
    changes: Iterable[UserChange], report: RunReport, present: set[str] | None = None
) -> list[UserChange]:
    """The changes whose id can be an Entra object id and whose texts can be kept; any other fails alone
    (its id would become a state key, a URL segment, a message id; its name a state record: one such
    account must not stop the pass for everyone). ``present`` collects the accounts refused for their
    texts: they are in Entra, so a full pass must not take them for deleted."""
    kept = []
    for change in changes:
        id_problem = object_id_problem(change.id)
        problem = id_problem or (text_problem(change) if isinstance(change, EntraAccount) else None)
        if problem is None:
            kept.append(change)
            continue
        if id_problem is None and present is not None:
            present.add(change.id)
        principal = change.user_principal_name if isinstance(change, EntraAccount) else change.id[:40]
        report.refuse_account(principal, f"not decided: {problem}", "" if id_problem else change.id)
    return kept


def _account_of(
    change: UserChange, enriched: Mapping[str, EntraAccount]
) -> EntraAccount | UserUnreadable | None:
    if isinstance(change, UserRemoved):
        return None
    if isinstance(change, UserUnreadable):
        return change
    return enriched[change.id]


async def _complete(
    run: Run, accounts: Sequence[EntraAccount], view: MembershipView, links: Collection[str]
) -> list[EntraAccount]:
    """Accounts with what deciding them needs: memberships, the mailbox purpose of disabled ones, and an
    ``accountEnabled`` that Graph left out read once more (a skeleton still being filled in)."""
    services, policy = run.services, run.policy
    unknown = [a.id for a in accounts if a.account_enabled is None and a.is_member]
    if unknown:
        fresh = {
            c.id: c
            for c in await services.directory.get_users(unknown, sorted(policy.attributes))
            if isinstance(c, EntraAccount)
        }
        accounts = [fresh.get(a.id, a) if a.account_enabled is None else a for a in accounts]
    return await with_memberships_and_purpose(
        services.directory, policy, accounts, view, links, now=run.now()
    )


async def _decide_all(
    run: Run,
    plan: Plan,
    report: RunReport,
    accounts: Sequence[tuple[str, EntraAccount | UserUnreadable | None]],
    links: Mapping[str, AccountLink],
    *,
    lookup: DruvaLookup,
    owner_of: Callable[[int], Awaitable[str | None]],
) -> None:
    """Decide each account (None: gone from Entra); keep the decisions that have something to do,
    the links they start from, and those follow-ups care about."""
    now = run.now()
    for entra_id, account in accounts:
        link = links.get(entra_id)
        try:
            decision = await _decided(run, plan, entra_id, account, link, lookup=lookup, owner_of=owner_of)
        except (TransientError, AuthError, CursorBusy):
            raise  # a service down or a lease lost concerns every account: the pass stops
        except Exception as error:  # whatever one account holds, it costs only itself
            principal = account.user_principal_name if isinstance(account, EntraAccount) else entra_id
            report.refuse_account(principal, f"not decided: {type(error).__name__}: {error}", entra_id)
            continue
        if plan.complete:
            _forget_earlier(plan, report, entra_id)
        report.count(decision)
        if decision.hold is not None or entra_id in plan.followups.holds:
            plan.decided[entra_id] = decision
        if needs_carrying_out(decision, link, now):
            if plan.complete:
                plan.todo[entra_id] = decision
            else:
                report.decisions.append(decision)
            if link is not None:
                plan.links[entra_id] = link
        if plan.complete:
            plan.outcomes[entra_id] = decision.outcome


async def _decided(
    run: Run,
    plan: Plan,
    entra_id: str,
    account: EntraAccount | UserUnreadable | None,
    link: AccountLink | None,
    *,
    lookup: DruvaLookup,
    owner_of: Callable[[int], Awaitable[str | None]],
) -> Decision:
    now = run.now()
    if isinstance(account, UserUnreadable):
        situation = Situation(entra_id, None, link, unreadable=account.unreadable)
    else:
        situation = await situation_for(
            entra_id,
            account,
            link,
            policy=run.policy,
            lookup=lookup,
            owner_of=owner_of,
            history=run.services.state.audit_for,
        )
    return plan.followups.held_back(decide(situation, run.policy, now=now), now)


def _forget_earlier(plan: Plan, report: RunReport, entra_id: str) -> None:
    """A full round may send an account twice (Graph: "the same entity can appear multiple times in one
    sync round"); the later copy is the newer, so the earlier decision is neither carried out nor
    counted."""
    earlier = plan.outcomes.pop(entra_id, None)
    if earlier is not None:
        plan.todo.pop(entra_id, None)
        plan.decided.pop(entra_id, None)
        report.uncount(earlier, entra_id)


async def _follow_up(run: Run, plan: Plan, report: RunReport) -> None:
    """Record the pass's holds and the promises its reads kept; set when the next look is due."""
    unsettled = [f.entra_id for f in report.failures if f.transient]
    report.next_look = await plan.followups.record(
        run.services.state,
        plan.decided,
        report.refusals,
        plan.sighting(unsettled),
        run.now(),
        mark=not plan.complete,
        complete=plan.complete,
    )


async def _commit(run: Run, leases: CursorLeases, plan: Plan) -> None:
    """Record what the pass read, then move both cursors on (which also clears a pass in progress). The
    saves are conditional on the lease versions: if our lease lapsed and another pass took over, they
    raise LeaseLost instead of overwriting that pass's progress."""
    state, membership = run.services.state, plan.membership
    run.fence()
    await state.apply_memberships(membership.changes, membership.reset, membership.removed)
    await leases.save(GROUPS, membership.cursor)
    await leases.save(USERS, _to_store(run.policy.fingerprint(), plan.users_cursor))


def _summary(run: Run, report: RunReport, started: datetime) -> RunSummary:
    return RunSummary(
        run_id=run.run_id,
        kind=report.kind,
        started_at=started,
        finished_at=started + timedelta(seconds=report.elapsed_seconds()),
        counts=report.totals(),
        dry_run=report.dry_run,
        stopped=report.stopped,
        failures=report.failures_kept(),
    )
