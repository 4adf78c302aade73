"""The Graph simulator's production profile, part one: what a reader sees. A change is readable only
after its replication delay, per object in the order made, in every read (delta, ``/users``, by id,
``$filter=id eq``, ``$batch``, mailbox settings, memberships); delta rounds repeat objects, leave out
never-set properties and hide restored users from ``$select`` rounds; users carry ``createdDateTime``;
some members have no ``userType``; a mailbox scoped away answers Exchange's 403. The kind profile, the
default, does none of it.

Every test runs the simulator in-process on a fake clock (``FakeClock``) and calls its router without a
socket (``Graph``): time moves only when a test moves it. The helpers here serve
``test_graph_realism_timeline.py`` too.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest

from simulators.graph import KIND, PRODUCTION, Delay, GraphRealism, GraphSimulator, Realism
from simulators.http import Response, answer, request_from
from simulators.running import SimulatorProcess
from simulators.tenants import Tenant, make_user, seed_use_case, synthetic_tenant, without_user_types

START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
MAX_PAGES = 100


class FakeClock:
    """The simulator's clock: it moves only when the test moves it."""

    def __init__(self, start: datetime = START) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def at(self, seconds: float) -> datetime:
        """``seconds`` after the start."""
        return START + timedelta(seconds=seconds)

    def to(self, seconds: float) -> None:
        self.now = self.at(seconds)


def exactly(seconds: float) -> Delay:
    return Delay(((seconds, seconds, 1.0),))


class Graph:
    """Graph requests to an in-process simulator, through its router (as the loopback server calls it)."""

    def __init__(self, simulator: GraphSimulator) -> None:
        self.simulator = simulator

    def call(self, method: str, path: str, body: Any = None, **query: str) -> Response:
        raw = path if path.startswith("/v1.0") else f"/v1.0{path}"
        if query:
            raw += ("&" if "?" in raw else "?") + urlencode(query)
        headers = [("Authorization", "Bearer test"), ("Host", "graph.test")]
        data = b"" if body is None else json.dumps(body).encode()
        answered = answer(self.simulator.router, request_from(method, raw, headers, data))
        assert answered is not None
        return answered

    def get(self, path: str, **query: str) -> Response:
        return self.call("GET", path, **query)

    def admin(self, method: str, path: str, body: Any = None) -> Response:
        data = b"" if body is None else json.dumps(body).encode()
        answered = answer(self.simulator.router, request_from(method, f"/_admin{path}", [], data))
        assert answered is not None
        return answered

    def round(self, first: str, **query: str) -> tuple[list[dict[str, Any]], str]:
        """A whole delta round: its objects in the order sent, and the delta link."""
        values: list[dict[str, Any]] = []
        page = self.get(first, **query)
        for _ in range(MAX_PAGES):
            assert page.status == 200, page.body
            values += page.body["value"]
            if "@odata.deltaLink" in page.body:
                return values, _relative(page.body["@odata.deltaLink"])
            page = self.get(_relative(page.body["@odata.nextLink"]))
        raise AssertionError("the delta round did not end")

    def user_status(self, user_id: str) -> int:
        return self.get(f"/users/{user_id}").status


def _relative(link: str) -> str:
    parts = urlsplit(link)
    return f"{parts.path}?{parts.query}"


Factory = Callable[..., GraphSimulator]


# Named apart from the fixtures' names so that test_graph_realism_timeline.py can import them.
@pytest.fixture(name="clock")
def clock_fixture() -> FakeClock:
    return FakeClock()


@pytest.fixture(name="simulators")
def simulators_fixture(clock: FakeClock) -> Iterator[Factory]:
    """Simulators on the fake clock, stopped afterwards (a realistic one runs a clockwork thread)."""
    made: list[GraphSimulator] = []

    def make(
        realism: Realism | GraphRealism = KIND, tenant: Tenant | None = None, **options: Any
    ) -> GraphSimulator:
        simulator = GraphSimulator(
            tenant if tenant is not None else seed_use_case(), clock=clock, realism=realism, **options
        )
        made.append(simulator)
        return simulator

    yield make
    for simulator in made:
        simulator.stop()


def new_user(name: str, **props: Any) -> dict[str, Any]:
    return {**make_user(name, department="Finance", office="New York", country="US"), **props}


# replication --------------------------------------------------------------------------------------------
REPLICATED_LATE = GraphRealism(replication=exactly(30.0))


def test_a_new_user_is_readable_nowhere_until_replicated(simulators: Factory, clock: FakeClock) -> None:
    simulator = simulators(REPLICATED_LATE)
    graph = Graph(simulator)
    _, users_link = graph.round("/users/delta", **{"$select": "id,department"})
    user_id = simulator.add_user(new_user("nina"))

    clock.to(29.9)
    assert graph.user_status(user_id) == 404
    assert user_id not in {u["id"] for u in graph.get("/users", **{"$top": "999"}).body["value"]}
    by_id, _ = graph.round("/users/delta", **{"$filter": f"id eq '{user_id}'"})
    assert by_id == []
    assert graph.round(users_link)[0] == []
    batch = graph.call(
        "POST", "/$batch", {"requests": [{"id": "1", "method": "GET", "url": f"/users/{user_id}"}]}
    )
    assert batch.body["responses"][0]["status"] == 404

    clock.to(30.0)
    assert graph.user_status(user_id) == 200
    assert [u["id"] for u in graph.round(users_link)[0]] == [user_id]
    assert graph.round("/users/delta", **{"$filter": f"id eq '{user_id}'"})[0][0]["id"] == user_id


def test_in_the_kind_profile_a_change_is_readable_the_moment_it_is_made(simulators: Factory) -> None:
    simulator = simulators(KIND)
    graph = Graph(simulator)
    user_id = simulator.add_user(new_user("nina"))
    simulator.update_user(user_id, department="Sales")

    assert graph.get(f"/users/{user_id}", **{"$select": "department"}).body["department"] == "Sales"
    assert simulator.directory is simulator.store  # one store: nothing is replicated late


def test_updates_deletes_memberships_and_mailboxes_wait_for_replication(
    simulators: Factory, clock: FakeClock
) -> None:
    tenant = seed_use_case()
    simulator = simulators(REPLICATED_LATE, tenant)
    graph = Graph(simulator)
    alice, bob, frank = (tenant.user_id(n) for n in ("alice", "bob", "frank"))
    finance = tenant.group_id("US Finance")
    _, groups_link = graph.round("/groups/delta", **{"$select": "id,members"})

    simulator.update_user(alice, department="Audit")
    simulator.delete_user(bob)
    simulator.add_member(finance, frank)
    simulator.set_mailbox(alice, "shared")
    clock.to(29.0)
    assert graph.get(f"/users/{alice}", **{"$select": "department"}).body["department"] == "Finance"
    assert graph.user_status(bob) == 200
    assert finance not in {g["id"] for g in graph.get(f"/users/{frank}/memberOf").body["value"]}
    assert frank not in {m["id"] for m in graph.get(f"/groups/{finance}/members").body["value"]}
    assert graph.get(f"/users/{alice}/mailboxSettings").body["userPurpose"] == "user"
    assert graph.round(groups_link)[0] == []

    clock.to(30.0)
    assert graph.get(f"/users/{alice}", **{"$select": "department"}).body["department"] == "Audit"
    assert graph.user_status(bob) == 404
    assert finance in {g["id"] for g in graph.get(f"/users/{frank}/memberOf").body["value"]}
    assert graph.get(f"/users/{alice}/mailboxSettings").body["userPurpose"] == "shared"
    members = [e for g in graph.round(groups_link)[0] for e in g.get("members@delta", ())]
    assert {"@odata.type": "#microsoft.graph.user", "id": frank} in members
    assert {"@odata.type": "#microsoft.graph.user", "id": bob, "@removed": {"reason": "deleted"}} in members


def test_per_object_changes_become_readable_in_the_order_made(simulators: Factory, clock: FakeClock) -> None:
    simulator = simulators(GraphRealism(replication=Delay(((0.0, 120.0, 1.0),))), seed=3)
    graph = Graph(simulator)
    alice = seed_use_case().user_id("alice")
    for step in range(12):
        clock.to(step)
        simulator.update_user(alice, jobTitle=f"title {step}")

    seen = []
    for second in range(0, 135, 3):
        clock.to(second)
        title = graph.get(f"/users/{alice}", **{"$select": "jobTitle"}).body["jobTitle"]
        seen.append(-1 if title is None else int(title.split()[-1]))
    assert seen == sorted(seen) and seen[-1] == 11  # never back to an older value


def test_the_delta_log_is_in_the_order_changes_became_readable(simulators: Factory, clock: FakeClock) -> None:
    simulator = simulators(GraphRealism(replication=Delay(((0.0, 60.0, 1.0),))), seed=5)
    graph = Graph(simulator)
    tenant = seed_use_case()
    _, link = graph.round("/users/delta", **{"$select": "id,jobTitle"})
    names = ("alice", "bob", "carol", "erin", "frank", "grace", "heidi", "ivan")
    for step, name in enumerate(names):
        clock.to(step)
        simulator.update_user(tenant.user_id(name), jobTitle=f"changed {step}")

    order = []
    for second in range(70):
        clock.to(second)
        values, link = graph.round(link)
        order += [u["id"] for u in values]
    readable = sorted(
        (c for c in simulator.change_log() if c["kind"] == "user"),
        key=lambda c: (c["readable_at"], c["index"]),
    )
    assert order == [c["id"] for c in readable]
    assert order != [tenant.user_id(n) for n in names]  # the draws reordered them: the point of the test


def test_a_membership_is_never_readable_before_its_member(simulators: Factory, clock: FakeClock) -> None:
    simulator = simulators(GraphRealism(replication=Delay(((0.0, 100.0, 1.0),))), seed=11)
    graph = Graph(simulator)
    finance = seed_use_case().group_id("US Finance")
    joiners = [simulator.add_user(new_user(f"joiner{n}")) for n in range(10)]
    for joiner in joiners:
        simulator.add_member(finance, joiner)

    listed: set[str] = set()
    for second in range(0, 101, 5):
        clock.to(second)
        listed = {m["id"] for m in graph.get(f"/groups/{finance}/members", **{"$top": "999"}).body["value"]}
        assert all(graph.user_status(joiner) == 200 for joiner in listed & set(joiners))
    assert set(joiners) <= listed


# delta rounds -----------------------------------------------------------------------------------------
def test_a_production_delta_round_sends_some_objects_twice(simulators: Factory) -> None:
    realism = GraphRealism(delta_repeat=0.3)
    graph = Graph(simulators(realism, synthetic_tenant(300, 4, seed=2), seed=9))
    users, _ = graph.round("/users/delta", **{"$select": "id"})

    ids = [u["id"] for u in users]
    repeated = {i for i in ids if ids.count(i) > 1}
    assert len(set(ids)) == 300 and 40 < len(repeated) < 140
    assert all(ids.count(i) == 2 for i in repeated)
    again = Graph(simulators(realism, synthetic_tenant(300, 4, seed=2), seed=9))
    assert [u["id"] for u in again.round("/users/delta", **{"$select": "id"})[0]] == ids  # runs repeat
    groups, _ = graph.round("/groups/delta")
    assert len(groups) >= 4
    kind = Graph(simulators(KIND, synthetic_tenant(300, 4, seed=2)))
    kind_ids = [u["id"] for u in kind.round("/users/delta", **{"$select": "id"})[0]]
    assert len(kind_ids) == len(set(kind_ids)) == 300


def test_never_set_properties_are_left_out_of_delta_objects_but_not_of_reads(simulators: Factory) -> None:
    tenant = seed_use_case()
    simulator = simulators(GraphRealism(omit_unset=True), tenant)
    graph = Graph(simulator)
    alice = tenant.user_id("alice")
    select = {"$select": "id,department,jobTitle,mobilePhone"}

    users, link = graph.round("/users/delta", **select)
    assert next(u for u in users if u["id"] == alice) == {"id": alice, "department": "Finance"}
    assert graph.get(f"/users/{alice}", **select).body == {
        "id": alice,
        "department": "Finance",
        "jobTitle": None,
        "mobilePhone": None,
    }
    simulator.update_user(alice, department=None)  # cleared: Graph sends that as null
    assert graph.round(link)[0] == [{"id": alice, "department": None}]
    groups, _ = graph.round("/groups/delta", **{"$select": "id,displayName,description"})
    assert all("description" not in g for g in groups)

    kind = Graph(simulators(KIND))
    assert next(u for u in kind.round("/users/delta", **select)[0] if u["id"] == alice)["jobTitle"] is None


def test_a_restored_user_is_hidden_from_a_select_users_delta_only(simulators: Factory) -> None:
    tenant = seed_use_case()
    simulator = simulators(GraphRealism(restored_hidden=True), tenant)
    graph = Graph(simulator)
    bob, finance = tenant.user_id("bob"), tenant.group_id("US Finance")
    _, selected = graph.round("/users/delta", **{"$select": "id,accountEnabled"})
    _, everything = graph.round("/users/delta")
    _, groups = graph.round("/groups/delta", **{"$select": "id,members"})
    simulator.delete_user(bob)
    assert graph.round(selected)[0] == [{"id": bob, "@removed": {"reason": "changed"}}]
    _, selected = graph.round(selected)
    _, groups = graph.round(groups)

    simulator.restore_user(bob)
    assert graph.round(selected)[0] == []
    assert [u["id"] for u in graph.round(everything)[0]] == [bob]  # a round without $select has it
    assert graph.user_status(bob) == 200
    assert graph.round("/users/delta", **{"$filter": f"id eq '{bob}'", "$select": "id"})[0] == [{"id": bob}]
    members = [e for g in graph.round(groups)[0] if g["id"] == finance for e in g["members@delta"]]
    assert members == [{"@odata.type": "#microsoft.graph.user", "id": bob}]


def test_in_the_kind_profile_a_restored_user_is_in_a_select_users_delta(simulators: Factory) -> None:
    simulator = simulators(KIND)
    graph = Graph(simulator)
    bob = seed_use_case().user_id("bob")
    simulator.delete_user(bob)
    _, link = graph.round("/users/delta", **{"$select": "id,accountEnabled"})
    simulator.restore_user(bob)

    assert graph.round(link)[0] == [{"id": bob, "accountEnabled": True}]


# createdDateTime, userType --------------------------------------------------------------------------
def test_users_carry_created_date_time_in_production(simulators: Factory, clock: FakeClock) -> None:
    simulator = simulators(GraphRealism(created_stamp=True), synthetic_tenant(400, 2, seed=4))
    graph = Graph(simulator)
    clock.to(75.4)
    user_id = simulator.add_user(new_user("nina"))

    assert graph.get(f"/users/{user_id}", **{"$select": "createdDateTime"}).body["createdDateTime"] == (
        "2026-01-05T09:01:15Z"
    )
    loaded = [u for u in simulator.store.users.values() if u["id"] != user_id]
    stamps = [
        datetime.fromisoformat(u["createdDateTime"].replace("Z", "+00:00"))
        for u in loaded
        if "createdDateTime" in u
    ]
    assert all(s < START for s in stamps) and len({s.year for s in stamps}) > 5
    missing = [u for u in loaded if "createdDateTime" not in u]
    assert 0.05 * len(loaded) < len(missing) < 0.4 * len(loaded)  # some accounts from before June 2018

    kind = simulators(KIND)
    assert "createdDateTime" not in kind.store.find_user(kind.add_user(new_user("nina")))


def test_a_fraction_of_members_have_no_user_type() -> None:
    tenant = synthetic_tenant(3000, 2, seed=6)
    untyped = without_user_types(tenant, PRODUCTION.graph, seed=6)

    stripped = [u for u in untyped.users if "userType" not in u]
    members = [u for u in tenant.users if u["userType"] == "Member"]
    assert 0.01 * len(members) < len(stripped) < 0.035 * len(members)
    assert all("#EXT#" not in u["userPrincipalName"] for u in stripped)  # guests keep their userType
    assert untyped.to_json() == without_user_types(tenant, PRODUCTION.graph, seed=6).to_json()
    assert all("userType" in u for u in tenant.users)  # the tenant given is left as it was
    assert all("userType" in u for u in without_user_types(tenant, KIND.graph).users)


# mailboxes ------------------------------------------------------------------------------------------
ACCESS_DENIED = {
    "error": {"code": "ErrorAccessDenied", "message": "Access is denied. Check credentials and try again."}
}


@pytest.mark.parametrize("realism", [KIND, PRODUCTION], ids=["kind", "production"])
def test_a_mailbox_scoped_away_answers_exchanges_403(simulators: Factory, realism: Realism) -> None:
    tenant = seed_use_case()
    simulator = simulators(realism, tenant)
    graph = Graph(simulator)
    alice, bob = tenant.user_id("alice"), tenant.user_id("bob")
    simulator.scope_mailbox_away("alice@contoso.com")
    assert graph.admin("POST", f"/users/{bob}/mailboxScopedAway").status == 204

    direct = graph.get(f"/users/{alice}/mailboxSettings")
    steps = [
        {"id": str(n), "method": "GET", "url": f"/users/{u}/mailboxSettings"}
        for n, u in enumerate((alice, bob))
    ]
    batch = graph.call("POST", "/$batch", {"requests": steps})
    assert (direct.status, direct.body) == (403, ACCESS_DENIED)
    assert [(s["status"], s["body"]) for s in batch.body["responses"]] == [(403, ACCESS_DENIED)] * 2

    assert graph.admin("DELETE", f"/users/{bob}/mailboxScopedAway").status == 204
    assert graph.get(f"/users/{bob}/mailboxSettings").status == 200


# measurements ---------------------------------------------------------------------------------------
def test_the_change_log_says_when_each_change_was_made_and_became_readable(
    simulators: Factory, clock: FakeClock
) -> None:
    simulator = simulators(GraphRealism(replication=exactly(40.0)))
    graph = Graph(simulator)
    alice = seed_use_case().user_id("alice")
    clock.to(10)
    simulator.update_user(alice, department="Audit")
    before = len(simulator.change_log())
    clock.to(20)
    simulator.set_mailbox(alice, "shared")

    assert graph.admin("GET", "/changes").body["changes"][0] == {
        "index": 1,
        "kind": "user",
        "id": alice,
        "touched": ["department"],
        "removed": None,
        "other": None,
        "added": None,
        "restored": False,
        "made_at": "2026-01-05T09:00:10.000Z",
        "readable_at": None,
        "notifications": 1,
        "notified_at": ["2026-01-05T09:00:10.000Z"],
    }
    clock.to(60)
    later = graph.admin("GET", f"/changes?since={before}").body["changes"]
    assert [(c["kind"], c["readable_at"]) for c in later] == [("mailbox", "2026-01-05T09:01:00.000Z")]
    assert simulator.change_log()[0]["readable_at"] == "2026-01-05T09:00:50.000Z"
    json.dumps(simulator.change_log())


# the command line -----------------------------------------------------------------------------------
def admin_call(url: str, method: str, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(  # noqa: S310 - the simulator's own loopback URL
        f"{url}/_admin{path}", data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as answered:  # noqa: S310 - loopback only
        return json.loads(answered.read() or b"null")


@pytest.mark.parametrize(("profile", "pending"), [("kind", False), ("production", True)])
def test_the_command_line_serves_the_profile_it_names(profile: str, pending: bool) -> None:
    with SimulatorProcess.start("graph", "--realism", profile) as process:
        admin_call(process.url, "POST", "/users", make_user("nina"))
        due = admin_call(process.url, "GET", "/due")["nextDue"]

    assert (due is not None) is pending  # a skeleton's properties and its mailbox are on their way
