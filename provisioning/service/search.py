"""Manual search: Entra accounts whose name, mail or UPN starts with some text, each decided the way
``sync``, ``import`` and ``explain`` decide it, so the admin can pick whom to import.

Cost, whatever the tenant size: one Graph request for the search (server-side ``$filter``), one
``$batch`` per 20 members for their groups (two when a mapping takes nested groups), one ``$batch`` per
20 disabled accounts with a mailbox for the mailbox purpose, and for Druva either one lookup per account
(asked concurrently) or one sweep of its users, whichever takes less time (``sweep_is_cheaper``).
"""

from __future__ import annotations

import dataclasses
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from provisioning.domain.accounts import AccountKind, EntraAccount, with_mailbox
from provisioning.domain.decisions import Decision, Outcome
from provisioning.domain.druva import DruvaStatus, DruvaUser
from provisioning.domain.links import AccountLink
from provisioning.domain.mappings import Policy
from provisioning.domain.planner import decide
from provisioning.errors import NeedsHuman
from provisioning.service.context import Run
from provisioning.service.druva_lookup import DruvaLookup, DruvaQuery, situation_for

MAX_TEXT = 256
DEFAULT_LIMIT = 25
MAX_LIMIT = 999  # Graph's largest page of users: the search stays one request
# Control characters (C0, C1, DEL), lone surrogates (undecodable bytes on the command line) and the
# Unicode line and paragraph separators: none belongs in a name, and each could break an output line.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})


class BadSearch(NeedsHuman):
    """Search text that is refused before anything is asked (exit code 2)."""


def search_text(raw: str) -> str:
    """The admin's text, unchanged, or ``BadSearch`` saying what is wrong with it."""
    if not raw.strip():
        raise BadSearch("the search text is empty: give the first letters of a name, mail or UPN")
    if len(raw) > MAX_TEXT:
        raise BadSearch(f"the search text is {len(raw)} characters long; at most {MAX_TEXT} are allowed")
    for position, char in enumerate(raw, start=1):
        if unicodedata.category(char) in _REFUSED_CATEGORIES:
            raise BadSearch(
                f"the search text holds a control character (U+{ord(char):04X}) at position {position}"
            )
    return raw


def kind_of(account: EntraAccount) -> str:
    """user, shared mailbox or guest (anything not a Member counts as a guest: it is never provisioned)."""
    if not account.is_member:
        return "guest"
    return "shared mailbox" if account.kind is AccountKind.SHARED_MAILBOX else "user"


@dataclass(frozen=True)
class Found:
    """One account the search found: the planner's decision for an import now, and its Druva user."""

    account: EntraAccount
    decision: Decision
    druva: DruvaUser | None

    @property
    def importable(self) -> bool:
        """An import would provision it: create, adopt, patch or re-activate an active Druva user."""
        desired = self.decision.desired
        return bool(self.decision.actions) and desired is not None and desired.status is DruvaStatus.ACTIVE

    @property
    def why_not(self) -> str | None:
        """Why an import would do nothing, in the planner's words; None when it would."""
        decision = self.decision
        if self.importable:
            return None
        if decision.outcome is Outcome.UNCHANGED and decision.winner is not None and self.druva is not None:
            return f"already {self.druva.status.value} in Druva: nothing to import"
        return decision.notes[0] if decision.notes else "nothing to do"


@dataclass(frozen=True)
class SearchResult:
    text: str
    found: tuple[Found, ...]
    more: bool  # more accounts match than the limit let through

    @property
    def importable(self) -> list[str]:
        return [f.account.user_principal_name for f in self.found if f.importable]


async def search(run: Run, text: str, limit: int = DEFAULT_LIMIT) -> SearchResult:
    """Find, then decide each account as a manual import would (``manual=True``). Writes nothing."""
    if not 1 <= limit <= MAX_LIMIT:
        raise BadSearch(f"--limit must be 1..{MAX_LIMIT}, got {limit}")
    services, policy = run.services, run.policy
    found = await services.directory.search_users(search_text(text), sorted(policy.attributes), limit)
    accounts = await _with_groups_and_purpose(run, found.accounts)
    links = await services.state.get_links([a.id for a in accounts])
    # Every account with a link or an e-mail: members are decided with their Druva user, and guests and
    # leavers still show what Druva holds for their e-mail.
    queries = [_druva_query(account, links.get(account.id), policy) for account in accounts]
    wanted = [q for q in queries if q.user_id is not None or q.email is not None]
    lookup = await DruvaLookup.for_run(services.druva, wanted, services.state.count_managed)
    results = []
    for account in accounts:
        situation = await situation_for(
            account.id,
            account,
            links.get(account.id),
            policy=policy,
            lookup=lookup,
            owner_of=services.state.owner_of,
            history=services.state.audit_for,
        )
        druva = situation.druva
        email = account.email(policy.user_id_attribute)
        if druva is None and email and situation.link is None:  # guests and leavers: still show Druva's view
            druva = await lookup.find(None, email)
        results.append(Found(account, decide(situation, policy, manual=True, now=run.now()), druva))
    results.sort(
        key=lambda f: ((f.account.display_name or "").lower(), f.account.user_principal_name.lower())
    )
    return SearchResult(text, tuple(results), found.more)


def _druva_query(account: EntraAccount, link: AccountLink | None, policy: Policy) -> DruvaQuery:
    return DruvaQuery(link.druva_user_id if link else None, account.email(policy.user_id_attribute))


async def _with_groups_and_purpose(run: Run, accounts: Sequence[EntraAccount]) -> list[EntraAccount]:
    """What ``read_account`` adds to one account, for all of them in batches: direct (and, when a
    mapping takes nested groups, transitive) groups of the members, and the mailbox purpose of disabled
    members with a mailbox (only it tells a shared mailbox from a leaver)."""
    directory, policy = run.services.directory, run.policy
    members = [a.id for a in accounts if a.is_member]
    direct = await directory.groups_of_each(members) if members and policy.group_ids else {}
    nested = bool(policy.nested_group_ids) and bool(members)
    transitive = await directory.groups_of_each(members, transitive=True) if nested else direct
    maybe_shared = [a.id for a in accounts if a.may_be_shared_mailbox]
    purposes = await directory.mailbox_purposes(maybe_shared) if maybe_shared else {}
    grouped = [
        dataclasses.replace(
            account,
            member_of=direct.get(account.id, frozenset()),
            transitive_member_of=transitive.get(account.id, frozenset()),
        )
        for account in accounts
    ]
    now = run.now()
    return [with_mailbox(a, purposes[a.id], now) if a.id in purposes else a for a in grouped]
