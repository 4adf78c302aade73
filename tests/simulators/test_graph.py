"""The Graph simulator on its own: the Graph behaviours clients depend on."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from simulators.graph import GraphSimulator, PageSizes
from simulators.tenants import Tenant, seed_use_case

AUTH = {"Authorization": "Bearer anything"}


@pytest.fixture
def tenant() -> Tenant:
    return seed_use_case()


@pytest.fixture
def simulator(tenant: Tenant) -> Iterator[GraphSimulator]:
    with GraphSimulator(tenant, page_sizes=PageSizes(users_delta=5)) as running:
        yield running


@pytest.fixture
def client(simulator: GraphSimulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=simulator.graph_url, headers=AUTH) as graph:
        yield graph


def follow(client: httpx.Client, first: httpx.Response) -> tuple[list[dict[str, Any]], str]:
    body = first.json()
    values = list(body["value"])
    while "@odata.nextLink" in body:
        assert body["@odata.nextLink"].startswith(str(client.base_url).rstrip("/"))
        body = client.get(body["@odata.nextLink"]).json()
        values += body["value"]
    return values, body["@odata.deltaLink"]


def test_graph_routes_need_a_bearer_token(client: httpx.Client) -> None:
    answer = client.get("/users", headers={"Authorization": ""})

    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "InvalidAuthenticationToken"


@pytest.mark.parametrize("spelling", ["/users/delta", "/users/delta()"])
def test_both_delta_spellings_page_to_a_delta_link(
    simulator: GraphSimulator, client: httpx.Client, spelling: str
) -> None:
    users, delta_link = follow(client, client.get(spelling, params={"$select": "id,userType"}))

    assert len(users) == 13 and set(users[0]) == {"id", "userType"}
    assert "$deltatoken=" in delta_link and simulator.counts["users delta"] == 3


def test_select_decides_which_changes_surface(simulator: GraphSimulator, client: httpx.Client) -> None:
    _, delta_link = follow(client, client.get("/users/delta", params={"$select": "id,department"}))
    simulator.update_user("alice@contoso.com", jobTitle="Head of Finance")
    assert client.get(delta_link).json()["value"] == []

    simulator.update_user("alice@contoso.com", department="Audit")
    changed = client.get(delta_link).json()["value"]
    assert [u["department"] for u in changed] == ["Audit"]


def test_latest_token_starts_tracking_from_now(simulator: GraphSimulator, client: httpx.Client) -> None:
    start = client.get("/users/delta", params={"$deltatoken": "latest", "$select": "id,mail"}).json()
    assert start["value"] == []
    simulator.update_user("bob@contoso.com", mail="robert@contoso.com")

    assert client.get(start["@odata.deltaLink"]).json()["value"][0]["mail"] == "robert@contoso.com"


def test_expired_tokens_answer_410_with_a_location(simulator: GraphSimulator, client: httpx.Client) -> None:
    _, delta_link = follow(client, client.get("/groups/delta"))
    simulator.expire_cursors()

    gone = client.get(delta_link)
    assert gone.status_code == 410 and gone.json()["error"]["code"] == "syncStateNotFound"
    assert gone.headers["Location"].endswith("/groups/delta()?$deltatoken=")


def test_group_delta_filter_takes_at_most_50_ids(client: httpx.Client) -> None:
    clause = " or ".join(f"id eq '{n:08d}-0000-4000-8000-000000000000'" for n in range(51))

    assert client.get("/groups/delta", params={"$filter": clause}).status_code == 400
    assert client.get("/groups/delta", params={"$filter": "displayName eq 'US HR'"}).status_code == 400


def test_batch_takes_relative_urls_only_and_at_most_20(client: httpx.Client, tenant: Tenant) -> None:
    alice = tenant.user_id("alice")
    steps = [
        {"id": "relative", "method": "GET", "url": f"/users/{alice}/mailboxSettings"},
        {"id": "absolute", "method": "GET", "url": f"https://graph.microsoft.com/v1.0/users/{alice}"},
    ]
    answers = {a["id"]: a for a in client.post("/$batch", json={"requests": steps}).json()["responses"]}

    assert answers["relative"]["status"] == 200 and answers["relative"]["body"]["userPurpose"] == "user"
    assert answers["absolute"]["status"] == 400
    too_many = [{"id": str(n), "method": "GET", "url": "/users"} for n in range(21)]
    assert client.post("/$batch", json={"requests": too_many}).status_code == 400


def test_member_of_answers_both_cast_spellings_and_owners_stay_apart(
    client: httpx.Client, tenant: Tenant
) -> None:
    ivan, finance = tenant.user_id("ivan"), tenant.group_id("US Finance")
    advanced = {"ConsistencyLevel": "eventual"}
    for cast in ("graph.group", "microsoft.graph.group"):
        url = f"/users/{ivan}/transitiveMemberOf/{cast}"
        groups = client.get(url, params={"$count": "true"}, headers=advanced).json()["value"]
        assert {g["id"] for g in groups} == {finance, tenant.group_id("US Finance Auditors")}
        # the v1.0 reference's strict reading: a cast is an advanced query
        refused = client.get(url)
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "Request_UnsupportedQuery"

    owners = client.get(f"/groups/{finance}/owners").json()["value"]
    members = client.get(f"/groups/{finance}/members").json()["value"]
    assert [o["id"] for o in owners] == [tenant.user_id("olivia")]
    assert tenant.user_id("olivia") not in {m["id"] for m in members}


def test_faults_hit_the_named_route_for_the_next_n_requests(
    simulator: GraphSimulator, client: httpx.Client
) -> None:
    simulator.inject(429, count=2, retry_after=7, routes=["groups"])

    first = client.get("/groups")
    assert (first.status_code, first.headers["Retry-After"]) == (429, "7")
    assert client.get("/users").status_code == 200
    assert client.get("/groups").status_code == 429
    assert client.get("/groups").status_code == 200


def test_admin_api_mutates_and_switches(simulator: GraphSimulator, tenant: Tenant) -> None:
    finance = tenant.group_id("US Finance")
    with httpx.Client(base_url=simulator.url) as admin:
        assert admin.patch("/_admin/users/alice@contoso.com", json={"department": "Audit"}).status_code == 204
        assert admin.delete(f"/_admin/groups/{finance}/members/bob@contoso.com").status_code == 204
        assert (
            admin.post(f"/_admin/groups/{finance}/owners", json={"id": "frank@contoso.com"}).status_code
            == 204
        )
        assert admin.put("/_admin/users/dan@contoso.com/mailboxSettings", json=None).status_code == 204
        assert admin.post("/_admin/faults", json={"status": 503, "count": 1}).status_code == 204
        assert admin.put("/_admin/deliveries", json={"mode": "hold"}).status_code == 204
        assert admin.delete("/_admin/users/nobody@contoso.com").status_code == 404

    assert simulator.store.find_user("alice@contoso.com")["department"] == "Audit"
    assert tenant.user_id("bob") not in simulator.store.members[finance]
    assert tenant.user_id("frank") in simulator.store.owners[finance]
    assert simulator.store.mailboxes[tenant.user_id("dan")] is None
    assert simulator.faults.active[0].status == 503 and simulator.webhooks.mode == "hold"


def test_a_delta_link_unused_for_seven_days_answers_410(tenant: Tenant) -> None:
    from datetime import UTC, datetime, timedelta

    now = [datetime(2026, 1, 5, tzinfo=UTC)]
    simulator = GraphSimulator(tenant, clock=lambda: now[0]).start()
    try:
        with httpx.Client(base_url=simulator.graph_url, headers=AUTH) as client:
            _, delta_link = follow(client, client.get("/users/delta"))
            now[0] += timedelta(days=6, hours=23)
            used = client.get(delta_link)
            assert used.status_code == 200  # used within 7 days: a fresh link, good for 7 more
            now[0] += timedelta(days=7, seconds=1)
            gone = client.get(used.json()["@odata.deltaLink"])
    finally:
        simulator.stop()
    assert gone.status_code == 410 and gone.json()["error"]["code"] == "syncStateNotFound"
