import pytest
from hypothesis import given
from hypothesis import strategies as st

from provisioning.domain.quota import MAX_QUOTA_VALUE, Quota, QuotaError, QuotaUnit, describe_bytes


@pytest.mark.parametrize(
    ("text", "value", "unit"),
    [
        ("200 GB", 200, QuotaUnit.GB),
        ("200GB", 200, QuotaUnit.GB),
        (" 5 tb ", 5, QuotaUnit.TB),
        ("1023 MB", 1023, QuotaUnit.MB),
        ("1024 MB", 1, QuotaUnit.GB),
        ("2048 GB", 2, QuotaUnit.TB),
        ("1048576 MB", 1, QuotaUnit.TB),
        ("unlimited", 0, QuotaUnit.GB),
        ("Unlimited", 0, QuotaUnit.GB),
    ],
)
def test_parse_normalises_into_druva_range(text: str, value: int, unit: QuotaUnit) -> None:
    assert Quota.parse(text) == Quota(value, unit)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("1536 GB", "not a whole number of TB"),
        ("1536 GB", "use 1 TB or 2 TB"),
        ("1025 MB", "not a whole number of GB"),
        ("1024 TB", "more than Druva's largest quota"),
        ("200 PB", "Druva takes MB, GB or TB"),
        ("200", "is not '<n> MB'"),
        ("-5 GB", "is not '<n> MB'"),
        ("2.5 GB", "is not '<n> MB'"),
        ("lots", "is not '<n> MB'"),
        ("0 MB", "would mean unlimited to Druva; write 'unlimited'"),  # a typo must not lift the limit
        ("000 GB", "would mean unlimited"),
        ("١٠٠ GB", "is not '<n> MB'"),  # only ASCII digits are numbers
        ("１００ GB", "is not '<n> MB'"),
        ("100 ＧB", "is not '<n> MB'"),
        ("9" * 5000 + " GB", "is not '<n> MB'"),  # no int() of thousands of digits
    ],
)
def test_parse_refuses_what_druva_cannot_hold(text: str, reason: str) -> None:
    with pytest.raises(QuotaError, match=reason):
        Quota.parse(text)


def test_unlimited_is_druva_zero() -> None:
    unlimited = Quota.unlimited()
    assert unlimited.is_unlimited
    assert unlimited.bytes == 0
    assert str(unlimited) == "unlimited"


def test_bytes_and_text() -> None:
    quota = Quota.parse("200 GB")
    assert quota.bytes == 200 * 1024**3
    assert str(quota) == "200 GB"
    assert describe_bytes(quota.bytes) == "200 GB"
    assert describe_bytes(int(1.5 * 1024**4)) == "1.50 TB"
    assert describe_bytes(0) == "unlimited"
    assert describe_bytes(12) == "12 bytes"


@given(st.integers(min_value=1, max_value=MAX_QUOTA_VALUE * 1024 * 1024), st.sampled_from(list(QuotaUnit)))
def test_normalised_quota_keeps_its_size_or_is_refused(value: int, unit: QuotaUnit) -> None:
    try:
        quota = Quota.of(value, unit)
    except QuotaError:
        assert value > MAX_QUOTA_VALUE  # only out-of-range inputs are ever refused
        return
    assert 0 < quota.value <= MAX_QUOTA_VALUE
    assert quota.bytes == value * unit.bytes
