"""The Graph simulator's directory: users, groups, memberships, and the change log deltas are cut from.

Every mutation appends ``Change`` records with a rising sequence number. A delta token is a sequence
number: the changes after it are what a delta round reports. Changes carry the names of the properties
they touched, so a delta round with ``$select`` surfaces only changes to selected properties, as Graph's
does. Soft-deleting a user takes them out of their groups (and restoring puts them back), as Entra does.

Replicas. Graph serves reads from replicas that catch up with a write some time after it is made. The
simulator models that with two stores sharing one lock: the *directory*, where changes are made (its
mutators check them: unknown users, duplicate UPNs), and the *replica*, the store every Graph request
reads. Each change made on the directory is turned into a ``Write`` (the state the object was left in,
or its removal) and handed to the replica when it becomes readable (``replica.py``); ``apply`` takes it
as the truth, without checks, and records a ``Change`` of its own. So the replica's change log is in the
order changes became readable, and its sequence numbers (what delta tokens hold) count readable changes.
In the kind profile there is one store: the directory is the replica and every change is readable the
moment it is made.

The store also keeps what delta rendering needs beyond the values: which properties were explicitly
cleared (``cleared``: a property set to null is sent as null, one never set may be left out), and which
users' mailboxes an Exchange access policy keeps from the app (``scoped_away``).
"""

from __future__ import annotations

import bisect
import copy
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from simulators.tenants import Tenant

SOFT = "changed"  # @removed reason of a soft delete (restorable)
HARD = "deleted"  # @removed reason of a permanent delete
EVERYTHING = frozenset({"*"})  # a creation or restore: every property counts as changed


@dataclass(frozen=True)
class Change:
    seq: int
    kind: str  # "user" | "group" | "member"
    id: str  # the user or group
    props: frozenset[str] = frozenset()
    removed: str | None = None  # SOFT | HARD for objects
    member_id: str | None = None  # kind "member"
    member_added: bool = False
    restored: bool = False  # a user back from the recycle bin (a $select users delta may hide it)


@dataclass(frozen=True)
class Write:
    """A change made on the directory, as a replica takes it in: the state the object was left in.

    ``kind`` "user" or "group": ``state`` is the whole object after the change (a user's may carry
    ``mailboxSettings``, a group's ``owners``), or None with ``removed``; "member" and "owner": ``other``
    joined (``present``) or left the group ``id``; "mailbox": ``state`` is the user's mailbox settings
    (None: no mailbox)."""

    kind: str
    id: str
    props: frozenset[str] = frozenset()
    state: dict[str, Any] | None = None
    removed: str | None = None
    other: str | None = None
    present: bool = False
    restored: bool = False

    @property
    def touches(self) -> tuple[str, ...]:
        """The objects whose readable state this write moves on (its order is kept per object)."""
        return (self.id,) if self.other is None else (self.id, self.other)


@dataclass
class UserDelta:
    """What one user did since a token: properties touched, and whether it is gone."""

    props: set[str] = field(default_factory=set)
    removed: str | None = None


@dataclass
class GroupDelta:
    props: set[str] = field(default_factory=set)
    removed: str | None = None
    members: dict[str, bool] = field(default_factory=dict)  # member id → present now


class NotFound(KeyError):
    pass


Listener = Callable[[Change], None]


class DirectoryStore:
    """Thread-safe: the HTTP server serves each connection on its own thread."""

    def __init__(self, lock: threading.RLock | None = None) -> None:
        self.lock = lock or threading.RLock()  # shared by a directory and its replica
        self.seq = 0
        self.listeners: list[Listener] = []
        self._reset()

    def _reset(self) -> None:
        self.users: dict[str, dict[str, Any]] = {}
        self.mailboxes: dict[str, dict[str, Any] | None] = {}
        self.groups: dict[str, dict[str, Any]] = {}
        self.members: dict[str, dict[str, None]] = {}  # ordered sets: stable paging
        self.owners: dict[str, dict[str, None]] = {}
        self._soft_deleted: dict[str, tuple[dict[str, Any], list[str]]] = {}
        self._by_upn: dict[str, str] = {}
        self._log: list[Change] = []
        self._seqs: list[int] = []
        self.cleared: dict[str, set[str]] = {}  # object id → properties explicitly set to null
        self.scoped_away: set[str] = set()  # users whose mailbox an access policy keeps from the app

    # loading ---------------------------------------------------------------------------------------
    def load(self, tenant: Tenant) -> None:
        """Replace the directory. Loading is not a change: only an initial delta round reports what was
        loaded. The sequence keeps rising, so tokens from before never line up with the new log."""
        with self.lock:
            self._reset()
            for user in tenant.users:
                self._put_user(copy.deepcopy(user))
            for group in tenant.groups:
                self._put_group(copy.deepcopy(group))
            for group in tenant.groups:
                self.members[group["id"]] = dict.fromkeys(group.get("members", ()))
                self.owners[group["id"]] = dict.fromkeys(group.get("owners", ()))

    def _put_user(self, user: dict[str, Any]) -> None:
        mailbox = user.pop("mailboxSettings", None)
        self.users[user["id"]] = user
        self.mailboxes[user["id"]] = mailbox
        self._by_upn[str(user["userPrincipalName"]).lower()] = user["id"]

    def _put_group(self, group: dict[str, Any]) -> None:
        group.pop("members", None)
        group.pop("owners", None)
        self.groups[group["id"]] = group
        self.members.setdefault(group["id"], {})
        self.owners.setdefault(group["id"], {})

    # reading ---------------------------------------------------------------------------------------
    def find_user(self, ref: str) -> dict[str, Any]:
        """By object id or UPN (case-insensitive, as Graph resolves UPNs)."""
        user_id = ref if ref in self.users else self._by_upn.get(ref.lower())
        if user_id is None or user_id not in self.users:
            raise NotFound(ref)
        return self.users[user_id]

    def find_group(self, group_id: str) -> dict[str, Any]:
        if group_id not in self.groups:
            raise NotFound(group_id)
        return self.groups[group_id]

    def is_soft_deleted(self, user_id: str) -> bool:
        return user_id in self._soft_deleted

    def is_group(self, object_id: str) -> bool:
        return object_id in self.groups

    def odata_type(self, object_id: str) -> str:
        return "#microsoft.graph.group" if object_id in self.groups else "#microsoft.graph.user"

    def groups_of(self, member_id: str) -> list[str]:
        return [g for g, members in self.members.items() if member_id in members]

    def transitive_groups_of(self, member_id: str) -> list[str]:
        seen: dict[str, None] = {}
        frontier = self.groups_of(member_id)
        while frontier:
            group_id = frontier.pop(0)
            if group_id not in seen:
                seen[group_id] = None
                frontier.extend(self.groups_of(group_id))
        return list(seen)

    def transitive_members(self, group_id: str) -> list[str]:
        seen: dict[str, None] = {}
        frontier = list(self.members.get(group_id, ()))
        while frontier:
            member = frontier.pop(0)
            if member not in seen and member != group_id:
                seen[member] = None
                frontier.extend(self.members.get(member, ()))
        return list(seen)

    def changes_since(self, seq: int) -> Iterator[Change]:
        start = bisect.bisect_right(self._seqs, seq)
        yield from self._log[start:]

    def user_deltas(self, since: int, *, hide_restores: bool = False) -> dict[str, UserDelta]:
        """What each user did since ``since``. ``hide_restores``: a restore is not reported, and it nets
        out what the user did before it in the same window (a delete then a restore shows nothing)."""
        deltas: dict[str, UserDelta] = {}
        for change in self.changes_since(since):
            if change.kind == "user" and hide_restores and change.restored:
                deltas.pop(change.id, None)
            elif change.kind == "user":
                delta = deltas.setdefault(change.id, UserDelta())
                delta.props |= change.props
                delta.removed = change.removed
        return deltas

    def group_deltas(self, since: int, group_ids: Iterable[str] | None) -> dict[str, GroupDelta]:
        wanted = None if group_ids is None else set(group_ids)
        deltas: dict[str, GroupDelta] = {}
        for change in self.changes_since(since):
            if change.kind not in ("group", "member") or (wanted is not None and change.id not in wanted):
                continue
            delta = deltas.setdefault(change.id, GroupDelta())
            if change.kind == "member" and change.member_id:
                delta.members[change.member_id] = change.member_added
            else:
                delta.props |= change.props
                delta.removed = change.removed
        return deltas

    # changing --------------------------------------------------------------------------------------
    def _record(self, change_args: dict[str, Any]) -> Change:
        self.seq += 1
        change = Change(seq=self.seq, **change_args)
        self._log.append(change)
        self._seqs.append(change.seq)
        for listener in self.listeners:
            listener(change)
        return change

    def add_user(self, user: dict[str, Any]) -> str:
        with self.lock:
            if user["id"] in self.users or str(user["userPrincipalName"]).lower() in self._by_upn:
                raise ValueError(f"user {user['userPrincipalName']} already exists")
            self._put_user(copy.deepcopy(user))
            self._record({"kind": "user", "id": user["id"], "props": EVERYTHING})
            return str(user["id"])

    def update_user(self, user_id: str, props: dict[str, Any]) -> None:
        with self.lock:
            user = self.find_user(user_id)
            if "mailboxSettings" in props:
                self.mailboxes[user["id"]] = props.pop("mailboxSettings")
            if "userPrincipalName" in props:
                self._by_upn.pop(str(user["userPrincipalName"]).lower(), None)
                self._by_upn[str(props["userPrincipalName"]).lower()] = user["id"]
            changed = {k for k, v in props.items() if user.get(k) != v}
            user.update(copy.deepcopy(props))
            self._note_cleared(user["id"], changed, user)
            if changed:
                self._record({"kind": "user", "id": user["id"], "props": frozenset(changed)})

    def set_mailbox(self, user_id: str, settings: dict[str, Any] | None) -> None:
        """Mailbox settings are not directory properties: no delta reports a change to them."""
        with self.lock:
            self.mailboxes[self.find_user(user_id)["id"]] = settings

    def delete_user(self, user_id: str, *, permanent: bool = False) -> None:
        with self.lock:
            if user_id in self._soft_deleted and permanent:
                del self._soft_deleted[user_id]
                self._record({"kind": "user", "id": user_id, "removed": HARD})
                return
            user = self.find_user(user_id)
            memberships = self.groups_of(user["id"])
            for group_id in memberships:
                self._remove_member(group_id, user["id"])
            del self.users[user["id"]]
            self._by_upn.pop(str(user["userPrincipalName"]).lower(), None)
            if not permanent:
                self._soft_deleted[user["id"]] = (user, memberships)
            self._record({"kind": "user", "id": user["id"], "removed": HARD if permanent else SOFT})

    def restore_user(self, user_id: str) -> None:
        with self.lock:
            user, memberships = self._soft_deleted.pop(user_id)
            self.users[user_id] = user
            self._by_upn[str(user["userPrincipalName"]).lower()] = user_id
            self._record({"kind": "user", "id": user_id, "props": EVERYTHING, "restored": True})
            for group_id in memberships:
                if group_id in self.groups:
                    self._add_member(group_id, user_id)

    def add_group(self, group: dict[str, Any]) -> str:
        with self.lock:
            if group["id"] in self.groups:
                raise ValueError(f"group {group['id']} already exists")
            members, owners = group.get("members", ()), group.get("owners", ())
            self._put_group(copy.deepcopy(group))
            self.owners[group["id"]] = dict.fromkeys(owners)  # before the record: a replica copies them
            self._record({"kind": "group", "id": group["id"], "props": EVERYTHING})
            for member in members:
                self._add_member(group["id"], member)
            return str(group["id"])

    def update_group(self, group_id: str, props: dict[str, Any]) -> None:
        with self.lock:
            group = self.find_group(group_id)
            changed = {k for k, v in props.items() if group.get(k) != v}
            group.update(copy.deepcopy(props))
            self._note_cleared(group_id, changed, group)
            if changed:
                self._record({"kind": "group", "id": group_id, "props": frozenset(changed)})

    def delete_group(self, group_id: str, *, permanent: bool = False) -> None:
        with self.lock:
            self.find_group(group_id)
            for parent in self.groups_of(group_id):
                self._remove_member(parent, group_id)
            del self.groups[group_id]
            self.members.pop(group_id, None)
            self.owners.pop(group_id, None)
            self._record({"kind": "group", "id": group_id, "removed": HARD if permanent else SOFT})

    def add_member(self, group_id: str, member_id: str) -> None:
        with self.lock:
            self.find_group(group_id)
            if member_id not in self.users and member_id not in self.groups:
                raise NotFound(member_id)
            self._add_member(group_id, member_id)

    def remove_member(self, group_id: str, member_id: str) -> None:
        with self.lock:
            self.find_group(group_id)
            if member_id not in self.members[group_id]:
                raise NotFound(member_id)
            self._remove_member(group_id, member_id)

    def _add_member(self, group_id: str, member_id: str) -> None:
        if member_id not in self.members[group_id]:
            self.members[group_id][member_id] = None
            self._record({"kind": "member", "id": group_id, "member_id": member_id, "member_added": True})

    def _remove_member(self, group_id: str, member_id: str) -> None:
        self.members[group_id].pop(member_id, None)
        self._record({"kind": "member", "id": group_id, "member_id": member_id, "member_added": False})

    def add_owner(self, group_id: str, owner_id: str) -> None:
        """Owners are a separate relation: adding one changes no membership and no delta."""
        with self.lock:
            self.find_group(group_id)
            self.owners[group_id][owner_id] = None

    def remove_owner(self, group_id: str, owner_id: str) -> None:
        with self.lock:
            self.find_group(group_id)
            self.owners[group_id].pop(owner_id, None)

    def _note_cleared(self, object_id: str, changed: Iterable[str], state: dict[str, Any]) -> None:
        for name in changed:
            if state.get(name) is None:
                self.cleared.setdefault(object_id, set()).add(name)
            elif name in self.cleared.get(object_id, ()):
                self.cleared[object_id].discard(name)

    # replicating -----------------------------------------------------------------------------------
    def apply(self, write: Write) -> None:
        """A change made on the directory becomes readable here. No checks: the write is the truth, and
        writes arrive per object in the order they were made (``replica.py``)."""
        with self.lock:
            {
                "user": self._apply_user,
                "group": self._apply_group,
                "member": self._apply_member,
                "owner": self._apply_owner,
                "mailbox": self._apply_mailbox,
            }[write.kind](write)

    def _apply_user(self, write: Write) -> None:
        old = self.users.pop(write.id, None)
        if old is not None and self._by_upn.get(str(old["userPrincipalName"]).lower()) == write.id:
            del self._by_upn[str(old["userPrincipalName"]).lower()]
        if write.state is None:
            if write.removed == SOFT and old is not None:
                self._soft_deleted[write.id] = (old, [])
            else:
                self._soft_deleted.pop(write.id, None)
            self._record({"kind": "user", "id": write.id, "removed": write.removed})
            return
        user = copy.deepcopy(write.state)
        if "mailboxSettings" in user:
            self.mailboxes[write.id] = user.pop("mailboxSettings")
        self._soft_deleted.pop(write.id, None)
        self.users[write.id] = user
        self._by_upn[str(user["userPrincipalName"]).lower()] = write.id
        self._note_written(write, user)
        self._record({"kind": "user", "id": write.id, "props": write.props, "restored": write.restored})

    def _apply_group(self, write: Write) -> None:
        if write.state is None:
            for table in (self.groups, self.members, self.owners):
                table.pop(write.id, None)
            self._record({"kind": "group", "id": write.id, "removed": write.removed})
            return
        group = copy.deepcopy(write.state)
        owners = group.pop("owners", None)
        self._put_group(group)
        if owners is not None:
            self.owners[write.id] = dict.fromkeys(owners)
        self._note_written(write, group)
        self._record({"kind": "group", "id": write.id, "props": write.props})

    def _note_written(self, write: Write, state: dict[str, Any]) -> None:
        if write.props == EVERYTHING and not write.restored:
            self.cleared.pop(write.id, None)
        else:
            self._note_cleared(write.id, write.props, state)

    def _apply_member(self, write: Write) -> None:
        members = self.members.get(write.id)
        if members is None or write.other is None:
            return  # the group is gone from this replica: so is the membership
        if write.present:
            members[write.other] = None
        else:
            members.pop(write.other, None)
        self._record(
            {"kind": "member", "id": write.id, "member_id": write.other, "member_added": write.present}
        )

    def _apply_owner(self, write: Write) -> None:
        owners = self.owners.get(write.id)
        if owners is None or write.other is None:
            return
        if write.present:
            owners[write.other] = None
        else:
            owners.pop(write.other, None)

    def _apply_mailbox(self, write: Write) -> None:
        self.mailboxes[write.id] = copy.deepcopy(write.state)
