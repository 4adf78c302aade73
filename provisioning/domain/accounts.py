"""Entra accounts as the planner sees them: identity, kind, attributes and group memberships."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

MEMBER = "Member"
SHARED_PURPOSE = "shared"
GUEST_MARKER = "#EXT#"  # an invited guest's UPN: name_othertenant.com#EXT#@ourtenant.com
INVITATION = "Invitation"  # creationType of an invited (B2B) account


class AccountKind(StrEnum):
    """What a mapping may accept. A shared mailbox is a disabled account whose mailbox is shared."""

    USER = "user"
    SHARED_MAILBOX = "shared_mailbox"


class UserIdAttribute(StrEnum):
    """Which Entra property becomes the Druva ``emailID``."""

    USER_PRINCIPAL_NAME = "userPrincipalName"
    MAIL = "mail"


@dataclass(frozen=True)
class Unreadable:
    """What could not be read about an account, and the likely cause. Such an account is left exactly as
    it is (no create, no preserve, no unlink) and read again later: acting on a guess can stop backups."""

    what: str  # e.g. "mailbox settings", "accountEnabled", "the account"
    cause: str  # what Graph answered and what it most likely means

    def describe(self) -> str:
        return f"{self.what} could not be read: {self.cause}"


@dataclass(frozen=True)
class EntraAccount:
    """One Entra user object as read from Graph, with its memberships in the mapped groups.

    ``attributes`` holds the Graph properties by their Graph names (nested objects as dicts, e.g.
    ``onPremisesExtensionAttributes``). ``user_purpose`` comes from ``mailboxSettings`` and is only
    looked up for disabled accounts; ``None`` means unknown or no mailbox. ``account_enabled`` None:
    Graph did not return it (a skeleton still being filled in), which is never taken as enabled.
    ``created_at``: ``createdDateTime``, None where Graph has none (accounts from before mid-2018).
    ``unreadable``: something the decision needs could not be read.
    """

    id: str
    user_principal_name: str
    display_name: str | None = None
    mail: str | None = None
    user_type: str | None = MEMBER
    account_enabled: bool | None = True
    user_purpose: str | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)
    member_of: frozenset[str] = frozenset()
    transitive_member_of: frozenset[str] = frozenset()
    created_at: datetime | None = None
    unreadable: Unreadable | None = None

    @property
    def kind(self) -> AccountKind:
        if self.account_enabled is False and self.user_purpose == SHARED_PURPOSE:
            return AccountKind.SHARED_MAILBOX
        return AccountKind.USER

    @property
    def is_member(self) -> bool:
        """``userType == Member`` is provisioned, guests never. An account with no ``userType`` at all
        (created before 2014, when Entra began to set it; delta leaves out what was never set) is a
        member unless it is plainly a guest: an ``#EXT#`` principal name or ``creationType``
        ``Invitation``. Any other type is not a member."""
        if self.user_type is not None:
            return self.user_type == MEMBER
        invited = self.attributes.get("creationType") == INVITATION
        return not invited and GUEST_MARKER not in self.user_principal_name.upper()

    @property
    def is_disabled_user(self) -> bool:
        """Disabled and not a shared mailbox: not imported, and preserved if it was."""
        return self.account_enabled is False and self.kind is AccountKind.USER

    @property
    def may_be_shared_mailbox(self) -> bool:
        """Disabled, a member, with a mailbox whose purpose nobody has read yet: only
        ``mailboxSettings`` can tell a shared mailbox from a leaver."""
        return (
            self.account_enabled is False
            and self.is_member
            and bool(self.mail)
            and self.user_purpose is None
            and self.unreadable is None
        )

    def email(self, source: UserIdAttribute) -> str | None:
        value = self.user_principal_name if source is UserIdAttribute.USER_PRINCIPAL_NAME else self.mail
        return value.strip() if value and value.strip() else None

    @property
    def name_for_druva(self) -> str:
        return (self.display_name or "").strip() or self.user_principal_name

    def attribute(self, name: str) -> Any:
        """A Graph property by name; dotted names reach into nested objects
        (``onPremisesExtensionAttributes.extensionAttribute1``)."""
        head, _, rest = name.partition(".")
        value = self.attributes.get(head, self._identity_field(head))
        for part in rest.split(".") if rest else ():
            if not isinstance(value, Mapping):
                return None
            value = value.get(part)
        return value

    def _identity_field(self, name: str) -> Any:
        return {
            "id": self.id,
            "userPrincipalName": self.user_principal_name,
            "displayName": self.display_name,
            "mail": self.mail,
            "userType": self.user_type,
            "accountEnabled": self.account_enabled,
        }.get(name)


# Exchange provisions a new mailbox over minutes to hours; until then mailboxSettings answers 404
# MailboxNotEnabledForRESTAPI, as it does for an account that has no mailbox at all.
MAILBOX_PROVISIONING = timedelta(hours=24)


def with_mailbox(account: EntraAccount, answer: str | Unreadable | None, now: datetime) -> EntraAccount:
    """The account with what its ``mailboxSettings`` said: a purpose, no mailbox (None), or nothing
    that can be relied on. "No mailbox" from an account created less than a day ago most likely means a
    mailbox still being provisioned, so it cannot tell a shared mailbox from a disabled user yet; older,
    it is an account without a mailbox (a leaver's, once unlicensed). An account of unknown age is old:
    Graph leaves ``createdDateTime`` out only for accounts created before mid-2018."""
    if isinstance(answer, Unreadable):
        return replace(account, unreadable=answer)
    if answer is not None:
        return replace(account, user_purpose=answer)
    if account.created_at is None or now - account.created_at >= MAILBOX_PROVISIONING:
        return account
    cause = (
        f"Exchange answered 404 MailboxNotEnabledForRESTAPI for an account created "
        f"{account.created_at:%Y-%m-%d %H:%M} UTC: its mailbox is most likely still being provisioned"
    )
    return replace(account, unreadable=Unreadable("mailbox settings", cause))


MAX_REFERENCE_LENGTH = 256  # Entra caps a user principal name at 113 characters; an id is 36
_OBJECT_ID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z")
# Characters a user principal name never holds, and that would change a Graph URL's meaning if they
# were ever used unescaped: path and query separators, escapes, whitespace and control characters.
_ANY_ID = re.compile(r"[0-9A-Za-z-]{1,64}")
_NOT_IN_PRINCIPAL = re.compile(r"[\s\x00-\x1f\x7f/\\?%:*\"<>|,;()\[\]{}`]")


def object_id_problem(object_id: str) -> str | None:
    """Why ``object_id`` cannot be an Entra object id the product keeps state for, or None. Entra ids are
    GUIDs; anything else Graph (or something posing as it) sends is taken as long as it is a short run of
    letters, digits and dashes (the simulators' and tests' ids are), since it becomes a state key."""
    if _OBJECT_ID.match(object_id) or _ANY_ID.fullmatch(object_id):
        return None
    shown = object_id if len(object_id) <= 40 else f"{object_id[:39]}…"
    return f"the object id {shown!r} is not an Entra object id (letters, digits and dashes, at most 64)"


def storable(text: str) -> str:
    """``text`` with what no store or log can hold escaped: lone surrogates (JSON can carry them, UTF-8
    cannot) and NUL characters. Every other character is kept as it is."""
    if "\x00" not in text and text.isascii():
        return text
    escaped = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return escaped.replace("\x00", "\\x00")


def text_problem(account: EntraAccount) -> str | None:
    """Why the account's texts cannot be kept as they are (a lone surrogate or a NUL character in one
    of them), or None. No Entra property holds either: such an account is refused, not guessed at."""
    for name, value in _texts(account):
        if "\x00" in value:
            return f"its {name} holds a NUL character"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return f"its {name} is not valid Unicode (a lone surrogate)"
    return None


def _texts(account: EntraAccount) -> Iterator[tuple[str, str]]:
    fields = {
        "id": account.id,
        "userPrincipalName": account.user_principal_name,
        "displayName": account.display_name,
        "mail": account.mail,
        "userType": account.user_type,
    }
    for name, value in fields.items():
        if isinstance(value, str):
            yield name, value
    yield from _nested("", account.attributes)


def _nested(prefix: str, value: object) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield prefix or "attribute", value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _nested(f"{prefix}.{key}" if prefix else str(key), item)
            if isinstance(key, str):
                yield f"{prefix} key" if prefix else "attribute name", key
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _nested(prefix, item)


def reference_problem(ref: str) -> str | None:
    """Why ``ref`` cannot name an Entra account (an object id or a user principal name), or None.

    A bad reference is refused before Graph sees it: ``../groups`` or ``?$select=id`` must never reach
    another object, whatever the HTTP layer escapes."""
    if not ref.strip():
        return "is empty"
    if len(ref) > MAX_REFERENCE_LENGTH:
        return f"is {len(ref)} characters long; a user principal name has at most 113"
    if _OBJECT_ID.match(ref):
        return None
    if _NOT_IN_PRINCIPAL.search(ref) or not ref.isprintable():
        return (
            "holds a character no user principal name has (space, /, ?, %, quotes, control or "
            "direction characters or similar)"
        )
    local, at, domain = ref.partition("@")
    if not at or not local or not domain or "@" in domain or domain.startswith(".") or ".." in ref:
        return "is neither an object id nor a user principal name (name@domain)"
    return None
