"""The product's memory of which Entra account owns which Druva user, and what it last applied."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


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
