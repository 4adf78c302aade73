"""The planner: for one Entra account, what Druva should hold, which writes get it there, and why.

Rules (Druva's documented behaviour; where it is silent, the choice that loses no backups):
- only ``userType == Member`` is ever acted on; guests get no action at all;
- disabled accounts are not created; a shared mailbox (disabled, mailbox purpose ``shared``) is, but
  only through mappings that accept shared mailboxes, and is never preserved for being disabled;
- first matching mapping wins; no match means not created;
- disabled / deleted / unmapped follow ``lifecycle`` (preserve or ignore); never delete;
- a user this product preserved is re-activated when it is back in scope; one preserved by someone
  else is left alone unless an admin imports it by hand;
- an existing Druva user with the same e-mail is adopted (linked), never duplicated, unless
  adoption is off, another account already owns it, or Druva's own AD/LDAP import manages it;
- profile/storage follow the winning mapping when ``lifecycle.remap`` is ``update``; the quota cannot
  be changed through Druva's API, so a difference is reported, not faked;
- never act on a link alone: a linked Druva user whose e-mail is neither the link's nor the account's
  (the state was built against another Druva tenant, or the id was reused) is held as it is, reported,
  and left to a human (``import`` re-binds the account by e-mail);
- never act on what could not be read: an account whose kind or state could not be read is held as it
  is (no create, no preserve, no unlink) and read again later;
- a new Entra account is created only once it has settled (``lifecycle.settle`` after its creation in
  Entra): its properties and group memberships arrive over minutes, and Druva keeps the quota and the
  storage region of the mapping it was created through.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from provisioning.domain.accounts import EntraAccount, Unreadable, reference_problem
from provisioning.domain.decisions import (
    Action,
    Activate,
    Adopt,
    Create,
    Decision,
    Desired,
    FieldChange,
    Outcome,
    Patch,
    Preserve,
    RetireReason,
)
from provisioning.domain.druva import DruvaStatus, DruvaUser, email_key
from provisioning.domain.followups import HoldReason, HoldRequest
from provisioning.domain.links import AccountLink, LinkStatus, belongs_to
from provisioning.domain.mappings import Mapping, MappingCheck, Policy, Remap, Retire, evaluate
from provisioning.domain.quota import describe_bytes

CATCH_ALL_ADVICE = "add a last mapping with match {all: true} to provision everyone else"


@dataclass(frozen=True)
class Situation:
    """Everything known about one account at decision time.

    ``druva`` is the Druva user bound to the account: the linked one if the link still resolves,
    otherwise the one with the same e-mail. ``druva_owner`` is the Entra id of another account that is
    already linked to that Druva user, if any.
    """

    entra_id: str
    account: EntraAccount | None  # None: deleted from Entra
    link: AccountLink | None = None
    druva: DruvaUser | None = None
    druva_owner: str | None = None
    unreadable: Unreadable | None = None  # the account itself could not be read (``account`` is None)
    refusal: HoldRequest | None = None  # Druva cannot be asked about it until a human acts (a duplicate)
    recorded_emails: frozenset[str] = frozenset()  # e-mails the product created or adopted its user with

    @property
    def is_linked(self) -> bool:
        return (
            self.link is not None and self.druva is not None and self.druva.user_id == self.link.druva_user_id
        )


def decide(
    situation: Situation, policy: Policy, *, manual: bool = False, now: datetime | None = None
) -> Decision:
    """Decide for one account. ``manual`` marks an admin's explicit import, which may re-activate a
    user someone else preserved and adopt a preserved Druva user, and does not wait for a new account
    to settle. ``now`` (aware UTC) is needed for the settle window; without it no account settles."""
    account = situation.account
    if situation.unreadable is not None:
        return _held(situation, situation.unreadable)
    mismatch = link_mismatch(situation, policy)
    if mismatch is not None:
        return _decision(situation, Outcome.SKIPPED, checks=(), notes=(mismatch.detail,), hold=mismatch)
    if account is None:
        return _retire(situation, policy.lifecycle.deleted, RetireReason.DELETED, (), ("deleted from Entra",))
    if not account.is_member:
        kind = account.user_type or "not set"
        return _skip(situation, f"user type is {kind}; only Member accounts are provisioned")
    unknown = account.unreadable or _enabled_unknown(account)
    if unknown is not None:
        return _held(situation, unknown)
    if situation.refusal is not None:
        note = f"{situation.refusal.detail}; left as it is: {situation.refusal.advice}"
        return _decision(situation, Outcome.SKIPPED, checks=(), notes=(note,), hold=situation.refusal)
    if account.is_disabled_user:
        return _retire(
            situation, policy.lifecycle.disabled, RetireReason.DISABLED, (), ("disabled in Entra",)
        )
    winner, checks = evaluate(account, policy.mappings)
    if winner is None:
        notes = ("matches no mapping", CATCH_ALL_ADVICE)
        return _retire(situation, policy.lifecycle.unmapped, RetireReason.UNMAPPED, checks, notes)
    email = account.email(policy.user_id_attribute)
    if email is None:
        note = f"has no {policy.user_id_attribute.value}, which Druva needs as the e-mail address"
        return _skip(situation, note, checks)
    problem = reference_problem(email)
    if problem is not None:  # the one rule sync, import and explain share for a name
        note = (
            f"its {policy.user_id_attribute.value} {problem}: Druva cannot be given it as an e-mail address"
        )
        return _skip(situation, note, checks)
    settling = None if manual else _settling(situation, account, policy, now)
    if settling is not None:
        return _decision(situation, Outcome.SKIPPED, checks=checks, notes=(settling.detail,), hold=settling)
    return _provision(situation, account, email, mapping=winner, checks=checks, policy=policy, manual=manual)


MISMATCH_ADVICE = (
    "check that DRUVA_API_URL and the Druva credential are this state's; if the link alone is wrong, "
    "`import` the account to re-bind it by its e-mail (an account gone from Entra has nothing to "
    "re-bind: it stays as it is in Druva)"
)


def link_mismatch(situation: Situation, policy: Policy) -> HoldRequest | None:
    """A hold when the linked Druva user is not the account's (``links.belongs_to``), else None."""
    link, druva, account = situation.link, situation.druva, situation.account
    if not situation.is_linked or link is None or druva is None:
        return None
    own = account.email(policy.user_id_attribute) if account is not None else None
    if belongs_to(link, druva.email, own, situation.recorded_emails):
        return None
    detail = (
        f"linked to Druva user {druva.user_id}, whose e-mail is {druva.email}, not {own or link.email}: "
        "this state may have been built against another Druva tenant; left as it is"
    )
    return HoldRequest(HoldReason.MISMATCHED, detail, advice=MISMATCH_ADVICE)


def _enabled_unknown(account: EntraAccount) -> Unreadable | None:
    if account.account_enabled is not None:
        return None
    return Unreadable("accountEnabled", "Graph did not return it (an account still being filled in)")


def _held(situation: Situation, unreadable: Unreadable) -> Decision:
    """Leave the account exactly as it is: whatever it would become, deciding on a guess could preserve a
    user whose backups must go on, or create one that must not exist."""
    note = f"{unreadable.describe()}; left as it is and read again later"
    request = HoldRequest(HoldReason.UNREADABLE, unreadable.describe())
    return _decision(situation, Outcome.SKIPPED, checks=(), notes=(note,), hold=request)


def _settling(
    situation: Situation, account: EntraAccount, policy: Policy, now: datetime | None
) -> HoldRequest | None:
    """A hold while a new Entra account settles, if it would be created now."""
    if situation.druva is not None or now is None or account.created_at is None or policy.settle_seconds <= 0:
        return None
    until = account.created_at + timedelta(seconds=policy.settle_seconds)
    if now >= until:
        return None
    detail = (
        f"new in Entra (created {account.created_at:%H:%M:%S} UTC): created in Druva once it has settled, "
        f"at {until:%H:%M:%S} UTC (lifecycle.settle), so it lands on its final mapping"
    )
    return HoldRequest(HoldReason.SETTLING, detail, until=until)


def _retire(
    situation: Situation,
    rule: Retire,
    reason: RetireReason,
    checks: tuple[MappingCheck, ...],
    notes: tuple[str, ...],
) -> Decision:
    link, druva = situation.link, situation.druva
    if not situation.is_linked or link is None or druva is None:
        why = "its Druva user no longer exists" if link else "not provisioned by this product"
        return _skip(situation, f"{notes[0]}; {why}: nothing to do", checks, notes[1:])
    if druva.status is DruvaStatus.PRESERVED:
        kept = Desired(DruvaStatus.PRESERVED, link.mapping, None)
        return _decision(
            situation,
            Outcome.UNCHANGED,
            checks=checks,
            desired=kept,
            notes=(*notes, "already preserved in Druva"),
        )
    if rule is Retire.IGNORE:
        kept = Desired(DruvaStatus.ACTIVE, link.mapping, None)
        note = f"lifecycle.{reason.value} is ignore: left active in Druva"
        return _decision(situation, Outcome.UNCHANGED, checks=checks, desired=kept, notes=(*notes, note))
    preserved = Desired(DruvaStatus.PRESERVED, link.mapping, None)
    return _decision(
        situation,
        Outcome.PRESERVED,
        checks=checks,
        actions=(Preserve(druva.user_id, reason),),
        desired=preserved,
        notes=notes,
    )


def _provision(
    situation: Situation,
    account: EntraAccount,
    email: str,
    *,
    mapping: Mapping,
    checks: tuple[MappingCheck, ...],
    policy: Policy,
    manual: bool,
) -> Decision:
    druva, target = situation.druva, mapping.target
    desired = Desired(DruvaStatus.ACTIVE, mapping.name, target)
    if druva is None:
        gone = ("its linked Druva user no longer exists; creating it again",) if situation.link else ()
        create = Create(email, account.name_for_druva, target)
        return _decision(
            situation,
            Outcome.CREATED,
            checks=checks,
            actions=(create,),
            desired=desired,
            notes=gone,
            email=email,
        )

    actions: list[Action] = []
    if not situation.is_linked:
        refusal = _adoption_refusal(situation, druva, mapping, policy, manual)
        if refusal:
            return _skip(situation, refusal, checks, email=email)
        actions.append(Adopt(druva.user_id, druva.email))

    notes: list[str] = []
    if druva.status is DruvaStatus.PRESERVED:
        preserved_by_us = situation.link is not None and situation.link.status is LinkStatus.PRESERVED
        if not (preserved_by_us or manual):
            notes.append(
                "preserved in Druva by someone else: not re-activated automatically "
                "(importing it by hand re-activates it)"
            )
            return _decision(
                situation,
                Outcome.UNCHANGED,
                checks=checks,
                actions=tuple(actions),
                desired=desired,
                notes=notes,
                email=email,
            )
        actions.append(Activate(druva.user_id))

    changes = _changes(druva, account, mapping, policy, notes)
    if changes:
        actions.append(Patch(druva.user_id, changes))
    notes.extend(_drift_notes(druva, email, mapping))
    return _decision(
        situation,
        _outcome(actions),
        checks=checks,
        actions=tuple(actions),
        desired=desired,
        notes=notes,
        email=email,
    )


def _adoption_refusal(
    situation: Situation, druva: DruvaUser, mapping: Mapping, policy: Policy, manual: bool
) -> str | None:
    if situation.druva_owner and situation.druva_owner != situation.entra_id:
        return f"Druva user {druva.email} is already linked to Entra account {situation.druva_owner}"
    if druva.provisioned_by_druva:
        return (
            f"Druva user {druva.email} is managed by Druva's own AD/LDAP import; Druva allows one "
            "provisioning method, so it is left to Druva"
        )
    if not policy.adopts(mapping):
        return f"a Druva user with e-mail {druva.email} already exists and adopt_existing is false"
    if druva.status is DruvaStatus.PRESERVED and not manual:
        return (
            f"Druva user {druva.email} exists but is preserved: not adopted automatically "
            "(importing it by hand adopts and re-activates it)"
        )
    return None


def _changes(
    druva: DruvaUser, account: EntraAccount, mapping: Mapping, policy: Policy, notes: list[str]
) -> tuple[FieldChange, ...]:
    changes = []
    if druva.user_name != account.name_for_druva:
        changes.append(FieldChange("user_name", druva.user_name, account.name_for_druva))
    remapped = [
        FieldChange(field, current, wanted)
        for field, current, wanted in (
            ("profile", druva.profile, mapping.target.profile),
            ("storage", druva.storage, mapping.target.storage),
        )
        if current != wanted
    ]
    if remapped and policy.lifecycle.remap is Remap.IGNORE:
        for change in remapped:
            notes.append(
                f"mapping {mapping.name} gives {change.field} {change.new}, Druva has {change.old}: "
                "left as is (lifecycle.remap is ignore)"
            )
        remapped = []
    return (*changes, *remapped)


def _drift_notes(druva: DruvaUser, email: str, mapping: Mapping) -> list[str]:
    notes = []
    quota = mapping.target.quota
    if quota is not None and druva.quota_bytes is not None and druva.quota_bytes != quota.bytes:
        notes.append(
            f"quota differs (Druva has {describe_bytes(druva.quota_bytes)}, mapping {mapping.name} "
            f"gives {quota}) and cannot be changed through Druva's API: change it in the Druva console"
        )
    if email_key(druva.email) != email_key(email):
        notes.append(
            f"e-mail differs (Druva has {druva.email}, Entra gives {email}) and cannot be changed "
            "through Druva's API: change it in the Druva console"
        )
    return notes


def _outcome(actions: Iterable[Action]) -> Outcome:
    kinds = {type(a) for a in actions}
    if Activate in kinds:
        return Outcome.REACTIVATED
    if kinds & {Patch, Adopt}:
        return Outcome.UPDATED
    return Outcome.UNCHANGED


def _skip(
    situation: Situation,
    note: str,
    checks: tuple[MappingCheck, ...] = (),
    extra: Iterable[str] = (),
    *,
    email: str | None = None,
) -> Decision:
    return _decision(situation, Outcome.SKIPPED, checks=checks, notes=(note, *extra), email=email)


def _decision(
    situation: Situation,
    outcome: Outcome,
    *,
    checks: tuple[MappingCheck, ...],
    actions: tuple[Action, ...] = (),
    desired: Desired | None = None,
    notes: Iterable[str] = (),
    email: str | None = None,
    hold: HoldRequest | None = None,
) -> Decision:
    account, link, druva = situation.account, situation.link, situation.druva
    principal = account.user_principal_name if account else (link.email if link else situation.entra_id)
    winner = checks[-1] if checks and checks[-1].matched else None
    return Decision(
        entra_id=situation.entra_id,
        principal=principal,
        email=email or (link.email if link else None),
        outcome=outcome,
        winner=winner,
        checks=checks,
        actions=actions,
        desired=desired,
        notes=tuple(notes),
        druva_user_id=druva.user_id if druva else None,
        druva_email=druva.email if druva else None,
        hold=hold,
    )


@dataclass(frozen=True)
class SafetyVerdict:
    preserves: int
    managed: int
    max_fraction: float

    @property
    def limit(self) -> int:
        return math.floor(self.max_fraction * self.managed + 1e-9)

    @property
    def allowed(self) -> bool:
        return self.preserves <= self.limit

    def message(self) -> str:
        share = self.preserves / self.managed if self.managed else 1.0
        return (
            f"safety stop: this run would preserve {self.preserves} of {self.managed} managed users "
            f"({share:.1%}), more than safety.max_preserve_fraction {self.max_fraction:g} allows "
            f"({self.limit}); nothing was preserved. Check the directory and the mappings, "
            "or raise the threshold if this is intended."
        )


def check_safety(decisions: Iterable[Decision], managed: int, max_fraction: float) -> SafetyVerdict:
    """Batch-level guard: count the preserves a plan would make against the users we manage."""
    preserves = sum(1 for d in decisions if d.preserves)
    return SafetyVerdict(preserves=preserves, managed=managed, max_fraction=max_fraction)
