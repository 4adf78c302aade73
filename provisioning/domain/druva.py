"""Druva inSync users as the planner sees them: profile and storage by name, never by id.

The Druva adapter translates ``profileID``/``storageID`` to and from names with the catalog it reads
once per run, so decisions and explanations speak the admin's vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from provisioning.domain.quota import Quota


class DruvaStatus(StrEnum):
    ACTIVE = "active"
    PRESERVED = "preserved"


@dataclass(frozen=True, slots=True)  # one per user, 200,000 in a big tenant
class DruvaUser:
    user_id: int
    email: str
    user_name: str
    status: DruvaStatus
    profile: str
    storage: str
    quota_bytes: int | None = None
    ldap_guid: str | None = None

    @property
    def provisioned_by_druva(self) -> bool:
        """Imported by Druva's own AD/LDAP provisioning: Druva manages it, we must not."""
        return bool(self.ldap_guid)

    @property
    def email_key(self) -> str:
        return email_key(self.email)


@dataclass(frozen=True)
class NewDruvaUser:
    """What a create sends. ``quota`` None leaves the profile's default quota in force."""

    email: str
    user_name: str
    profile: str
    storage: str
    quota: Quota | None = None


def email_key(email: str) -> str:
    """Druva compares e-mail addresses case-insensitively; so do we."""
    return email.strip().casefold()
