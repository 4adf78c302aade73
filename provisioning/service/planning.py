"""What a pass reads and decides, and what it commits once carried out.

``plan_pass`` reads Entra (the delta since the cursors, or everyone) and decides every account it read,
keeping the decisions that have work to do; ``commit`` moves the cursors on once they are carried out;
``follow_up`` records the holds and promises the pass's reads settled. Carrying a plan out, slice by
slice, is ``provisioning.service.slicing``; the pass as a whole is ``provisioning.service.sync``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from provisioning.domain.accounts import EntraAccount, object_id_problem, text_problem
from provisioning.domain.cursor import UsersCursor
from provisioning.domain.decisions import Decision, Outcome
from provisioning.domain.directory import UserChange, UserRemoved, UserUnreadable
from provisioning.domain.followups import Sighting
from provisioning.domain.groups import MembershipIndex
from provisioning.domain.links import AccountLink
from provisioning.domain.planner import Situation, decide
from provisioning.domain.state import CursorState, RunKind
from provisioning.errors import AuthError, CursorBusy, CursorExpired, TransientError
from provisioning.service.context import Run
from provisioning.service.druva_lookup import (
    DruvaLookup,
    druva_query,
    situation_for,
    with_memberships_and_purpose,
)
from provisioning.service.execute import needs_carrying_out
from provisioning.service.followups import PassFollowUps
from provisioning.service.lease import CursorLeases
from provisioning.service.memberships import (
    MembershipPass,
    MembershipView,
    affected_accounts,
    read_memberships,
)
from provisioning.service.report import RunReport

log = logging.getLogger("provisioning")

USERS, GROUPS = "users", "groups"  # the delta cursors a pass holds


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


async def plan_pass(
    run: Run, claims: dict[str, CursorState], report: RunReport, *, full: bool, look: bool = False
) -> Plan:
    users = UsersCursor.parse(claims[USERS].value)
    delta, groups_cursor = users.resumes(run.policy.fingerprint()), claims[GROUPS].value
    read_at, credential = run.now(), run.services.druva.credential
    plan: Plan | None = None
    if not full and users.delta and groups_cursor:
        if delta is not None:
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


async def follow_up(run: Run, plan: Plan, report: RunReport) -> None:
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


async def commit(run: Run, leases: CursorLeases, plan: Plan) -> None:
    """Record what the pass read, then move both cursors on (which also clears a pass in progress). The
    saves are conditional on the lease versions: if our lease lapsed and another pass took over, they
    raise LeaseLost instead of overwriting that pass's progress."""
    state, membership = run.services.state, plan.membership
    run.fence()
    await state.apply_memberships(membership.changes, membership.reset, membership.removed)
    await leases.save(GROUPS, membership.cursor)
    await leases.save(USERS, UsersCursor.moved_to(run.policy.fingerprint(), plan.users_cursor).dump())
