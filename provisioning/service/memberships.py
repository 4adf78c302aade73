"""Membership of the mapped groups during one pass: what the store knew, plus what Graph just said.

A full pass reads every tracked group from the start, so its index is built from the pass alone. An
incremental pass only sees changes; the membership of an account is then the stored one with this
pass's changes on top, read per account (no loading of the whole index on the hot path).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from provisioning.domain.accounts import object_id_problem
from provisioning.domain.directory import MembershipChange, MembershipPage
from provisioning.domain.groups import MembershipIndex, MembershipPlan, plan_memberships
from provisioning.domain.mappings import Policy
from provisioning.ports import Directory, StateStore


@dataclass
class MembershipPass:
    """The changes one pass read, in order, with the groups it read in full or found deleted."""

    cursor: str | None = None
    changes: list[MembershipChange] = field(default_factory=list)
    reset: set[str] = field(default_factory=set)
    removed: set[str] = field(default_factory=set)
    seen: set[str] = field(default_factory=set)

    def add(self, page: MembershipPage) -> None:
        # A member whose id cannot be an object id is left out: it could never be decided, and its
        # membership row would refuse the whole index write.
        self.changes.extend(c for c in page.changes if object_id_problem(c.member_id) is None)
        self.reset |= page.reset_groups
        self.removed |= page.removed_groups
        self.seen |= page.seen_groups
        self.cursor = page.cursor or self.cursor

    def groups_seen(self) -> set[str]:
        """Every group this pass's reads returned, and each membership change as ``group:member``: a
        change notification about one of them is answered."""
        members = {f"{c.group_id}:{c.member_id}" for c in self.changes}
        return self.seen | self.reset | self.removed | {c.group_id for c in self.changes} | members

    @property
    def structural(self) -> bool:
        """Whether whole groups were (re)read or dropped, or nesting changed: then a per-account view is
        not enough to know who was affected."""
        return bool(self.reset or self.removed or any(c.member_is_group for c in self.changes))

    def plan(self) -> MembershipPlan:
        """What this pass's changes do to the stored index (``StateStore.apply_memberships``)."""
        return plan_memberships(self.changes, self.reset, self.removed)

    def apply_to(self, index: MembershipIndex) -> MembershipIndex:
        return index.applying(self.plan())

    def members_touched(self) -> set[str]:
        return {c.member_id for c in self.changes if not c.member_is_group}


def tracked_groups(policy: Policy, index: MembershipIndex) -> frozenset[str]:
    """The groups mappings name, plus every group nested in one that a ``nested: true`` mapping names."""
    nested = frozenset(d for g in policy.nested_group_ids for d in index.descendant_groups(g))
    return policy.group_ids | nested


async def read_memberships(
    directory: Directory, policy: Policy, cursor: str | None, known: MembershipIndex
) -> tuple[MembershipPass, MembershipIndex]:
    """Read membership changes; when nesting reveals new subgroups, read those too until closed.

    ``known`` is what the store holds (empty for a full pass). Returns the pass and the index after it.
    """
    membership = MembershipPass(cursor)
    groups = tracked_groups(policy, known)
    while True:
        async for page in directory.read_memberships(membership.cursor, sorted(groups)):
            membership.add(page)
        after = membership.apply_to(known)
        wider = tracked_groups(policy, after)
        if wider <= groups:
            return membership, after
        groups = wider


class MembershipView:
    """Direct and transitive groups of one account as this pass sees them."""

    def __init__(self, state: StateStore, membership: MembershipPass, index: MembershipIndex | None) -> None:
        self._state, self._pass, self._index = state, membership, index
        self._edges: dict[
            tuple[str, bool], list[tuple[str, bool]]
        ] = {}  # (member, is group) → (group, present)
        for edge in membership.plan().edges:
            self._edges.setdefault((edge.member_id, edge.member_is_group), []).append(
                (edge.group_id, not edge.removed)
            )
        self._parents: dict[str, frozenset[str]] = {}

    async def groups_of(self, account_id: str, *, nested: bool) -> tuple[frozenset[str], frozenset[str]]:
        if self._index is not None:
            direct = self._index.direct_groups_of(account_id)
            return direct, self._index.transitive_groups_of(account_id) if nested else direct
        direct = await self._direct(account_id, is_group=False)
        return direct, await self._transitive(direct) if nested else direct

    async def _direct(self, member_id: str, *, is_group: bool) -> frozenset[str]:
        if is_group and member_id in self._parents:
            return self._parents[member_id]
        stored = await self._state.memberships_of(member_id)
        dropped = self._pass.reset | self._pass.removed
        groups = {g for g in stored if g not in dropped}
        for group_id, present in self._edges.get((member_id, is_group), ()):
            (groups.add if present else groups.discard)(group_id)
        result = frozenset(groups)
        if is_group:
            self._parents[member_id] = result
        return result

    async def _transitive(self, direct: Iterable[str]) -> frozenset[str]:
        seen: set[str] = set()
        frontier = list(direct)
        while frontier:
            group_id = frontier.pop()
            if group_id not in seen:
                seen.add(group_id)
                frontier.extend(await self._direct(group_id, is_group=True))
        return frozenset(seen)


def affected_accounts(
    before: MembershipIndex, after: MembershipIndex, candidates: Collection[str]
) -> set[str]:
    """Accounts whose direct or transitive groups differ between two indexes."""
    everyone = {m for ms in (*before.members.values(), *after.members.values()) for m in ms} | set(candidates)
    return {
        account_id
        for account_id in everyone
        if before.direct_groups_of(account_id) != after.direct_groups_of(account_id)
        or before.transitive_groups_of(account_id) != after.transitive_groups_of(account_id)
    }
