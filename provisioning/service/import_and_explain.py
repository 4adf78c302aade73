"""One named account at a time: the admin's manual import and the explanation of a decision."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from provisioning.domain.accounts import EntraAccount, reference_problem, text_problem, with_mailbox
from provisioning.domain.decisions import Decision, Outcome
from provisioning.domain.druva import DruvaUser
from provisioning.domain.followups import TENANT_WIDE, Hold
from provisioning.domain.links import AccountLink
from provisioning.domain.mappings import MappingCheck, check
from provisioning.domain.planner import Situation, check_safety, decide
from provisioning.domain.state import AuditEntry, RunKind, RunSummary
from provisioning.errors import InvalidRequestError, NotFoundError, ProvisioningError
from provisioning.service.binding import check_binding
from provisioning.service.context import Run
from provisioning.service.druva_lookup import DruvaLookup, situation_for
from provisioning.service.execute import carry_out, needs_carrying_out
from provisioning.service.followups import PassFollowUps
from provisioning.service.report import RunReport


class UnknownAccount(ProvisioningError):
    """No Entra account has this name (exit 1: the name was fine, the account is not there)."""

    def __init__(self, ref: str, problem: str | None = None) -> None:
        shown = ref if len(ref) <= 80 else f"{ref[:79]}…"
        reason = f"the name {problem}" if problem else "no Entra account with this user principal name or id"
        super().__init__(f"{shown!r}: {reason}")
        self.ref = ref


async def read_account(run: Run, ref: str) -> EntraAccount:
    """The account as Graph has it now, with its groups and (if disabled) its mailbox purpose."""
    directory, policy = run.services.directory, run.policy
    account = await directory.get_user(ref, sorted(policy.attributes))
    if account is None:
        raise UnknownAccount(ref)
    direct = await directory.groups_of(account.id)
    transitive = await directory.groups_of(account.id, transitive=True) if policy.nested_group_ids else direct
    account = dataclasses.replace(account, member_of=direct, transitive_member_of=transitive)
    if account.may_be_shared_mailbox:
        answers = await directory.mailbox_purposes([account.id])
        if account.id in answers:
            account = with_mailbox(account, answers[account.id], run.now())
    return account


async def _situation(run: Run, account: EntraAccount, *, rebind: bool = False) -> Situation:
    """``rebind``: an import, which finds the account's Druva user by e-mail again when the linked one is
    somebody else's (the admin's decision the automatic passes wait for)."""
    state = run.services.state
    link = await state.get_link(account.id)
    lookup = DruvaLookup(run.services.druva)
    return await situation_for(
        account.id,
        account,
        link,
        policy=run.policy,
        lookup=lookup,
        owner_of=state.owner_of,
        history=state.audit_for,
        rebind=rebind,
    )


async def import_accounts(run: Run, refs: list[str]) -> RunReport:
    """Provision named accounts now, through their mappings. An account that ends up not provisioned
    (unknown, guest, unmapped, refused) is a failure the admin must hear about."""
    report = RunReport(run.run_id, RunKind.IMPORT, run.dry_run)
    started = run.now()
    bound_now = await check_binding(run)
    if bound_now:
        report.notes.append(bound_now)
    planned: list[tuple[Decision, AccountLink | None]] = []
    for ref in dict.fromkeys(refs):
        shown = ref if len(ref) <= 80 else f"{ref[:79]}…"
        problem = reference_problem(ref)
        if problem:
            report.refuse_account(repr(shown), f"not imported: the name {problem}")
            continue
        try:
            account = await read_account(run, ref)
        except UnknownAccount:
            report.refuse_account(shown, "not imported: no Entra account has this user principal name or id")
            continue
        except (InvalidRequestError, NotFoundError) as refused:  # Graph refused this name alone
            report.refuse_account(shown, f"not imported: {refused}")
            continue
        unusable = text_problem(account)  # the rule a pass applies to the same account
        if unusable:
            report.refuse_account(shown, f"not imported: {unusable}", account.id)
            continue
        situation = await _situation(run, account, rebind=True)
        decision = decide(situation, run.policy, manual=True, now=run.now())
        report.count(decision)
        report.decisions.append(decision)
        if decision.outcome is Outcome.SKIPPED:
            report.fail(decision, f"not imported: {decision.notes[0]}", transient=False)
        elif needs_carrying_out(decision, situation.link, run.now()):
            planned.append((decision, situation.link))
    verdict = check_safety(
        [d for d, _ in planned], await run.services.state.count_managed(), run.policy.max_preserve_fraction
    )
    if not verdict.allowed:
        report.refuse(verdict)
    elif not run.dry_run:
        for decision, link in planned:
            await carry_out(run, decision, link, report)
        await run.services.state.record_run(
            RunSummary(
                run.run_id,
                RunKind.IMPORT,
                started,
                run.now(),
                report.totals(),
                run.dry_run,
                failures=report.failures_kept(),
            )
        )
    return report


@dataclass
class Explanation:
    account: EntraAccount
    decision: Decision
    link: AccountLink | None
    druva: DruvaUser | None
    lower: list[MappingCheck] = field(default_factory=list)  # mappings below the winner that also match
    history: list[AuditEntry] = field(default_factory=list)
    hold: Hold | None = None  # what the automatic passes recorded: why the account is left as it is


async def explain(run: Run, ref: str, history: int = 20) -> Explanation:
    """What the planner decides for one account right now, why, and what was done before."""
    problem = reference_problem(ref)
    if problem:
        raise UnknownAccount(ref, problem)
    await check_binding(run)  # what a state of other tenants says about an account would mislead
    account = await read_account(run, ref)
    situation = await _situation(run, account)
    state, now = run.services.state, run.now()
    followups = PassFollowUps(
        await state.holds([account.id, TENANT_WIDE]), credential=run.services.druva.credential
    )
    decision = followups.held_back(decide(situation, run.policy, now=now), now)
    druva = situation.druva
    email = account.email(run.policy.user_id_attribute)
    if druva is None and email:  # show Druva's view even when the planner had no reason to look
        druva = await run.services.druva.find_user(email)
    lower = []
    if decision.winner is not None:
        for priority, mapping in enumerate(run.policy.mappings, start=1):
            if priority > decision.winner.priority:
                matched, reason = check(mapping, account)
                if matched:
                    lower.append(MappingCheck(mapping.name, priority, True, reason))
    entries = await state.audit_for(account.id, history)
    hold = followups.holds.get(account.id)
    return Explanation(account, decision, situation.link, druva, lower, entries, hold)
