"""One way to start both simulators and put them through an outage: each outage as each service has it,
in a thread, over the admin route and in another process; the state survives the recovery."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from simulators.druva import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_SEED, DruvaSimulator
from simulators.graph import GraphSimulator
from simulators.outages import Outage, OutageKind
from simulators.running import RunningSimulator, SimulatorProcess, SimulatorThread
from simulators.tenants import seed_use_case

GRAPH_TOKEN = {"Authorization": "Bearer any-token"}
PROFILES = "/insync/profilemanagement/v1/profiles"


@dataclass
class Service:
    """A simulator behind its running handle, and how a client reads it."""

    name: str
    running: RunningSimulator
    probe_path: str  # a read every outage applies to
    headers: dict[str, str]
    error_status: int  # the service's own 5xx

    def probe(self, client: httpx.Client | None = None, timeout: float = 5.0) -> httpx.Response:
        if client is not None:
            return client.get(self.running.url + self.probe_path, headers=self.headers)
        return httpx.get(self.running.url + self.probe_path, headers=self.headers, timeout=timeout)


def druva_token(url: str) -> dict[str, str]:
    answer = httpx.post(
        f"{url}/token",
        auth=(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET),
        data={"grant_type": "client_credentials"},
    )
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def graph_in_thread() -> Service:
    running = GraphSimulator(seed_use_case()).serve().start()
    return Service("graph", running, "/v1.0/users", GRAPH_TOKEN, 503)


def druva_in_thread() -> Service:
    running = DruvaSimulator(DEFAULT_SEED).serve().start()
    return Service("druva", running, PROFILES, druva_token(running.url), 500)


def graph_in_process() -> Service:
    return Service("graph", SimulatorProcess.start("graph"), "/v1.0/users", GRAPH_TOKEN, 503)


def druva_in_process() -> Service:
    running = SimulatorProcess.start("druva")
    return Service("druva", running, PROFILES, druva_token(running.url), 500)


@pytest.fixture(params=[graph_in_thread, druva_in_thread], ids=["graph", "druva"])
def service(request: pytest.FixtureRequest) -> Iterator[Service]:
    started: Service = request.param()
    try:
        yield started
    finally:
        started.running.stop()


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"kind": "slow"}, "seconds"),
        ({"kind": "errors", "seconds": 1}, "seconds"),
        ({"kind": "hang", "fraction": 0.5}, "fraction"),
        ({"kind": "refused", "routes": ["users"]}, "routes"),
        ({"kind": "throttled", "fraction": 0}, "fraction"),
        ({"kind": "throttled", "retry_after": -1}, "retry_after"),
        ({"kind": "down"}, "down"),
        ({"kind": "errors", "status": 500}, "status"),
        ({"kind": "errors", "routes": "users"}, "routes"),
        ({"fraction": 1}, "kind"),
    ],
)
def test_an_outage_that_means_nothing_is_refused(settings: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        Outage.from_json(settings)


@pytest.mark.parametrize(
    "outage",
    [
        Outage(OutageKind.REFUSED),
        Outage(OutageKind.HANG),
        Outage(OutageKind.SLOW, seconds=0.25),
        Outage(OutageKind.ERRORS),
        Outage(OutageKind.THROTTLED, fraction=0.5, routes=("users",), retry_after=3),
    ],
)
def test_an_outage_reads_back_from_its_json(outage: Outage) -> None:
    assert Outage.from_json(outage.to_json()) == outage


def test_errors_are_the_services_own_5xx(service: Service) -> None:
    service.running.outage(Outage(OutageKind.ERRORS))
    answer = service.probe()
    assert answer.status_code == service.error_status
    if service.name == "druva":
        assert answer.json()["retryable"] is True
    else:
        assert answer.json()["error"]["code"] == "serviceNotAvailable"
    service.running.recover()
    assert service.probe().status_code == 200


def test_throttling_says_when_to_come_back(service: Service) -> None:
    service.running.outage(Outage(OutageKind.THROTTLED, retry_after=7))
    answer = service.probe()
    assert (answer.status_code, answer.headers["Retry-After"]) == (429, "7")
    service.running.recover()
    assert service.probe().status_code == 200


def test_an_outage_on_other_routes_leaves_this_one_alone(service: Service) -> None:
    service.running.outage(Outage(OutageKind.ERRORS, routes=("create user", "create subscription")))
    assert service.probe().status_code == 200


def test_slow_answers_late(service: Service) -> None:
    service.running.outage(Outage(OutageKind.SLOW, seconds=0.3))
    started = time.monotonic()
    assert service.probe().status_code == 200
    assert time.monotonic() - started >= 0.3
    service.running.recover()
    started = time.monotonic()
    assert service.probe().status_code == 200
    assert time.monotonic() - started < 0.3


def test_a_hang_accepts_and_never_answers_until_the_recovery(service: Service) -> None:
    with httpx.Client(timeout=2) as client:
        assert service.probe(client).status_code == 200  # a keep-alive connection from before
        service.running.outage(Outage(OutageKind.HANG))
        with pytest.raises(httpx.ReadTimeout):
            service.probe(timeout=0.3)  # a new connection: accepted, never answered
        with pytest.raises(httpx.ReadTimeout):
            client.get(service.running.url + service.probe_path, headers=service.headers, timeout=0.3)
    service.running.recover()
    assert service.probe().status_code == 200


def test_refused_means_nothing_listens_and_the_state_survives(service: Service) -> None:
    with httpx.Client(timeout=2) as client:
        assert service.probe(client).status_code == 200
        before = service.probe().json()
        service.running.outage(Outage(OutageKind.REFUSED))
        with pytest.raises(httpx.ConnectError):
            service.probe(timeout=1)
        with pytest.raises(httpx.TransportError):  # the connection from before is dropped, not served
            service.probe(client)
    service.running.recover()
    assert service.probe().json() == before  # same port, same data


def test_the_same_outages_are_set_over_the_admin_route(service: Service) -> None:
    admin = f"{service.running.url}/_admin/outages"
    assert httpx.post(admin, json={"kind": "throttled", "retryAfter": 1}).status_code == 400  # JSON names
    assert httpx.post(admin, json={"kind": "hang"}).status_code == 400  # the server's, not the routes'
    assert httpx.post(admin, json={"kind": "errors", "fraction": 1.0}).status_code == 204
    assert service.probe().status_code == service.error_status
    assert httpx.delete(admin).status_code == 204
    assert service.probe().status_code == 200


@pytest.mark.parametrize("start", [graph_in_process, druva_in_process], ids=["graph", "druva"])
def test_a_simulator_in_another_process_takes_the_same_outages(start: Callable[[], Service]) -> None:
    service = start()
    try:
        service.running.outage(Outage(OutageKind.ERRORS))
        assert service.probe().status_code == service.error_status
        service.running.outage(Outage(OutageKind.HANG))  # SIGSTOP: the kernel still accepts
        with pytest.raises(httpx.ReadTimeout):
            service.probe(timeout=0.3)
        with pytest.raises(ValueError, match="cannot refuse"):
            service.running.outage(Outage(OutageKind.REFUSED))
        service.running.recover()
        assert service.probe().status_code == 200
    finally:
        assert service.running.stop() == 0


@pytest.mark.parametrize("kind", [OutageKind.REFUSED, OutageKind.HANG])
def test_the_server_outages_need_the_running_handle(kind: OutageKind) -> None:
    for simulator in (GraphSimulator(), DruvaSimulator()):
        with pytest.raises(ValueError, match="running handle"):
            simulator.apply_outage(Outage(kind))


def test_druva_fails_one_set_of_routes_at_a_time() -> None:
    druva = DruvaSimulator(DEFAULT_SEED)
    druva.apply_outage(Outage(OutageKind.THROTTLED, fraction=0.5, routes=("create user",)))
    druva.apply_outage(Outage(OutageKind.ERRORS, fraction=0.2, routes=("create user",)))
    assert (druva.faults.throttle_rate, druva.faults.error_rate, druva.faults.routes) == (
        0.5,
        0.2,
        ["create user"],
    )
    with pytest.raises(ValueError, match="one set of routes"):
        druva.apply_outage(Outage(OutageKind.ERRORS, routes=("update user",)))
    with pytest.raises(ValueError, match="Retry-After"):
        druva.apply_outage(Outage(OutageKind.ERRORS, retry_after=5, routes=("create user",)))
    druva.clear_faults()
    assert druva.faults == type(druva.faults)()


def test_graph_outages_add_to_its_own_faults_and_clear_with_them() -> None:
    graph = GraphSimulator()
    graph.inject(401, count=1)
    graph.apply_outage(Outage(OutageKind.THROTTLED, fraction=0.5, retry_after=2))
    graph.apply_outage(Outage(OutageKind.SLOW, seconds=0.1))
    assert [(f.status, f.fraction, f.retry_after) for f in graph.faults.active] == [
        (401, None, None),
        (429, 0.5, 2),
    ]
    assert graph.router.latency_seconds == 0.1
    graph.clear_faults()
    assert (graph.faults.active, graph.router.latency_seconds) == ([], 0.0)


def test_a_thread_handle_restarts_on_its_own_port() -> None:
    with DruvaSimulator(DEFAULT_SEED).serve() as running:
        port = running.port
        running.outage(Outage(OutageKind.REFUSED))
        running.recover()
        assert running.port == port
        assert httpx.get(f"{running.url}/_admin/state").status_code == 200


def test_a_handle_not_started_has_no_url() -> None:
    running: SimulatorThread = DruvaSimulator().serve(port=8402)
    with pytest.raises(RuntimeError, match="not started"):
        _ = running.url
