"""Entra ID through Microsoft Graph (msgraph-sdk), behind the ``Directory`` port.

Bulk reads are delta rounds: users from ``/users/delta`` with ``$select``; direct membership of the
mapped groups from ``/groups/delta`` with ``members@delta``, at most ``filter_limit`` group ids per round
(Graph's documented limit for ``$filter=id eq … or …``). Both are read as raw JSON (see ``delta.py`` for
why). Per-user calls exist only where nothing else works: mailbox purpose, in ``$batch`` requests of 20.
Subscriptions are written with the SDK's typed ``Subscription`` model but read back as JSON too: the
first deserialisation of any kiota entity model imports some 1,200 model modules (about 2 s here), a
cold-start cost the timer function would pay on every new instance for four fields.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from difflib import get_close_matches
from functools import partial
from typing import Any
from urllib.parse import quote, urlencode

import httpx
from kiota_abstractions.base_request_configuration import RequestConfiguration
from kiota_abstractions.native_response_handler import NativeResponseHandler
from kiota_http.middleware.options import ResponseHandlerOption
from msgraph import GraphServiceClient
from msgraph.generated.groups.delta.delta_request_builder import DeltaRequestBuilder as GroupsDelta
from msgraph.generated.groups.groups_request_builder import GroupsRequestBuilder
from msgraph.generated.groups.item.group_item_request_builder import GroupItemRequestBuilder
from msgraph.generated.groups.item.members.members_request_builder import MembersRequestBuilder
from msgraph.generated.models.subscription import Subscription as GraphSubscription
from msgraph.generated.users.delta.delta_request_builder import DeltaRequestBuilder as UsersDelta
from msgraph.generated.users.item.member_of.graph_group.graph_group_request_builder import (
    GraphGroupRequestBuilder as MemberOfGroups,
)
from msgraph.generated.users.item.transitive_member_of.graph_group.graph_group_request_builder import (
    GraphGroupRequestBuilder as TransitiveMemberOfGroups,
)
from msgraph.generated.users.item.user_item_request_builder import UserItemRequestBuilder
from msgraph.generated.users.users_request_builder import UsersRequestBuilder

from provisioning.adapters.clock import SystemClock
from provisioning.adapters.graph.client import (
    GraphConnection,
    GraphRetryPolicy,
    roles_claim,
    tenant_claim,
)
from provisioning.adapters.graph.delta import (
    GroupsLink,
    LinkGuard,
    ReadBounds,
    account,
    groups_page,
    membership_cursor,
    membership_links,
    resumable,
    user_change,
    user_select,
    users_cursor,
    users_delta_link,
)
from provisioning.adapters.graph.errors import (
    checked_json,
    error_body,
    error_for,
    graph_errors,
    raise_for_status,
    retry_after_seconds,
)
from provisioning.adapters.graph.query import odata_string as _quoted
from provisioning.adapters.graph.query import prefix_filter
from provisioning.domain.accounts import EntraAccount, Unreadable
from provisioning.domain.directory import (
    MembershipPage,
    Probe,
    Subscription,
    UserChange,
    UserPage,
    UserSearch,
    UserUnreadable,
)
from provisioning.domain.groups import EntraGroup, classify_group
from provisioning.errors import (
    AmbiguousGroup,
    GroupNotFound,
    NotFoundError,
    ProvisioningError,
    TransientError,
)
from provisioning.ports import Clock

log = logging.getLogger(__name__)

FILTER_LIMIT = 50  # ids per groups-delta $filter (delta-query-overview)
BATCH_LIMIT = 20  # requests per JSON batch
SEARCH_LIMIT = 999  # Graph's largest $top for users
MAX_SUBSCRIPTION_LIFETIME = timedelta(minutes=41_760)  # users and groups
CLOCK_SKEW_MARGIN = timedelta(minutes=10)  # ours and Graph's clocks differ; never ask for the very maximum
GROUP_FIELDS = ["id", "displayName", "groupTypes", "mailEnabled", "securityEnabled"]
NAME_SCAN_PAGES = 5  # for close matches of an unknown group name: at most 5 × 999 names are compared
GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
# The v1.0 memberOf reference lists both as required for an OData cast, while one of its examples omits
# them; Graph accepts them either way, so they are always sent.
CAST_HEADERS = {"ConsistencyLevel": "eventual"}
NOT_RETURNED = Unreadable(
    "the account", "a read by id did not return it (Graph may not have replicated a recent change yet)"
)
NO_MAILBOX = "MailboxNotEnabledForRESTAPI"  # Exchange: no mailbox, or one still being provisioned
MAILBOX_FORBIDDEN = Unreadable(
    "mailbox settings",
    "Exchange answered 403: the mailbox is scoped away from this app (an application access policy or "
    "RBAC for Applications), or the app lacks MailboxSettings.Read",
)


def _raw(query: Any = None, headers: dict[str, str] | None = None) -> RequestConfiguration[Any]:
    """A request configuration that hands back the httpx response instead of kiota models."""
    configuration: RequestConfiguration[Any] = RequestConfiguration(
        query_parameters=query, options=[ResponseHandlerOption(NativeResponseHandler())]
    )
    for name, value in (headers or {}).items():
        configuration.headers.add(name, value)
    return configuration


def _getter(builder: Any, query: Any = None) -> Callable[[], Awaitable[Any]]:
    """The first request of a read: ``builder.get`` with the query, answered as raw JSON."""
    return partial(builder.get, request_configuration=_raw(query))


def _chunks(items: Sequence[str], size: int) -> list[list[str]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


class GraphDirectory:
    def __init__(
        self,
        connection: GraphConnection,
        *,
        filter_limit: int = FILTER_LIMIT,
        batch_concurrency: int = 4,
        clock: Clock | None = None,
        read_bounds: ReadBounds | None = None,
    ) -> None:
        self._connection = connection
        self.client: GraphServiceClient = connection.client
        self.filter_limit = filter_limit
        self.batch_concurrency = batch_concurrency
        self.clock: Clock = clock or SystemClock()
        self.read_bounds = read_bounds or ReadBounds()  # tests shrink them; see ReadBounds for the sizes

    @property
    def retry(self) -> GraphRetryPolicy:
        return self._connection.retry.policy

    @property
    def waits(self) -> list[float]:
        """Every throttling wait sat out so far, in seconds as Graph asked (tests, diagnostics)."""
        return self._connection.retry.waits

    async def aclose(self) -> None:
        await self._connection.aclose()

    # raw JSON --------------------------------------------------------------------------------------
    async def _send(self, action: str, call: Callable[[], Awaitable[Any]]) -> None:
        """A request whose answer has no body worth reading (204)."""
        async with graph_errors(action):
            response = await call()
        raise_for_status(response, action)

    async def _json(self, action: str, call: Callable[[], Awaitable[Any]]) -> dict[str, Any]:
        async with graph_errors(action):
            response = await call()
        return checked_json(response, action)

    def _link(
        self, url: str, headers: dict[str, str] | None = None
    ) -> Callable[[], Awaitable[httpx.Response]]:
        """A GET of a URL as it is: Graph's own links, passed through untouched, or one built here."""
        return partial(self._connection.send, "GET", url, headers=headers)

    async def _pages(
        self,
        action: str,
        first: Callable[[], Awaitable[Any]],
        headers: dict[str, str] | None = None,
        *,
        start: str | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """Every page of a collection, following ``@odata.nextLink`` (with ``headers``: an advanced
        query's next pages need its ``ConsistencyLevel`` too); ``start`` is the link ``first`` asks for,
        when it is one. Every read ends (``LinkGuard``): a link off Graph's origin, a link followed
        before in this read, or a read past its ``ReadBounds`` stops it with ``PagingStopped``; the
        last page's ``@odata.deltaLink`` is checked before anyone sees the page that carries it."""
        guard = LinkGuard(action, self._connection.base_url, self.read_bounds, start=start)
        page = await self._json(action, first)
        while True:
            guard.page_read()
            next_link = page.get("@odata.nextLink")
            if not next_link and page.get("@odata.deltaLink"):
                guard.keep(str(page["@odata.deltaLink"]))
            yield page
            if not next_link:
                return
            page = await self._json(action, self._link(guard.follow(str(next_link)), headers))

    # users -----------------------------------------------------------------------------------------
    async def read_users(self, cursor: str | None, select: Sequence[str]) -> AsyncIterator[UserPage]:
        names = user_select(select)
        delta = self.client.users.delta
        start = None if cursor is None else self._resumable(users_delta_link(cursor, names), "users")
        if start is None:
            first = _getter(delta, UsersDelta.DeltaRequestBuilderGetQueryParameters(select=names))
        else:
            first = self._link(start)
        async for page in self._pages("users delta", first, start=start):
            changes = tuple(user_change(item) for item in page.get("value", ()))
            if page.get("@odata.nextLink"):
                yield UserPage(changes)
            elif page.get("@odata.deltaLink"):
                yield UserPage(changes, cursor=users_cursor(str(page["@odata.deltaLink"]), names))
            else:
                raise TransientError("Graph ended a users delta round without a deltaLink")

    async def get_user(self, id_or_upn: str, select: Sequence[str]) -> EntraAccount | None:
        query = UserItemRequestBuilder.UserItemRequestBuilderGetQueryParameters(select=user_select(select))
        builder = self.client.users.by_user_id(id_or_upn)
        try:
            item = await self._json("get user", _getter(builder, query))
        except NotFoundError:
            return None
        return account(item)

    async def get_users(self, user_ids: Collection[str], select: Sequence[str]) -> list[UserChange]:
        """Fresh state of several users: a users-delta read filtered by id (50 per request, the
        documented limit), whose deltaLink is simply dropped. An id Graph does not return is not proof
        that the user is gone (a user created a moment ago may not be replicated yet; deletions come
        from delta as ``@removed``): it comes back unreadable, to be read again later."""
        names = user_select(select)
        wanted = sorted(set(user_ids))
        found: dict[str, UserChange] = {}
        for chunk in _chunks(wanted, self.filter_limit):
            clause = " or ".join(f"id eq {_quoted(i)}" for i in chunk)
            # Built here rather than by the SDK's URL template, which expands a 50-id filter three
            # times a request, one quoting call per character: a tenth of a busy worker's CPU.
            query = urlencode({"$select": ",".join(names), "$filter": clause}, quote_via=quote, safe="$,")
            url = f"{self._connection.base_url}/users/delta?{query}"
            async for page in self._pages("users by id", self._link(url), start=url):
                found.update((c.id, c) for c in (user_change(item) for item in page.get("value", ())))
        return [found.get(i) or UserUnreadable(i, NOT_RETURNED) for i in wanted]

    async def search_users(self, prefix: str, select: Sequence[str], limit: int) -> UserSearch:
        """One ``GET /users`` with ``$filter=startswith(…) or …`` over ``SEARCH_PROPERTIES`` and
        ``$top=limit``: a default query, strongly consistent, so an account created a moment ago is found.
        A next link means more accounts match than were asked for; it is not followed."""
        if not 1 <= limit <= SEARCH_LIMIT:
            raise ValueError(f"limit must be 1..{SEARCH_LIMIT}, got {limit}")
        query = UsersRequestBuilder.UsersRequestBuilderGetQueryParameters(
            filter=prefix_filter(prefix), select=user_select(select), top=limit
        )
        page = await self._json("search users", _getter(self.client.users, query))
        found = tuple(account(item) for item in page.get("value", ()))[:limit]
        return UserSearch(found, more=bool(page.get("@odata.nextLink")))

    async def groups_of_each(
        self, user_ids: Collection[str], *, transitive: bool = False
    ) -> dict[str, frozenset[str]]:
        """``groups_of`` for several users, in one ``$batch`` per 20. A step that is throttled, paged
        (over 999 groups) or odd is asked again on its own, with the usual retries and paging."""
        relation = "transitiveMemberOf" if transitive else "memberOf"
        found: dict[str, frozenset[str]] = {}
        for chunk in _chunks(list(dict.fromkeys(user_ids)), BATCH_LIMIT):
            steps = {str(n): user_id for n, user_id in enumerate(chunk, start=1)}
            answers = await self._batch(
                [
                    {
                        "id": key,
                        "method": "GET",
                        "url": f"/users/{quote(user_id, safe='')}/{relation}/microsoft.graph.group"
                        "?$select=id&$top=999&$count=true",
                        "headers": CAST_HEADERS,
                    }
                    for key, user_id in steps.items()
                ]
            )
            for key, user_id in steps.items():
                answer = answers.get(key, {})
                body = answer.get("body")
                if answer.get("status") == 200 and isinstance(body, dict) and "@odata.nextLink" not in body:
                    found[user_id] = frozenset(str(item["id"]) for item in body.get("value", ()))
                else:
                    found[user_id] = await self.groups_of(user_id, transitive=transitive)
        return found

    async def groups_of(self, user_id: str, *, transitive: bool = False) -> frozenset[str]:
        """Groups only (directory roles and administrative units are left out by the cast)."""
        user = self.client.users.by_user_id(user_id)
        builder: Any = user.transitive_member_of.graph_group if transitive else user.member_of.graph_group
        params = TransitiveMemberOfGroups if transitive else MemberOfGroups
        query = params.GraphGroupRequestBuilderGetQueryParameters(select=["id"], top=999, count=True)
        found: set[str] = set()
        action = "transitive member of" if transitive else "member of"
        first = partial(builder.get, request_configuration=_raw(query, CAST_HEADERS))
        async for page in self._pages(action, first, CAST_HEADERS):
            found.update(str(item["id"]) for item in page.get("value", ()))
        return frozenset(found)

    # membership ------------------------------------------------------------------------------------
    async def read_memberships(
        self, cursor: str | None, group_ids: Collection[str]
    ) -> AsyncIterator[MembershipPage]:
        """Links of the old cursor are followed for the groups still wanted (the others' changes are
        dropped and they leave the cursor, so if they come back they are read in full again); groups
        no link covers are read in full, ``filter_limit`` per round, and reset on the round's first page.
        The cursor is known only when every round has ended, so each page is held back until the next
        one arrives and the last carries the cursor."""
        wanted = frozenset(group_ids)
        followed: list[GroupsLink] = []
        for old in membership_links(cursor):
            resumed = self._resumable(old.link, "membership")  # every link, before any round is read
            if old.groups & wanted:
                followed.append(GroupsLink(old.groups & wanted, resumed))
        covered = frozenset().union(*(old.groups for old in followed))
        fresh = sorted(wanted - covered)
        new_links: list[GroupsLink] = []
        held: MembershipPage | None = None
        rounds: list[tuple[frozenset[str], str | None, bool]] = [(x.groups, x.link, False) for x in followed]
        rounds += [(frozenset(chunk), None, True) for chunk in _chunks(fresh, self.filter_limit)]
        for groups, link, full in rounds:
            async for page in self._membership_round(groups, link, full, new_links):
                if held is not None:
                    yield held
                held = page
        yield replace(held or MembershipPage(), cursor=membership_cursor(new_links))

    async def _membership_round(
        self, groups: frozenset[str], link: str | None, full: bool, new_links: list[GroupsLink]
    ) -> AsyncIterator[MembershipPage]:
        delta = self.client.groups.delta
        if link is None:
            clause = " or ".join(f"id eq {_quoted(g)}" for g in sorted(groups))
            first = _getter(
                delta,
                GroupsDelta.DeltaRequestBuilderGetQueryParameters(select=["id", "members"], filter=clause),
            )
        else:
            first = self._link(link)
        seen: set[str] = set()
        reset = groups if full else frozenset()
        async for raw in self._pages("groups delta", first, start=link):
            page = groups_page(raw.get("value", ()), groups)
            seen |= page.seen_groups
            yield MembershipPage(
                tuple(page.changes),
                reset,
                frozenset(page.removed_groups),
                seen_groups=frozenset(page.seen_groups),
            )
            reset = frozenset()
            if not raw.get("@odata.nextLink"):
                if not raw.get("@odata.deltaLink"):
                    raise TransientError("Graph ended a groups delta round without a deltaLink")
                new_links.append(GroupsLink(groups, str(raw["@odata.deltaLink"])))
        missing = groups - seen if full else frozenset()
        if missing:  # read in full yet never sent: no such group (any more)
            yield MembershipPage(removed_groups=frozenset(missing))

    def _resumable(self, link: str, cursor: str) -> str:
        """A link kept in the ``cursor`` cursor, or ``CursorExpired`` when it is not on Graph's origin."""
        return resumable(link, self._connection.base_url, cursor)

    # groups ----------------------------------------------------------------------------------------
    async def find_group(self, ref: str) -> EntraGroup:
        if GUID.match(ref.strip()):
            query = GroupItemRequestBuilder.GroupItemRequestBuilderGetQueryParameters(select=GROUP_FIELDS)
            builder = self.client.groups.by_group_id(ref.strip())
            try:
                return _group(await self._json("get group", _getter(builder, query)))
            except NotFoundError:
                raise GroupNotFound(ref) from None
        name = ref.strip()
        query = GroupsRequestBuilder.GroupsRequestBuilderGetQueryParameters(
            select=GROUP_FIELDS, filter=f"displayName eq {_quoted(name)}", top=999
        )
        found = await self._json("find group", _getter(self.client.groups, query))
        matches = [_group(item) for item in found.get("value", ())]
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise AmbiguousGroup(ref, [g.describe() for g in matches])
        raise GroupNotFound(ref, await self._close_group_names(name))

    async def find_groups(self, refs: Sequence[str]) -> dict[str, EntraGroup | ProvisioningError]:
        """Every mapping's group in one ``$batch`` per 20 references (the per-run cost of resolving the
        policy); a step that did not answer plainly falls back to ``find_group`` for that reference."""
        results: dict[str, EntraGroup | ProvisioningError] = {}
        for chunk in _chunks(list(dict.fromkeys(refs)), BATCH_LIMIT):
            steps = {str(n): ref for n, ref in enumerate(chunk, start=1)}
            answers = await self._batch(
                [{"id": key, "method": "GET", "url": _group_url(ref)} for key, ref in steps.items()]
            )
            for key, ref in steps.items():
                answer = answers.get(key, {})
                results[ref] = await self._group_answer(
                    ref, int(answer.get("status") or 0), answer.get("body")
                )
        return results

    async def _group_answer(self, ref: str, status: int, body: Any) -> EntraGroup | ProvisioningError:
        by_id = bool(GUID.match(ref.strip()))
        if status == 200 and isinstance(body, dict):
            matches = [_group(body)] if by_id else [_group(item) for item in body.get("value", ())]
            if len(matches) == 1:
                return matches[0]
            if matches:
                return AmbiguousGroup(ref, [g.describe() for g in matches])
            return GroupNotFound(ref, await self._close_group_names(ref.strip()))
        if status == 404 and by_id:
            return GroupNotFound(ref)
        try:  # throttled or odd: ask on its own, with the usual retries
            return await self.find_group(ref)
        except (GroupNotFound, AmbiguousGroup) as error:
            return error

    async def _close_group_names(self, name: str) -> list[str]:
        """Display names that look like ``name``: the error path of config validation, so a bounded scan
        of names is acceptable (Graph has no fuzzy search on groups)."""
        query = GroupsRequestBuilder.GroupsRequestBuilderGetQueryParameters(select=["displayName"], top=999)
        groups = self.client.groups
        names: dict[str, str] = {}
        pages = self._pages("list groups", _getter(groups, query))
        scanned = 0
        async for page in pages:
            for item in page.get("value", ()):
                if item.get("displayName"):
                    names.setdefault(str(item["displayName"]).lower(), str(item["displayName"]))
            scanned += 1
            if scanned >= NAME_SCAN_PAGES:
                break
        close = get_close_matches(name.lower(), list(names), n=3, cutoff=0.6)
        return [names[c] for c in close]

    # mailbox purpose -------------------------------------------------------------------------------
    async def mailbox_purposes(self, user_ids: Collection[str]) -> dict[str, str | Unreadable | None]:
        ids = list(dict.fromkeys(user_ids))
        purposes: dict[str, str | Unreadable | None] = {}
        gate = asyncio.Semaphore(self.batch_concurrency)

        async def one_batch(chunk: list[str]) -> None:
            async with gate:
                purposes.update(await self._purposes(chunk))

        await asyncio.gather(*(one_batch(chunk) for chunk in _chunks(ids, BATCH_LIMIT)))
        return purposes

    async def _purposes(self, user_ids: list[str]) -> dict[str, str | Unreadable | None]:
        """One ``$batch`` of mailboxSettings reads. Steps are throttled one by one: throttled steps are
        sent again after the longest ``Retry-After`` among them, within the same bounds as any request.
        A 404 ``MailboxNotEnabledForRESTAPI`` means no mailbox (or one still being provisioned: the
        planner tells them apart by the account's age); a 403 or any other 404 means we cannot tell."""
        pending = {str(n): user_id for n, user_id in enumerate(user_ids, start=1)}
        purposes: dict[str, str | Unreadable | None] = {}
        for attempt in range(self.retry.max_retries + 1):
            answers = await self._batch(
                [
                    {"id": key, "method": "GET", "url": f"/users/{quote(user_id, safe='')}/mailboxSettings"}
                    for key, user_id in pending.items()
                ]
            )
            throttled: dict[str, str] = {}
            waits: list[float] = []
            for key, user_id in pending.items():
                answer = answers.get(key, {"status": 503})  # a step Graph did not answer is retried
                status, body, headers = (
                    int(answer.get("status") or 0),
                    answer.get("body"),
                    answer.get("headers"),
                )
                if status == 200:
                    purpose = body.get("userPurpose") if isinstance(body, dict) else None
                    purposes[user_id] = str(purpose) if purpose is not None else None
                elif status in (403, 404):
                    purposes[user_id] = _mailbox_refusal(status, body)
                elif status in (429, 503, 504):
                    throttled[key] = user_id
                    waits.append(retry_after_seconds(headers) or self.retry.backoff * 2**attempt)
                else:
                    code, message = error_body(body)
                    raise error_for(
                        status, code, message or "mailboxSettings step failed", headers, "mailbox settings"
                    )
            if not throttled:
                return purposes
            wait = max(waits)
            if attempt == self.retry.max_retries or wait > self.retry.longest_wait:
                raise TransientError(
                    f"Graph throttled {len(throttled)} mailboxSettings reads in $batch", retry_after=wait
                )
            log.warning("Graph throttled %d batch steps; retrying them in %.1f s", len(throttled), wait)
            self.waits.append(wait)
            await asyncio.sleep(wait * self.retry.time_scale)
            pending = throttled
        raise AssertionError("unreachable: the loop returns or raises")

    async def _batch(self, steps: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """POST ``/$batch`` with relative step URLs (msgraph-core's BatchRequestContent sends absolute
        ones, which Graph refuses), and the answers by step id (Graph answers in any order)."""
        content = json.dumps({"requests": steps}).encode()
        url = f"{self._connection.base_url}/$batch"
        body = await self._json("batch", partial(self._connection.send, "POST", url, content))
        return {str(a.get("id")): a for a in body.get("responses", ()) if isinstance(a, dict)}

    # subscriptions ---------------------------------------------------------------------------------
    def _capped(self, expires_at: datetime) -> datetime:
        latest = self.clock.now() + MAX_SUBSCRIPTION_LIFETIME - CLOCK_SKEW_MARGIN
        return min(expires_at, latest)

    async def list_subscriptions(self) -> list[Subscription]:
        subscriptions = self.client.subscriptions
        found: list[Subscription] = []
        async for page in self._pages("list subscriptions", _getter(subscriptions)):
            found.extend(_subscription(item) for item in page.get("value", ()))
        return found

    async def create_subscription(
        self,
        resource: str,
        notification_url: str,
        lifecycle_url: str | None,
        client_state: str,
        expires_at: datetime,
    ) -> Subscription:
        body = GraphSubscription(
            change_type="updated,deleted",
            notification_url=notification_url,
            lifecycle_notification_url=lifecycle_url,
            resource=resource,
            client_state=client_state,
            expiration_date_time=self._capped(expires_at),
            latest_supported_tls_version="v1_2",
        )
        post = partial(self.client.subscriptions.post, body, request_configuration=_raw())
        return _subscription(await self._json(f"create {resource} subscription", post))

    async def renew_subscription(self, subscription_id: str, expires_at: datetime) -> Subscription:
        """A PATCH of the expiry (which also reauthorizes). 404: Graph dropped it, the caller recreates."""
        body = GraphSubscription(expiration_date_time=self._capped(expires_at))
        item = self.client.subscriptions.by_subscription_id(subscription_id)
        patch = partial(item.patch, body, request_configuration=_raw())
        return _subscription(await self._json("renew subscription", patch))

    async def reauthorize_subscription(self, subscription_id: str) -> None:
        reauthorize = self.client.subscriptions.by_subscription_id(subscription_id).reauthorize
        await self._send("reauthorize subscription", partial(reauthorize.post, request_configuration=_raw()))

    async def delete_subscription(self, subscription_id: str) -> None:
        """Deleting one that is already gone is not an error: the outcome is the same."""
        item = self.client.subscriptions.by_subscription_id(subscription_id)
        try:
            await self._send("delete subscription", partial(item.delete, request_configuration=_raw()))
        except NotFoundError:
            log.info("subscription %s was already gone", subscription_id)

    # pre-flight ------------------------------------------------------------------------------------
    async def app_roles(self) -> frozenset[str] | None:
        try:
            async with graph_errors("get a Graph token"):
                token = await self._connection.access_token()
        except ProvisioningError:
            return None  # the other probes report why no token could be had
        return roles_claim(token)

    async def tenant(self) -> str | None:
        async with graph_errors("get a Graph token"):
            token = await self._connection.access_token()
        return tenant_claim(token)

    async def check_access(self) -> list[Probe]:
        probes: list[Probe] = []
        users = await self._probe(probes, "users readable (User.Read.All)", self._probe_users)
        await self._probe(probes, "groups and members readable (Group.Read.All)", self._probe_groups)
        mailbox = "mailbox settings readable (MailboxSettings.Read)"
        if users:
            await self._probe(probes, mailbox, partial(self._probe_mailbox, users[0]))
        else:
            probes.append(Probe(mailbox, False, "no user to try it on"))
        await self._probe(probes, "subscriptions listable", self._probe_subscriptions)
        return probes

    async def _probe(
        self, probes: list[Probe], check: str, attempt: Callable[[], Awaitable[tuple[str, list[str]]]]
    ) -> list[str]:
        """Run one check and record it; what it found on success, [] (and a failed Probe) on failure."""
        try:
            detail, found = await attempt()
        except ProvisioningError as error:
            probes.append(Probe(check, False, str(error)))
            return []
        except Exception as error:  # a pre-flight must report, never raise
            probes.append(Probe(check, False, f"{type(error).__name__}: {error}"))
            return []
        probes.append(Probe(check, True, detail))
        return found

    async def _probe_users(self) -> tuple[str, list[str]]:
        query = UsersRequestBuilder.UsersRequestBuilderGetQueryParameters(select=["id"], top=1)
        page = await self._json("list users", _getter(self.client.users, query))
        ids = [str(item["id"]) for item in page.get("value", ())]
        return ("listed users" if ids else "no users in the tenant"), ids

    async def _probe_groups(self) -> tuple[str, list[str]]:
        query = GroupsRequestBuilder.GroupsRequestBuilderGetQueryParameters(select=["id"], top=1)
        page = await self._json("list groups", _getter(self.client.groups, query))
        if not page.get("value"):
            return "no groups in the tenant", []
        group_id = str(page["value"][0]["id"])
        members_query = MembersRequestBuilder.MembersRequestBuilderGetQueryParameters(select=["id"], top=1)
        members = self.client.groups.by_group_id(group_id).members
        await self._json("list members", _getter(members, members_query))
        return f"read the members of group {group_id}", [group_id]

    async def _probe_mailbox(self, user_id: str) -> tuple[str, list[str]]:
        settings = self.client.users.by_user_id(user_id).mailbox_settings
        try:
            await self._json("mailbox settings", _getter(settings))
        except NotFoundError:
            return f"allowed (user {user_id} has no mailbox)", []
        return f"read the mailbox settings of user {user_id}", [user_id]

    async def _probe_subscriptions(self) -> tuple[str, list[str]]:
        subscriptions = await self.list_subscriptions()
        return f"{len(subscriptions)} subscription(s) of this app", [s.id for s in subscriptions]


def _mailbox_refusal(status: int, body: Any) -> Unreadable | None:
    code, message = error_body(body)
    if status == 404 and code == NO_MAILBOX:
        return None
    if status == 403:
        return MAILBOX_FORBIDDEN
    return Unreadable("mailbox settings", f"Graph answered 404 {code or ''} {message or ''}".strip())


def _group_url(ref: str) -> str:
    """The relative URL of one group lookup inside a ``$batch``: by id, or by exact display name."""
    fields = ",".join(GROUP_FIELDS)
    if GUID.match(ref.strip()):
        return f"/groups/{ref.strip()}?$select={fields}"
    name = quote(f"displayName eq {_quoted(ref.strip())}", safe="")
    return f"/groups?$filter={name}&$select={fields}&$top=999"


def _group(item: dict[str, Any]) -> EntraGroup:
    kind = classify_group(
        item.get("groupTypes") or (), bool(item.get("mailEnabled")), bool(item.get("securityEnabled"))
    )
    return EntraGroup(str(item["id"]), str(item.get("displayName") or ""), kind)


def _subscription(item: dict[str, Any]) -> Subscription:
    expires = datetime.fromisoformat(str(item["expirationDateTime"]))  # Graph: ISO 8601, "Z", 7 digits
    return Subscription(
        id=str(item["id"]),
        resource=str(item.get("resource") or "").strip("/"),
        expires_at=expires if expires.tzinfo else expires.replace(tzinfo=UTC),
        notification_url=str(item.get("notificationUrl") or ""),
        lifecycle_url=item.get("lifecycleNotificationUrl"),
    )
