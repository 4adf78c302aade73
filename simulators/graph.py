"""A local Microsoft Graph (v1.0) for tests, the demo and benchmarks: the parts this product reads.

    python -m simulators.graph --port 8401 [--seed tenant.json]   # default: the seed use case

In-process: ``GraphSimulator(tenant).start()``, then point the adapter at ``simulator.graph_url``; mutate
the directory with its methods (or, out of process, through ``/_admin/...``) between reads.

Behaviour copied from Graph (as learn.microsoft.com documents it for delta queries, $batch and subscriptions):
- ``Authorization: Bearer <anything>`` required (401 otherwise); errors in Graph's ``{"error": {code,
  message}}`` envelope.
- ``/users/delta`` and ``/groups/delta`` (``delta`` or ``delta()``): rounds paged with
  ``@odata.nextLink`` (``$skiptoken``) ending in ``@odata.deltaLink`` (``$deltatoken``); links point at the
  host the client used. Query parameters live in the tokens. ``$select`` limits both the properties and
  which changes surface. Removed objects come as ``@removed`` (``changed`` soft, ``deleted`` hard).
  Groups carry ``members@delta`` (direct members, typed; removals with ``@removed``); a large group's
  members are split over pages, the group repeated on each. ``$filter=id eq '…' or …`` takes at most 50
  ids. ``$deltatoken=latest`` starts from now. After ``expire_cursors()`` every older token gets 410 Gone,
  code ``syncStateNotFound``, with a ``Location`` to restart from; so does a delta link left unused for
  more than 7 days of the simulator's ``clock`` (Graph's documented limit for directory objects).
- Page sizes (server-chosen, ``$top`` ignored on delta): 200 users per users-delta page (the figure Graph's
  docs maintainers give), 100 groups and at most 1,000 ``members@delta`` entries per groups-delta page
  (our assumption), lists 100 by default and up to 999 with ``$top``. All configurable.
- ``/users``: ``$filter``, ``$search``, ``$count``, ``$orderby`` and ``$top`` as Graph supports them for
  users, refusals and the ``ConsistencyLevel: eventual`` rule included (``graph_query.py``).
- ``/$batch``: at most 20 requests, relative URLs only (an absolute one fails that step with 400), answers
  in any order, each step throttled on its own.
- ``/subscriptions``: create (with the validation handshake), list, get, renew, delete, reauthorize; change
  notifications delivered to the subscriber (see ``graph_webhooks.py``).
- Application permissions per endpoint (``graph_permissions.py``): the app holds ``roles`` (constructor,
  ``--roles`` on the command line, ``PUT /_admin/roles``; by default what the Bicep grants); a call the
  roles do not allow answers 403 ``Authorization_RequestDenied`` naming the permission, and changes nothing.
- Fault injection by route name: a status (429 with ``Retry-After``, 503, ...) for the next N requests or a
  fraction of them.

Admin API, for a simulator in another process (no auth; counted under names starting with "admin"):
``GET|DELETE /_admin/counts``; ``PUT /_admin/tenant`` (a tenant JSON); ``POST /_admin/users``;
``PATCH|DELETE /_admin/users/{id|upn}`` (``?permanent=true``); ``POST /_admin/users/{id}/restore``;
``PUT /_admin/users/{ref}/mailboxSettings`` (``{"userPurpose": …}`` or null: no mailbox);
``POST /_admin/groups``; ``PATCH|DELETE /_admin/groups/{id}``; ``POST /_admin/groups/{id}/members|owners``
(``{"id": …}``); ``DELETE /_admin/groups/{id}/members|owners/{ref}``; ``POST /_admin/cursors/expire``;
``POST|DELETE /_admin/faults`` (``{"status", "count"|"fraction", "retryAfter", "routes"}``);
``PUT /_admin/deliveries`` (``{"mode": "deliver"|"hold"|"drop"}``), ``GET /_admin/deliveries``,
``POST /_admin/deliveries/flush``; ``POST /_admin/subscriptions/{id}/expire|reauthorization``;
``GET|PUT /_admin/roles`` (``{"roles": ["User.Read.All", …]}``).
"""

from __future__ import annotations

import base64
import json
import random
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from simulators.graph_permissions import (
    GRANTED_BY_BICEP,
    SUBSCRIPTION_ROUTES,
    PermissionMissing,
    check_route,
    check_subscription,
    parse_roles,
)
from simulators.graph_query import QueryRefused, ordered, user_query
from simulators.graph_store import HARD, SOFT, Change, DirectoryStore, NotFound
from simulators.graph_webhooks import SubscriptionRefused, Webhooks
from simulators.http import Request, Response, Route, Router, SimulatorServer
from simulators.tenants import TENANT_ID, Tenant, seed_use_case

PREFIX = "/v1.0"
APPLICATION_ID = "5b1f0a52-0000-4000-8000-0000000a9901"
MAX_BATCH = 20
MAX_FILTER_IDS = 50
DELTA_LINK_LIFETIME_SECONDS = 7 * 24 * 3600  # an unused delta link of users or groups: 410 after 7 days
DEFAULT_USER_PROPERTIES = (
    "businessPhones",
    "displayName",
    "givenName",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
)
DEFAULT_GROUP_PROPERTIES = (
    "displayName",
    "description",
    "groupTypes",
    "mailEnabled",
    "securityEnabled",
    "mail",
    "mailNickname",
)
MAILBOX_DEFAULTS = {
    "timeZone": "UTC",
    "dateFormat": "M/d/yyyy",
    "timeFormat": "h:mm tt",
    "delegateMeetingMessageDeliveryOptions": "sendToDelegateOnly",
    "userPurpose": "user",
}
_ID_EQ = re.compile(r"^\s*id\s+eq\s+'([^']+)'\s*$", re.IGNORECASE)
_NAME_EQ = re.compile(r"^\s*displayName\s+eq\s+'((?:[^']|'')*)'\s*$", re.IGNORECASE)
_NAME_STARTS = re.compile(r"^\s*startswith\(\s*displayName\s*,\s*'((?:[^']|'')*)'\s*\)\s*$", re.IGNORECASE)


@dataclass
class PageSizes:
    users_delta: int = 200
    groups_delta: int = 100
    members_per_page: int = 1000
    list_default: int = 100
    list_max: int = 999


@dataclass
class Fault:
    """Answer matching requests with ``status``: the next ``remaining`` of them, or a ``fraction``."""

    status: int
    retry_after: int | None = None
    remaining: int | None = None
    fraction: float | None = None
    routes: frozenset[str] | None = None  # route names; None: every Graph route

    def response(self) -> Response:
        code = {429: "TooManyRequests", 503: "serviceNotAvailable", 403: "Authorization_RequestDenied"}
        headers = {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}
        message = "Too many requests" if self.status == 429 else f"injected fault {self.status}"
        return _error(self.status, code.get(self.status, "generalException"), message, headers)


@dataclass
class _Round:
    """One delta round, cut when it starts; pages are rendered from the live directory when served."""

    kind: str  # users | groups
    items: list[tuple[str, str | None, list[tuple[str, bool]] | None]]  # id, removed, member changes
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


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    stamp = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "")
    body = {"error": {"code": code, "message": message, "innerError": {"date": stamp}}}
    return Response(status, body, dict(headers or {}))


def _encode(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")


def _decode(token: str) -> dict[str, Any]:
    padded = token + "=" * (-len(token) % 4)
    data = json.loads(base64.urlsafe_b64decode(padded.encode()))
    if not isinstance(data, dict):
        raise ValueError(token)
    return data


def _select(request: Request) -> tuple[str, ...] | None:
    raw = request.query.get("$select")
    return tuple(p.strip() for p in raw.split(",") if p.strip()) if raw else None


def _base(request: Request) -> str:
    return f"http://{request.headers.get('host', '127.0.0.1')}{PREFIX}"


class GraphSimulator:
    def __init__(
        self,
        tenant: Tenant | None = None,
        *,
        page_sizes: PageSizes | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        validation_timeout: float = 10.0,
        seed: int = 0,
        roles: Iterable[str] = GRANTED_BY_BICEP,
    ) -> None:
        self.roles = parse_roles(roles)  # the app's Graph application permissions (graph_permissions.py)
        self.page_sizes = page_sizes or PageSizes()
        self.store = DirectoryStore()
        self.router = Router()
        self.clock = clock
        self.webhooks = Webhooks(TENANT_ID, clock=clock, validation_timeout=validation_timeout)
        self.faults: list[Fault] = []
        self.generation = 0
        self._rounds: OrderedDict[str, _Round] = OrderedDict()
        self._round_counter = 0
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._server: SimulatorServer | None = None
        self.store.listeners.append(self._notify)
        self._graph_routes()
        self._admin_routes()
        if tenant is not None:
            self.load(tenant)

    # running ---------------------------------------------------------------------------------------
    def start(self, port: int = 0) -> GraphSimulator:
        self._server = SimulatorServer(self.router, port).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> GraphSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the simulator is not started")
        return self._server.url

    @property
    def graph_url(self) -> str:
        """What ``GRAPH_API_URL`` should be set to."""
        return f"{self.url}{PREFIX}"

    # inspecting ------------------------------------------------------------------------------------
    @property
    def counts(self) -> dict[str, int]:
        return dict(self.router.counts)

    def graph_requests(self) -> int:
        """HTTP requests made to Graph endpoints: a batch counts once, however many steps it holds."""
        return sum(
            n for name, n in self.router.counts.items() if not name.startswith(("admin", "batch step"))
        )

    def reset_counts(self) -> None:
        self.router.reset_counts()

    @property
    def deliveries(self) -> list[Any]:
        return list(self.webhooks.deliveries)

    def flush_deliveries(self, timeout: float = 5.0) -> bool:
        return self.webhooks.flush(timeout)

    def subscriptions(self) -> list[dict[str, Any]]:
        return self.webhooks.live()

    # changing the directory ------------------------------------------------------------------------
    def load(self, tenant: Tenant) -> None:
        self.store.load(tenant)
        self.expire_cursors()

    def add_user(self, user: dict[str, Any]) -> str:
        return self.store.add_user(user)

    def update_user(self, ref: str, **props: Any) -> None:
        self.store.update_user(self.store.find_user(ref)["id"], props)

    def delete_user(self, ref: str, *, permanent: bool = False) -> None:
        user_id = ref if self.store.is_soft_deleted(ref) else self.store.find_user(ref)["id"]
        self.store.delete_user(user_id, permanent=permanent)

    def restore_user(self, user_id: str) -> None:
        self.store.restore_user(user_id)

    def set_mailbox(self, ref: str, purpose: str | None) -> None:
        """``purpose`` None: the user has no mailbox (mailboxSettings answers 404)."""
        self.store.set_mailbox(ref, None if purpose is None else {"userPurpose": purpose})

    def add_group(self, group: dict[str, Any]) -> str:
        return self.store.add_group(group)

    def update_group(self, group_id: str, **props: Any) -> None:
        self.store.update_group(group_id, props)

    def delete_group(self, group_id: str, *, permanent: bool = False) -> None:
        self.store.delete_group(group_id, permanent=permanent)

    def add_member(self, group_id: str, member_ref: str) -> None:
        self.store.add_member(group_id, self._object_id(member_ref))

    def remove_member(self, group_id: str, member_ref: str) -> None:
        self.store.remove_member(group_id, self._object_id(member_ref))

    def add_owner(self, group_id: str, owner_ref: str) -> None:
        self.store.add_owner(group_id, self._object_id(owner_ref))

    def _object_id(self, ref: str) -> str:
        return ref if self.store.is_group(ref) else str(self.store.find_user(ref)["id"])

    # switches --------------------------------------------------------------------------------------
    def expire_cursors(self) -> None:
        """Every delta and skip token issued so far answers 410 syncStateNotFound from now on."""
        with self._lock:
            self.generation += 1
            self._rounds.clear()

    def inject(
        self,
        status: int,
        *,
        count: int | None = None,
        fraction: float | None = None,
        retry_after: int | None = None,
        routes: Iterable[str] | None = None,
    ) -> Fault:
        if (count is None) == (fraction is None):
            raise ValueError("give either count (the next N requests) or fraction")
        fault = Fault(status, retry_after, count, fraction, None if routes is None else frozenset(routes))
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self.faults.clear()

    def set_delivery_mode(self, mode: str) -> None:
        """``deliver`` (default; also releases held ones), ``hold`` (queue until deliver) or ``drop``."""
        self.webhooks.set_mode(mode)

    def expire_subscription(self, subscription_id: str) -> None:
        self.webhooks.expire(subscription_id)

    def require_reauthorization(self, subscription_id: str) -> None:
        self.webhooks.require_reauthorization(subscription_id)

    def remove_subscription(self, subscription_id: str) -> None:
        self.webhooks.remove(subscription_id)

    def report_missed(self, subscription_id: str) -> None:
        self.webhooks.missed(subscription_id)

    # routing ---------------------------------------------------------------------------------------
    def _graph(
        self,
        method: str,
        pattern: str,
        name: str,
        handler: Callable[[Request], Response],
        locked: bool = True,
    ) -> None:
        def guarded(request: Request) -> Response:
            if not re.match(r"^Bearer\s+\S+", request.headers.get("authorization", "")):
                return _error(401, "InvalidAuthenticationToken", "Access token is empty.")
            fault = self._fault_for(name)
            if fault is not None:
                return fault
            denied = self._denied(name, request)
            if denied is not None:
                return denied
            if not locked:
                return handler(request)
            with self.store.lock:
                return handler(request)

        self.router.add(method, PREFIX + pattern, guarded, name)

    def _denied(self, route_name: str, request: Request) -> Response | None:
        """403 when the app holds none of the permissions the route (or the subscribed resource) needs."""
        try:
            if route_name in SUBSCRIPTION_ROUTES:
                resource = self._subscribed_resource(route_name, request)
                if resource is not None:
                    check_subscription(self.roles, resource)
            else:
                check_route(self.roles, route_name)
        except PermissionMissing as missing:
            return _error(403, "Authorization_RequestDenied", str(missing))
        return None

    def _subscribed_resource(self, route_name: str, request: Request) -> str | None:
        if route_name == "create subscription":
            try:
                body = request.json()
            except ValueError:
                return None  # the handler answers 400
            return str(body.get("resource") or "") if isinstance(body, dict) else None
        found = self.webhooks.subscriptions.get(request.params.get("ref", ""))
        return None if found is None else str(found.get("resource") or "")

    def set_roles(self, roles: Iterable[str]) -> None:
        """Change the application permissions the app holds (an admin granting or revoking them)."""
        self.roles = parse_roles(roles)

    def _fault_for(self, route_name: str) -> Response | None:
        with self._lock:
            for fault in list(self.faults):
                if fault.routes is not None and route_name not in fault.routes:
                    continue
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self.faults.remove(fault)
                    return fault.response()
                if fault.fraction is not None and self._random.random() < fault.fraction:
                    return fault.response()
        return None

    def _graph_routes(self) -> None:
        ref = r"(?P<ref>[^/()]+)"
        cast_group = r"(/(microsoft\.)?graph\.group)?"
        self._graph("GET", r"/users/delta(\(\))?", "users delta", self._users_delta)
        self._graph("GET", r"/groups/delta(\(\))?", "groups delta", self._groups_delta)
        self._graph("GET", r"/users", "users", self._list_users)
        self._graph("GET", rf"/users/{ref}", "user", self._get_user)
        self._graph("GET", rf"/users/{ref}/mailboxSettings", "mailbox settings", self._mailbox_settings)
        self._graph("GET", rf"/users/{ref}/memberOf{cast_group}", "member of", self._member_of)
        self._graph(
            "GET", rf"/users/{ref}/transitiveMemberOf{cast_group}", "transitive member of", self._member_of
        )
        self._graph("GET", r"/groups", "groups", self._list_groups)
        self._graph("GET", rf"/groups/{ref}", "group", self._get_group)
        self._graph("GET", rf"/groups/{ref}/members", "group members", self._group_members)
        self._graph(
            "GET", rf"/groups/{ref}/transitiveMembers", "group transitive members", self._group_members
        )
        self._graph("GET", rf"/groups/{ref}/owners", "group owners", self._group_members)
        self._graph("POST", r"/\$batch", "batch", self._batch, locked=False)
        self._graph("GET", r"/subscriptions", "subscriptions", self._list_subscriptions, locked=False)
        self._graph("POST", r"/subscriptions", "create subscription", self._create_subscription, locked=False)
        self._graph("GET", rf"/subscriptions/{ref}", "subscription", self._subscription, locked=False)
        self._graph("PATCH", rf"/subscriptions/{ref}", "renew subscription", self._subscription, locked=False)
        self._graph(
            "DELETE", rf"/subscriptions/{ref}", "delete subscription", self._subscription, locked=False
        )
        self._graph(
            "POST",
            rf"/subscriptions/{ref}/reauthorize",
            "reauthorize subscription",
            self._subscription,
            locked=False,
        )

    # delta -----------------------------------------------------------------------------------------
    def _users_delta(self, request: Request) -> Response:
        return self._delta(request, "users")

    def _groups_delta(self, request: Request) -> Response:
        return self._delta(request, "groups")

    def _delta(self, request: Request, kind: str) -> Response:
        query = request.query
        try:
            if "$skiptoken" in query:
                round_id, offset = self._resume(query["$skiptoken"], kind)
                return self._delta_page(request, round_id, offset)
            if query.get("$deltatoken") == "latest":
                token = _Token(
                    kind, self.store.seq, self.generation, _select(request), self._id_filter(request)
                )
                return Response(
                    200, self._page_body(request, kind, [], delta_link=self._delta_link(request, token))
                )
            if "$deltatoken" in query:
                token = self._token(query["$deltatoken"], kind)
            else:
                token = _Token(kind, -1, self.generation, _select(request), self._id_filter(request))
        except _Gone:
            return self._gone(request, kind)
        except ValueError as problem:
            return _error(400, "Request_UnsupportedQuery", str(problem))
        return self._delta_page(request, self._cut_round(token), (0, 0))

    def _id_filter(self, request: Request) -> tuple[str, ...] | None:
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

    def _token(self, raw: str, kind: str) -> _Token:
        try:
            data = _decode(raw)
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
            data = _decode(raw)
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

    def _gone(self, request: Request, kind: str) -> Response:
        restart = f"{_base(request)}/{kind}/delta()?$deltatoken="
        return _error(
            410,
            "syncStateNotFound",
            "The sync state is not found or has expired; restart with a full synchronization.",
            {"Location": restart},
        )

    def _cut_round(self, token: _Token) -> str:
        items = self._user_items(token) if token.kind == "users" else self._group_items(token)
        with self._lock:
            self._round_counter += 1
            round_id = str(self._round_counter)
            self._rounds[round_id] = _Round(
                token.kind, items, self.store.seq, token.select, token.filter, token.generation
            )
            while len(self._rounds) > 64:  # abandoned rounds: their skiptokens expire
                self._rounds.popitem(last=False)
        return round_id

    def _user_items(self, token: _Token) -> list[tuple[str, str | None, list[tuple[str, bool]] | None]]:
        only = None if token.filter is None else set(token.filter)  # $filter=id eq … limits the objects
        if token.seq < 0:
            return [(user_id, None, None) for user_id in self.store.users if only is None or user_id in only]
        wanted = None if token.select is None else {*token.select, "*"}
        items: list[tuple[str, str | None, list[tuple[str, bool]] | None]] = []
        for user_id, delta in self.store.user_deltas(token.seq).items():
            if only is not None and user_id not in only:
                continue
            if delta.removed or user_id not in self.store.users:
                items.append((user_id, delta.removed or SOFT, None))
            elif wanted is None or delta.props & wanted:
                items.append((user_id, None, None))
        return items

    def _group_items(self, token: _Token) -> list[tuple[str, str | None, list[tuple[str, bool]] | None]]:
        track_members = token.select is None or "members" in token.select
        if token.seq < 0:
            ids = token.filter if token.filter is not None else tuple(self.store.groups)
            return [
                (g, None, [(m, True) for m in self.store.members[g]] if track_members else None)
                for g in dict.fromkeys(ids)
                if g in self.store.groups
            ]
        wanted = None if token.select is None else {*token.select, "*"}
        items: list[tuple[str, str | None, list[tuple[str, bool]] | None]] = []
        for group_id, delta in self.store.group_deltas(token.seq, token.filter).items():
            if delta.removed or group_id not in self.store.groups:
                items.append((group_id, delta.removed or SOFT, None))
                continue
            members = list(delta.members.items()) if track_members else []
            if members or wanted is None or delta.props & wanted:
                items.append((group_id, None, members if track_members else None))
        return items

    def _delta_page(self, request: Request, round_id: str, offset: tuple[int, int]) -> Response:
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
            body = self._page_body(request, cut.kind, values, delta_link=self._delta_link(request, token))
        else:
            skip = _encode({"r": round_id, "o": list(next_offset)})
            body = self._page_body(
                request, cut.kind, values, next_link=f"{_base(request)}/{cut.kind}/delta()?$skiptoken={skip}"
            )
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
        return f"{_base(request)}/{token.kind}/delta()?$deltatoken={_encode(raw)}"

    def _page_body(
        self,
        request: Request,
        kind: str,
        values: list[dict[str, Any]],
        next_link: str | None = None,
        delta_link: str | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"@odata.context": f"{_base(request)}/$metadata#{kind}", "value": values}
        if next_link:
            body["@odata.nextLink"] = next_link
        if delta_link:
            body["@odata.deltaLink"] = delta_link
        return body

    def _user_page(self, cut: _Round, start: int) -> tuple[list[dict[str, Any]], tuple[int, int] | None]:
        end = start + self.page_sizes.users_delta
        values = []
        for user_id, removed, _ in cut.items[start:end]:
            user = self.store.users.get(user_id)
            if removed or user is None:
                values.append({"id": user_id, "@removed": {"reason": removed or SOFT}})
            else:
                values.append(self._render_user(user, cut.select))
        return values, ((end, 0) if end < len(cut.items) else None)

    def _group_page(
        self, cut: _Round, offset: tuple[int, int]
    ) -> tuple[list[dict[str, Any]], tuple[int, int] | None]:
        index, member_start = offset
        budget = self.page_sizes.members_per_page
        values: list[dict[str, Any]] = []
        while index < len(cut.items) and len(values) < self.page_sizes.groups_delta:
            group_id, removed, members = cut.items[index]
            group = self.store.groups.get(group_id)
            if removed or group is None:
                values.append({"id": group_id, "@removed": {"reason": removed or SOFT}})
                index, member_start = index + 1, 0
                continue
            rendered = self._render_group(group, cut.select)
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

    # rendering -------------------------------------------------------------------------------------
    def _render_user(self, user: dict[str, Any], select: Sequence[str] | None) -> dict[str, Any]:
        names = DEFAULT_USER_PROPERTIES if select is None else select
        rendered = {"id": user["id"]}
        for name in names:
            if name != "id":
                rendered[name] = user.get(name)
        return rendered

    def _render_group(self, group: dict[str, Any], select: Sequence[str] | None) -> dict[str, Any]:
        names = DEFAULT_GROUP_PROPERTIES if select is None else select
        rendered = {"id": group["id"]}
        for name in names:
            if name not in ("id", "members"):
                rendered[name] = group.get(name)
        return rendered

    def _render_object(self, object_id: str, select: Sequence[str] | None) -> dict[str, Any]:
        if self.store.is_group(object_id):
            rendered = self._render_group(self.store.groups[object_id], select)
        else:
            rendered = self._render_user(self.store.users[object_id], select)
        return {"@odata.type": self.store.odata_type(object_id), **rendered}

    # lists and single objects ----------------------------------------------------------------------
    def _paged(
        self, request: Request, ids: Sequence[str], render: Callable[[str], dict[str, Any]]
    ) -> Response:
        sizes = self.page_sizes
        try:
            top = max(1, min(int(request.query.get("$top", sizes.list_default)), sizes.list_max))
            start = int(_decode(request.query["$skiptoken"])["o"]) if "$skiptoken" in request.query else 0
        except (ValueError, KeyError, UnicodeDecodeError):
            return _error(400, "Request_BadRequest", "invalid $top or $skiptoken")
        body: dict[str, Any] = {
            "@odata.context": f"{_base(request)}/$metadata",
            "value": [render(i) for i in ids[start : start + top]],
        }
        if start + top < len(ids):
            query = {k: v for k, v in request.query.items() if k != "$skiptoken"}
            query["$skiptoken"] = _encode({"o": start + top})
            path = quote(request.path, safe="/()$'@:,=.-_")
            body["@odata.nextLink"] = f"http://{request.headers.get('host')}{path}?{urlencode(query)}"
        return Response(200, body)

    def _list_users(self, request: Request) -> Response:
        """``$filter``, ``$search``, ``$count``, ``$orderby`` and ``$top`` as Graph takes them for users,
        refusals included (see ``graph_query.py``)."""
        try:
            query = user_query(request.query, request.headers)
        except QueryRefused as refused:
            return _error(400, refused.code, refused.message)
        users = self.store.users
        ids = ordered([i for i in users if query.selects(users[i])], users, query.order_by)
        select = _select(request)
        answer = self._paged(request, ids, lambda i: self._render_user(users[i], select))
        if query.count and answer.status == 200:
            answer.body = {"@odata.count": len(ids), **answer.body}
        return answer

    def _get_user(self, request: Request) -> Response:
        try:
            user = self.store.find_user(request.params["ref"])
        except NotFound:
            return self._not_found(request.params["ref"])
        return Response(200, self._render_user(user, _select(request)))

    def _mailbox_settings(self, request: Request) -> Response:
        try:
            user = self.store.find_user(request.params["ref"])
        except NotFound:
            return self._not_found(request.params["ref"])
        settings = self.store.mailboxes.get(user["id"])
        if settings is None:
            return _error(
                404,
                "MailboxNotEnabledForRESTAPI",
                "The mailbox is either inactive, soft-deleted, or is hosted on-premise.",
            )
        return Response(
            200, {"@odata.context": f"{_base(request)}/$metadata", **MAILBOX_DEFAULTS, **settings}
        )

    def _member_of(self, request: Request) -> Response:
        try:
            user = self.store.find_user(request.params["ref"])
        except NotFound:
            return self._not_found(request.params["ref"])
        transitive = "/transitiveMemberOf" in request.path
        ids = self.store.transitive_groups_of(user["id"]) if transitive else self.store.groups_of(user["id"])
        select = _select(request)
        return self._paged(request, ids, lambda i: self._render_object(i, select))

    def _list_groups(self, request: Request) -> Response:
        ids = list(self.store.groups)
        raw = request.query.get("$filter")
        if raw:
            equal, starts = _NAME_EQ.match(raw), _NAME_STARTS.match(raw)
            found = equal or starts
            if found is None:
                return _error(400, "Request_UnsupportedQuery", f"unsupported $filter {raw!r}")
            wanted = found.group(1).replace("''", "'").lower()
            names = {g: str(self.store.groups[g].get("displayName") or "").lower() for g in ids}
            ids = [g for g in ids if (names[g] == wanted if equal else names[g].startswith(wanted))]
        select = _select(request)
        return self._paged(request, ids, lambda i: self._render_group(self.store.groups[i], select))

    def _get_group(self, request: Request) -> Response:
        group = self.store.groups.get(request.params["ref"])
        if group is None:
            return self._not_found(request.params["ref"])
        return Response(200, self._render_group(group, _select(request)))

    def _group_members(self, request: Request) -> Response:
        group_id = request.params["ref"]
        if group_id not in self.store.groups:
            return self._not_found(group_id)
        if request.path.endswith("/transitiveMembers"):
            ids = self.store.transitive_members(group_id)
        elif request.path.endswith("/owners"):
            ids = [o for o in self.store.owners[group_id] if o in self.store.users or self.store.is_group(o)]
        else:
            ids = list(self.store.members[group_id])
        select = _select(request)
        return self._paged(request, ids, lambda i: self._render_object(i, select))

    def _not_found(self, ref: str) -> Response:
        return _error(
            404,
            "Request_ResourceNotFound",
            f"Resource '{ref}' does not exist or one of its queried reference-property objects "
            "are not present.",
        )

    # batch -----------------------------------------------------------------------------------------
    def _batch(self, request: Request) -> Response:
        try:
            steps = request.json().get("requests")
        except (ValueError, AttributeError):
            steps = None
        if not isinstance(steps, list) or not steps:
            return _error(400, "BadRequest", "Invalid batch payload: 'requests' must be a non-empty array.")
        if len(steps) > MAX_BATCH:
            return _error(400, "BadRequest", f"Batch request cannot contain more than {MAX_BATCH} requests.")
        ids = [str(s.get("id")) for s in steps]
        if len(set(ids)) != len(ids):
            return _error(400, "BadRequest", "Batch request ids must be unique.")
        answers = [self._step(step, request) for step in steps]
        self._random.shuffle(answers)  # Graph answers in any order: clients must match by id
        return Response(200, {"responses": answers})

    def _step(self, step: dict[str, Any], envelope: Request) -> dict[str, Any]:
        self.router.count("batch step")
        step_id, url = str(step.get("id")), str(step.get("url") or "")
        if not url.startswith("/"):
            body = {"error": {"code": "BadRequest", "message": "Invalid request URL: it must be relative."}}
            return {"id": step_id, "status": 400, "headers": {}, "body": body}
        parts = urlsplit(url)
        inner = Request(
            method=str(step.get("method") or "GET").upper(),
            path=PREFIX + unquote(parts.path),
            query=dict(parse_qsl(parts.query, keep_blank_values=True)),
            headers={**envelope.headers, **{k.lower(): v for k, v in (step.get("headers") or {}).items()}},
            body=json.dumps(step["body"]).encode() if "body" in step else b"",
            raw_path=PREFIX + url,
        )
        answer = self._dispatch_step(inner)
        headers = dict(answer.headers)
        if isinstance(answer.body, dict | list):
            headers.setdefault("Content-Type", "application/json")
        return {"id": step_id, "status": answer.status, "headers": headers, "body": answer.body}

    def _dispatch_step(self, request: Request) -> Response:
        for route in self._step_routes():
            found = route.pattern.match(request.path)
            if found and route.method == request.method:
                request.params = {k: v for k, v in found.groupdict().items() if v is not None}
                return route.handler(request)
        return _error(404, "BadRequest", f"Resource not found for the segment in {request.path!r}.")

    def _step_routes(self) -> list[Route]:
        return [r for r in self.router.routes if not r.name.startswith(("admin", "batch"))]

    # subscriptions ---------------------------------------------------------------------------------
    def _list_subscriptions(self, request: Request) -> Response:
        return Response(
            200,
            {"@odata.context": f"{_base(request)}/$metadata#subscriptions", "value": self.webhooks.live()},
        )

    def _create_subscription(self, request: Request) -> Response:
        try:
            return Response(201, self.webhooks.create(request.json() or {}, APPLICATION_ID))
        except SubscriptionRefused as refused:
            return _error(refused.status, refused.code, refused.message)
        except ValueError:
            return _error(400, "BadRequest", "the body is not JSON")

    def _subscription(self, request: Request) -> Response:
        subscription_id = request.params["ref"]
        try:
            if request.method == "GET":
                return Response(200, self.webhooks.get(subscription_id))
            if request.method == "PATCH":
                return Response(200, self.webhooks.renew(subscription_id, request.json() or {}))
            if request.method == "DELETE":
                self.webhooks.delete(subscription_id)
            else:
                self.webhooks.reauthorize(subscription_id)
            return Response(204)
        except SubscriptionRefused as refused:
            return _error(refused.status, refused.code, refused.message)

    def _notify(self, change: Change) -> None:
        """Directory change → basic change notification(s), as Graph sends them."""
        if change.kind == "user":
            self.webhooks.notify("users", change.id, "deleted" if change.removed == HARD else "updated")
        elif change.kind == "group":
            self.webhooks.notify("groups", change.id, "deleted" if change.removed == HARD else "updated")
        elif change.member_id:
            entry: dict[str, Any] = {"id": change.member_id}
            if not change.member_added:
                entry["@removed"] = "deleted"  # a plain string in notifications, as observed from Graph
            self.webhooks.notify("groups", change.id, "updated", {"members@delta": [entry]})

    # admin API: the same switches over HTTP, for a simulator in another process ----------------------
    def _admin_routes(self) -> None:
        admin: list[tuple[str, str, str, Callable[[Request], Response]]] = [
            ("GET", r"/counts", "admin counts", lambda r: Response(200, {"counts": self.counts})),
            ("DELETE", r"/counts", "admin reset counts", self._admin_reset_counts),
            ("PUT", r"/tenant", "admin load tenant", self._admin_load),
            ("POST", r"/users", "admin add user", self._admin_add_user),
            ("PATCH", r"/users/(?P<ref>[^/]+)", "admin update user", self._admin_update_user),
            ("DELETE", r"/users/(?P<ref>[^/]+)", "admin delete user", self._admin_delete_user),
            ("POST", r"/users/(?P<ref>[^/]+)/restore", "admin restore user", self._admin_restore_user),
            ("PUT", r"/users/(?P<ref>[^/]+)/mailboxSettings", "admin set mailbox", self._admin_mailbox),
            ("POST", r"/groups", "admin add group", self._admin_add_group),
            ("PATCH", r"/groups/(?P<gid>[^/]+)", "admin update group", self._admin_update_group),
            ("DELETE", r"/groups/(?P<gid>[^/]+)", "admin delete group", self._admin_delete_group),
            ("POST", r"/groups/(?P<gid>[^/]+)/(?P<rel>members|owners)", "admin add member", self._admin_link),
            (
                "DELETE",
                r"/groups/(?P<gid>[^/]+)/(?P<rel>members|owners)/(?P<ref>[^/]+)",
                "admin remove member",
                self._admin_unlink,
            ),
            ("POST", r"/cursors/expire", "admin expire cursors", self._admin_expire_cursors),
            ("GET", r"/roles", "admin roles", lambda r: Response(200, {"roles": sorted(self.roles)})),
            ("PUT", r"/roles", "admin set roles", self._admin_set_roles),
            ("POST", r"/faults", "admin inject fault", self._admin_inject),
            ("DELETE", r"/faults", "admin clear faults", self._admin_clear_faults),
            ("PUT", r"/deliveries", "admin delivery mode", self._admin_delivery_mode),
            ("GET", r"/deliveries", "admin deliveries", self._admin_deliveries),
            ("POST", r"/deliveries/flush", "admin flush deliveries", self._admin_flush),
            (
                "POST",
                r"/subscriptions/(?P<ref>[^/]+)/expire",
                "admin expire subscription",
                self._admin_expire_sub,
            ),
            (
                "POST",
                r"/subscriptions/(?P<ref>[^/]+)/reauthorization",
                "admin require reauthorization",
                self._admin_reauthorization,
            ),
        ]
        for method, pattern, name, handler in admin:
            self.router.add(method, "/_admin" + pattern, _admin_errors(handler), name)

    def _admin_reset_counts(self, request: Request) -> Response:
        self.reset_counts()
        return Response(204)

    def _admin_load(self, request: Request) -> Response:
        self.load(Tenant.from_json(request.json()))
        return Response(204)

    def _admin_add_user(self, request: Request) -> Response:
        return Response(201, {"id": self.add_user(request.json())})

    def _admin_update_user(self, request: Request) -> Response:
        self.update_user(request.params["ref"], **request.json())
        return Response(204)

    def _admin_delete_user(self, request: Request) -> Response:
        self.delete_user(request.params["ref"], permanent=request.query.get("permanent") == "true")
        return Response(204)

    def _admin_restore_user(self, request: Request) -> Response:
        self.restore_user(request.params["ref"])
        return Response(204)

    def _admin_mailbox(self, request: Request) -> Response:
        body = request.json()
        self.set_mailbox(request.params["ref"], body.get("userPurpose") if body else None)
        return Response(204)

    def _admin_add_group(self, request: Request) -> Response:
        return Response(201, {"id": self.add_group(request.json())})

    def _admin_update_group(self, request: Request) -> Response:
        self.update_group(request.params["gid"], **request.json())
        return Response(204)

    def _admin_delete_group(self, request: Request) -> Response:
        self.delete_group(request.params["gid"], permanent=request.query.get("permanent") == "true")
        return Response(204)

    def _admin_link(self, request: Request) -> Response:
        member = str(request.json()["id"])
        if request.params["rel"] == "members":
            self.add_member(request.params["gid"], member)
        else:
            self.add_owner(request.params["gid"], member)
        return Response(204)

    def _admin_unlink(self, request: Request) -> Response:
        if request.params["rel"] == "members":
            self.remove_member(request.params["gid"], request.params["ref"])
        else:
            self.store.remove_owner(request.params["gid"], self._object_id(request.params["ref"]))
        return Response(204)

    def _admin_set_roles(self, request: Request) -> Response:
        roles = request.json().get("roles")
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise ValueError('the body must be {"roles": ["User.Read.All", ...]}')
        self.set_roles(roles)
        return Response(204)

    def _admin_expire_cursors(self, request: Request) -> Response:
        self.expire_cursors()
        return Response(204)

    def _admin_inject(self, request: Request) -> Response:
        body = request.json()
        self.inject(
            int(body["status"]),
            count=body.get("count"),
            fraction=body.get("fraction"),
            retry_after=body.get("retryAfter"),
            routes=body.get("routes"),
        )
        return Response(204)

    def _admin_clear_faults(self, request: Request) -> Response:
        self.clear_faults()
        return Response(204)

    def _admin_delivery_mode(self, request: Request) -> Response:
        self.set_delivery_mode(str(request.json()["mode"]))
        return Response(204)

    def _admin_deliveries(self, request: Request) -> Response:
        log = [vars(d) for d in self.deliveries]
        return Response(
            200, {"mode": self.webhooks.mode, "dropped": self.webhooks.dropped, "deliveries": log}
        )

    def _admin_flush(self, request: Request) -> Response:
        return Response(200 if self.flush_deliveries() else 504, {})

    def _admin_expire_sub(self, request: Request) -> Response:
        self.expire_subscription(request.params["ref"])
        return Response(204)

    def _admin_reauthorization(self, request: Request) -> Response:
        self.require_reauthorization(request.params["ref"])
        return Response(204)


class _Gone(Exception):
    """A delta or skip token that is unknown, from another round, or from before expire_cursors()."""


def _admin_errors(handler: Callable[[Request], Response]) -> Callable[[Request], Response]:
    def guarded(request: Request) -> Response:
        try:
            return handler(request)
        except (NotFound, KeyError) as missing:
            return Response(404, {"error": f"not found: {missing}"})
        except (ValueError, TypeError, SubscriptionRefused) as problem:
            return Response(400, {"error": str(problem)})

    return guarded


def build(seed: str | None, roles: Iterable[str] = GRANTED_BY_BICEP) -> Router:
    tenant = Tenant.load(Path(seed)) if seed else seed_use_case()
    return GraphSimulator(tenant, roles=roles).router


def main(argv: Sequence[str] | None = None) -> None:
    """The command line: the shared simulator flags plus ``--roles`` (comma-separated app roles)."""
    import argparse

    from simulators.http import serve_from_command_line

    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--roles", default=",".join(sorted(GRANTED_BY_BICEP)))
    known, rest = parser.parse_known_args(argv)
    serve_from_command_line("graph", lambda seed: build(seed, parse_roles(known.roles)), rest)


if __name__ == "__main__":
    main()
