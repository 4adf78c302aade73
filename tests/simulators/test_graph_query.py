"""The Graph simulator's ``GET /users`` query options: the subset of ``$filter`` and ``$search`` Graph
supports for users, and Graph's refusals (advanced-query rules, unsupported properties and functions,
malformed expressions), in Graph's error shape."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from simulators.graph import GraphSimulator, PageSizes
from simulators.graph.query import Clause, Either, QueryRefused, parse_filter
from simulators.tenants import make_user, seed_use_case

AUTH = {"Authorization": "Bearer anything"}
EVENTUAL = {**AUTH, "ConsistencyLevel": "eventual"}


@pytest.fixture
def simulator() -> Iterator[GraphSimulator]:
    with GraphSimulator(seed_use_case(), page_sizes=PageSizes(list_default=3)) as running:
        sean = make_user("sean.obrien", display_name="Seán O'Brien")
        running.add_user({**sean, "givenName": "Seán", "surname": "O'Brien"})
        yield running


@pytest.fixture
def client(simulator: GraphSimulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=simulator.graph_url, headers=AUTH) as graph:
        yield graph


def upns(answer: httpx.Response) -> list[str]:
    assert answer.status_code == 200, answer.text
    return sorted(u["userPrincipalName"] for u in answer.json()["value"])


def refused(answer: httpx.Response, code: str) -> str:
    assert answer.status_code == 400, answer.text
    error: dict[str, Any] = answer.json()["error"]
    assert error["code"] == code and "innerError" in error
    return str(error["message"])


def users(client: httpx.Client, headers: dict[str, str] | None = None, **params: str) -> httpx.Response:
    return client.get("/users", params={f"${k}": v for k, v in params.items()}, headers=headers)


@pytest.mark.parametrize(
    ("clause", "expected"),
    [
        ("startswith(displayName,'ali')", ["alice@contoso.com"]),
        ("startsWith(displayName, 'ALI')", ["alice@contoso.com"]),  # case-insensitive, either spelling
        ("startswith(givenName,'Fr')", ["frank@contoso.com"]),
        ("startswith(surname,'o''b')", ["sean.obrien@contoso.com"]),
        ("startswith(mail,'heidi@')", ["heidi@contoso.com"]),
        ("startswith(userPrincipalName,'gus_')", ["gus_fabrikam.com#EXT#@contoso.com"]),
        ("startswith(displayName,'Seán O''')", ["sean.obrien@contoso.com"]),
        ("displayName eq 'alice'", ["alice@contoso.com"]),
        (
            "userPrincipalName in ('bob@contoso.com','carol@contoso.com')",
            ["bob@contoso.com", "carol@contoso.com"],
        ),
        ("accountEnabled eq false and startswith(displayName,'d')", ["dan@contoso.com"]),
        ("startswith(displayName,'a') or startswith(mail,'b')", ["alice@contoso.com", "bob@contoso.com"]),
        (
            "(startswith(displayName,'a') or startswith(displayName,'b')) and userType eq 'Member'",
            ["alice@contoso.com", "bob@contoso.com"],
        ),
        ("startswith(displayName,'zz')", []),
    ],
)
def test_filter_subset_of_default_queries(client: httpx.Client, clause: str, expected: list[str]) -> None:
    assert upns(users(client, filter=clause, top="999")) == expected


def test_a_filtered_list_pages_with_the_filter_kept(client: httpx.Client) -> None:
    first = users(client, filter="userType eq 'Member'").json()
    assert len(first["value"]) == 3 and "%24filter=userType" in first["@odata.nextLink"]
    rest = client.get(first["@odata.nextLink"]).json()
    assert all(u["displayName"] for u in rest["value"]) and len(rest["value"]) == 3


@pytest.mark.parametrize(
    "clause",
    [
        "endswith(mail,'@contoso.com')",
        "displayName ne 'alice'",
        "not startswith(displayName,'a')",
        "officeLocation eq 'Chicago'",
    ],
)
def test_advanced_operators_need_consistency_level_and_count(client: httpx.Client, clause: str) -> None:
    message = refused(users(client, filter=clause), "Request_UnsupportedQuery")
    assert "is not supported because the required parameters might be missing" in message
    assert "ConsistencyLevel:eventual" in message
    refused(users(client, filter=clause, count="true"), "Request_UnsupportedQuery")  # the header too
    refused(users(client, EVENTUAL, filter=clause), "Request_UnsupportedQuery")  # and $count=true
    answer = users(client, EVENTUAL, filter=clause, count="true", top="999")
    assert answer.status_code == 200 and answer.json()["@odata.count"] == len(answer.json()["value"])


@pytest.mark.parametrize(
    ("clause", "code", "fragment"),
    [
        ("startswith(jobTitle,'Aud')", "Request_UnsupportedQuery", "property 'jobTitle' of resource 'User'"),
        ("startswith(displayName,'')", "Request_UnsupportedQuery", "property 'displayName'"),
        ("startswith(businessPhones,'1')", "Request_UnsupportedQuery", "property 'businessPhones'"),
        ("endswith(displayName,'x')", "Request_UnsupportedQuery", "property 'displayName'"),
        ("contains(displayName,'li')", "Request_UnsupportedQuery", "operator 'Contains'"),
        ("frobnicate(displayName,'li')", "BadRequest", "unknown function with name 'frobnicate'"),
        ("startswith(displayName,'O'Brien')", "BadRequest", "Invalid filter clause"),
        ("startswith(displayName,'ali", "BadRequest", "unterminated string literal"),
        ("startswith(displayName,'ali'))", "BadRequest", "Syntax error"),
        ("displayName eq", "BadRequest", "Syntax error"),
        ("startswith(displayName,'a') or 1 eq 1", "BadRequest", "Syntax error"),
    ],
)
def test_what_graph_refuses_is_refused_in_its_error_shape(
    client: httpx.Client, clause: str, code: str, fragment: str
) -> None:
    assert fragment in refused(users(client, EVENTUAL, filter=clause, count="true"), code)


def test_search_needs_consistency_level_eventual(client: httpx.Client) -> None:
    message = refused(users(client, search='"displayName:ali"'), "Request_UnsupportedQuery")
    assert "ConsistencyLevel: eventual" in message
    assert upns(users(client, EVENTUAL, search='"displayName:ali"')) == ["alice@contoso.com"]


def test_search_matches_display_name_tokens_and_other_properties_by_prefix(client: httpx.Client) -> None:
    assert upns(users(client, EVENTUAL, search='"displayName:mailbox"')) == ["finance-shared@contoso.com"]
    assert upns(users(client, EVENTUAL, search='"mail:box"')) == []  # mail: prefix, not token
    both = users(client, EVENTUAL, search='"displayName:alice" OR "mail:bob"')
    assert upns(both) == ["alice@contoso.com", "bob@contoso.com"]
    escaped = users(client, EVENTUAL, search='"displayName:o\'brien"')
    assert upns(escaped) == ["sean.obrien@contoso.com"]
    combined = users(client, EVENTUAL, search='"displayName:a"', filter="accountEnabled eq true")
    assert "dan@contoso.com" not in upns(combined)


@pytest.mark.parametrize(
    "search", ["displayName:ali", '"displayName:ali" or "mail:x"', '"jobTitle"', '"nope:x"']
)
def test_malformed_search_is_refused(client: httpx.Client, search: str) -> None:
    refused(users(client, EVENTUAL, search=search), "Request_UnsupportedQuery")


def test_orderby_with_filter_is_advanced_and_top_is_bounded(client: httpx.Client) -> None:
    message = refused(
        users(client, filter="startswith(displayName,'a')", orderby="displayName"), "Request_UnsupportedQuery"
    )
    assert message == "Sorting not supported for current query."
    ordered = users(client, orderby="displayName desc", top="999").json()["value"]
    assert [u["displayName"] for u in ordered][:2] == ["Seán O'Brien", "Olivia"]
    assert "page size" in refused(users(client, top="1000"), "Request_BadRequest")
    assert "page size" in refused(users(client, top="0"), "Request_BadRequest")


def test_count_without_the_header_is_silently_ignored(client: httpx.Client) -> None:
    body = users(client, count="true", top="999").json()
    assert "@odata.count" not in body and len(body["value"]) == 14


def test_parser_reads_a_doubled_quote_as_one_quote_and_never_as_the_end() -> None:
    tree = parse_filter("startswith(displayName,'x'' or 1 eq 1 or ''') or startswith(mail,'y')")
    assert tree == Either(
        (Clause("startswith", "displayName", "x' or 1 eq 1 or '"), Clause("startswith", "mail", "y"))
    )
    with pytest.raises(QueryRefused):
        parse_filter("startswith(displayName,'x' or 1 eq 1")
