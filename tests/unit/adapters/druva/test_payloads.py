"""Druva's JSON as its inconsistent specs describe it, read into one shape."""

from __future__ import annotations

from typing import Any

import pytest

from provisioning.adapters.druva.payloads import (
    CatalogEntry,
    MalformedRecord,
    items,
    next_page_token,
    parse_bool,
    parse_quota_bytes,
    parse_storage,
    parse_user,
)
from provisioning.domain.druva import DruvaStatus

GB = 1024**3


def record(**overrides: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "userID": 7,
        "userName": "Ernie Carter",
        "emailID": "ernie@contoso.com",
        "status": "active",
        "profileID": 1,
        "storageID": 10,
        "quota": "10 GB",
        "quotaInBytes": 10 * GB,
        "privacySettingsEnabled": "false",
        "ldapGUID": "",
    }
    raw.update(overrides)
    return {k: v for k, v in raw.items() if v is not None}


def test_a_user_as_the_spec_shows_it() -> None:
    user = parse_user(record())
    assert (user.user_id, user.email, user.user_name, user.status) == (
        7,
        "ernie@contoso.com",
        "Ernie Carter",
        DruvaStatus.ACTIVE,
    )
    assert (user.profile_id, user.storage_id, user.quota_bytes) == (1, 10, 10 * GB)
    assert user.ldap_guid is None
    assert user.privacy_settings_enabled is False


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({}, 10 * GB),
        ({"quotaInBytes": str(3 * GB)}, 3 * GB),
        ({"quotaInBytes": None, "quota": "200 GB"}, 200 * GB),
        ({"quotaInBytes": None, "quota": "1.5 TB"}, 3 * 1024**4 // 2),
        ({"quotaInBytes": None, "quota": "512MB"}, 512 * 1024**2),
        ({"quotaInBytes": None, "quota": 0}, 0),
        ({"quotaInBytes": None, "quota": "0"}, 0),
        ({"quotaInBytes": None, "quota": "unlimited"}, 0),
        ({"quotaInBytes": None, "quota": 5, "quotaUnit": "TB"}, 5 * 1024**4),
        ({"quotaInBytes": None, "quota": 5}, None),  # a bare number: unit unknown
        ({"quotaInBytes": None, "quota": "lots"}, None),
        ({"quotaInBytes": None, "quota": None}, None),
        ({"quotaInBytes": True, "quota": None}, None),
    ],
)
def test_quota_as_text_number_or_bytes(overrides: dict[str, Any], expected: int | None) -> None:
    assert parse_quota_bytes(record(**overrides)) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True),
        (False, False),
        ("true", True),
        ("False", False),
        (" TRUE ", True),
        ("yes", None),
        (None, None),
    ],
)
def test_privacy_settings_as_bool_or_string(value: object, expected: bool | None) -> None:
    assert parse_bool(value) is expected
    assert parse_user(record(privacySettingsEnabled=value)).privacy_settings_enabled is expected


@pytest.mark.parametrize(("value", "expected"), [("B1C47201C679", "B1C47201C679"), ("", None), (False, None)])
def test_ldap_guid_typed_boolean_but_holding_text(value: object, expected: str | None) -> None:
    assert parse_user(record(ldapGUID=value)).ldap_guid == expected


def test_ids_as_digit_strings_and_status_in_any_case() -> None:
    user = parse_user(record(userID="42", profileID="3", storageID=None, StorageID=11, status="Preserved"))
    assert (user.user_id, user.profile_id, user.storage_id, user.status) == (42, 3, 11, DruvaStatus.PRESERVED)


@pytest.mark.parametrize(
    "overrides",
    [{"userID": None}, {"userID": "x7"}, {"emailID": " "}, {"profileID": None}, {"status": "deleted"}],
)
def test_unusable_user_records_are_refused(overrides: dict[str, Any]) -> None:
    with pytest.raises(MalformedRecord):
        parse_user(record(**overrides))


@pytest.mark.parametrize(
    "raw", [{"StorageID": 4, "storageName": "US-East"}, {"storageID": "4", "storageName": " US-East "}]
)
def test_storage_id_with_either_capitalisation(raw: dict[str, Any]) -> None:
    assert parse_storage(raw) == CatalogEntry(4, "US-East")


def test_storage_without_name_is_refused() -> None:
    with pytest.raises(MalformedRecord):
        parse_storage({"StorageID": 4})


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"nextPageToken": "MTExMQ=="}, "MTExMQ=="),
        ({"nextPageToken": " MTExMQ== "}, "MTExMQ=="),
        ({"nextPageToken": ""}, None),
        ({"nextPageToken": "   "}, None),
        ({"nextPageToken": None}, None),
        ({}, None),
        (None, None),
    ],
)
def test_empty_blank_or_absent_page_token_means_last_page(body: Any, expected: str | None) -> None:
    assert next_page_token(body) == expected


def test_items_of_a_page_tolerate_null_lists_and_junk() -> None:
    assert items({"users": None}, "users") == []
    assert items({"users": [{"userID": 1}, "junk", None]}, "users") == [{"userID": 1}]
    assert items(None, "users") == []
