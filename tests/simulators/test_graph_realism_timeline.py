"""The Graph simulator's production profile, part two: when things happen. Notifications on their own
timeline (late, out of order, twice, never), released by whatever catches up: ``flush_deliveries`` on a
clock that jumps, the clockwork thread under real time; skeleton users filled in property by property;
mailboxes provisioned late; a hire's dynamic groups; ``next_due`` for a driver that jumps its clock.

The fake clock and the in-process ``Graph`` come from ``test_graph_realism.py``; notifications go over
loopback HTTP to a ``Receiver`` on a free 127.0.0.1 port. Only the two real-time tests wait, a fraction
of a second, in bounded polls.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from simulators.graph import KIND, PRODUCTION, Delay, GraphRealism, GraphSimulator
from simulators.http import Request, Response, Router, SimulatorServer
from simulators.tenants import seed_use_case

from .test_graph_realism import (  # the fixtures are shared too
    Factory,
    FakeClock,
    Graph,
    clock_fixture,  # noqa: F401
    exactly,
    new_user,
    simulators_fixture,  # noqa: F401
)

MAX_STEPS = 5000


class Receiver:
    """A notification endpoint on loopback: answers the validation handshake, keeps what it is sent."""

    def __init__(self) -> None:
        self.notifications: list[dict[str, Any]] = []
        router = Router()
        router.add("POST", r"/notify", self._receive, "notify")
        self.server = SimulatorServer(router)

    @property
    def url(self) -> str:
        return f"{self.server.url}/notify"

    def _receive(self, request: Request) -> Response:
        token = request.query.get("validationToken")
        if token is not None:
            return Response(200, token)
        self.notifications.extend(request.json()["value"])
        return Response(202)

    def resources(self) -> list[str]:
        return [n["resource"] for n in self.notifications]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver()
    with made.server:
        yield made


def subscribe(graph: Graph, receiver: Receiver, resource: str, now: datetime) -> None:
    body = {
        "changeType": "updated,deleted",
        "notificationUrl": receiver.url,
        "resource": resource,
        "expirationDateTime": (now + timedelta(days=2)).isoformat(),
        "clientState": "secret",
    }
    assert graph.call("POST", "/subscriptions", body).status == 201


def run_until_idle(simulator: GraphSimulator, clock: FakeClock, *, until: float | None = None) -> int:
    """What a driver that jumps its clock does: to the next due moment, flush, again. Returns the steps."""
    for step in range(MAX_STEPS):
        due = simulator.next_due()
        if due is None or (until is not None and due > clock.at(until)):
            if until is not None:
                clock.to(until)
            assert simulator.flush_deliveries(timeout=5)
            return step
        clock.now = max(clock.now, due)
        assert simulator.flush_deliveries(timeout=5)
    raise AssertionError("the timeline never ran dry")


def payload_shape(notification: dict[str, Any]) -> dict[str, Any]:
    """A notification without what differs between two runs (ids, expiry)."""
    varying = ("id", "subscriptionId", "subscriptionExpirationDateTime")
    return {k: v for k, v in notification.items() if k not in varying}


# notifications ----------------------------------------------------------------------------------------
def test_a_notification_is_posted_its_delay_after_the_change_is_made_even_before_it_is_readable(
    simulators: Factory, clock: FakeClock, receiver: Receiver
) -> None:
    simulator = simulators(GraphRealism(replication=exactly(60.0), notification=exactly(10.0)))
    graph = Graph(simulator)
    subscribe(graph, receiver, "users", clock.now)
    alice = seed_use_case().user_id("alice")
    simulator.update_user(alice, department="Audit")

    assert simulator.flush_deliveries() and receiver.notifications == []
    assert simulator.next_due() == clock.at(10)
    clock.to(9.9)
    assert simulator.flush_deliveries() and receiver.notifications == []
    clock.to(10)
    assert simulator.flush_deliveries() and receiver.resources() == [f"Users/{alice}"]
    assert graph.get(f"/users/{alice}", **{"$select": "department"}).body["department"] == "Finance"
    assert simulator.next_due() is None

    kind = simulators(KIND)
    kind_receiver = Receiver()
    with kind_receiver.server:
        subscribe(Graph(kind), kind_receiver, "users", clock.now)
        kind.update_user(alice, department="Audit")
        assert kind.flush_deliveries()
    assert [payload_shape(n) for n in receiver.notifications] == [
        payload_shape(n) for n in kind_receiver.notifications
    ]


def test_notifications_of_different_changes_arrive_out_of_order(
    simulators: Factory, clock: FakeClock, receiver: Receiver
) -> None:
    simulator = simulators(GraphRealism(notification=Delay(((0.0, 60.0, 1.0),))), seed=2)
    subscribe(Graph(simulator), receiver, "users", clock.now)
    tenant = seed_use_case()
    names = ("alice", "bob", "carol", "erin", "frank", "grace", "heidi", "ivan")
    for second, name in enumerate(names):
        clock.to(second)
        simulator.update_user(tenant.user_id(name), jobTitle="Moved")

    run_until_idle(simulator, clock)
    arrived = [r.removeprefix("Users/") for r in receiver.resources()]
    posted = sorted(simulator.change_log(), key=lambda c: c["notified_at"][0])
    assert sorted(arrived) == sorted(tenant.user_id(n) for n in names)
    assert arrived == [c["id"] for c in posted]  # in the order they fell due...
    assert arrived != [tenant.user_id(n) for n in names]  # ...which is not the order they were made


def test_a_notification_can_come_twice_or_never(
    simulators: Factory, clock: FakeClock, receiver: Receiver
) -> None:
    alice = seed_use_case().user_id("alice")
    twice = simulators(GraphRealism(notification=exactly(1.0), notification_duplicate=1.0))
    subscribe(Graph(twice), receiver, "users", clock.now)
    twice.update_user(alice, department="Audit")
    run_until_idle(twice, clock)
    assert receiver.resources() == [f"Users/{alice}"] * 2
    assert len({n["id"] for n in receiver.notifications}) == 2
    assert [(c["notifications"], len(c["notified_at"])) for c in twice.change_log()] == [(2, 2)]

    never = simulators(GraphRealism(notification=exactly(1.0), notification_lost=1.0))
    never.update_user(alice, department="Audit")
    assert never.next_due() is None and never.change_log()[0]["notifications"] == 0

    some = simulators(
        GraphRealism(notification=exactly(1.0), notification_duplicate=0.2, notification_lost=0.1)
    )
    for n in range(300):
        some.update_user(alice, jobTitle=f"title {n}")
    copies = [c["notifications"] for c in some.change_log()]
    assert 10 < copies.count(0) < 50 and 30 < copies.count(2) < 90


def test_a_membership_notification_carries_members_delta(
    simulators: Factory, clock: FakeClock, receiver: Receiver
) -> None:
    tenant = seed_use_case()
    simulator = simulators(GraphRealism(notification=exactly(5.0), replication=exactly(20.0)))
    subscribe(Graph(simulator), receiver, "groups", clock.now)
    finance, frank = tenant.group_id("US Finance"), tenant.user_id("frank")
    simulator.add_member(finance, frank)
    clock.to(1)
    simulator.remove_member(finance, frank)

    run_until_idle(simulator, clock)
    assert [(n["resource"], n["resourceData"]["members@delta"]) for n in receiver.notifications] == [
        (f"Groups/{finance}", [{"id": frank}]),
        (f"Groups/{finance}", [{"id": frank, "@removed": "deleted"}]),
    ]
    assert receiver.notifications[0]["resourceData"]["@odata.type"] == "#Microsoft.Graph.Group"


def test_held_notifications_that_fall_due_wait_for_deliver(
    simulators: Factory, clock: FakeClock, receiver: Receiver
) -> None:
    simulator = simulators(GraphRealism(notification=exactly(3.0)))
    subscribe(Graph(simulator), receiver, "users", clock.now)
    simulator.set_delivery_mode("hold")
    simulator.update_user(seed_use_case().user_id("alice"), department="Audit")
    clock.to(5)

    assert simulator.flush_deliveries() and receiver.notifications == []
    simulator.set_delivery_mode("deliver")
    assert simulator.flush_deliveries() and len(receiver.notifications) == 1


def wait_for(condition: Callable[[], bool], seconds: float = 3.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_under_real_time_the_clockwork_posts_a_notification_when_it_falls_due(receiver: Receiver) -> None:
    simulator = GraphSimulator(seed_use_case(), realism=GraphRealism(notification=exactly(0.2)))
    try:
        subscribe(Graph(simulator), receiver, "users", datetime.now(UTC))
        made = time.monotonic()
        simulator.update_user("alice@contoso.com", department="Audit")

        assert wait_for(lambda: len(receiver.notifications) == 1)  # nobody called the simulator meanwhile
        assert time.monotonic() - made >= 0.2
    finally:
        simulator.stop()


def test_under_real_time_a_planned_membership_is_made_at_its_moment(receiver: Receiver) -> None:
    tenant = seed_use_case()
    simulator = GraphSimulator(tenant, realism=GraphRealism(dynamic_membership=exactly(0.2)))
    try:
        subscribe(Graph(simulator), receiver, "groups", datetime.now(UTC))
        hired = simulator.hire(new_user("nina"), [tenant.group_id("US Sales")])

        assert wait_for(lambda: len(receiver.notifications) == 1)
        assert receiver.notifications[0]["resourceData"]["members@delta"] == [{"id": hired}]
    finally:
        simulator.stop()


# skeletons and mailboxes ----------------------------------------------------------------------------
SKELETON_SELECT = "id,userPrincipalName,displayName,createdDateTime,department,accountEnabled,userType,mail"


def test_a_new_user_is_a_skeleton_filled_in_property_by_property(
    simulators: Factory, clock: FakeClock, receiver: Receiver
) -> None:
    realism = GraphRealism(skeleton_fill=Delay(((1.0, 20.0, 1.0),)), created_stamp=True)
    simulator = simulators(realism)
    graph = Graph(simulator)
    subscribe(graph, receiver, "users", clock.now)
    given = new_user("nina")
    user_id = simulator.add_user(given)

    assert graph.get(f"/users/{user_id}", **{"$select": SKELETON_SELECT}).body == {
        "id": user_id,
        "userPrincipalName": "nina@contoso.com",
        "displayName": "Nina",
        "createdDateTime": "2026-01-05T09:00:00Z",
        "department": None,
        "accountEnabled": None,
        "userType": None,
        "mail": None,
    }
    run_until_idle(simulator, clock)
    filled = graph.get(f"/users/{user_id}", **{"$select": SKELETON_SELECT}).body
    assert (filled["department"], filled["accountEnabled"], filled["userType"]) == ("Finance", True, "Member")
    assert filled["mail"] == "nina@contoso.com"
    fills = simulator.change_log()[1:]
    skeleton = ("id", "userPrincipalName", "displayName", "mailboxSettings")
    expected = sorted(k for k, v in given.items() if v is not None and k not in skeleton)
    assert sorted(c["touched"][0] for c in fills) == expected
    assert {"department", "accountEnabled", "userType", "mail"} <= set(expected)
    assert all(clock.at(1) <= datetime.fromisoformat(c["made_at"]) <= clock.at(20) for c in fills)
    assert receiver.resources() == [f"Users/{user_id}"] * (1 + len(fills))  # each fill its own notification

    kind = simulators(KIND)
    kind.add_user(new_user("nina"))
    assert len(kind.change_log()) == 1 and kind.next_due() is None


def test_a_new_mailbox_answers_404_until_it_is_provisioned(simulators: Factory, clock: FakeClock) -> None:
    simulator = simulators(GraphRealism(replication=exactly(30.0), mailbox_provisioning=exactly(300.0)))
    graph = Graph(simulator)
    user_id = simulator.add_user(new_user("nina"))

    clock.to(299)
    assert graph.user_status(user_id) == 200
    pending = graph.get(f"/users/{user_id}/mailboxSettings")
    assert (pending.status, pending.body["error"]["code"]) == (404, "MailboxNotEnabledForRESTAPI")
    clock.to(300)
    assert graph.get(f"/users/{user_id}/mailboxSettings").body["userPurpose"] == "user"


def test_an_admin_write_after_the_creation_wins_over_what_was_planned(
    simulators: Factory, clock: FakeClock
) -> None:
    simulator = simulators(GraphRealism(skeleton_fill=exactly(10.0), mailbox_provisioning=exactly(60.0)))
    graph = Graph(simulator)
    user_id = simulator.add_user(new_user("nina"))
    clock.to(1)
    simulator.update_user(user_id, department="Sales")
    simulator.set_mailbox(user_id, "shared")

    run_until_idle(simulator, clock, until=100)
    user = graph.get(f"/users/{user_id}", **{"$select": "department,officeLocation"}).body
    assert (user["department"], user["officeLocation"]) == ("Sales", "New York")
    assert graph.get(f"/users/{user_id}/mailboxSettings").body["userPurpose"] == "shared"


# hires ------------------------------------------------------------------------------------------------
def test_a_hire_joins_its_dynamic_groups_minutes_later(simulators: Factory, clock: FakeClock) -> None:
    tenant = seed_use_case()
    sales = tenant.group_id("US Sales")
    simulator = simulators(GraphRealism(dynamic_membership=exactly(120.0)), tenant)
    graph = Graph(simulator)
    _, link = graph.round("/groups/delta", **{"$select": "id,members"})
    hired = simulator.hire(new_user("nina"), [sales])

    assert simulator.next_due() == clock.at(120)  # a driver that jumps must stop there
    clock.to(119)
    assert hired not in {m["id"] for m in graph.get(f"/groups/{sales}/members").body["value"]}
    clock.to(120)
    assert hired in {m["id"] for m in graph.get(f"/groups/{sales}/members").body["value"]}
    groups, _ = graph.round(link)
    assert [(g["id"], g["members@delta"]) for g in groups] == [
        (sales, [{"@odata.type": "#microsoft.graph.user", "id": hired}])
    ]
    made = [c for c in simulator.change_log() if c["kind"] == "member"]
    assert [c["made_at"] for c in made] == ["2026-01-05T09:02:00.000Z"]


def test_a_hire_over_the_admin_api(simulators: Factory) -> None:
    tenant = seed_use_case()
    sales = tenant.group_id("US Sales")
    simulator = simulators(KIND, tenant)
    graph = Graph(simulator)

    created = graph.admin("POST", "/hires", {"user": new_user("nina"), "groups": [sales]})
    assert created.status == 201
    assert created.body["id"] in simulator.store.members[sales]  # the kind profile: at once
    refused = graph.admin("POST", "/hires", {"user": new_user("omar"), "groups": ["no-such-group"]})
    assert refused.status == 404
    assert graph.user_status("omar@contoso.com") == 404  # nothing was made


# a driver that jumps its clock ----------------------------------------------------------------------
def test_a_driver_that_jumps_to_each_next_due_moment_misses_nothing(
    simulators: Factory, clock: FakeClock, receiver: Receiver
) -> None:
    tenant = seed_use_case()
    simulator = simulators(PRODUCTION, tenant, seed=4)
    graph = Graph(simulator)
    subscribe(graph, receiver, "users", clock.now)
    subscribe(graph, receiver, "groups", clock.now)
    hires = [simulator.hire(new_user(f"hire{n}"), [tenant.group_id("US Finance")]) for n in range(5)]
    simulator.update_user("alice@contoso.com", officeLocation="Chicago")
    simulator.delete_user("bob@contoso.com")

    steps = run_until_idle(simulator, clock)
    clock.advance(PRODUCTION.graph.replication.maximum)
    log = simulator.change_log()
    assert steps > 20 and simulator.next_due() is None
    assert all(len(c["notified_at"]) == c["notifications"] for c in log)
    assert len(receiver.notifications) == sum(c["notifications"] for c in log)
    assert all(c["readable_at"] is not None for c in log)
    assert all(graph.user_status(h) == 200 for h in hires)
    finance_members = {
        m["id"] for m in graph.get(f"/groups/{tenant.group_id('US Finance')}/members").body["value"]
    }
    assert set(hires) <= finance_members
