"""How directory objects are rendered and lists are paged: page sizes, default properties, ``$top``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from simulators.graph.store import DirectoryStore
from simulators.graph.wire import base_url, decode, encode, error
from simulators.http import Request, Response

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


@dataclass
class PageSizes:
    users_delta: int = 200
    groups_delta: int = 100
    members_per_page: int = 1000
    list_default: int = 100
    list_max: int = 999


def render_user(user: dict[str, Any], select: Sequence[str] | None) -> dict[str, Any]:
    names = DEFAULT_USER_PROPERTIES if select is None else select
    rendered = {"id": user["id"]}
    for name in names:
        if name != "id":
            rendered[name] = user.get(name)
    return rendered


def render_group(group: dict[str, Any], select: Sequence[str] | None) -> dict[str, Any]:
    names = DEFAULT_GROUP_PROPERTIES if select is None else select
    rendered = {"id": group["id"]}
    for name in names:
        if name not in ("id", "members"):
            rendered[name] = group.get(name)
    return rendered


def render_object(store: DirectoryStore, object_id: str, select: Sequence[str] | None) -> dict[str, Any]:
    """A user or a group in a mixed list (members, memberOf), typed with ``@odata.type``."""
    if store.is_group(object_id):
        rendered = render_group(store.groups[object_id], select)
    else:
        rendered = render_user(store.users[object_id], select)
    return {"@odata.type": store.odata_type(object_id), **rendered}


def paged(
    request: Request, sizes: PageSizes, ids: Sequence[str], render: Callable[[str], dict[str, Any]]
) -> Response:
    """One page of a list: ``$top`` (default and maximum from ``sizes``), then ``@odata.nextLink``."""
    try:
        top = max(1, min(int(request.query.get("$top", sizes.list_default)), sizes.list_max))
        start = int(decode(request.query["$skiptoken"])["o"]) if "$skiptoken" in request.query else 0
    except (ValueError, KeyError, UnicodeDecodeError):
        return error(400, "Request_BadRequest", "invalid $top or $skiptoken")
    body: dict[str, Any] = {
        "@odata.context": f"{base_url(request)}/$metadata",
        "value": [render(i) for i in ids[start : start + top]],
    }
    if start + top < len(ids):
        query = {k: v for k, v in request.query.items() if k != "$skiptoken"}
        query["$skiptoken"] = encode({"o": start + top})
        path = quote(request.path, safe="/()$'@:,=.-_")
        body["@odata.nextLink"] = f"http://{request.headers.get('host')}{path}?{urlencode(query)}"
    return Response(200, body)
