"""The delta pass and the full reconciliation: read Entra, decide every touched account, apply.

A pass holds the leases of both delta cursors (one writer per cursor), reads membership then users,
plans every decision before writing anything (so the mass-preserve guard can refuse the plan as a
whole), carries it out, and only then moves the cursors on. If an account failed for a reason worth
retrying, the cursors stay where they were: the next pass reads the same changes again and the
accounts that succeeded are no-ops by then.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from provisioning.domain.accounts import EntraAccount
from provisioning.domain.directory import UserChange, UserRemoved
from provisioning.domain.groups import MembershipIndex
from provisioning.domain.links import AccountLink
from provisioning.domain.planner import check_safety, decide
from provisioning.domain.state import CursorState, RunSummary
from provisioning.errors import CursorExpired
from provisioning.service import telemetry
from provisioning.service.context import Run
from provisioning.service.execute import carry_out_all, needs_carrying_out
from provisioning.service.memberships import (
    MembershipPass,
    MembershipView,
    affected_accounts,
    read_memberships,
)
from provisioning.service.report import RunReport
from provisioning.service.situations import DruvaLookup, situation_for, with_memberships_and_purpose

log = logging.getLogger("provisioning")

USERS, GROUPS = "users", "groups"
LEASE_SECONDS = 15 * 60


@dataclass
class Plan:
    """What a pass read: the links its decisions start from, and what to commit once they are done."""

    membership: MembershipPass
    users_cursor: str | None = None
    links: dict[str, AccountLink] = field(default_factory=dict)


async def run_sync(run: Run, *, full: bool = False, notified_at: datetime | None = None) -> RunReport:
    """One pass. Raises ``CursorBusy`` if another pass holds the cursors. Every pass that took the
    cursors emits one telemetry record, also one that ends in an error; ``notified_at`` (when the
    notification behind it was received, if known) adds the notification → Druva latency."""
    started = run.now()
    claims = await _claim(run)
    report = RunReport(run.run_id, "full" if full else "delta", run.dry_run)
    try:
        await _pass(run, claims, report, full=full)
    except Exception as error:
        _tell(run, report, started, notified_at, error=f"{type(error).__name__}: {error}")
        raise
    summary = _tell(run, report, started, notified_at)
    if not run.dry_run:
        await run.services.state.record_run(summary)
    return report


def _tell(
    run: Run, report: RunReport, started: datetime, notified_at: datetime | None, error: str | None = None
) -> RunSummary:
    """Emit the pass's one telemetry record; returns its summary for the run history."""
    summary = _summary(run, report, started)
    failures_total = len(report.failures)
    telemetry.emit(
        telemetry.pass_record(summary, failures_total=failures_total, error=error, notified_at=notified_at)
    )
    return summary


async def _pass(run: Run, claims: dict[str, CursorState], report: RunReport, *, full: bool) -> None:
    try:
        plan = await _plan_pass(run, claims, report, full=full)
        managed = await run.services.state.count_managed()
        verdict = check_safety(report.decisions, managed, run.policy.max_preserve_fraction)
        report.safety = verdict
        if not verdict.allowed:
            report.refuse(verdict)
        elif not run.dry_run:
            await carry_out_all(run, report.decisions, plan.links, report)
            if any(f.transient for f in report.failures):
                report.notes.append("some accounts failed for a passing reason: the next pass retries them")
            else:
                await _commit(run, claims, plan)
    finally:
        if not run.dry_run:
            for claim in claims.values():
                # Conditional on the claimed version: a no-op once a save released it, or if another
                # pass took the lease over meanwhile.
                await run.services.state.release_cursor(claim)


async def _claim(run: Run) -> dict[str, CursorState]:
    """Take both cursor leases. A dry run only reads the cursors: it must write nothing, leases included."""
    state, now = run.services.state, run.now()
    if run.dry_run:
        return {USERS: await state.get_cursor(USERS), GROUPS: await state.get_cursor(GROUPS)}
    claims = {USERS: await state.claim_cursor(USERS, run.run_id, now, LEASE_SECONDS)}
    try:
        claims[GROUPS] = await state.claim_cursor(GROUPS, run.run_id, now, LEASE_SECONDS)
    except Exception:
        await state.release_cursor(claims[USERS])
        raise
    return claims


async def _plan_pass(run: Run, claims: dict[str, CursorState], report: RunReport, *, full: bool) -> Plan:
    policy, delta = _stored(claims[USERS].value)
    groups_cursor = claims[GROUPS].value
    if not full and delta and groups_cursor:
        if policy == run.policy.fingerprint():
            try:
                return await _plan_incremental(run, (delta, groups_cursor), report)
            except CursorExpired as expired:
                log.warning("delta cursor expired", extra={"run_id": run.run_id, "error": str(expired)})
                report.notes.append("delta cursor expired: read everything again (full reconciliation)")
        else:
            report.notes.append("the mappings changed since the last pass: every account is decided again")
    report.kind = "full"
    return await _plan_full(run, report)


def _stored(value: str | None) -> tuple[str | None, str | None]:
    """The users cursor as stored: the policy it was read under, and Graph's cursor."""
    if not value:
        return None, None
    try:
        stored = json.loads(value)
        return str(stored["policy"]), str(stored["delta"])
    except (ValueError, KeyError, TypeError):
        return None, None  # an unreadable cursor is no cursor: read everything


def _to_store(policy: str, delta: str | None) -> str | None:
    return json.dumps({"policy": policy, "delta": delta}) if delta else None


async def _plan_full(run: Run, report: RunReport) -> Plan:
    """Everyone, from the start: mark every account seen, sweep the links of those not seen."""
    services, policy = run.services, run.policy
    membership, index = await read_memberships(services.directory, policy, None, MembershipIndex())
    view = MembershipView(services.state, membership, index)
    links = {link.entra_id: link async for link in services.state.links()}
    owners = {link.druva_user_id: link.entra_id for link in links.values()}
    lookup = await DruvaLookup.sweep(services.druva)
    seen: set[str] = set()
    plan = Plan(membership, links=links)

    async def owner_of(user_id: int) -> str | None:
        return owners.get(user_id)

    async for page in services.directory.read_users(None, sorted(policy.attributes)):
        accounts = [c for c in page.changes if isinstance(c, EntraAccount)]
        enriched = await with_memberships_and_purpose(services.directory, policy, accounts, view, links)
        await _decide_all(run, plan, report, [(a.id, a) for a in enriched], lookup=lookup, owner_of=owner_of)
        seen.update(a.id for a in enriched)
        plan.users_cursor = page.cursor or plan.users_cursor
        run.progress("reading Entra users", len(seen), None)
    gone = [(entra_id, None) for entra_id in links if entra_id not in seen]
    await _decide_all(run, plan, report, gone, lookup=lookup, owner_of=owner_of)
    return plan


async def _plan_incremental(run: Run, cursors: tuple[str, str], report: RunReport) -> Plan:
    """Only what changed since the cursors (users, groups): changed users, and accounts whose
    memberships changed."""
    services, policy, state = run.services, run.policy, run.services.state
    delta, groups_cursor = cursors
    known = await state.load_memberships() if policy.nested_group_ids else MembershipIndex()
    membership, after = await read_memberships(services.directory, policy, groups_cursor, known)
    changed: dict[str, UserChange] = {}
    users_cursor = None
    async for page in services.directory.read_users(delta, sorted(policy.attributes)):
        changed.update((c.id, c) for c in page.changes)
        users_cursor = page.cursor or users_cursor

    if membership.structural:
        if not policy.nested_group_ids:
            known = await state.load_memberships()
            after = membership.apply_to(known)
        touched = affected_accounts(known, after, membership.members_touched())
        view = MembershipView(state, membership, after)
    else:
        touched = membership.members_touched()
        view = MembershipView(state, membership, None)
    missing = sorted(touched - changed.keys())
    if missing:
        changed.update(
            (c.id, c) for c in await services.directory.get_users(missing, sorted(policy.attributes))
        )

    links = await state.get_links(list(changed))
    lookup = await DruvaLookup.for_run(services.druva, len(changed), await state.count_managed())
    accounts = [c for c in changed.values() if isinstance(c, EntraAccount)]
    enriched = {
        a.id: a for a in await with_memberships_and_purpose(services.directory, policy, accounts, view, links)
    }
    plan = Plan(membership, users_cursor, links)
    accounts_by_id = [(i, None if isinstance(c, UserRemoved) else enriched[i]) for i, c in changed.items()]
    await _decide_all(run, plan, report, accounts_by_id, lookup=lookup, owner_of=state.owner_of)
    return plan


async def _decide_all(
    run: Run,
    plan: Plan,
    report: RunReport,
    accounts: Sequence[tuple[str, EntraAccount | None]],
    *,
    lookup: DruvaLookup,
    owner_of: Callable[[int], Awaitable[str | None]],
) -> None:
    """Decide each account (None: gone from Entra); keep the decisions that have something to do."""
    for entra_id, account in accounts:
        link = plan.links.get(entra_id)
        situation = await situation_for(
            entra_id, account, link, policy=run.policy, lookup=lookup, owner_of=owner_of
        )
        decision = decide(situation, run.policy)
        report.count(decision)
        if needs_carrying_out(decision, link):
            report.decisions.append(decision)


async def _commit(run: Run, claims: dict[str, CursorState], plan: Plan) -> None:
    """Record what the pass read, then move both cursors on. The saves are conditional on the versions
    claimed: if our lease lapsed and another pass took over, they fail with ConcurrencyConflict instead of
    overwriting that pass's progress."""
    state, membership = run.services.state, plan.membership
    await state.apply_memberships(membership.changes, membership.reset, membership.removed)
    await state.save_cursor(claims[GROUPS], membership.cursor)
    await state.save_cursor(claims[USERS], _to_store(run.policy.fingerprint(), plan.users_cursor))


def _summary(run: Run, report: RunReport, started: datetime) -> RunSummary:
    return RunSummary(
        run_id=run.run_id,
        kind=report.kind,
        started_at=started,
        finished_at=run.now(),
        counts=report.totals(),
        dry_run=run.dry_run,
        stopped=report.safety.message() if report.safety_stopped and report.safety else None,
        failures=report.failures_kept(),
    )
