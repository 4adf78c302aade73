"""What the directory (Entra, through Graph) reports: user changes, membership changes, subscriptions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from provisioning.domain.accounts import EntraAccount, Unreadable


@dataclass(frozen=True)
class UserRemoved:
    """A user gone from the directory. ``permanent`` is False for a soft delete (restorable 30 days)."""

    id: str
    permanent: bool = False


@dataclass(frozen=True)
class UserUnreadable:
    """A user a read asked for and did not get, where that does not prove it is gone: a read by id right
    after a change may miss a user Graph has not replicated yet. Removals come from delta (``@removed``);
    this one is left as it is and read again later."""

    id: str
    unreadable: Unreadable


UserChange = EntraAccount | UserRemoved | UserUnreadable


@dataclass(frozen=True)
class UserPage:
    """One page of a users read. The last page of a pass carries the cursor to resume from."""

    changes: tuple[UserChange, ...]
    cursor: str | None = None


@dataclass(frozen=True)
class UserSearch:
    """Accounts found by a search, at most the number asked for; ``more``: others match too."""

    accounts: tuple[EntraAccount, ...]
    more: bool = False


@dataclass(frozen=True, slots=True)  # one per member of a mapped group in a full read
class MembershipChange:
    group_id: str
    member_id: str
    member_is_group: bool = False
    removed: bool = False


@dataclass(frozen=True)
class MembershipPage:
    """One page of a membership read.

    ``reset_groups``: groups whose whole membership is (re)sent in this pass; what was known of them
    before must be forgotten before the changes are applied. ``removed_groups``: groups that no longer
    exist. ``seen_groups``: groups the page returned at all (a rename returns a group with no member
    changes), so a notification about one counts as seen. The last page carries the cursor.
    """

    changes: tuple[MembershipChange, ...] = ()
    reset_groups: frozenset[str] = frozenset()
    removed_groups: frozenset[str] = frozenset()
    cursor: str | None = None
    seen_groups: frozenset[str] = frozenset()


# Graph's "Create subscription" permissions table (application): the app role each subscribed resource
# needs, then the broader ones that also allow it. GroupMember.Read.All is not enough for "groups".
SUBSCRIPTION_PERMISSIONS: dict[str, tuple[str, ...]] = {
    "users": ("User.Read.All", "User.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"),
    "groups": ("Group.Read.All", "Group.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"),
}


@dataclass(frozen=True)
class Subscription:
    """A Graph change-notification subscription as Graph reports it.

    ``client_state_fingerprint``: a one-way hash of the clientState it was created with (never the
    secret), kept in our state so a rotated secret is noticed; Graph never returns the clientState.
    """

    id: str
    resource: str  # "users" | "groups"
    expires_at: datetime
    notification_url: str
    lifecycle_url: str | None = None
    client_state_fingerprint: str | None = None


@dataclass(frozen=True)
class Probe:
    """One pre-flight check of an outside service (for ``doctor``): what was tried and what came back."""

    check: str
    ok: bool
    detail: str
