"""Gathering what the planner needs about each account: memberships, mailbox purpose, link, Druva user.

Druva users are found in one of two ways, whichever takes less time (``sweep_is_cheaper``): one sweep
of Druva's user list, indexed by id and e-mail (a page holds 4,097 users, read one after another), or
one lookup per account (its linked user, then its e-mail), all asked before the accounts are decided,
as many at once as the Druva client keeps in flight. A full reconciliation always sweeps: it decides
every account.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Awaitable, Callable, Collection, Sequence
from datetime import datetime
from typing import TypeVar

from provisioning.domain.accounts import AccountKind, EntraAccount, with_mailbox
from provisioning.domain.druva import DruvaUser, email_key
from provisioning.domain.followups import HoldReason, HoldRequest
from provisioning.domain.links import AccountLink, belongs_to
from provisioning.domain.mappings import Policy
from provisioning.domain.planner import Situation
from provisioning.domain.state import AuditEntry, AuditOutcome
from provisioning.errors import DruvaRefused, RefusalKind
from provisioning.ports import Directory, Druva
from provisioning.service.memberships import MembershipView

DRUVA_PAGE_SIZE = 4097
PAGE_ROUND_TRIPS = 4  # what reading one page of users costs, in lookup round trips: see sweep_is_cheaper
T = TypeVar("T")


def sweep_is_cheaper(lookups: int, druva_users: int, in_flight: int) -> bool:
    """Whether one sweep of Druva's users finds ``lookups`` accounts sooner than looking each up.

    The cost model, in lookup round trips to Druva: ``lookups`` requests, ``in_flight`` at a time (the
    Druva client's ceiling, ``DRUVA_MAX_CONCURRENCY``), take ceil(lookups / in_flight) round trips. A
    sweep reads its pages one after another (each page's token comes with the page before), and each
    page of 4,097 users costs ``PAGE_ROUND_TRIPS``: its own round trip, plus about a megabyte to send
    where a lookup sends one user, plus the client reading 4,097 users, plus Druva assembling them (on a
    shared 2-core machine, a page through the client and the in-process simulator took 70-120 ms of CPU,
    a lookup 0.2-0.4 ms: the reading alone is a cloud round trip's worth). So the sweep is cheaper only when
    ceil(lookups / in_flight) > pages × PAGE_ROUND_TRIPS, that is lookups > pages × PAGE_ROUND_TRIPS ×
    in_flight. Druva publishes no latency figures, so ``PAGE_ROUND_TRIPS`` is a floor rather than a
    measurement (one round trip each for the request, the transfer, the reading and Druva's side): a floor
    makes the rule sweep early rather than late, and bounds what a pass asks of Druva to at most
    ``PAGE_ROUND_TRIPS × in_flight`` lookups (64 by default) for each page the sweep would have read.
    ``druva_users`` is what the state knows (the managed accounts); Druva may hold more, which only makes
    a sweep dearer.
    """
    pages = druva_users // DRUVA_PAGE_SIZE + 1
    return lookups > pages * PAGE_ROUND_TRIPS * in_flight


@dataclasses.dataclass(frozen=True)
class DruvaQuery:
    """What finding one account's Druva user may ask: its linked user, then its e-mail."""

    user_id: int | None
    email: str | None


class DruvaLookup:
    """Finds the Druva user for an account: from a sweep's index, from answers asked for ahead
    (``prefetch``), or by asking Druva there and then."""

    def __init__(self, druva: Druva, users: Sequence[DruvaUser] | None = None) -> None:
        self._druva = druva
        self._swept = users is not None
        self._by_id = {u.user_id: u for u in users or ()}
        self._by_email: dict[str, DruvaUser] = {}
        # E-mails Druva holds more than once, differing only in case: none of them is picked silently.
        self._ambiguous: dict[str, DruvaRefused] = {}
        for user in users or ():
            other = self._by_email.setdefault(user.email_key, user)
            if other is not user:
                self._ambiguous[user.email_key] = _ambiguity(other.email, user.email)
        # Answers asked for ahead, as Druva gave them: by user id, and by the e-mail exactly as asked.
        self._linked: dict[int, DruvaUser | None] = {}
        self._found: dict[str, DruvaUser | DruvaRefused | None] = {}

    @classmethod
    async def sweep(cls, druva: Druva) -> DruvaLookup:
        return cls(druva, [user async for user in druva.users()])

    @classmethod
    async def for_run(
        cls, druva: Druva, queries: Collection[DruvaQuery], managed: Callable[[], Awaitable[int]]
    ) -> DruvaLookup:
        """Sweep when ``sweep_is_cheaper``, else look the accounts up ahead, concurrently. ``managed``
        counts the managed accounts (in Table Storage a read of every link): it is asked only when even
        a one-page tenant would be swept, which a pass of a few changes never is."""
        user_ids, emails = _first_questions(queries)
        # An e-mail Druva does not hold costs two requests (an exact lookup, then a prefix search that
        # finds it whatever case Druva stored it in); the unlinked accounts of a pass are mostly new.
        lookups, in_flight = len(user_ids) + 2 * len(emails), druva.max_in_flight
        if sweep_is_cheaper(lookups, 0, in_flight) and sweep_is_cheaper(lookups, await managed(), in_flight):
            return await cls.sweep(druva)
        lookup = cls(druva)
        await lookup.prefetch(queries)
        return lookup

    async def prefetch(self, queries: Collection[DruvaQuery]) -> None:
        """Ask Druva now what ``find`` will ask for these queries, at most ``max_in_flight`` requests
        at a time: the linked users and the e-mails of unlinked accounts, then the e-mails of linked
        accounts whose user is gone from Druva. A failed lookup is raised as it is (the rest are
        cancelled), as the same lookup asked by ``find`` would have."""
        user_ids, emails = _first_questions(queries)
        at_once = self._druva.max_in_flight
        asks: list[Callable[[], Awaitable[Answer]]] = [
            *(_bound(self._druva.get_user, user_id) for user_id in user_ids),
            *(_bound(self._find_or_refusal, email) for email in emails),
        ]
        answers = await _each(asks, at_once)
        linked = answers[: len(user_ids)]  # get_user never answers with a refusal
        self._linked.update(
            (i, a) for i, a in zip(user_ids, linked, strict=True) if not isinstance(a, DruvaRefused)
        )
        self._found.update(zip(emails, answers[len(user_ids) :], strict=True))
        gone = list(
            dict.fromkeys(
                q.email
                for q in queries
                if q.user_id is not None
                and q.email is not None
                and self._linked[q.user_id] is None
                and q.email not in self._found
            )
        )
        self._found.update(
            zip(gone, await _each([_bound(self._find_or_refusal, e) for e in gone], at_once), strict=True)
        )

    async def _find_or_refusal(self, email: str) -> DruvaUser | DruvaRefused | None:
        """One account's ambiguous e-mail is that account's problem, not the pass's."""
        try:
            return await self._druva.find_user(email)
        except DruvaRefused as refused:
            if refused.kind is not RefusalKind.AMBIGUOUS:
                raise
            return refused

    async def find(self, link: AccountLink | None, email: str | None) -> DruvaUser | None:
        """The linked user if it still exists, else the user with the account's e-mail."""
        if link is not None:
            linked = await self._user(link.druva_user_id)
            if linked is not None:
                return linked
        if email is None:
            return None
        return await self._with_email(email)

    async def _user(self, user_id: int) -> DruvaUser | None:
        if self._swept:
            return self._by_id.get(user_id)
        if user_id in self._linked:
            return self._linked[user_id]
        return await self._druva.get_user(user_id)

    async def _with_email(self, email: str) -> DruvaUser | None:
        """Raises ``DruvaRefused`` (ambiguous) when Druva holds the e-mail more than once."""
        if self._swept:
            if email_key(email) in self._ambiguous:
                raise self._ambiguous[email_key(email)]
            return self._by_email.get(email_key(email))
        found = self._found[email] if email in self._found else await self._find_or_refusal(email)
        if isinstance(found, DruvaRefused):
            raise found
        return found


def _ambiguity(first: str, second: str) -> DruvaRefused:
    return DruvaRefused(
        f"Druva holds more than one user with this e-mail, differing only in case: {first}, {second}",
        RefusalKind.AMBIGUOUS,
    )


def _first_questions(queries: Collection[DruvaQuery]) -> tuple[list[int], list[str]]:
    """The distinct linked users, and the distinct e-mails of accounts without a link."""
    user_ids = dict.fromkeys(q.user_id for q in queries if q.user_id is not None)
    emails = dict.fromkeys(q.email for q in queries if q.user_id is None and q.email is not None)
    return list(user_ids), list(emails)


Answer = DruvaUser | DruvaRefused | None  # what one lookup found: the user, none, or an ambiguity
V = TypeVar("V")


def _bound(ask: Callable[[V], Awaitable[Answer]], value: V) -> Callable[[], Awaitable[Answer]]:
    return lambda: ask(value)


async def _each(asks: Sequence[Callable[[], Awaitable[T]]], at_once: int) -> list[T]:
    """Every answer, in order, with at most ``at_once`` asks out at a time. The first failure cancels
    the others and is raised unchanged (not wrapped in a group): the caller sees what one ask raised."""
    if not asks:
        return []
    gate = asyncio.Semaphore(at_once)

    async def one(ask: Callable[[], Awaitable[T]]) -> T:
        async with gate:
            return await ask()

    tasks = [asyncio.ensure_future(one(ask)) for ask in asks]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def may_need_druva(account: EntraAccount | None, link: AccountLink | None) -> bool:
    """Guests and never-provisioned disabled users get no action: don't spend a Druva call on them."""
    if link is not None:
        return True
    return account is not None and account.is_member and not account.is_disabled_user


def druva_query(account: EntraAccount | None, link: AccountLink | None, policy: Policy) -> DruvaQuery | None:
    """What deciding this account asks of Druva, if anything."""
    if not may_need_druva(account, link):
        return None
    email = account.email(policy.user_id_attribute) if account else None
    return DruvaQuery(link.druva_user_id if link is not None else None, email)


async def situation_for(
    entra_id: str,
    account: EntraAccount | None,
    link: AccountLink | None,
    *,
    policy: Policy,
    lookup: DruvaLookup,
    owner_of: Callable[[int], Awaitable[str | None]],
    history: History | None = None,
    rebind: bool = False,
) -> Situation:
    """``history``: the account's audit trail, read only when its linked Druva user's e-mail is not the
    link's (``recorded_emails``). ``rebind``: an admin's import, which finds the account's Druva user by
    e-mail again when the linked one is somebody else's."""
    query = druva_query(account, link, policy)
    if query is None:
        return Situation(entra_id, account, link)
    try:
        druva = await lookup.find(link, query.email)
    except DruvaRefused as refused:  # only ambiguity reaches here: which user is this account's?
        request = HoldRequest(HoldReason.REFUSED, str(refused), advice=refused.advice)
        return Situation(entra_id, account, link, refusal=request)
    recorded: frozenset[str] = frozenset()
    if link is not None and druva is not None and druva.user_id == link.druva_user_id:
        own = query.email
        if not belongs_to(link, druva.email, own) and history is not None:
            # Rare (a mismatch): the whole trail, not its newest page, so an old create is found.
            recorded = recorded_emails(await history(entra_id, HISTORY_READ), druva.email)
        if rebind and not belongs_to(link, druva.email, own, recorded):
            druva = await lookup.find(None, query.email) if query.email else None
    owner = None
    if druva is not None and (link is None or link.druva_user_id != druva.user_id):
        owner = await owner_of(druva.user_id)
    return Situation(entra_id, account, link, druva, owner, recorded_emails=recorded)


History = Callable[[str, int], Awaitable[Sequence[AuditEntry]]]
HISTORY_READ = 10_000  # audit entries read for one account whose link is in doubt
_RECORDING_ACTIONS = frozenset({"create", "adopt"})


def recorded_emails(entries: Sequence[AuditEntry], email: str) -> frozenset[str]:
    """``email``, if the product's audit trail records creating or adopting the account's Druva user
    with it; else nothing. (Links written before they kept Druva's e-mail followed the account through a
    rename; the audit entry of the create or adopt still names the e-mail the user was made with.)"""
    wanted = email_key(email)
    for entry in entries:
        if entry.action not in _RECORDING_ACTIONS or entry.outcome is not AuditOutcome.DONE:
            continue
        words = re.split(r"[\s()]+", str(entry.detail.get("describe", "")))
        if any(email_key(word) == wanted for word in words if word):
            return frozenset({email})
    return frozenset()


def takes_shared_mailboxes(policy: Policy) -> bool:
    return any(AccountKind.SHARED_MAILBOX in m.kinds for m in policy.mappings)


async def with_memberships_and_purpose(
    directory: Directory,
    policy: Policy,
    accounts: Sequence[EntraAccount],
    view: MembershipView,
    linked: Collection[str],
    *,
    now: datetime,
) -> list[EntraAccount]:
    """Fill in group memberships and, for disabled accounts with a mailbox that could matter, what the
    mailbox settings say (one batched Graph call for the whole page)."""
    mailboxes_mapped = takes_shared_mailboxes(policy)
    wanted = [a.id for a in accounts if a.may_be_shared_mailbox and (mailboxes_mapped or a.id in linked)]
    purposes = await directory.mailbox_purposes(wanted) if wanted else {}
    nested = bool(policy.nested_group_ids)
    enriched = []
    for account in accounts:
        direct, transitive = await view.groups_of(account.id, nested=nested)
        grouped = dataclasses.replace(account, member_of=direct, transitive_member_of=transitive)
        enriched.append(
            with_mailbox(grouped, purposes[account.id], now) if account.id in purposes else grouped
        )
    return enriched
