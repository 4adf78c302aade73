"""Application permissions the Graph simulator enforces, per endpoint, as Graph documents them.

Each route names the Graph application permissions (app roles) that let an app call it: the least
privileged one first, then the broader ones Graph also accepts. A subscription needs the permission of
the resource it watches (``subscription-post-subscriptions.md``: ``user`` → User.Read.All, ``group`` →
Group.Read.All; GroupMember.Read.All is not enough for a groups subscription). Renewing, reauthorizing
and deleting a subscription need the same permission as creating it.

Graph itself answers a missing permission with 403 ``Authorization_RequestDenied`` and a message that
does not name the permission; the simulator names it, so a test failure says what is missing. The
product names it on its own side (``provisioning/adapters/graph/errors.py``), never relying on this text.
"""

from __future__ import annotations

from collections.abc import Iterable

# What infra/modules/graph-app-roles.bicep grants: the simulator's default, so it behaves like a
# deployment made from this repository.
GRANTED_BY_BICEP = frozenset({"User.Read.All", "Group.Read.All", "MailboxSettings.Read"})

_USERS = ("User.Read.All", "User.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All")
_GROUPS = (
    "GroupMember.Read.All",
    "Group.Read.All",
    "Group.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
)
_MAILBOX = ("MailboxSettings.Read", "MailboxSettings.ReadWrite")
_MEMBER_OF = ("Directory.Read.All", "GroupMember.Read.All", "Group.Read.All", "Directory.ReadWrite.All")

# Route name (as registered in delta.py, reads.py, batch.py and subscriptions.py) → the permissions that
# allow it (any one suffices). A route missing here is refused outright: a new route must say what it needs.
ROUTES: dict[str, tuple[str, ...]] = {
    "users delta": _USERS,
    "users": _USERS,
    "user": _USERS,
    "mailbox settings": _MAILBOX,
    "member of": _MEMBER_OF,
    "transitive member of": _MEMBER_OF,
    "groups delta": _GROUPS,
    "groups": _GROUPS,
    "group": _GROUPS,
    "group members": _GROUPS,
    "group transitive members": _GROUPS,
    "group owners": _GROUPS,
}
# Routes open to any authenticated app: the batch envelope (each step is checked on its own) and the
# list of the app's own subscriptions.
OPEN_ROUTES = frozenset({"batch", "subscriptions"})
# Routes whose permission depends on the subscribed resource.
SUBSCRIPTION_ROUTES = frozenset(
    {
        "create subscription",
        "subscription",
        "renew subscription",
        "delete subscription",
        "reauthorize subscription",
    }
)
SUBSCRIPTIONS: dict[str, tuple[str, ...]] = {
    "users": _USERS,
    "groups": ("Group.Read.All", "Group.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"),
}


class PermissionMissing(Exception):
    """The app holds none of the permissions an endpoint accepts."""

    def __init__(self, what: str, accepted: tuple[str, ...]) -> None:
        alternatives = f" (or one of {', '.join(accepted[1:])})" if len(accepted) > 1 else ""
        super().__init__(
            f"Insufficient privileges to complete the operation: {what} needs the application "
            f"permission {accepted[0]}{alternatives}"
        )
        self.permission = accepted[0]


def parse_roles(text: str | Iterable[str]) -> frozenset[str]:
    """``"User.Read.All,Group.Read.All"`` (or a list) → a set of role names; blanks ignored."""
    items = text.split(",") if isinstance(text, str) else text
    return frozenset(r.strip() for r in items if r.strip())


def check_route(roles: frozenset[str], route: str) -> None:
    if route in OPEN_ROUTES:
        return
    accepted = ROUTES.get(route)
    if accepted is None:
        raise PermissionMissing(f"route {route!r} (no permission is known for it)", ("unknown",))
    if roles.isdisjoint(accepted):
        raise PermissionMissing(route, accepted)


def check_subscription(roles: frozenset[str], resource: str) -> None:
    accepted = SUBSCRIPTIONS.get(resource.strip("/").lower())
    if accepted is not None and roles.isdisjoint(accepted):
        raise PermissionMissing(f"a {resource} subscription", accepted)
