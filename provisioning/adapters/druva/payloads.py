"""Druva's JSON read defensively: its two published specs disagree with each other and with Druva.

``quota`` is text ("10 GB") in one spec and a number in the other; ``privacySettingsEnabled`` is a
boolean or the string "true"; storages spell their id ``StorageID``; ``ldapGUID`` is typed boolean but
holds a hex string; the last page's ``nextPageToken`` is empty, absent or (seen in the wild) blank.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from provisioning.domain.druva import DruvaStatus
from provisioning.domain.quota import QuotaUnit


class MalformedRecord(ValueError):
    """A record without what makes it usable (an id, an e-mail...)."""


@dataclass(frozen=True)
class UserRecord:
    """A Druva user as the API describes it, ids and all; the client turns it into a ``DruvaUser``."""

    user_id: int
    email: str
    user_name: str
    status: DruvaStatus
    profile_id: int
    storage_id: int
    quota_bytes: int | None
    ldap_guid: str | None
    privacy_settings_enabled: bool | None


@dataclass(frozen=True)
class CatalogEntry:
    entry_id: int
    name: str


_QUOTA_TEXT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")
_BYTES = {"B": 1, "KB": 1024} | {unit.value: unit.bytes for unit in QuotaUnit}


def parse_int(value: Any) -> int | None:
    """An id or a size, whether Druva sent it as a number or as digits in a string."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def parse_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return None


def parse_quota_bytes(raw: Mapping[str, Any]) -> int | None:
    """``quotaInBytes`` when present (exact), else ``quota`` as text or as a number with ``quotaUnit``."""
    exact = parse_int(raw.get("quotaInBytes"))
    if exact is not None:
        return exact
    quota = raw.get("quota")
    if isinstance(quota, str):
        return _quota_text_bytes(quota, raw.get("quotaUnit"))
    number = parse_int(quota)
    if number == 0:
        return 0  # unlimited, whatever the unit
    if number is not None:
        return _quota_text_bytes(str(number), raw.get("quotaUnit"))
    return None


def _quota_text_bytes(text: str, unit_field: Any) -> int | None:
    if text.strip().lower() == "unlimited":
        return 0
    found = _QUOTA_TEXT.match(text)
    if not found:
        return None
    amount, unit = float(found.group(1)), (found.group(2) or str(unit_field or "")).upper()
    if amount == 0:
        return 0
    return round(amount * _BYTES[unit]) if unit in _BYTES else None


def parse_guid(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def parse_status(value: Any) -> DruvaStatus:
    try:
        return DruvaStatus(str(value).strip().lower())
    except ValueError:
        raise MalformedRecord(f"unknown status {value!r}") from None


def parse_user(raw: Mapping[str, Any]) -> UserRecord:
    user_id = parse_int(raw.get("userID"))
    email = raw.get("emailID")
    if user_id is None or not isinstance(email, str) or not email.strip():
        raise MalformedRecord(f"user record without userID or emailID (userID={raw.get('userID')!r})")
    profile_id, storage_id = parse_int(raw.get("profileID")), parse_int(_storage_id(raw))
    if profile_id is None or storage_id is None:
        raise MalformedRecord(f"user {user_id} has no profileID or storageID")
    return UserRecord(
        user_id=user_id,
        email=email.strip(),
        user_name=str(raw.get("userName") or ""),
        status=parse_status(raw.get("status")),
        profile_id=profile_id,
        storage_id=storage_id,
        quota_bytes=parse_quota_bytes(raw),
        ldap_guid=parse_guid(raw.get("ldapGUID")),
        privacy_settings_enabled=parse_bool(raw.get("privacySettingsEnabled")),
    )


def _storage_id(raw: Mapping[str, Any]) -> Any:
    # Storage lists spell it "StorageID"; user records "storageID". Accept either anywhere.
    return raw["StorageID"] if raw.get("StorageID") is not None else raw.get("storageID")


def parse_profile(raw: Mapping[str, Any]) -> CatalogEntry:
    return _entry(parse_int(raw.get("profileID")), raw.get("profileName"), "profile")


def parse_storage(raw: Mapping[str, Any]) -> CatalogEntry:
    return _entry(parse_int(_storage_id(raw)), raw.get("storageName"), "storage")


def _entry(entry_id: int | None, name: Any, kind: str) -> CatalogEntry:
    if entry_id is None or not isinstance(name, str) or not name.strip():
        raise MalformedRecord(f"{kind} record without id or name")
    return CatalogEntry(entry_id, name.strip())


def items(body: Any, key: str) -> list[Mapping[str, Any]]:
    """The records of one list page; a missing or null list is an empty page."""
    found = body.get(key) if isinstance(body, Mapping) else None
    return [item for item in found or () if isinstance(item, Mapping)]


def next_page_token(body: Any) -> str | None:
    """The cursor of the next page, or None on the last page (empty, blank or absent token)."""
    token = body.get("nextPageToken") if isinstance(body, Mapping) else None
    if not isinstance(token, str) or not token.strip():
        return None
    return token.strip()
