"""Gathering what the planner needs about each account: memberships, mailbox purpose, link, Druva user.

Druva users are found through one list sweep when a run touches many accounts (a page holds 4,097
users), and one lookup per account when it touches few: whichever costs fewer requests.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Collection, Sequence

from provisioning.domain.accounts import AccountKind, EntraAccount
from provisioning.domain.druva import DruvaUser, email_key
from provisioning.domain.links import AccountLink
from provisioning.domain.mappings import Policy
from provisioning.domain.planner import Situation
from provisioning.ports import Directory, Druva
from provisioning.service.memberships import MembershipView

DRUVA_PAGE_SIZE = 4097


class DruvaLookup:
    """Finds the Druva user for an account, from a sweep index or by asking Druva each time."""

    def __init__(self, druva: Druva, users: Sequence[DruvaUser] | None = None) -> None:
        self._druva = druva
        self._swept = users is not None
        self._by_id = {u.user_id: u for u in users or ()}
        self._by_email = {u.email_key: u for u in users or ()}

    @classmethod
    async def sweep(cls, druva: Druva) -> DruvaLookup:
        return cls(druva, [user async for user in druva.users()])

    @classmethod
    async def for_run(cls, druva: Druva, accounts: int, managed: int) -> DruvaLookup:
        """Sweep when it takes fewer requests than one lookup per account."""
        pages = managed // DRUVA_PAGE_SIZE + 1
        return await cls.sweep(druva) if accounts > pages else cls(druva)

    async def find(self, link: AccountLink | None, email: str | None) -> DruvaUser | None:
        """The linked user if it still exists, else the user with the account's e-mail."""
        if link is not None:
            linked = (
                self._by_id.get(link.druva_user_id)
                if self._swept
                else await self._druva.get_user(link.druva_user_id)
            )
            if linked is not None:
                return linked
        if email is None:
            return None
        return self._by_email.get(email_key(email)) if self._swept else await self._druva.find_user(email)


def may_need_druva(account: EntraAccount | None, link: AccountLink | None) -> bool:
    """Guests and never-provisioned disabled users get no action: don't spend a Druva call on them."""
    if link is not None:
        return True
    return account is not None and account.is_member and not account.is_disabled_user


async def situation_for(
    entra_id: str,
    account: EntraAccount | None,
    link: AccountLink | None,
    *,
    policy: Policy,
    lookup: DruvaLookup,
    owner_of: Callable[[int], Awaitable[str | None]],
) -> Situation:
    if not may_need_druva(account, link):
        return Situation(entra_id, account, link)
    email = account.email(policy.user_id_attribute) if account else None
    druva = await lookup.find(link, email)
    owner = None
    if druva is not None and (link is None or link.druva_user_id != druva.user_id):
        owner = await owner_of(druva.user_id)
    return Situation(entra_id, account, link, druva, owner)


def takes_shared_mailboxes(policy: Policy) -> bool:
    return any(AccountKind.SHARED_MAILBOX in m.kinds for m in policy.mappings)


async def with_memberships_and_purpose(
    directory: Directory,
    policy: Policy,
    accounts: Sequence[EntraAccount],
    view: MembershipView,
    linked: Collection[str],
) -> list[EntraAccount]:
    """Fill in group memberships and, for disabled accounts with a mailbox that could matter, the
    mailbox purpose (one batched Graph call for the whole page)."""
    mailboxes_mapped = takes_shared_mailboxes(policy)
    wanted = [a.id for a in accounts if a.may_be_shared_mailbox and (mailboxes_mapped or a.id in linked)]
    purposes = await directory.mailbox_purposes(wanted) if wanted else {}
    nested = bool(policy.nested_group_ids)
    enriched = []
    for account in accounts:
        direct, transitive = await view.groups_of(account.id, nested=nested)
        enriched.append(
            dataclasses.replace(
                account,
                member_of=direct,
                transitive_member_of=transitive,
                user_purpose=purposes.get(account.id, account.user_purpose),
            )
        )
    return enriched
