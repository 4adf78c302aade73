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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

from provisioning.domain.accounts import EntraAccount
from provisioning.domain.decisions import Decision
from provisioning.domain.directory import UserChange, UserRemoved
from provisioning.domain.groups import MembershipIndex
from provisioning.domain.links import AccountLink
from provisioning.domain.planner import check_safety, decide
from provisioning.domain.state import CursorState, RunSummary
from provisioning.errors import CursorExpired
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
    """Decisions to carry out, the links they start from, and what to commit afterwards."""

    decisions: list[Decision] = field(default_factory=list)
    links: dict[str, AccountLink] = field(default_factory=dict)
    commit: Callable[[], Awaitable[None]] | None = None


async def run_sync(run: Run, *, full: bool = False) -> RunReport:
    """One pass. Raises ``CursorBusy`` if another pass holds the cursors."""
    started = run.now()
    claims = await _claim(run)
    report = RunReport(run.run_id, "full" if full else "delta", run.dry_run)
    try:
        plan = await _plan_pass(run, claims, report, full=full)
        managed = await run.services.state.count_managed()
        verdict = check_safety(plan.decisions, managed, run.policy.max_preserve_fraction)
        report.safety = verdict
        if not verdict.allowed:
            report.refuse(verdict)
        elif not run.dry_run:
            await carry_out_all(run, plan.decisions, plan.links, report)
            if plan.commit and not any(f.transient for f in report.failures):
                await plan.commit()
            elif plan.commit:
                report.notes.append("some accounts failed for a passing reason: the next pass retries them")
    finally:
        for claim in claims.values():
            await _release(run, claim)
    if not run.dry_run:
        await run.services.state.record_run(_summary(run, report, started))
    return report


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


async def _release(run: Run, claim: CursorState) -> None:
    if run.dry_run:
        return
    current = await run.services.state.get_cursor(claim.name)
    if current.lease_owner == run.run_id:
        await run.services.state.release_cursor(current)


async def _plan_pass(run: Run, claims: dict[str, CursorState], report: RunReport, *, full: bool) -> Plan:
    policy, delta = _stored(claims[USERS].value)
    if not full and delta and claims[GROUPS].value:
        if policy == run.policy.fingerprint():
            try:
                return await _plan_incremental(run, claims, delta, report)
            except CursorExpired as expired:
                log.warning("delta cursor expired", extra={"run_id": run.run_id, "error": str(expired)})
                report.notes.append("delta cursor expired: read everything again (full reconciliation)")
        else:
            report.notes.append("the mappings changed since the last pass: every account is decided again")
    report.kind = "full"
    return await _plan_full(run, claims, report)


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


async def _plan_full(run: Run, claims: dict[str, CursorState], report: RunReport) -> Plan:
    """Everyone, from the start: mark every account seen, sweep the links of those not seen."""
    services, policy = run.services, run.policy
    membership, index = await read_memberships(services.directory, policy, None, MembershipIndex())
    view = MembershipView(services.state, membership, index)
    links = {link.entra_id: link async for link in services.state.links()}
    owners = {link.druva_user_id: link.entra_id for link in links.values()}
    lookup = await DruvaLookup.sweep(services.druva)
    plan = Plan(links=links)
    seen: set[str] = set()
    users_cursor = None

    async def owner_of(user_id: int) -> str | None:
        return owners.get(user_id)

    async for page in services.directory.read_users(None, sorted(policy.attributes)):
        accounts = [c for c in page.changes if isinstance(c, EntraAccount)]
        for account in await with_memberships_and_purpose(services.directory, policy, accounts, view, links):
            seen.add(account.id)
            link = links.get(account.id)
            situation = await situation_for(
                account.id, account, link, policy=policy, lookup=lookup, owner_of=owner_of
            )
            _keep(plan, report, decide(situation, policy))
        users_cursor = page.cursor or users_cursor
        run.progress("reading Entra users", len(seen), None)
    for entra_id, link in links.items():
        if entra_id not in seen:
            situation = await situation_for(
                entra_id, None, link, policy=policy, lookup=lookup, owner_of=owner_of
            )
            _keep(plan, report, decide(situation, policy))
    plan.commit = _committer(run, claims, membership, users_cursor)
    return plan


async def _plan_incremental(run: Run, claims: dict[str, CursorState], delta: str, report: RunReport) -> Plan:
    """Only what changed since the cursors: changed users, and accounts whose memberships changed."""
    services, policy, state = run.services, run.policy, run.services.state
    known = await state.load_memberships() if policy.nested_group_ids else MembershipIndex()
    membership, after = await read_memberships(services.directory, policy, claims[GROUPS].value, known)
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
    plan = Plan(links=links)
    for entra_id, change in changed.items():
        account = None if isinstance(change, UserRemoved) else enriched[entra_id]
        link = links.get(entra_id)
        situation = await situation_for(
            entra_id, account, link, policy=policy, lookup=lookup, owner_of=state.owner_of
        )
        _keep(plan, report, decide(situation, policy))
    plan.commit = _committer(run, claims, membership, users_cursor)
    return plan


def _keep(plan: Plan, report: RunReport, decision: Decision) -> None:
    report.count(decision)
    if needs_carrying_out(decision, plan.links.get(decision.entra_id)):
        plan.decisions.append(decision)
        report.decisions.append(decision)


def _committer(
    run: Run, claims: dict[str, CursorState], membership: MembershipPass, users_cursor: str | None
) -> Callable[[], Awaitable[None]]:
    state = run.services.state

    async def commit() -> None:
        # Conditional on the versions we claimed: if our lease lapsed and another pass took over, the
        # save fails with ConcurrencyConflict instead of overwriting that pass's progress.
        await state.apply_memberships(membership.changes, membership.reset, membership.removed)
        await state.save_cursor(claims[GROUPS], membership.cursor)
        await state.save_cursor(claims[USERS], _to_store(run.policy.fingerprint(), users_cursor))

    return commit


def _summary(run: Run, report: RunReport, started: datetime) -> RunSummary:
    return RunSummary(
        run_id=run.run_id,
        kind=report.kind,
        started_at=started,
        finished_at=run.now(),
        counts=report.totals(),
        dry_run=run.dry_run,
        stopped=report.safety.message() if report.safety_stopped and report.safety else None,
    )
