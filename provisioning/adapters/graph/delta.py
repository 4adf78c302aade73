"""Delta pages (raw Graph JSON) → domain changes, the cursors that resume them, and the rules every
link Graph sends must keep before it is followed or kept (``LinkGuard``). No I/O here.

Why raw JSON and not the SDK's models: deserialising a 200-user users-delta page into kiota ``User``
models took about 825 ms here (≈4 ms per user, over three minutes for 50,000 users), ``json.loads`` of
the same page about 0.5 ms. The bulk path therefore asks the SDK for the native response
(``ResponseHandlerOption(NativeResponseHandler())``) and maps the JSON itself, which also keeps the
Graph property names the mappings use and avoids kiota's GUID/date coercion in ``additional_data``.
``python -m bench.graph`` prints both figures.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from provisioning.domain.accounts import EntraAccount
from provisioning.domain.directory import MembershipChange, UserChange, UserRemoved
from provisioning.errors import CursorExpired, PagingStopped

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


# links: on Graph's origin, each followed once, within bounds ---------------------------------------
@dataclass(frozen=True)
class ReadBounds:
    """How far one read may go: one chain of ``@odata.nextLink`` from its first request to its last
    page (a users delta round, one groups delta round of up to 50 groups, one list).

    Pages: Entra allows a directory of at most 50,000,000 objects, and Graph chooses the page size
    (about 200 users a page for users delta, by the docs maintainers; not a promise). Reading every
    object of the largest directory Entra allows, all of them users, at 200 a page takes 250,000 pages,
    which is 50 times what a 1,000,000-user tenant (well above the few hundred thousand of a large one)
    needs: no legitimate read comes near it, while a link that is new every time ends there.

    Time: a full read of a 1,000,000-user tenant is 5,000 pages; at Graph's usual few hundred ms a page,
    and with the pass deciding each page before asking for the next (counted here: this is wall-clock
    time since the read began), it takes well under an hour. Three hours leaves room for throttling
    waits and a slow day, and ends a read that keeps Graph busy without ever finishing. A page that
    never comes is ended sooner, by the request timeout."""

    pages: int = 250_000
    seconds: float = 3 * 3600.0

    def __post_init__(self) -> None:
        if self.pages < 1 or self.seconds <= 0:
            raise ValueError(f"a read must be allowed some pages and some time, not {self}")


Origin = tuple[str, str, int]
_DEFAULT_PORTS = {"https": 443, "http": 80}


def origin(url: str) -> Origin | None:
    """(scheme, host, port) of an absolute URL, the scheme's default port filled in; None when the URL
    has no such origin (relative, or a port that is not a number)."""
    try:
        parts = urlsplit(url)
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme.lower())
    except ValueError:
        return None
    if not parts.hostname or port is None:
        return None
    return parts.scheme.lower(), parts.hostname.lower(), port


def shown_origin(found: Origin | None) -> str:
    return f"{found[0]}://{found[1]}:{found[2]}" if found else "no origin"


def shown_link(link: str) -> str:
    """A link as an error message may show it: where it points and the start of its query. Skip and
    delta tokens run to hundreds of characters and are the read's state, so never in full."""
    parts = urlsplit(link)
    query = f"?{parts.query[: min(24, len(parts.query) // 2)]}…" if parts.query else ""
    return f"{parts.path}{query}"


def on_graph(link: str, graph: Origin | None) -> bool:
    """Whether a link Graph sent points back to ``GRAPH_API_URL``'s origin: the same scheme, host and
    port, nothing less. Another host gets no token (the SDK gives one to the Graph host only), so
    following its link fails every later pass with 401 once it is kept as a cursor, and it learns the
    read's state. The same host over ``http`` when Graph is configured over ``https`` is refused too: a
    downgrade would carry the bearer token and the directory in clear. Over ``http`` only when
    ``GRAPH_API_URL`` itself is (the local simulators), and then on exactly its host and port."""
    return graph is not None and origin(link) == graph


class LinkGuard:
    """The links of one read: each on Graph's origin, none followed twice, within ``ReadBounds``.

    A link seen before in the same read (the one just followed, or any earlier: A→B→A) means Graph's
    paging goes round in a circle and would never end. Links are kept as 16-byte digests, not as their
    text (hundreds of characters each): about 0.6 MB for the 5,000 pages of a 1,000,000-user read,
    30 MB at most, at the page bound."""

    def __init__(
        self,
        action: str,
        graph_url: str,
        bounds: ReadBounds,
        *,
        start: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._action, self._bounds, self._clock = action, bounds, clock
        self._graph = origin(graph_url)
        self._started = clock()
        self._pages = 0
        self._seen: dict[bytes, int] = {}  # link digest → the page whose request it was
        if start is not None:
            self._seen[_digest(start)] = 1

    def page_read(self) -> None:
        self._pages += 1

    def follow(self, link: str) -> str:
        """``link`` (an ``@odata.nextLink``), once it is known to be safe to follow; else PagingStopped."""
        self._refuse_off_graph("@odata.nextLink", link)
        digest = _digest(link)
        if digest in self._seen:
            raise PagingStopped(
                f"{self._action}: the @odata.nextLink of page {self._pages:,} ({shown_link(link)}) is the "
                f"link page {self._seen[digest]:,} of this read was read from: Graph's paging goes round "
                "in a circle, so the read was stopped and no cursor kept from it"
            )
        self._within_bounds()
        self._seen[digest] = self._pages + 1
        return link

    def keep(self, delta_link: str) -> str:
        """``delta_link`` (an ``@odata.deltaLink``), once it is known to be safe to keep as a cursor."""
        self._refuse_off_graph("@odata.deltaLink", delta_link)
        return delta_link

    def _refuse_off_graph(self, kind: str, link: str) -> None:
        if not on_graph(link, self._graph):
            raise PagingStopped(
                f"{self._action}: refused an {kind} to {shown_origin(origin(link))}, which is not "
                f"GRAPH_API_URL's origin {shown_origin(self._graph)}; it was neither followed nor kept "
                "as a cursor"
            )

    def _within_bounds(self) -> None:
        if self._pages >= self._bounds.pages:
            raise PagingStopped(
                f"{self._action}: stopped after {self._pages:,} pages, the most one read may take: "
                "Graph's paging is not ending, so the read was stopped and no cursor kept from it"
            )
        elapsed = self._clock() - self._started
        if elapsed > self._bounds.seconds:
            raise PagingStopped(
                f"{self._action}: stopped after {elapsed:,.1f} s and {self._pages:,} pages, longer than "
                f"one read may take ({self._bounds.seconds:,g} s), so the read was stopped and no "
                "cursor kept from it"
            )


def _digest(link: str) -> bytes:
    return hashlib.blake2b(link.encode(), digest_size=16).digest()


def resumable(link: str, graph_url: str, cursor: str) -> str:
    """A link kept in a cursor, if it still points at ``GRAPH_API_URL``'s origin. One that does not (kept
    by an older version, or before ``GRAPH_API_URL`` changed) is never followed: the cursor is as good
    as expired, and a full read makes a new one."""
    if not on_graph(link, origin(graph_url)):
        raise CursorExpired(
            f"the {cursor} cursor holds a link to {shown_origin(origin(link))}, not to GRAPH_API_URL's "
            f"origin {shown_origin(origin(graph_url))}: a full read is needed"
        )
    return link
