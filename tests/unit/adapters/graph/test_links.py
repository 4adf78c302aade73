"""The rules every link Graph sends must keep, without any network: on ``GRAPH_API_URL``'s origin, each
followed once in a read, and the read within its bounds on pages and time."""

from __future__ import annotations

import pytest

from provisioning.adapters.graph.delta import LinkGuard, ReadBounds, on_graph, origin, resumable, shown_link
from provisioning.errors import CursorExpired, PagingStopped, TransientError

GRAPH = "https://graph.microsoft.com/v1.0"
LOCAL = "http://127.0.0.1:8111/v1.0"  # the local simulators: Graph over http


def link(token: str, base: str = GRAPH) -> str:
    return f"{base}/users/delta?$skiptoken={token}"


def test_an_origin_is_scheme_host_and_port_with_the_default_port_filled_in() -> None:
    assert origin("https://Graph.Microsoft.com/v1.0/users") == ("https", "graph.microsoft.com", 443)
    assert origin("http://127.0.0.1:8111/v1.0") == ("http", "127.0.0.1", 8111)
    assert origin("/v1.0/users?$skiptoken=x") is None
    assert origin("https://graph.microsoft.com:notaport/v1.0") is None
    assert origin("ftp://graph.microsoft.com/v1.0") is None


@pytest.mark.parametrize(
    ("configured", "sent", "followed"),
    [
        (GRAPH, link("a"), True),
        (GRAPH, "https://GRAPH.microsoft.com:443/v1.0/users/delta?$skiptoken=a", True),
        (GRAPH, link("a", "http://graph.microsoft.com/v1.0"), False),  # a downgrade to clear text
        (GRAPH, link("a", "https://graph.microsoft.com:8443/v1.0"), False),
        (GRAPH, link("a", "https://graph.microsoft.us/v1.0"), False),  # another cloud is another Graph
        (GRAPH, link("a", "https://graph.microsoft.com.attacker.example/v1.0"), False),
        (GRAPH, link("a", "https://user@attacker.example/v1.0"), False),
        (GRAPH, "/v1.0/users/delta?$skiptoken=a", False),
        (LOCAL, link("a", LOCAL), True),  # the simulators' Graph is http: its own links are too
        (LOCAL, link("a", "https://127.0.0.1:8111/v1.0"), False),
        (LOCAL, link("a", "http://127.0.0.1:8112/v1.0"), False),
    ],
)
def test_only_links_on_graphs_own_origin_are_followed(configured: str, sent: str, followed: bool) -> None:
    assert on_graph(sent, origin(configured)) is followed


def test_a_link_followed_before_in_the_read_stops_it_even_a_b_a() -> None:
    guard = LinkGuard("list groups", GRAPH, ReadBounds())
    guard.page_read()
    guard.follow(link("A"))
    guard.page_read()
    guard.follow(link("B"))
    guard.page_read()
    with pytest.raises(
        PagingStopped, match=r"list groups: the @odata.nextLink of page 3 .* page 2 of this read"
    ):
        guard.follow(link("A"))


def test_the_link_a_read_started_from_counts_as_followed() -> None:
    guard = LinkGuard("users delta", GRAPH, ReadBounds(), start=link("cursor"))
    guard.page_read()
    with pytest.raises(PagingStopped, match="is the link page 1 of this read was read from"):
        guard.follow(link("cursor"))


def test_a_link_new_every_time_ends_at_the_page_bound() -> None:
    guard = LinkGuard("users delta", GRAPH, ReadBounds(pages=3))
    for n in range(2):
        guard.page_read()
        guard.follow(link(str(n)))
    guard.page_read()
    with pytest.raises(PagingStopped, match="users delta: stopped after 3 pages, the most one read may take"):
        guard.follow(link("3"))


def test_a_read_past_its_time_ends_at_the_next_link() -> None:
    now = [100.0]
    guard = LinkGuard("users delta", GRAPH, ReadBounds(seconds=60), clock=lambda: now[0])
    guard.page_read()
    now[0] += 60
    guard.follow(link("1"))  # at the bound, not past it
    guard.page_read()
    now[0] += 0.5
    with pytest.raises(
        PagingStopped, match=r"stopped after 60.5 s and 2 pages, longer than one read may take \(60 s\)"
    ):
        guard.follow(link("2"))


def test_a_link_off_graph_is_refused_before_anything_else_and_shown_by_its_origin_only() -> None:
    guard = LinkGuard("groups delta", GRAPH, ReadBounds())
    guard.page_read()
    with pytest.raises(PagingStopped) as refused:
        guard.follow("https://attacker.example/v1.0/groups/delta?$skiptoken=secret-state")
    message = str(refused.value)
    assert "refused an @odata.nextLink to https://attacker.example:443" in message
    assert "GRAPH_API_URL's origin https://graph.microsoft.com:443" in message
    assert "secret-state" not in message and "neither followed nor kept as a cursor" in message
    with pytest.raises(PagingStopped, match=r"refused an @odata.deltaLink to http://graph.microsoft.com:80"):
        guard.keep(link("d", "http://graph.microsoft.com/v1.0"))
    assert guard.keep(link("d")) == link("d")


def test_a_stopped_read_is_transient_and_never_shows_a_whole_token() -> None:
    token = "T" * 400
    guard = LinkGuard("users delta", GRAPH, ReadBounds())
    guard.page_read()
    guard.follow(link(token))
    guard.page_read()
    with pytest.raises(TransientError) as stopped:  # the worker reschedules; the command line exits 1
        guard.follow(link(token))
    assert token not in str(stopped.value) and "T" * 25 not in str(stopped.value)
    assert shown_link(link("ab")) == "/v1.0/users/delta?$skipt…"  # at most half of a short query


def test_a_cursor_holding_a_link_off_graph_is_expired() -> None:
    assert resumable(link("d"), GRAPH, "users") == link("d")
    with pytest.raises(CursorExpired, match=r"the users cursor holds a link to https://attacker.example:443"):
        resumable(link("d", "https://attacker.example/v1.0"), GRAPH, "users")


def test_bounds_must_allow_some_reading() -> None:
    with pytest.raises(ValueError, match="some pages"):
        ReadBounds(pages=0)
    with pytest.raises(ValueError, match="some pages"):
        ReadBounds(seconds=0)
