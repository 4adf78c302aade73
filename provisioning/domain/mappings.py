"""Mappings: which Entra accounts go to which Druva profile, storage and quota, and in what priority.

A mapping matches by group membership, by one attribute's value, or everyone; each accepts account
kinds (users by default, shared mailboxes only when asked). Priority is list order: the first mapping
that matches wins, and the evaluation keeps the reason of every mapping it looked at.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping as MappingABC
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property
from typing import Any

from provisioning.domain.accounts import AccountKind, EntraAccount, UserIdAttribute
from provisioning.domain.quota import Quota


@dataclass(frozen=True)
class Target:
    """Where a mapping sends an account in Druva. ``quota`` None means the profile's default."""

    profile: str
    storage: str
    quota: Quota | None = None

    def describe(self) -> str:
        quota = "profile default" if self.quota is None else str(self.quota)
        return f"profile {self.profile}, storage {self.storage}, quota {quota}"


@dataclass(frozen=True)
class GroupRef:
    """A group a mapping names, resolved to its object id."""

    id: str
    display_name: str


@dataclass(frozen=True)
class GroupMatch:
    groups: tuple[GroupRef, ...]
    nested: bool = False


@dataclass(frozen=True)
class AttributeMatch:
    attribute: str
    values: tuple[str, ...]
    ignore_case: bool = False


@dataclass(frozen=True)
class AllMatch:
    pass


Match = GroupMatch | AttributeMatch | AllMatch


@dataclass(frozen=True)
class Mapping:
    name: str
    match: Match
    target: Target
    kinds: frozenset[AccountKind] = frozenset({AccountKind.USER})
    adopt_existing: bool | None = None  # None: the policy-wide default


@dataclass(frozen=True)
class MappingCheck:
    """One mapping looked at for one account: did it match, and why (not)."""

    mapping: str
    priority: int
    matched: bool
    reason: str

    def describe(self) -> str:
        verdict = "matched" if self.matched else "no match"
        return f"#{self.priority} {self.mapping}: {verdict}: {self.reason}"


class Retire(StrEnum):
    PRESERVE = "preserve"
    IGNORE = "ignore"


class Remap(StrEnum):
    UPDATE = "update"
    IGNORE = "ignore"


@dataclass(frozen=True)
class Lifecycle:
    disabled: Retire = Retire.PRESERVE
    deleted: Retire = Retire.PRESERVE
    unmapped: Retire = Retire.PRESERVE
    remap: Remap = Remap.UPDATE


@dataclass(frozen=True)
class Policy:
    """Everything the planner needs from the admin's configuration, with groups resolved."""

    mappings: tuple[Mapping, ...]
    lifecycle: Lifecycle = Lifecycle()
    user_id_attribute: UserIdAttribute = UserIdAttribute.USER_PRINCIPAL_NAME
    adopt_existing: bool = True
    max_preserve_fraction: float = 0.1
    # How long a new Entra account settles before it is created in Druva (0: at once). Not part of the
    # fingerprint: it changes when an account is created, never what an existing one should be.
    settle_seconds: float = 0.0

    def adopts(self, mapping: Mapping) -> bool:
        return self.adopt_existing if mapping.adopt_existing is None else mapping.adopt_existing

    def fingerprint(self) -> str:
        """Changes whenever a decision could: mappings (order included), targets, lifecycle, identity.
        A pass under a policy other than the last one's re-reads everyone instead of the delta."""
        return self._fingerprint

    # Worked out once: a policy is immutable, and an instance keeps one for 30 minutes of passes.
    @cached_property
    def _fingerprint(self) -> str:
        deciding = (self.mappings, self.lifecycle, self.user_id_attribute, self.adopt_existing)
        return hashlib.sha256(repr(_canonical(deciding)).encode()).hexdigest()[:16]

    @cached_property
    def attributes(self) -> frozenset[str]:
        """Top-level Graph properties the attribute mappings read (what a ``$select`` must ask for)."""
        return frozenset(
            m.match.attribute.split(".")[0] for m in self.mappings if isinstance(m.match, AttributeMatch)
        )

    @cached_property
    def group_ids(self) -> frozenset[str]:
        return frozenset(
            ref.id for m in self.mappings if isinstance(m.match, GroupMatch) for ref in m.match.groups
        )

    @cached_property
    def nested_group_ids(self) -> frozenset[str]:
        return frozenset(
            ref.id
            for m in self.mappings
            if isinstance(m.match, GroupMatch) and m.match.nested
            for ref in m.match.groups
        )


def _canonical(value: Any) -> Any:
    """A repr that does not depend on set iteration order (string hashing is randomised per process)."""
    if isinstance(value, (frozenset, set)):
        return tuple(sorted(repr(_canonical(v)) for v in value))
    if isinstance(value, tuple):
        return tuple(_canonical(v) for v in value)
    if hasattr(value, "__dataclass_fields__"):
        return (type(value).__name__, *(_canonical(getattr(value, f)) for f in value.__dataclass_fields__))
    return repr(value)


def evaluate(
    account: EntraAccount, mappings: Sequence[Mapping]
) -> tuple[Mapping | None, tuple[MappingCheck, ...]]:
    """First match wins. Returns the winner (or None) and the checks of every mapping up to it."""
    checks: list[MappingCheck] = []
    for priority, mapping in enumerate(mappings, start=1):
        matched, reason = check(mapping, account)
        checks.append(MappingCheck(mapping.name, priority, matched, reason))
        if matched:
            return mapping, tuple(checks)
    return None, tuple(checks)


def check(mapping: Mapping, account: EntraAccount) -> tuple[bool, str]:
    if account.kind not in mapping.kinds:
        accepted = ", ".join(sorted(mapping.kinds))
        return False, f"account is a {account.kind.value}; this mapping takes {accepted}"
    match mapping.match:
        case GroupMatch():
            return _check_groups(mapping.match, account)
        case AttributeMatch():
            return _check_attribute(mapping.match, account)
        case AllMatch():
            return True, f"takes every {account.kind.value}"


def _check_groups(match: GroupMatch, account: EntraAccount) -> tuple[bool, str]:
    memberships = account.transitive_member_of if match.nested else account.member_of
    relation = "member (direct or nested)" if match.nested else "direct member"
    for ref in match.groups:
        if ref.id in memberships:
            return True, f"{relation} of {ref.display_name}"
    names = ", ".join(ref.display_name for ref in match.groups)
    return False, f"not a {relation} of {names}"


def _check_attribute(match: AttributeMatch, account: EntraAccount) -> tuple[bool, str]:
    found = attribute_texts(account.attribute(match.attribute))
    wanted = ", ".join(repr(v) for v in match.values)
    if not found:
        return False, f"{match.attribute} is empty; wanted one of {wanted}"
    fold = str.casefold if match.ignore_case else _same
    expected = {fold(v) for v in match.values}
    for value in found:
        if fold(value) in expected:
            how = " (ignoring case)" if match.ignore_case else ""
            return True, f"{match.attribute} is {value!r}{how}"
    shown = ", ".join(repr(v) for v in found)
    return False, f"{match.attribute} is {shown}, not one of {wanted}"


def _same(text: str) -> str:
    return text


def attribute_texts(value: Any) -> tuple[str, ...]:
    """Graph values as the texts an admin writes: booleans as true/false, lists element by element."""
    if value is None:
        return ()
    if isinstance(value, bool):
        return ("true" if value else "false",)
    if isinstance(value, (list, tuple, set, frozenset)):
        return tuple(text for item in value for text in attribute_texts(item))
    if isinstance(value, MappingABC):
        return ()
    return (str(value),) if str(value) != "" else ()
