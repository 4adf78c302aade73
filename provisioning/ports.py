"""Ports: what the service layer needs from the outside world, as Protocols.

Adapters (``provisioning/adapters``) implement them against Graph, Druva, Table Storage / SQLite and
Service Bus; tests implement them with fakes. Everything is async because Graph's SDK is, and because
a run overlaps many Druva writes. Errors crossing a port are those of ``provisioning.errors``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Sequence
from datetime import datetime
from typing import Protocol

from provisioning.domain.accounts import EntraAccount, Unreadable
from provisioning.domain.directory import (
    MembershipChange,
    MembershipPage,
    Probe,
    Subscription,
    UserChange,
    UserPage,
    UserSearch,
)
from provisioning.domain.druva import DruvaUser, NewDruvaUser
from provisioning.domain.followups import Hold, Promise, Sighting
from provisioning.domain.groups import EntraGroup, MembershipIndex
from provisioning.domain.links import AccountLink
from provisioning.domain.state import AuditEntry, CursorState, RunSummary
from provisioning.domain.work import WorkMessage
from provisioning.errors import ProvisioningError


class Clock(Protocol):
    def now(self) -> datetime:
        """Timezone-aware UTC."""
        ...


class Directory(Protocol):
    """Microsoft Entra ID, read through Microsoft Graph."""

    def read_users(self, cursor: str | None, select: Sequence[str]) -> AsyncIterator[UserPage]:
        """Users delta. ``cursor`` None reads every user from the start (the reconciliation path);
        otherwise only what changed since. ``select`` names the Graph properties to return besides the
        identity fields (id, userPrincipalName, mail, displayName, userType, accountEnabled), which are
        always requested. The last page carries the new cursor. Raises ``CursorExpired``."""
        ...

    def read_memberships(
        self, cursor: str | None, group_ids: Collection[str]
    ) -> AsyncIterator[MembershipPage]:
        """Direct members (not owners) of ``group_ids``, through groups delta (``members@delta``).
        Groups the cursor does not cover yet are read in full and listed in ``reset_groups``.
        The last page carries the new cursor. Raises ``CursorExpired``."""
        ...

    async def get_user(self, id_or_upn: str, select: Sequence[str]) -> EntraAccount | None:
        """One user by object id or UPN, or None if there is no such user."""
        ...

    async def get_users(self, user_ids: Collection[str], select: Sequence[str]) -> list[UserChange]:
        """Several users by object id, fetched together (a handful of requests for any number of ids):
        the incremental path's way to read accounts whose memberships changed. A missing id comes back
        as ``UserRemoved``."""
        ...

    async def groups_of(self, user_id: str, *, transitive: bool = False) -> frozenset[str]:
        """Ids of the groups the user is a member of (direct, or at any depth)."""
        ...

    async def search_users(self, prefix: str, select: Sequence[str], limit: int) -> UserSearch:
        """At most ``limit`` (1..999) accounts whose display name, given name, surname, mail or user
        principal name starts with ``prefix``, ignoring case: a few requests whatever the tenant size.
        ``select`` as in ``read_users``."""
        ...

    async def groups_of_each(
        self, user_ids: Collection[str], *, transitive: bool = False
    ) -> dict[str, frozenset[str]]:
        """``groups_of`` for several users at once (batched)."""
        ...

    async def find_group(self, ref: str) -> EntraGroup:
        """A group by object id or display name. Raises ``GroupNotFound`` (with close matches) or
        ``AmbiguousGroup`` (several groups carry that name)."""
        ...

    async def find_groups(self, refs: Sequence[str]) -> dict[str, EntraGroup | ProvisioningError]:
        """``find_group`` for several references at once; each answer is the group or the error
        (``GroupNotFound``, ``AmbiguousGroup``) that ``find_group`` would have raised."""
        ...

    async def mailbox_purposes(self, user_ids: Collection[str]) -> dict[str, str | Unreadable | None]:
        """``mailboxSettings.userPurpose`` per user (``shared``, ``user``, ``room``...), None where
        Exchange says the user has no mailbox (404 ``MailboxNotEnabledForRESTAPI``, also what a mailbox
        still being provisioned answers), ``Unreadable`` where the answer says nothing about the mailbox
        (403: scoped away from the app or permission missing; another 404). Batched; call it only for
        disabled accounts."""
        ...

    async def list_subscriptions(self) -> list[Subscription]: ...

    async def create_subscription(
        self,
        resource: str,
        notification_url: str,
        lifecycle_url: str | None,
        client_state: str,
        expires_at: datetime,
    ) -> Subscription: ...

    async def renew_subscription(self, subscription_id: str, expires_at: datetime) -> Subscription:
        """Raises ``NotFoundError`` when Graph has already dropped the subscription."""
        ...

    async def reauthorize_subscription(self, subscription_id: str) -> None: ...

    async def delete_subscription(self, subscription_id: str) -> None: ...

    async def app_roles(self) -> frozenset[str] | None:
        """The application permissions (app roles) the app's Graph token carries, or None when the token
        does not tell (not a JWT, no ``roles`` claim, or no token could be had)."""
        ...

    async def tenant(self) -> str | None:
        """The Entra tenant id (lower case) the app's Graph token was issued in, or None when the token
        does not tell (not a JWT). Raises what getting a token raises."""
        ...

    async def check_access(self) -> list[Probe]:
        """Pre-flight: can we read users, groups, mailbox settings and manage subscriptions? Never raises
        for a failed check; each failure is a Probe with ``ok`` False and the reason."""
        ...

    async def aclose(self) -> None: ...


class Druva(Protocol):
    """Druva inSync user management. Profiles and storages are named, never numbered."""

    @property
    def max_in_flight(self) -> int:
        """The most requests this client keeps in flight at once (``DRUVA_MAX_CONCURRENCY``)."""
        ...

    @property
    def credential(self) -> str:
        """Which credential this client writes with, as a name that is no secret (the API URL and the
        client id): a refusal of the credential itself holds writes until it changes."""
        ...

    def users(self) -> AsyncIterator[DruvaUser]:
        """Every Druva user (active and preserved), page by page: a run's one sweep, when it sweeps."""
        ...

    async def find_user(self, email: str) -> DruvaUser | None:
        """The user with this e-mail (case-insensitive), or None."""
        ...

    async def get_user(self, user_id: int) -> DruvaUser | None: ...

    async def create_user(self, user: NewDruvaUser) -> DruvaUser:
        """Create, never twice: an ambiguous failure is followed by a lookup by e-mail, not a re-POST.
        Raises ``ConflictError`` if a user with that e-mail already exists."""
        ...

    async def update_user(
        self,
        user_id: int,
        *,
        user_name: str | None = None,
        profile: str | None = None,
        storage: str | None = None,
    ) -> DruvaUser: ...

    async def preserve_user(self, user_id: int) -> None: ...

    async def activate_user(self, user_id: int) -> None: ...

    async def profiles(self) -> list[str]: ...

    async def storages(self) -> list[str]: ...

    async def refresh_catalog(self) -> None:
        """Forget the profiles and storages read so far: the next use reads Druva's catalog again."""

    async def check_access(self) -> list[Probe]:
        """Pre-flight: token obtained, users listable, profiles and storages readable."""
        ...

    async def aclose(self) -> None: ...


class StateStore(Protocol):
    """What the product remembers between stateless invocations (Table Storage in Azure, SQLite locally)."""

    # links: Entra account → Druva user
    async def get_link(self, entra_id: str) -> AccountLink | None: ...

    async def get_links(self, entra_ids: Collection[str]) -> dict[str, AccountLink]: ...

    def links(self) -> AsyncIterator[AccountLink]: ...

    async def owner_of(self, druva_user_id: int) -> str | None:
        """The Entra id linked to this Druva user, if any."""
        ...

    async def put_link(self, link: AccountLink) -> AccountLink:
        """Write conditionally: ``link.version`` None means "must not exist yet", otherwise "must still
        be at that version". A Druva user belongs to one account at most: linking one that another
        account holds is refused too. Raises ``ConcurrencyConflict``. Returns the link, newly versioned."""
        ...

    async def count_managed(self) -> int:
        """Links whose status is active: the denominator of the mass-preserve guard."""
        ...

    # delta cursors, one writer each
    async def get_cursor(self, name: str) -> CursorState: ...

    async def claim_cursor(self, name: str, owner: str, now: datetime, lease_seconds: float) -> CursorState:
        """Take the cursor's lease. Raises ``CursorBusy`` if another owner holds an unexpired lease,
        ``ConcurrencyConflict`` if another writer won the race to take it (the service treats both as
        "another pass is running")."""
        ...

    async def renew_cursor(self, claim: CursorState, now: datetime, lease_seconds: float) -> CursorState:
        """The heartbeat: extend the lease held by ``claim`` to ``now + lease_seconds``, conditional on
        ``claim.version``. Raises ``ConcurrencyConflict`` if the lease was taken over (or the cursor
        moved) since: the holder has lost it and must stop writing."""
        ...

    async def save_cursor(
        self, claim: CursorState, value: str | None, *, release: bool = True
    ) -> CursorState:
        """Advance the cursor held by ``claim``; raises ``ConcurrencyConflict`` if it moved meanwhile."""
        ...

    async def release_cursor(self, claim: CursorState) -> None:
        """Give the lease back; does nothing if another owner has taken it since."""
        ...

    # change-notification subscriptions
    async def get_subscription(self, resource: str) -> Subscription | None: ...

    async def put_subscription(self, subscription: Subscription) -> None: ...

    async def delete_subscription(self, resource: str) -> None: ...

    # membership index of the mapped groups
    async def load_memberships(self, group_ids: Collection[str] | None = None) -> MembershipIndex:
        """The index for ``group_ids`` (None: every group known)."""
        ...

    async def memberships_of(self, member_id: str) -> frozenset[str]:
        """Groups that ``member_id`` (an account or a group) is a direct member of: the per-account
        path, so one account can be decided without loading the whole index."""
        ...

    async def apply_memberships(
        self,
        changes: Sequence[MembershipChange],
        reset_groups: Collection[str] = (),
        removed_groups: Collection[str] = (),
    ) -> None:
        """Forget ``reset_groups`` and ``removed_groups``, then apply ``changes`` in order."""
        ...

    # follow-ups: notified changes not seen yet, accounts held as they are
    async def holds(self, entra_ids: Collection[str] | None = None) -> dict[str, Hold]:
        """The holds of these accounts (None: every hold), by account id."""
        ...

    async def put_holds(self, holds: Sequence[Hold]) -> None: ...

    async def clear_holds(self, entra_ids: Collection[str]) -> None:
        """Forget the holds of these accounts; ids without one are ignored."""
        ...

    async def promises(self) -> list[Promise]:
        """The notified objects not seen yet, oldest first."""
        ...

    async def notice(self, promises: Sequence[Promise]) -> int:
        """Follow these notified objects until a delta read returns them (``followups.noticed``); how
        many records that wrote (0: every one was answered already)."""
        ...

    async def sighted(self, sighting: Sighting, *, mark: bool) -> list[Promise]:
        """A pass's delta reads returned ``sighting.ids``: keep the promises it answers
        (``followups.sighted``) and return those still pending, oldest first."""
        ...

    async def forget_promises(self, promises: Sequence[Promise]) -> None:
        """Forget these promises, unless a later notification renewed one meanwhile."""
        ...

    # audit trail and run history
    async def append_audit(self, entries: Sequence[AuditEntry]) -> None: ...

    async def audit_for(self, entra_id: str, limit: int = 50) -> list[AuditEntry]:
        """Newest first."""
        ...

    async def record_run(self, summary: RunSummary) -> None: ...

    async def recent_runs(self, limit: int = 20) -> list[RunSummary]:
        """Newest first."""
        ...

    async def aclose(self) -> None: ...


class WorkQueue(Protocol):
    """Service Bus in Azure, an in-process queue in the CLI and tests."""

    async def send(self, messages: Sequence[WorkMessage]) -> None:
        """Enqueue; messages with the same ``message_id`` within the dedup window are dropped."""
        ...
