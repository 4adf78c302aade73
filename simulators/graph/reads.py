"""Users and groups read one at a time or as lists: ``/users`` (with Graph's query rules, ``query.py``),
a user's mailbox settings and group memberships, ``/groups`` by name, a group's members and owners.

Mailbox settings come from Exchange, with Exchange's answers: 404 ``MailboxNotEnabledForRESTAPI`` for a
user without a mailbox (or one still being provisioned), and 403 ``ErrorAccessDenied``, in Exchange's own
envelope, for a mailbox an application access policy keeps from the app (``scoped_away``)."""

from __future__ import annotations

import re

from simulators.graph.pages import PageSizes, paged, render_group, render_object, render_user
from simulators.graph.query import QueryRefused, ordered, user_query
from simulators.graph.store import DirectoryStore, NotFound
from simulators.graph.wire import REF, GraphRoute, base_url, error, not_found, selected
from simulators.http import Request, Response

MAILBOX_DEFAULTS = {
    "timeZone": "UTC",
    "dateFormat": "M/d/yyyy",
    "timeFormat": "h:mm tt",
    "delegateMeetingMessageDeliveryOptions": "sendToDelegateOnly",
    "userPurpose": "user",
}
ACCESS_DENIED = "Access is denied. Check credentials and try again."
_NAME_EQ = re.compile(r"^\s*displayName\s+eq\s+'((?:[^']|'')*)'\s*$", re.IGNORECASE)
_NAME_STARTS = re.compile(r"^\s*startswith\(\s*displayName\s*,\s*'((?:[^']|'')*)'\s*\)\s*$", re.IGNORECASE)
_CAST_GROUP = r"(/(microsoft\.)?graph\.group)?"


def _advanced(request: Request) -> bool:
    """An advanced query: ``ConsistencyLevel: eventual`` and ``$count=true``."""
    level = request.headers.get("consistencylevel", "")
    return level.lower() == "eventual" and request.query.get("$count", "").lower() == "true"


class DirectoryReads:
    def __init__(self, store: DirectoryStore, sizes: PageSizes) -> None:
        self.store = store
        self.sizes = sizes

    def routes(self) -> list[GraphRoute]:
        return [
            GraphRoute("GET", r"/users", "users", self.list_users),
            GraphRoute("GET", rf"/users/{REF}", "user", self.get_user),
            GraphRoute("GET", rf"/users/{REF}/mailboxSettings", "mailbox settings", self.mailbox_settings),
            GraphRoute("GET", rf"/users/{REF}/memberOf{_CAST_GROUP}", "member of", self.member_of),
            GraphRoute(
                "GET",
                rf"/users/{REF}/transitiveMemberOf{_CAST_GROUP}",
                "transitive member of",
                self.member_of,
            ),
            GraphRoute("GET", r"/groups", "groups", self.list_groups),
            GraphRoute("GET", rf"/groups/{REF}", "group", self.get_group),
            GraphRoute("GET", rf"/groups/{REF}/members", "group members", self.group_members),
            GraphRoute(
                "GET", rf"/groups/{REF}/transitiveMembers", "group transitive members", self.group_members
            ),
            GraphRoute("GET", rf"/groups/{REF}/owners", "group owners", self.group_members),
        ]

    def list_users(self, request: Request) -> Response:
        """``$filter``, ``$search``, ``$count``, ``$orderby`` and ``$top`` as Graph takes them for users,
        refusals included (see ``query.py``)."""
        try:
            query = user_query(request.query, request.headers)
        except QueryRefused as refused:
            return error(400, refused.code, refused.message)
        users = self.store.users
        ids = ordered([i for i in users if query.selects(users[i])], users, query.order_by)
        select = selected(request)
        answer = paged(request, self.sizes, ids, lambda i: render_user(users[i], select))
        if query.count and answer.status == 200:
            answer.body = {"@odata.count": len(ids), **answer.body}
        return answer

    def get_user(self, request: Request) -> Response:
        try:
            user = self.store.find_user(request.params["ref"])
        except NotFound:
            return not_found(request.params["ref"])
        return Response(200, render_user(user, selected(request)))

    def mailbox_settings(self, request: Request) -> Response:
        try:
            user = self.store.find_user(request.params["ref"])
        except NotFound:
            return not_found(request.params["ref"])
        if user["id"] in self.store.scoped_away:
            # Exchange's refusal word for word, in its envelope (no innerError), not Graph's
            return Response(403, {"error": {"code": "ErrorAccessDenied", "message": ACCESS_DENIED}})
        settings = self.store.mailboxes.get(user["id"])
        if settings is None:
            return error(
                404,
                "MailboxNotEnabledForRESTAPI",
                "The mailbox is either inactive, soft-deleted, or is hosted on-premise.",
            )
        return Response(
            200, {"@odata.context": f"{base_url(request)}/$metadata", **MAILBOX_DEFAULTS, **settings}
        )

    def member_of(self, request: Request) -> Response:
        if request.path.endswith("graph.group") and not _advanced(request):
            # Graph's v1.0 reference lists both as required for an OData cast (an example on the same page
            # omits them, and docs-contrib#1517 saw the refusal): the stand-in takes the strict reading.
            return error(
                400,
                "Request_UnsupportedQuery",
                "The OData cast requires the ConsistencyLevel header set to eventual and $count=true.",
            )
        try:
            user = self.store.find_user(request.params["ref"])
        except NotFound:
            return not_found(request.params["ref"])
        transitive = "/transitiveMemberOf" in request.path
        ids = self.store.transitive_groups_of(user["id"]) if transitive else self.store.groups_of(user["id"])
        select = selected(request)
        return paged(request, self.sizes, ids, lambda i: render_object(self.store, i, select))

    def list_groups(self, request: Request) -> Response:
        ids = list(self.store.groups)
        raw = request.query.get("$filter")
        if raw:
            equal, starts = _NAME_EQ.match(raw), _NAME_STARTS.match(raw)
            found = equal or starts
            if found is None:
                return error(400, "Request_UnsupportedQuery", f"unsupported $filter {raw!r}")
            wanted = found.group(1).replace("''", "'").lower()
            names = {g: str(self.store.groups[g].get("displayName") or "").lower() for g in ids}
            ids = [g for g in ids if (names[g] == wanted if equal else names[g].startswith(wanted))]
        select = selected(request)
        return paged(request, self.sizes, ids, lambda i: render_group(self.store.groups[i], select))

    def get_group(self, request: Request) -> Response:
        group = self.store.groups.get(request.params["ref"])
        if group is None:
            return not_found(request.params["ref"])
        return Response(200, render_group(group, selected(request)))

    def group_members(self, request: Request) -> Response:
        group_id = request.params["ref"]
        if group_id not in self.store.groups:
            return not_found(group_id)
        if request.path.endswith("/transitiveMembers"):
            ids = self.store.transitive_members(group_id)
        elif request.path.endswith("/owners"):
            ids = [o for o in self.store.owners[group_id] if o in self.store.users or self.store.is_group(o)]
        else:
            ids = list(self.store.members[group_id])
        select = selected(request)
        return paged(request, self.sizes, ids, lambda i: render_object(self.store, i, select))
