"""OData text built from user input: quoted and escaped so that no input can widen the query."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from provisioning.adapters.graph.query import SEARCH_PROPERTIES, odata_string, prefix_filter
from simulators.graph.query import Clause, Either, parse_filter

HOSTILE = [
    "O'Brien",
    "' or 1 eq 1",
    "') or startswith(displayName,'",
    "'",
    "''",
    ")",
    "(",
    "%27",
    "100%",
    "R&D",
    "a&$top=999",
    "#1",
    "a+b",
    '"quoted"',
    "\\",
    "Zoë Ångström",
    "山田",
    "🙂",
]


@pytest.mark.parametrize(
    ("value", "literal"), [("ali", "'ali'"), ("O'Brien", "'O''Brien'"), ("''", "''''''"), ("", "''")]
)
def test_a_string_literal_doubles_single_quotes(value: str, literal: str) -> None:
    assert odata_string(value) == literal


def test_the_prefix_filter_asks_startswith_on_the_five_name_properties() -> None:
    assert prefix_filter("ali") == (
        "startswith(displayName,'ali') or startswith(givenName,'ali') or startswith(surname,'ali') "
        "or startswith(mail,'ali') or startswith(userPrincipalName,'ali')"
    )


def _exactly_the_prefix(text: str) -> Either:
    return Either(tuple(Clause("startswith", name, text) for name in SEARCH_PROPERTIES))


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_text_stays_inside_the_literal(text: str) -> None:
    assert parse_filter(prefix_filter(text)) == _exactly_the_prefix(text)


@given(st.text(min_size=1, max_size=64))
def test_no_text_changes_the_shape_of_the_filter(text: str) -> None:
    """Whatever the text, an OData parser reads five startswith clauses whose value is the text."""
    assert parse_filter(prefix_filter(text)) == _exactly_the_prefix(text)
