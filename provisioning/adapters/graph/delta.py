"""Delta pages (raw Graph JSON) → domain changes, and the cursors that resume them. No I/O here.

Why raw JSON and not the SDK's models: deserialising a 200-user users-delta page into kiota ``User``
models took about 825 ms here (≈4 ms per user, over three minutes for 50,000 users), ``json.loads`` of
the same page about 0.5 ms. The bulk path therefore asks the SDK for the native response
(``ResponseHandlerOption(NativeResponseHandler())``) and maps the JSON itself, which also keeps the
Graph property names the mappings use and avoids kiota's GUID/date coercion in ``additional_data``.
``python -m bench.graph`` prints both figures.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from provisioning.domain.accounts import EntraAccount
from provisioning.domain.directory import MembershipChange, UserChange, UserRemoved
from provisioning.errors import CursorExpired

IDENTITY_FIELDS = ("id", "userPrincipalName", "mail", "displayName", "userType", "accountEnabled")
CURSOR_VERSION = 1


def user_select(requested: Iterable[str]) -> list[str]:
    """The ``$select`` of a users read: identity fields first, then the requested properties by their
    top-level Graph name (``onPremisesExtensionAttributes.extensionAttribute1`` selects the whole
    ``onPremisesExtensionAttributes``), each once."""
    names = dict.fromkeys(IDENTITY_FIELDS)
    for name in requested:
        names[name.split(".", 1)[0]] = None
    return list(names)


def _removal_reason(marker: Any) -> str | None:
    return marker.get("reason") if isinstance(marker, Mapping) else (str(marker) if marker else None)


def user_change(item: Mapping[str, Any]) -> UserChange:
    """One users-delta object. ``@removed`` reason ``deleted`` is permanent, ``changed`` a soft delete."""
    if "@removed" in item:
        return UserRemoved(str(item["id"]), permanent=_removal_reason(item["@removed"]) == "deleted")
    return account(item)


def account(item: Mapping[str, Any]) -> EntraAccount:
    """A user object as Graph sent it. ``attributes`` keeps every selected property by its Graph name.
    A missing ``accountEnabled`` counts as enabled (Graph omits it only when it was not selected); a
    missing ``userType`` stays None, which the planner treats as "not a member": a guest must never be
    provisioned because a property was missing."""
    attributes = {k: v for k, v in item.items() if not k.startswith("@")}
    display_name, mail, user_type = item.get("displayName"), item.get("mail"), item.get("userType")
    return EntraAccount(
        id=str(item["id"]),
        user_principal_name=str(item.get("userPrincipalName") or ""),
        display_name=str(display_name) if display_name is not None else None,
        mail=str(mail) if mail is not None else None,
        user_type=str(user_type) if user_type is not None else None,
        account_enabled=item.get("accountEnabled") is not False,
        attributes=attributes,
    )


# users cursor ------------------------------------------------------------------------------------------
def users_cursor(delta_link: str, select: Sequence[str]) -> str:
    """The deltaLink, with the ``$select`` it was taken with: a cursor cannot serve a wider select."""
    return json.dumps({"v": CURSOR_VERSION, "select": sorted(select), "deltaLink": delta_link})


def users_delta_link(cursor: str, select: Sequence[str]) -> str:
    """The deltaLink to resume from. Raises ``CursorExpired`` when the cursor is unreadable or was taken
    for fewer properties than now requested (Graph would neither return nor track the new ones)."""
    try:
        data = json.loads(cursor)
        link, taken = str(data["deltaLink"]), set(data["select"])
    except (ValueError, KeyError, TypeError):
        raise CursorExpired("the users cursor is unreadable: a full read is needed") from None
    missing = sorted(set(select) - taken)
    if missing:
        raise CursorExpired(f"the users cursor does not track {', '.join(missing)}: a full read is needed")
    return link


# membership cursor -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GroupsLink:
    """One groups-delta round's deltaLink and the groups it is kept for (at most the filter limit)."""

    groups: frozenset[str]
    link: str


def membership_cursor(links: Sequence[GroupsLink]) -> str:
    return json.dumps(
        {"v": CURSOR_VERSION, "links": [{"groups": sorted(x.groups), "deltaLink": x.link} for x in links]}
    )


def membership_links(cursor: str | None) -> list[GroupsLink]:
    if cursor is None:
        return []
    try:
        data = json.loads(cursor)
        return [GroupsLink(frozenset(map(str, x["groups"])), str(x["deltaLink"])) for x in data["links"]]
    except (ValueError, KeyError, TypeError):
        raise CursorExpired("the membership cursor is unreadable: a full read is needed") from None


@dataclass
class GroupsPage:
    """A groups-delta page reduced to what the membership index needs, for the groups asked about."""

    changes: list[MembershipChange]
    removed_groups: set[str]
    seen_groups: set[str]


def groups_page(items: Iterable[Mapping[str, Any]], wanted: frozenset[str]) -> GroupsPage:
    """Direct members only (``members@delta``; owners are never selected). A group may appear several
    times, each with another chunk of its members: every chunk is just more changes."""
    page = GroupsPage([], set(), set())
    for item in items:
        group_id = str(item["id"])
        if group_id not in wanted:
            continue
        if "@removed" in item:
            page.removed_groups.add(group_id)
            continue
        page.seen_groups.add(group_id)
        for member in item.get("members@delta") or ():
            odata_type = str(member.get("@odata.type") or "").lower()
            page.changes.append(
                MembershipChange(
                    group_id=group_id,
                    member_id=str(member["id"]),
                    member_is_group=odata_type.endswith(".group"),
                    removed="@removed" in member,
                )
            )
    return page
