"""Entra groups: what kind each is, and who is a member of which.

Only members count. Owners are a separate relation in Entra and never reach the membership index, so an
owner who is not also a member never matches a group mapping (Druva's documented behaviour).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from provisioning.domain.directory import MembershipChange


class GroupKind(StrEnum):
    MICROSOFT_365 = "microsoft_365"
    SECURITY = "security"
    DISTRIBUTION = "distribution"
    MAIL_ENABLED_SECURITY = "mail_enabled_security"

    @property
    def label(self) -> str:
        return _LABELS[self]


_LABELS = {
    GroupKind.MICROSOFT_365: "Microsoft 365",
    GroupKind.SECURITY: "Security",
    GroupKind.DISTRIBUTION: "Distribution",
    GroupKind.MAIL_ENABLED_SECURITY: "Mail-enabled security",
}


def classify_group(
    group_types: Iterable[str], mail_enabled: bool, security_enabled: bool
) -> GroupKind | None:
    """Graph's groups-overview table; ``None`` for a combination no supported kind has."""
    if "Unified" in group_types:
        return GroupKind.MICROSOFT_365
    if security_enabled:
        return GroupKind.MAIL_ENABLED_SECURITY if mail_enabled else GroupKind.SECURITY
    if mail_enabled:
        return GroupKind.DISTRIBUTION
    return None


@dataclass(frozen=True)
class EntraGroup:
    id: str
    display_name: str
    kind: GroupKind | None

    @property
    def supported(self) -> bool:
        return self.kind is not None

    def describe(self) -> str:
        kind = self.kind.label if self.kind else "unsupported type"
        return f"{self.display_name} ({kind}, {self.id})"


@dataclass(frozen=True)
class MembershipIndex:
    """Direct membership of the groups that mappings name (and, for nested mappings, of the groups
    nested inside them). ``members`` holds member accounts, ``subgroups`` the groups that are members."""

    members: Mapping[str, frozenset[str]] = field(default_factory=dict)
    subgroups: Mapping[str, frozenset[str]] = field(default_factory=dict)
    _account_parents: dict[str, tuple[str, ...]] = field(init=False, repr=False, compare=False)
    _group_parents: dict[str, tuple[str, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_account_parents", _invert(self.members))
        object.__setattr__(self, "_group_parents", _invert(self.subgroups))

    @classmethod
    def from_edges(cls, edges: Iterable[tuple[str, str, bool]]) -> MembershipIndex:
        """The one builder: (group, member, member is a group) edges, as every store and pass holds them."""
        members: dict[str, set[str]] = {}
        subgroups: dict[str, set[str]] = {}
        for group_id, member_id, is_group in edges:
            (subgroups if is_group else members).setdefault(group_id, set()).add(member_id)
        return cls(
            members={group: frozenset(ids) for group, ids in members.items()},
            subgroups={group: frozenset(ids) for group, ids in subgroups.items()},
        )

    def edges(self) -> Iterable[tuple[str, str, bool]]:
        for is_group, source in ((False, self.members), (True, self.subgroups)):
            for group_id, ids in source.items():
                yield from ((group_id, member_id, is_group) for member_id in ids)

    def applying(self, plan: MembershipPlan) -> MembershipIndex:
        """This index with ``plan`` applied, as ``StateStore.apply_memberships`` applies it."""
        kept = {
            (group_id, member_id, is_group)
            for group_id, member_id, is_group in self.edges()
            if group_id not in plan.forget and member_id not in plan.vanished
        }
        for edge in plan.edges:
            found = (edge.group_id, edge.member_id, edge.member_is_group)
            kept.discard(found) if edge.removed else kept.add(found)
        return MembershipIndex.from_edges(kept)

    def direct_groups_of(self, account_id: str) -> frozenset[str]:
        return frozenset(self._account_parents.get(account_id, ()))

    def transitive_groups_of(self, account_id: str) -> frozenset[str]:
        """Every group reachable upwards through member-of edges; cycles are tolerated."""
        seen: set[str] = set()
        frontier = list(self._account_parents.get(account_id, ()))
        while frontier:
            group_id = frontier.pop()
            if group_id not in seen:
                seen.add(group_id)
                frontier.extend(self._group_parents.get(group_id, ()))
        return frozenset(seen)

    def descendant_groups(self, group_id: str) -> frozenset[str]:
        """Groups nested at any depth inside ``group_id``, as far as the index knows them."""
        seen: set[str] = set()
        frontier = [group_id]
        while frontier:
            for child in self.subgroups.get(frontier.pop(), ()):
                if child not in seen and child != group_id:
                    seen.add(child)
                    frontier.append(child)
        return frozenset(seen)


@dataclass(frozen=True)
class MembershipPlan:
    """What applying a pass's membership changes means, worked out once for the stores and the pass.

    ``forget``: groups whose own member list is dropped (reset and removed). ``vanished``: removed
    groups, which are also no longer members of any other group. ``edges``: the net effect of the
    changes on each (group, member) pair, applied in order, so only the last change of a pair counts.
    """

    forget: frozenset[str]
    vanished: frozenset[str]
    edges: tuple[MembershipChange, ...]

    @property
    def added(self) -> list[MembershipChange]:
        return [edge for edge in self.edges if not edge.removed]

    @property
    def removed(self) -> list[MembershipChange]:
        return [edge for edge in self.edges if edge.removed]


def plan_memberships(
    changes: Iterable[MembershipChange], reset_groups: Collection[str], removed_groups: Collection[str]
) -> MembershipPlan:
    last: dict[tuple[str, str], MembershipChange] = {}
    for change in changes:
        last[(change.group_id, change.member_id)] = change
    return MembershipPlan(
        forget=frozenset(reset_groups) | frozenset(removed_groups),
        vanished=frozenset(removed_groups),
        edges=tuple(last.values()),
    )


def _invert(edges: Mapping[str, frozenset[str]]) -> dict[str, tuple[str, ...]]:
    parents: dict[str, list[str]] = {}
    for parent, children in edges.items():
        for child in children:
            parents.setdefault(child, []).append(parent)
    # Tuples, not sets: one per member of a mapped group, and a tuple of a few ids is a third the size.
    return {child: tuple(found) for child, found in parents.items()}
