"""The rules both state stores share: keys, sizes, time order and how transactions are cut."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import unquote

import pytest
from azure.data.tables import EdmType, EntityProperty
from hypothesis import given
from hypothesis import strategies as st

from provisioning.adapters.state.encoding import (
    MAX_BATCH,
    MAX_KEY_CHARS,
    MAX_STRING_CHARS,
    MAX_TEXT_CHARS,
    entity_size,
    key,
    newest_first,
    split_text,
    utc,
)
from provisioning.adapters.state.table import transaction_batches
from provisioning.domain.directory import MembershipChange
from provisioning.domain.groups import plan_memberships
from provisioning.errors import InvalidRequestError
from tests.builders import NOW

UNSAFE = set("/\\#?") | {chr(c) for c in range(0x20)} | {chr(c) for c in range(0x7F, 0xA0)}


def test_a_guid_is_its_own_key() -> None:
    guid = "5c1f3f7e-2b7d-4a8e-9a51-0f6a1d2b9c11"
    assert key(guid) == guid


def test_characters_table_storage_refuses_are_escaped() -> None:
    assert key("a/b\\c#d?e%f\x00g\x85") == "a%2Fb%5Cc%23d%3Fe%25f%00g%C2%85"


@given(st.text(min_size=1, max_size=60))
def test_keys_never_hold_a_refused_character_and_never_collide(text: str) -> None:
    escaped = key(text)
    assert not UNSAFE & set(escaped)
    assert unquote(escaped, errors="strict") == text  # reversible, so two ids never share a key


def test_an_empty_or_huge_key_is_refused() -> None:
    with pytest.raises(InvalidRequestError):
        key("")
    with pytest.raises(InvalidRequestError, match=str(MAX_KEY_CHARS)):
        key("/" * 200)  # 600 characters once escaped


@given(st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(4000, 1, 1)), st.integers(1, 10**9))
def test_newest_first_keys_sort_later_times_first(moment: datetime, later_us: int) -> None:
    earlier = moment.replace(tzinfo=UTC)
    later = earlier + timedelta(microseconds=later_us)
    assert newest_first(later) < newest_first(earlier)
    assert len(newest_first(later)) == len(newest_first(earlier)) == 17


def test_times_beyond_the_key_range_are_refused() -> None:
    with pytest.raises(ValueError, match="outside"):
        newest_first(datetime(1969, 12, 31, tzinfo=UTC))
    with pytest.raises(ValueError, match="outside"):
        newest_first(datetime(9999, 1, 1, tzinfo=UTC))


def test_times_must_be_timezone_aware() -> None:
    assert utc(datetime(2026, 1, 1, 13, tzinfo=timezone(timedelta(hours=1)))) == datetime(
        2026, 1, 1, 12, tzinfo=UTC
    )
    with pytest.raises(ValueError, match="timezone-aware"):
        utc(datetime(2026, 1, 1))


def test_long_text_is_split_into_properties_that_fit() -> None:
    text = "é" * (MAX_STRING_CHARS * 2 + 5)
    parts = split_text(text)
    assert [len(part) for part in parts] == [MAX_STRING_CHARS, MAX_STRING_CHARS, 5]
    assert "".join(parts) == text
    assert split_text("") == [""]
    assert MAX_TEXT_CHARS * 2 + 1024 < 1024 * 1024  # the longest text fits in one entity


def test_entity_size_follows_azures_formula() -> None:
    entity = {
        "PartitionKey": "links",  # 5
        "RowKey": "account:1",  # 9
        "email": "a@b.c",  # 8 + 2·5 + (2·5 + 4)
        "count": 3,  # 8 + 2·5 + 4
        "id": EntityProperty(3, EdmType.INT64),  # 8 + 2·2 + 8
        "flag": True,  # 8 + 2·4 + 1
        "at": NOW,  # 8 + 2·2 + 8
    }
    assert entity_size(entity) == 4 + 2 * 14 + 32 + 22 + 20 + 17 + 20


def test_membership_plan_keeps_the_last_change_of_each_pair() -> None:
    plan = plan_memberships(
        [
            MembershipChange("g", "a"),
            MembershipChange("g", "a", removed=True),
            MembershipChange("g", "b", removed=True),
            MembershipChange("g", "b"),
        ],
        reset_groups=["r"],
        removed_groups=["x"],
    )
    assert plan.forget == {"r", "x"} and plan.vanished == {"x"}
    assert plan.removed == [MembershipChange("g", "a", removed=True)]
    assert plan.added == [MembershipChange("g", "b")]


def test_transactions_hold_at_most_100_operations() -> None:
    operations = [("upsert", {"PartitionKey": "p", "RowKey": str(i)}) for i in range(250)]
    assert [len(batch) for batch in transaction_batches(operations)] == [MAX_BATCH, MAX_BATCH, 50]


def test_transactions_stay_well_under_4_mib() -> None:
    big = "x" * MAX_STRING_CHARS  # about 64 KiB per entity
    operations = [("create", {"PartitionKey": "p", "RowKey": str(i), "text": big}) for i in range(100)]

    batches = list(transaction_batches(operations))

    assert len(batches) > 1
    assert all(sum(entity_size(op[1]) for op in batch) <= 3 * 1024 * 1024 for batch in batches)
    assert [op for batch in batches for op in batch] == operations
