"""The product's memory of which Entra account owns which Druva user, and what it last applied.

A link names its Druva user by id, and by the e-mail that user had when the product created, adopted or
last saw it (``email``): Druva's API cannot change a user's e-mail, so it only changes when an admin
changes it in the Druva console. A linked user whose e-mail is neither that one nor the account's own is
somebody else's (the state was built against another Druva tenant, or the id was reused): the product
never writes to it on the link's word (``belongs_to``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from provisioning.domain.druva import email_key


class LinkStatus(StrEnum):
    """What *we* last made of the Druva user. ``PRESERVED`` means this product preserved it, which is
    what entitles it to re-activate the user when the account returns."""

    ACTIVE = "active"
    PRESERVED = "preserved"


@dataclass(frozen=True, slots=True)  # one per user, 200,000 in a big tenant
class AccountLink:
    entra_id: str
    druva_user_id: int
    email: str
    mapping: str | None
    profile: str | None
    storage: str | None
    quota: str | None
    status: LinkStatus
    decided_at: datetime
    version: str | None = None  # opaque optimistic-concurrency token owned by the state store

    def same_facts(self, other: AccountLink) -> bool:
        """Equal apart from bookkeeping (time and version): a rewrite would change nothing."""
        return (
            self.entra_id,
            self.druva_user_id,
            self.email,
            self.mapping,
            self.profile,
            self.storage,
            self.quota,
            self.status,
        ) == (
            other.entra_id,
            other.druva_user_id,
            other.email,
            other.mapping,
            other.profile,
            other.storage,
            other.quota,
            other.status,
        )


def belongs_to(
    link: AccountLink, druva_email: str, account_email: str | None, recorded: Iterable[str] = ()
) -> bool:
    """Whether the Druva user with ``druva_email`` is the one ``link`` means: its e-mail is the link's,
    the account's own (an admin aligned it in the console), or one the product recorded creating or
    adopting the user with (``recorded``: a rename the product followed before links kept Druva's
    e-mail). Compared as Druva compares e-mails."""
    known = {email_key(link.email), *(email_key(e) for e in recorded)}
    if account_email:
        known.add(email_key(account_email))
    return email_key(druva_email) in known
