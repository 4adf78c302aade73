"""Delta queries on users and groups: rounds cut when they start, paged with ``$skiptoken``, ending in a
``$deltatoken`` that carries the query; 410 ``syncStateNotFound`` for a token from before
``expire()`` or one left unused longer than Graph keeps a sync state.

What the production profile adds (``GraphRealism``): a round sends an object a second time, on a later
page or the same one, with probability ``delta_repeat`` ("the same entity can appear multiple times in
one sync round"); with ``omit_unset`` the objects leave out properties that were never set instead of
sending null (one explicitly cleared is still sent as null); with ``restored_hidden`` a user restored
from the recycle bin is not reported by a users round that has ``$select`` (unless it is filtered by id).
"""

from __future__ import annotations

import random
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from simulators.graph.pages import PageSizes, render_group, render_user
from simulators.graph.store import SOFT, DirectoryStore
from simulators.graph.wire import GraphRoute, base_url, decode, encode, error, selected
from simulators.http import Request, Response
from simulators.realism import GraphRealism

MAX_FILTER_IDS = 50
DELTA_LINK_LIFETIME_SECONDS = 7 * 24 * 3600  # an unused delta link of users or groups: 410 after 7 days
MAX_OPEN_ROUNDS = 64  # abandoned rounds beyond this: their skiptokens expire
_ID_EQ = re.compile(r"^\s*id\s+eq\s+'([^']+)'\s*$", re.IGNORECASE)

Item = tuple[str, str | None, list[tuple[str, bool]] | None]  # id, removed, member changes


@dataclass
class _Round:
    """One delta round, cut when it starts; pages are rendered from the live directory when served."""

    kind: str  # users | groups
    items: list[Item]
    end_seq: int
    select: tuple[str, ...] | None
    filter: tuple[str, ...] | None
    generation: int


@dataclass
class _Token:
    kind: str
    seq: int
    generation: int
    select: tuple[str, ...] | None = None
    filter: tuple[str, ...] | None = None


class _Gone(Exception):
    """A delta or skip token that is unknown, from another round, or from before expire()."""


class DeltaQueries:
    def __init__(
        self,
        store: DirectoryStore,
        sizes: PageSizes,
        clock: Callable[[], datetime],
        realism: GraphRealism | None = None,
        draws: random.Random | None = None,
    ) -> None:
        self.store = store
        self.sizes = sizes
        self.clock = clock
        self.realism = realism or GraphRealism()
        self._draws = draws or random.Random(0)  # which objects a round repeats, and where
        self.generation = 0
        self._rounds: OrderedDict[str, _Round] = OrderedDict()
        self._round_counter = 0
        self._lock = threading.Lock()

    def routes(self) -> list[GraphRoute]:
        return [
            GraphRoute("GET", r"/users/delta(\(\))?", "users delta", lambda r: self.answer(r, "users")),
            GraphRoute("GET", r"/groups/delta(\(\))?", "groups delta", lambda r: self.answer(r, "groups")),
        ]

    def expire(self) -> None:
        """Every delta and skip token issued so far answers 410 syncStateNotFound from now on."""
        with self._lock:
            self.generation += 1
            self._rounds.clear()

    def answer(self, request: Request, kind: str) -> Response:
        query = request.query
        try:
            if "$skiptoken" in query:
                round_id, offset = self._resume(query["$skiptoken"], kind)
                return self._page(request, round_id, offset)
            if query.get("$deltatoken") == "latest":
                token = _Token(kind, self.store.seq, self.generation, selected(request), _id_filter(request))
                return Response(
                    200, _page_body(request, kind, [], delta_link=self._delta_link(request, token))
                )
            if "$deltatoken" in query:
                token = self._token(query["$deltatoken"], kind)
            else:
                token = _Token(kind, -1, self.generation, selected(request), _id_filter(request))
        except _Gone:
            return _gone(request, kind)
        except ValueError as problem:
            return error(400, "Request_UnsupportedQuery", str(problem))
        return self._page(request, self._cut_round(token), (0, 0))

    def _token(self, raw: str, kind: str) -> _Token:
        try:
            data = decode(raw)
        except (ValueError, UnicodeDecodeError):
            raise _Gone from None
        if data.get("k") != kind or data.get("g") != self.generation or "s" not in data:
            raise _Gone
        if "t" in data and self.clock().timestamp() - float(data["t"]) > DELTA_LINK_LIFETIME_SECONDS:
            raise _Gone  # unused for longer than Graph keeps a sync state
        select, filt = data.get("sel"), data.get("f")
        return _Token(
            kind,
            int(data["s"]),
            self.generation,
            tuple(select) if select else None,
            tuple(filt) if filt else None,
        )

    def _resume(self, raw: str, kind: str) -> tuple[str, tuple[int, int]]:
        try:
            data = decode(raw)
        except (ValueError, UnicodeDecodeError):
            raise _Gone from None
        round_id = str(data.get("r"))
        with self._lock:
            found = self._rounds.get(round_id)
        if found is None or found.kind != kind or found.generation != self.generation:
            raise _Gone
        try:
            return round_id, (int(data["o"][0]), int(data["o"][1]))
        except (KeyError, IndexError, TypeError, ValueError):
            raise _Gone from None

    def _cut_round(self, token: _Token) -> str:
        items = self._user_items(token) if token.kind == "users" else self._group_items(token)
        with self._lock:
            items = self._repeated(items)
            self._round_counter += 1
            round_id = str(self._round_counter)
            self._rounds[round_id] = _Round(
                token.kind, items, self.store.seq, token.select, token.filter, token.generation
            )
            while len(self._rounds) > MAX_OPEN_ROUNDS:
                self._rounds.popitem(last=False)
        return round_id

    def _repeated(self, items: list[Item]) -> list[Item]:
        """Each item again, with probability ``delta_repeat``, somewhere at or after its first place."""
        chance = self.realism.delta_repeat
        if not chance or not items:
            return items
        placed: list[tuple[float, Item]] = []
        for index, item in enumerate(items):
            placed.append((index, item))
            if self._draws.random() < chance:
                placed.append((self._draws.uniform(index, len(items)), item))
        placed.sort(key=lambda p: p[0])  # stable: a repeat never comes before its first appearance
        return [item for _, item in placed]

    def _user_items(self, token: _Token) -> list[Item]:
        only = None if token.filter is None else set(token.filter)  # $filter=id eq … limits the objects
        if token.seq < 0:
            return [(user_id, None, None) for user_id in self.store.users if only is None or user_id in only]
        wanted = None if token.select is None else {*token.select, "*"}
        hide = self.realism.restored_hidden and token.select is not None and token.filter is None
        items: list[Item] = []
        for user_id, delta in self.store.user_deltas(token.seq, hide_restores=hide).items():
            if only is not None and user_id not in only:
                continue
            if delta.removed or user_id not in self.store.users:
                items.append((user_id, delta.removed or SOFT, None))
            elif wanted is None or delta.props & wanted:
                items.append((user_id, None, None))
        return items

    def _group_items(self, token: _Token) -> list[Item]:
        track_members = token.select is None or "members" in token.select
        if token.seq < 0:
            ids = token.filter if token.filter is not None else tuple(self.store.groups)
            return [
                (g, None, [(m, True) for m in self.store.members[g]] if track_members else None)
                for g in dict.fromkeys(ids)
                if g in self.store.groups
            ]
        wanted = None if token.select is None else {*token.select, "*"}
        items: list[Item] = []
        for group_id, delta in self.store.group_deltas(token.seq, token.filter).items():
            if delta.removed or group_id not in self.store.groups:
                items.append((group_id, delta.removed or SOFT, None))
                continue
            members = list(delta.members.items()) if track_members else []
            if members or wanted is None or delta.props & wanted:
                items.append((group_id, None, members if track_members else None))
        return items

    def _page(self, request: Request, round_id: str, offset: tuple[int, int]) -> Response:
        with self._lock:
            cut = self._rounds[round_id]
        if cut.kind == "users":
            values, next_offset = self._user_page(cut, offset[0])
        else:
            values, next_offset = self._group_page(cut, offset)
        if next_offset is None:
            with self._lock:
                self._rounds.pop(round_id, None)
            token = _Token(cut.kind, cut.end_seq, cut.generation, cut.select, cut.filter)
            body = _page_body(request, cut.kind, values, delta_link=self._delta_link(request, token))
        else:
            skip = encode({"r": round_id, "o": list(next_offset)})
            next_link = f"{base_url(request)}/{cut.kind}/delta()?$skiptoken={skip}"
            body = _page_body(request, cut.kind, values, next_link=next_link)
        return Response(200, body)

    def _delta_link(self, request: Request, token: _Token) -> str:
        raw = {
            "k": token.kind,
            "s": token.seq,
            "g": token.generation,
            "sel": token.select,
            "f": token.filter,
            "t": int(self.clock().timestamp()),
        }
        return f"{base_url(request)}/{token.kind}/delta()?$deltatoken={encode(raw)}"

    def _user_page(self, cut: _Round, start: int) -> tuple[list[dict[str, Any]], tuple[int, int] | None]:
        end = start + self.sizes.users_delta
        values = []
        for user_id, removed, _ in cut.items[start:end]:
            user = self.store.users.get(user_id)
            if removed or user is None:
                values.append({"id": user_id, "@removed": {"reason": removed or SOFT}})
            else:
                values.append(self._without_unset(render_user(user, cut.select)))
        return values, ((end, 0) if end < len(cut.items) else None)

    def _without_unset(self, rendered: dict[str, Any]) -> dict[str, Any]:
        """``omit_unset``: a property never set is left out (one explicitly cleared is still null)."""
        if not self.realism.omit_unset:
            return rendered
        cleared = self.store.cleared.get(rendered["id"], ())
        return {k: v for k, v in rendered.items() if v is not None or k in cleared}

    def _group_page(
        self, cut: _Round, offset: tuple[int, int]
    ) -> tuple[list[dict[str, Any]], tuple[int, int] | None]:
        index, member_start = offset
        budget = self.sizes.members_per_page
        values: list[dict[str, Any]] = []
        while index < len(cut.items) and len(values) < self.sizes.groups_delta:
            group_id, removed, members = cut.items[index]
            group = self.store.groups.get(group_id)
            if removed or group is None:
                values.append({"id": group_id, "@removed": {"reason": removed or SOFT}})
                index, member_start = index + 1, 0
                continue
            rendered = self._without_unset(render_group(group, cut.select))
            if members is None:
                values.append(rendered)
                index, member_start = index + 1, 0
                continue
            if budget <= 0 and values:
                break
            chunk = members[member_start : member_start + max(budget, 1)]
            rendered["members@delta"] = [self._member_entry(m, present) for m, present in chunk]
            values.append(rendered)
            budget -= len(chunk)
            if member_start + len(chunk) < len(members):
                member_start += len(chunk)
                break  # the rest of this group's members go on the next page
            index, member_start = index + 1, 0
        return values, ((index, member_start) if index < len(cut.items) else None)

    def _member_entry(self, member_id: str, present: bool) -> dict[str, Any]:
        entry: dict[str, Any] = {"@odata.type": self.store.odata_type(member_id), "id": member_id}
        if not present:
            entry["@removed"] = {"reason": "deleted"}
        return entry


def _id_filter(request: Request) -> tuple[str, ...] | None:
    """``$filter=id eq '…' or …``: the only filter delta takes, at most ``MAX_FILTER_IDS`` ids."""
    raw = request.query.get("$filter")
    if not raw:
        return None
    ids = []
    for clause in re.split(r"\s+or\s+", raw.strip(), flags=re.IGNORECASE):
        found = _ID_EQ.match(clause)
        if not found:
            raise ValueError(f"delta supports only $filter=id eq '…' (or …), not {raw!r}")
        ids.append(found.group(1))
    if len(ids) > MAX_FILTER_IDS:
        raise ValueError(f"at most {MAX_FILTER_IDS} ids per $filter, got {len(ids)}")
    return tuple(ids)


def _gone(request: Request, kind: str) -> Response:
    restart = f"{base_url(request)}/{kind}/delta()?$deltatoken="
    return error(
        410,
        "syncStateNotFound",
        "The sync state is not found or has expired; restart with a full synchronization.",
        {"Location": restart},
    )


def _page_body(
    request: Request,
    kind: str,
    values: list[dict[str, Any]],
    next_link: str | None = None,
    delta_link: str | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"@odata.context": f"{base_url(request)}/$metadata#{kind}", "value": values}
    if next_link:
        body["@odata.nextLink"] = next_link
    if delta_link:
        body["@odata.deltaLink"] = delta_link
    return body
