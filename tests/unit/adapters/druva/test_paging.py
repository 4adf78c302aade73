"""Druva's page tokens within one list read: each sent once, within the bounds on pages and time, and
never shown whole in an error. No network: the read is driven token by token."""

from __future__ import annotations

import pytest

from provisioning.adapters.druva.paging import PageTokens, ReadBounds
from provisioning.errors import PagingStopped, TransientError

USERS = "Druva GET /usermanagement/v1/users"


def test_tokens_that_keep_changing_are_followed() -> None:
    tokens = PageTokens(USERS, ReadBounds())
    assert [tokens.follow(t) for t in ("A", "B", "C")] == ["A", "B", "C"]


def test_a_token_that_goes_round_a_b_a_stops_the_read() -> None:
    tokens = PageTokens(USERS, ReadBounds())
    tokens.follow("AAAAAAAA")
    tokens.follow("BBBBBBBB")
    with pytest.raises(PagingStopped, match=f"{USERS}: the nextPageToken of page 3 .* is the token page 2"):
        tokens.follow("AAAAAAAA")


def test_the_same_token_again_stops_the_read() -> None:
    tokens = PageTokens(USERS, ReadBounds())
    tokens.follow("MTExMQ==")
    with pytest.raises(PagingStopped, match=r"page 2 \(MTEx…\) is the token page 2 of this read"):
        tokens.follow("MTExMQ==")


def test_a_token_new_every_time_ends_at_the_page_bound() -> None:
    tokens = PageTokens(USERS, ReadBounds(pages=5))
    for n in range(4):
        tokens.follow(f"t{n}")
    with pytest.raises(PagingStopped, match="stopped after 5 pages, the most one read may take"):
        tokens.follow("t4")


def test_a_read_past_its_time_ends_at_the_next_token() -> None:
    now = [0.0]
    tokens = PageTokens(USERS, ReadBounds(seconds=3600), clock=lambda: now[0])
    now[0] = 3600.0
    tokens.follow("a")
    now[0] = 3601.5
    with pytest.raises(
        PagingStopped, match=r"after 3,601.5 s and 2 pages, longer than one read may take \(3,600 s\)"
    ):
        tokens.follow("b")


def test_an_error_is_transient_and_shows_at_most_the_start_of_a_token() -> None:
    token = "x" * 500
    tokens = PageTokens(USERS, ReadBounds())
    tokens.follow(token)
    with pytest.raises(TransientError) as stopped:
        tokens.follow(token)
    assert "(xxxxxxxx…)" in str(stopped.value) and "x" * 9 not in str(stopped.value)
    short = PageTokens(USERS, ReadBounds())
    short.follow("A")
    with pytest.raises(PagingStopped, match=r"page 2 \(…\)"):
        short.follow("A")


def test_the_default_bounds_allow_the_largest_tenant_and_stop_a_runaway() -> None:
    bounds = ReadBounds()
    largest_directory, full_page = 50_000_000, 4_097
    assert bounds.pages * full_page >= 2 * largest_directory
    assert bounds.seconds == 3600
