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
from datetime import UTC, datetime
from typing import Any

from provisioning.domain.accounts import EntraAccount
from provisioning.domain.directory import MembershipChange, UserChange, UserRemoved
from provisioning.errors import CursorExpired

# creationType tells an invited guest whose userType was never set; createdDateTime, a new account.
IDENTITY_FIELDS = (
    "id",
    "userPrincipalName",
    "mail",
    "displayName",
    "userType",
    "accountEnabled",
    "creationType",
    "createdDateTime",
)
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
    Delta leaves out what was never set, and a new account arrives as a skeleton: a missing
    ``accountEnabled`` stays None (read again before any write, never taken as enabled), a missing
    ``userType`` stays None (the planner's member rule decides), a missing ``createdDateTime`` too."""
    attributes = {k: v for k, v in item.items() if not k.startswith("@")}
    display_name, mail, user_type = item.get("displayName"), item.get("mail"), item.get("userType")
    enabled = item.get("accountEnabled")
    return EntraAccount(
        id=str(item["id"]),
        user_principal_name=str(item.get("userPrincipalName") or ""),
        display_name=str(display_name) if display_name is not None else None,
        mail=str(mail) if mail is not None else None,
        user_type=str(user_type) if user_type is not None else None,
        account_enabled=enabled if isinstance(enabled, bool) else None,
        attributes=attributes,
        created_at=_moment(item.get("createdDateTime")),
    )


def _moment(value: Any) -> datetime | None:
    """An ISO 8601 time as Graph writes it ("Z", up to 7 fractional digits), or None."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip().replace("Z", "+00:00")
    head, dot, rest = text.partition(".")
    if dot:  # Python reads at most 6 fractional digits
        digits = "".join(c for c in rest if c.isdigit())
        text = f"{head}.{digits[:6]}{rest[len(digits) :]}"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


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
