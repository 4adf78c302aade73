"""Fakes at the project's own ports: small, in-memory, with the same semantics as the real adapters.

Service tests run against these; integration tests run the real adapters against the simulators.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections import Counter
from collections.abc import AsyncIterator, Collection, Sequence
from datetime import UTC, datetime, timedelta

from provisioning.adapters.state.sqlite import SqliteStateStore
from provisioning.domain.accounts import EntraAccount, Unreadable
from provisioning.domain.directory import (
    MembershipChange,
    MembershipPage,
    Probe,
    Subscription,
    UserChange,
    UserPage,
    UserRemoved,
    UserSearch,
    UserUnreadable,
)
from provisioning.domain.druva import DruvaStatus, DruvaUser, NewDruvaUser, email_key
from provisioning.domain.groups import EntraGroup, MembershipIndex
from provisioning.domain.links import AccountLink
from provisioning.domain.state import AuditEntry, CursorState, RunSummary
from provisioning.errors import (
    ConflictError,
    CursorExpired,
    DruvaRefused,
    GroupNotFound,
    NotFoundError,
    ProvisioningError,
    RefusalKind,
)
from provisioning.ports import Clock


class FixedClock:
    def __init__(self, now: datetime | None = None) -> None:
        self.current = now or datetime(2026, 11, 26, 12, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.current

    def advance(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)


class FakeDirectory:
    """Entra in memory. Cursors are positions in a change log; ``expire_cursors`` makes them stale."""

    def __init__(self, page_size: int = 3) -> None:
        self.users: dict[str, EntraAccount] = {}
        self.groups: dict[str, EntraGroup] = {}
        self.members: dict[str, set[str]] = {}
        self.subgroups: dict[str, set[str]] = {}
        self.purposes: dict[str, str | Unreadable | None] = {}
        self.log: list[tuple[str, ...]] = []
        self.page_size = page_size
        self.epoch = 0
        self.calls: Counter[str] = Counter()
        self.subscriptions: dict[str, Subscription] = {}
        self.client_states: dict[str, str] = {}  # subscription id → the clientState Graph would echo
        self.roles: frozenset[str] | None = None  # what the token's roles claim says; None: not a JWT
        self.tenant_id: str | None = None  # what the token's tid claim says; None: not a JWT
        self.repeated: set[str] = set()  # users a full round sends a second time, at its end (Graph may)
        self.unlisted: set[str] = set()  # users a delta round leaves out (a restore, in a $select delta)
        self._subscription_ids = itertools.count(1)

    # --- arranging the directory ---
    def add_user(self, account: EntraAccount, purpose: str | Unreadable | None = None) -> EntraAccount:
        self.users[account.id] = account
        if purpose is not None:
            self.purposes[account.id] = purpose
        self.log.append(("user", account.id))
        return account

    def update_user(self, user_id: str, **changes: object) -> None:
        self.users[user_id] = dataclasses.replace(self.users[user_id], **changes)  # type: ignore[arg-type]
        self.log.append(("user", user_id))

    def delete_user(self, user_id: str) -> None:
        del self.users[user_id]
        self.log.append(("user", user_id))
        for group_id, members in self.members.items():
            if user_id in members:
                self.remove_member(group_id, user_id)

    def add_group(self, group: EntraGroup) -> None:
        self.groups[group.id] = group
        self.members.setdefault(group.id, set())
        self.subgroups.setdefault(group.id, set())

    def add_member(self, group_id: str, member_id: str, *, is_group: bool = False) -> None:
        (self.subgroups if is_group else self.members)[group_id].add(member_id)
        self.log.append(("member", group_id, member_id, "group" if is_group else "user", "add"))

    def remove_member(self, group_id: str, member_id: str) -> None:
        is_group = member_id in self.subgroups[group_id]
        (self.subgroups if is_group else self.members)[group_id].discard(member_id)
        self.log.append(("member", group_id, member_id, "group" if is_group else "user", "remove"))

    def expire_cursors(self) -> None:
        self.epoch += 1

    # --- the Directory port ---
    async def read_users(self, cursor: str | None, select: Sequence[str]) -> AsyncIterator[UserPage]:
        self.calls["read_users"] += 1
        start = self._position(cursor)
        if start is None:
            changes: list[UserChange] = list(self.users.values())
            changes += [self.users[i] for i in self.repeated if i in self.users]
        else:
            changed = dict.fromkeys(
                e[1] for e in self.log[start:] if e[0] == "user" and e[1] not in self.unlisted
            )
            changes = [self.users.get(i) or UserRemoved(i, permanent=True) for i in changed]
        token = json.dumps({"epoch": self.epoch, "at": len(self.log)})
        pages = [changes[i : i + self.page_size] for i in range(0, len(changes), self.page_size)] or [[]]
        for number, page in enumerate(pages, start=1):
            yield UserPage(tuple(page), token if number == len(pages) else None)

    async def read_memberships(
        self, cursor: str | None, group_ids: Collection[str]
    ) -> AsyncIterator[MembershipPage]:
        self.calls["read_memberships"] += 1
        state = json.loads(cursor) if cursor else None
        if state is not None and state["epoch"] != self.epoch:
            raise CursorExpired("membership cursor expired")
        covered = set(state["groups"]) if state else set()
        fresh = {g for g in group_ids if g not in covered}
        changes = [
            MembershipChange(g, m, is_group)
            for g in sorted(fresh)
            for is_group, source in ((False, self.members), (True, self.subgroups))
            for m in sorted(source.get(g, ()))
        ]
        removed = {g for g in group_ids if g not in self.groups}
        if state is not None:
            for entry in self.log[state["at"] :]:
                if entry[0] == "member" and entry[1] in group_ids and entry[1] not in fresh:
                    changes.append(
                        MembershipChange(entry[1], entry[2], entry[3] == "group", entry[4] == "remove")
                    )
        token = json.dumps({"epoch": self.epoch, "at": len(self.log), "groups": sorted(group_ids)})
        yield MembershipPage(tuple(changes), frozenset(fresh), frozenset(removed), token)

    def _position(self, cursor: str | None) -> int | None:
        if cursor is None:
            return None
        state = json.loads(cursor)
        if state["epoch"] != self.epoch:
            raise CursorExpired("users cursor expired")
        return int(state["at"])

    async def get_user(self, id_or_upn: str, select: Sequence[str]) -> EntraAccount | None:
        self.calls["get_user"] += 1
        return self.users.get(id_or_upn) or next(
            (u for u in self.users.values() if u.user_principal_name.lower() == id_or_upn.lower()), None
        )

    async def get_users(self, user_ids: Collection[str], select: Sequence[str]) -> list[UserChange]:
        """As Graph's read by id: a user it does not return is not proof of a deletion."""
        self.calls["get_users"] += 1
        missing = Unreadable("the account", "not returned by a read by id")
        return [self.users.get(i) or UserUnreadable(i, missing) for i in user_ids]

    async def groups_of(self, user_id: str, *, transitive: bool = False) -> frozenset[str]:
        self.calls["groups_of"] += 1
        index = MembershipIndex(
            {g: frozenset(m) for g, m in self.members.items()},
            {g: frozenset(m) for g, m in self.subgroups.items()},
        )
        return index.transitive_groups_of(user_id) if transitive else index.direct_groups_of(user_id)

    async def search_users(self, prefix: str, select: Sequence[str], limit: int) -> UserSearch:
        self.calls["search_users"] += 1
        wanted = prefix.lower()

        def starts(account: EntraAccount) -> bool:
            names = (
                account.display_name,
                account.attribute("givenName"),
                account.attribute("surname"),
                account.mail,
                account.user_principal_name,
            )
            return any(isinstance(n, str) and n.lower().startswith(wanted) for n in names)

        found = [a for a in self.users.values() if starts(a)]
        return UserSearch(tuple(found[:limit]), more=len(found) > limit)

    async def groups_of_each(
        self, user_ids: Collection[str], *, transitive: bool = False
    ) -> dict[str, frozenset[str]]:
        self.calls["groups_of_each"] += 1
        return {i: await self.groups_of(i, transitive=transitive) for i in user_ids}

    async def find_group(self, ref: str) -> EntraGroup:
        found = self.groups.get(ref) or next((g for g in self.groups.values() if g.display_name == ref), None)
        if found is None:
            raise GroupNotFound(ref)
        return found

    async def find_groups(self, refs: Sequence[str]) -> dict[str, EntraGroup | ProvisioningError]:
        found: dict[str, EntraGroup | ProvisioningError] = {}
        for ref in refs:
            try:
                found[ref] = await self.find_group(ref)
            except GroupNotFound as missing:
                found[ref] = missing
        return found

    async def mailbox_purposes(self, user_ids: Collection[str]) -> dict[str, str | Unreadable | None]:
        self.calls["mailbox_purposes"] += 1
        return {i: self.purposes.get(i) for i in user_ids}

    async def list_subscriptions(self) -> list[Subscription]:
        return list(self.subscriptions.values())

    async def create_subscription(
        self,
        resource: str,
        notification_url: str,
        lifecycle_url: str | None,
        client_state: str,
        expires_at: datetime,
    ) -> Subscription:
        self.calls["create_subscription"] += 1
        created = Subscription(
            f"sub-{next(self._subscription_ids)}", resource, expires_at, notification_url, lifecycle_url
        )
        self.subscriptions[created.id] = created
        self.client_states[created.id] = client_state
        return created

    async def renew_subscription(self, subscription_id: str, expires_at: datetime) -> Subscription:
        self.calls["renew_subscription"] += 1
        if subscription_id not in self.subscriptions:
            raise NotFoundError(subscription_id)
        renewed = dataclasses.replace(self.subscriptions[subscription_id], expires_at=expires_at)
        self.subscriptions[subscription_id] = renewed
        return renewed

    async def reauthorize_subscription(self, subscription_id: str) -> None:
        self.calls["reauthorize_subscription"] += 1
        if subscription_id not in self.subscriptions:
            raise NotFoundError(subscription_id)

    async def delete_subscription(self, subscription_id: str) -> None:
        if self.subscriptions.pop(subscription_id, None) is None:
            raise NotFoundError(subscription_id)

    async def app_roles(self) -> frozenset[str] | None:
        return self.roles

    async def tenant(self) -> str | None:
        return self.tenant_id

    async def check_access(self) -> list[Probe]:
        return [Probe("users readable", True, "fake")]

    async def aclose(self) -> None:
        return None


class FakeDruva:
    """Druva in memory, with a write log and switchable failures."""

    max_in_flight = 16  # the real client's default ceiling (DRUVA_MAX_CONCURRENCY)
    credential = "fake-druva/client"

    def __init__(
        self,
        profiles: Sequence[str] = ("Standard", "Finance", "Mailboxes"),
        storages: Sequence[str] = ("US-East", "EU-West"),
    ) -> None:
        self.accounts: dict[int, DruvaUser] = {}
        self.writes: list[tuple[str, object]] = []
        self.reads: Counter[str] = Counter()
        self.fail_creates: dict[str, Exception] = {}
        # Refusals Druva keeps giving until a human acts: (operation, user id or e-mail key) → error.
        self.refusals: dict[tuple[str, object], Exception] = {}
        self._profiles, self._storages = list(profiles), list(storages)
        self._ids = itertools.count(1001)

    def add(self, user: DruvaUser) -> DruvaUser:
        self.accounts[user.user_id] = user
        return user

    def by_email(self, email: str) -> DruvaUser | None:
        return next((u for u in self.accounts.values() if u.email_key == email_key(email)), None)

    async def users(self) -> AsyncIterator[DruvaUser]:
        self.reads["list"] += 1
        for user in list(self.accounts.values()):
            yield user

    async def find_user(self, email: str) -> DruvaUser | None:
        """As the client: whatever case Druva stored it in, and never one of two that differ in case."""
        self.reads["find"] += 1
        same = [u for u in self.accounts.values() if u.email_key == email_key(email)]
        if len(same) > 1:
            raise DruvaRefused(f"{len(same)} users with e-mail {email}", RefusalKind.AMBIGUOUS)
        return same[0] if same else None

    def _refuse(self, operation: str, key: object) -> None:
        refusal = self.refusals.get((operation, key))
        if refusal is not None:
            raise refusal

    async def get_user(self, user_id: int) -> DruvaUser | None:
        self.reads["get"] += 1
        return self.accounts.get(user_id)

    async def create_user(self, user: NewDruvaUser) -> DruvaUser:
        failure = self.fail_creates.pop(email_key(user.email), None)
        if failure:
            raise failure
        self._refuse("create", email_key(user.email))
        if self.by_email(user.email):
            raise ConflictError(f"{user.email} exists")
        created = DruvaUser(
            next(self._ids),
            user.email,
            user.user_name,
            DruvaStatus.ACTIVE,
            user.profile,
            user.storage,
            user.quota.bytes if user.quota else None,
        )
        self.writes.append(("create", user.email))
        return self.add(created)

    async def update_user(
        self,
        user_id: int,
        *,
        user_name: str | None = None,
        profile: str | None = None,
        storage: str | None = None,
    ) -> DruvaUser:
        self._refuse("update", user_id)
        current = self.accounts[user_id]
        changes = {
            k: v for k, v in {"user_name": user_name, "profile": profile, "storage": storage}.items() if v
        }
        self.writes.append(("update", (user_id, changes)))
        return self.add(dataclasses.replace(current, **changes))  # type: ignore[arg-type]

    async def preserve_user(self, user_id: int) -> None:
        self._refuse("preserve", user_id)
        self.writes.append(("preserve", user_id))
        self.add(dataclasses.replace(self.accounts[user_id], status=DruvaStatus.PRESERVED))

    async def activate_user(self, user_id: int) -> None:
        self._refuse("activate", user_id)
        self.writes.append(("activate", user_id))
        self.add(dataclasses.replace(self.accounts[user_id], status=DruvaStatus.ACTIVE))

    async def profiles(self) -> list[str]:
        return list(self._profiles)

    async def storages(self) -> list[str]:
        return list(self._storages)

    async def refresh_catalog(self) -> None:
        self.reads["refresh_catalog"] += 1  # the lists above are Druva's as it is now: nothing kept to forget

    async def check_access(self) -> list[Probe]:
        return [Probe("token", True, "fake")]

    async def aclose(self) -> None:
        return None


class InMemoryState(SqliteStateStore):
    """The SQLite store in memory (so the port's rules are the real ones), counting what it writes and
    keeping the audit entries and runs it was given, for tests to read."""

    def __init__(self, clock: Clock | None = None) -> None:
        opened = SqliteStateStore.in_memory(clock=clock)
        super().__init__(opened._db, opened.path, opened._clock)
        self.audit: list[AuditEntry] = []
        self.runs: list[RunSummary] = []
        self.writes = 0

    async def put_link(self, link: AccountLink) -> AccountLink:
        stored = await super().put_link(link)
        self.writes += 1
        return stored

    async def save_cursor(
        self, claim: CursorState, value: str | None, *, release: bool = True
    ) -> CursorState:
        saved = await super().save_cursor(claim, value, release=release)
        self.writes += 1
        return saved

    async def apply_memberships(
        self,
        changes: Sequence[MembershipChange],
        reset_groups: Collection[str] = (),
        removed_groups: Collection[str] = (),
    ) -> None:
        await super().apply_memberships(changes, reset_groups, removed_groups)
        self.writes += 1 if (changes or reset_groups or removed_groups) else 0

    async def append_audit(self, entries: Sequence[AuditEntry]) -> None:
        await super().append_audit(entries)
        self.audit.extend(entries)
        self.writes += 1 if entries else 0

    async def record_run(self, summary: RunSummary) -> None:
        await super().record_run(summary)
        self.runs.append(summary)
