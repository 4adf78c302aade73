"""The Azure Functions entrypoints, called the way the host calls them (no host runs here)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from azure.functions.servicebus import ServiceBusMessage
from azure.functions.timer import TimerRequest

from provisioning.entrypoints.functions import runtime
from provisioning.errors import TransientError
from provisioning.service.context import Services
from provisioning.settings import Settings
from tests.fakes import FixedClock
from tests.queue_fake import InProcessQueue
from tests.unit.service.test_sync import World

PAYLOADS = Path(__file__).parents[2] / "payloads" / "graph"
SECRET = "secret-client-state-value"


@pytest.fixture(scope="module")
def functions() -> dict[str, Any]:
    from function_app import app

    return {str(f.get_function_name()): f for f in app.get_functions()}  # get_functions may run once per app


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    world = World()
    queue = InProcessQueue()
    monkeypatch.setenv("GRAPH_CLIENT_STATE", SECRET)
    monkeypatch.setenv("AZURE_TENANT_ID", "84bd8158-6d4d-4958-8b9f-9d6445542f95")
    monkeypatch.setenv("GRAPH_NOTIFICATION_URL", "https://app.example/api/graph/notifications")
    runtime.reset()

    @asynccontextmanager
    async def services() -> AsyncIterator[Services]:
        yield Services(world.directory, world.druva, world.state, world.clock, queue)

    runtime.use(queue=queue, services=services, policy=world.policy)
    world.queue = queue  # type: ignore[attr-defined]
    yield world
    runtime.reset()


def call(functions: dict[str, Any], name: str, *args: Any) -> Any:
    return asyncio.run(functions[name].get_user_function()(*args))


def bindings(functions: dict[str, Any], name: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = json.loads(functions[name].get_function_json())["bindings"]
    return found


def test_the_app_registers_exactly_these_functions(functions: dict[str, Any]) -> None:
    assert set(functions) == {
        "graph_notifications",
        "graph_lifecycle",
        "keep_watch",
        "nightly_reconciliation",
        "worker",
    }
    http = bindings(functions, "graph_notifications")[0]
    assert (http["type"], http["route"], http["methods"], http["authLevel"]) == (
        "httpTrigger",
        "graph/notifications",
        ["POST"],
        "ANONYMOUS",
    )
    assert bindings(functions, "graph_lifecycle")[0]["route"] == "graph/lifecycle"
    trigger = bindings(functions, "worker")[0]
    assert (trigger["type"], trigger["queueName"], trigger["connection"]) == (
        "serviceBusTrigger",
        "%PROVISIONING_QUEUE%",
        "ServiceBusConnection",
    )
    assert bindings(functions, "keep_watch")[0]["schedule"] == "0 */15 * * * *"
    assert bindings(functions, "nightly_reconciliation")[0]["schedule"] == "0 30 3 * * *"


def request(body: bytes = b"", params: dict[str, str] | None = None) -> func.HttpRequest:
    return func.HttpRequest(method="POST", url="/api/graph/notifications", params=params or {}, body=body)


def test_validation_handshake_echoes_the_token(functions: dict[str, Any], world: World) -> None:
    answer = call(
        functions, "graph_notifications", request(params={"validationToken": "Validation: a+b c&d"})
    )
    assert answer.status_code == 200
    assert answer.mimetype == "text/plain"
    assert answer.get_body() == b"Validation: a+b c&d"
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert call(functions, "graph_lifecycle", request(params={"validationToken": ""})).status_code == 400


def test_notifications_are_enqueued_and_answered_202(functions: dict[str, Any], world: World) -> None:
    body = (PAYLOADS / "group-members-changed.json").read_bytes()
    assert call(functions, "graph_notifications", request(body)).status_code == 202
    lifecycle = (PAYLOADS / "lifecycle-reauthorization-required.json").read_bytes()
    assert call(functions, "graph_lifecycle", request(lifecycle)).status_code == 202
    kinds = [m.kind for m in world.queue.pending()]  # type: ignore[attr-defined]
    assert kinds.count("lifecycle") == 1
    assert (
        2 <= kinds.count("delta") <= 4
    )  # a pass now and one at the window's end; both deduplicated per window


def test_forged_notifications_are_refused(functions: dict[str, Any], world: World) -> None:
    body = (PAYLOADS / "user-updated.json").read_text().replace(SECRET, "forged")
    assert call(functions, "graph_notifications", request(body.encode())).status_code == 400
    assert world.queue.pending() == []  # type: ignore[attr-defined]


def test_a_queue_outage_makes_graph_retry(functions: dict[str, Any], world: World) -> None:
    class Down:
        async def send(self, messages: object) -> None:
            raise ConnectionError("service bus unreachable")

    runtime.use(queue=Down())
    body = (PAYLOADS / "user-updated.json").read_bytes()
    assert call(functions, "graph_notifications", request(body)).status_code == 503


def sb_message(body: dict[str, Any] | bytes, message_id: str = "m-1") -> ServiceBusMessage:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return ServiceBusMessage(body=raw, message_id=message_id, application_properties={}, user_properties={})


def test_worker_runs_a_pass(functions: dict[str, Any], world: World) -> None:
    call(functions, "worker", sb_message({"kind": "delta", "body": {"reason": "test"}}))
    assert world.druva.by_email("fay@contoso.com") is not None
    assert world.state.runs[-1].counts["created"] == 6


def test_worker_reschedules_when_graph_is_down_before_the_pass_starts(
    functions: dict[str, Any], world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Resolving the mappings' groups needs Graph: an outage there must not dead-letter the work."""

    @asynccontextmanager
    async def graph_down() -> AsyncIterator[Services]:
        raise TransientError("Graph 503 serviceNotAvailable", retry_after=120)
        yield  # pragma: no cover

    runtime.use(services=graph_down)
    call(functions, "worker", sb_message({"kind": "delta", "body": {"reason": "timer"}}))
    (again,) = world.queue.pending()  # type: ignore[attr-defined]
    assert again.kind == "delta" and again.not_before is not None


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b'{"kind": 3}',
        b'{"kind": "explode", "body": {}}',
        b'{"kind": "lifecycle", "body": {"subscriptionId": "s", "event": "bogusEvent"}}',
        b'{"kind": "lifecycle", "body": {"subscriptionId": "s", "event": null}}',
    ],
)
def test_worker_refuses_what_it_cannot_process(functions: dict[str, Any], world: World, raw: bytes) -> None:
    with pytest.raises(ValueError, match=r"message m-1"):
        call(functions, "worker", sb_message(raw))


def test_keep_watch_keeps_subscriptions_and_asks_for_a_pass(functions: dict[str, Any], world: World) -> None:
    call(functions, "keep_watch", TimerRequest(past_due=False))
    assert sorted(s.resource for s in world.directory.subscriptions.values()) == ["groups", "users"]
    assert [m.kind for m in world.queue.pending()] == ["delta"]  # type: ignore[attr-defined]


def test_keep_watch_keeps_the_safety_net_when_one_subscription_fails(
    functions: dict[str, Any], world: World, caplog: pytest.LogCaptureFixture
) -> None:
    original = world.directory.create_subscription

    async def users_refused(resource: str, *args: Any) -> Any:
        if resource == "users":
            raise TransientError("Graph answered 503")
        return await original(resource, *args)

    world.directory.create_subscription = users_refused  # type: ignore[method-assign, assignment]
    with pytest.raises(TransientError, match="Graph answered 503"):  # the run shows failed
        call(functions, "keep_watch", TimerRequest(past_due=False))
    assert [s.resource for s in world.directory.subscriptions.values()] == ["groups"]  # the other one kept
    assert [m.kind for m in world.queue.pending()] == ["delta"]  # type: ignore[attr-defined]
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert errors == [  # the subscription's own line, then the invocation's (test_function_failures.py)
        "subscription for users not kept: TransientError: Graph answered 503",
        "keep_watch failed keeping the Graph subscriptions: TransientError: Graph answered 503",
    ]


def test_keep_watch_keeps_the_safety_net_when_the_state_store_cannot_open(
    functions: dict[str, Any], world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    @asynccontextmanager
    async def broken() -> AsyncIterator[Services]:
        raise OSError("state store unreachable")
        yield

    runtime.use(services=broken)
    with pytest.raises(OSError, match="state store unreachable"):  # the invocation fails, visibly
        call(functions, "keep_watch", TimerRequest(past_due=False))
    assert [m.kind for m in world.queue.pending()] == ["delta"]  # type: ignore[attr-defined]


def test_nightly_reconciliation_is_enqueued_once_per_day(functions: dict[str, Any], world: World) -> None:
    call(functions, "nightly_reconciliation", TimerRequest(past_due=False))
    call(functions, "nightly_reconciliation", TimerRequest(past_due=True))
    assert [m.kind for m in world.queue.pending()] == ["reconcile"]  # type: ignore[attr-defined]


def test_settings_read_the_function_app_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ServiceBusConnection__fullyQualifiedNamespace", "ns.servicebus.windows.net")
    monkeypatch.setenv("GRAPH_CLIENT_STATE", "new")
    monkeypatch.setenv("GRAPH_CLIENT_STATE_PREVIOUS", "old")
    settings = Settings()
    assert settings.service_bus_namespace == "ns.servicebus.windows.net"
    assert settings.provisioning_queue == "provisioning-work"
    assert settings.client_states == ["new", "old"]


class PolicyResolutions:
    """An instance's policy, resolved from a mappings file on a clock the test moves."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        self.world = World()
        self.clock = FixedClock()
        self.config = tmp_path / "mappings.yaml"
        self.config.write_text((Path(__file__).parents[3] / "examples" / "mappings.yaml").read_text())
        monkeypatch.setenv("PROVISIONING_CONFIG", str(self.config))
        runtime.reset()
        runtime.use(clock=self.clock)
        self.services = Services(self.world.directory, self.world.druva, self.world.state, self.clock)
        self.calls: list[object] = []
        original = self.world.directory.find_groups

        async def counted(refs: Any) -> Any:
            self.calls.append(refs)
            return await original(refs)

        self.world.directory.find_groups = counted  # type: ignore[method-assign]

    def policy(self) -> Any:
        return asyncio.run(runtime._policy(self.services))


@pytest.fixture
def resolutions(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[PolicyResolutions]:
    yield PolicyResolutions(monkeypatch, tmp_path)
    runtime.reset()


def test_the_policy_is_resolved_once_per_instance_until_it_is_stale(resolutions: PolicyResolutions) -> None:
    first = resolutions.policy()
    resolutions.clock.advance(runtime.POLICY_TTL_SECONDS - 1)
    assert resolutions.policy() is first and len(resolutions.calls) == 1
    assert first.mappings[0].name == "US Finance"
    resolutions.clock.advance(1)
    second = resolutions.policy()
    assert second is not first and len(resolutions.calls) == 2
    resolutions.clock.advance(-60)  # a clock set back: its age is unknown, so it is resolved again
    assert resolutions.policy() is not second and len(resolutions.calls) == 3


def test_a_changed_mappings_file_is_resolved_at_once(resolutions: PolicyResolutions) -> None:
    first = resolutions.policy()
    text = resolutions.config.read_text()
    resolutions.config.write_text(text.replace("US Finance", "US Finance team", 1))
    changed = resolutions.policy()
    assert changed.mappings[0].name == "US Finance team" and len(resolutions.calls) == 2
    assert resolutions.policy() is changed and first is not changed


def test_a_policy_that_does_not_resolve_is_tried_again_on_the_next_pass(
    resolutions: PolicyResolutions,
) -> None:
    from provisioning.config import ConfigError

    first = resolutions.policy()
    text = resolutions.config.read_text()
    resolutions.config.write_text(text.replace("profile: Finance", "profile: Finances", 1))
    for _ in range(2):
        with pytest.raises(ConfigError, match="close matches: Finance"):
            resolutions.policy()
    resolutions.config.write_text(text)
    fixed = resolutions.policy()
    assert len(resolutions.calls) == 4  # nothing kept from a refusal: asked again at once, not after the TTL
    assert fixed is not first and fixed.mappings == first.mappings


def upkeep_records(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    from provisioning.service import telemetry

    return [
        (r.outcome, r.detail)  # type: ignore[attr-defined]
        for r in caplog.records
        if r.name == telemetry.LOGGER and getattr(r, telemetry.EVENT, None) == telemetry.UPKEEP_EVENT
    ]


def test_keep_watch_records_each_upkeep(
    functions: dict[str, Any], world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="provisioning.telemetry")
    call(functions, "keep_watch", TimerRequest(past_due=False))
    ((outcome, detail),) = upkeep_records(caplog)
    assert outcome == "ok" and "users: created" in detail and "groups: created" in detail


def test_a_failing_upkeep_is_recorded_and_the_safety_net_pass_still_asked_for(
    functions: dict[str, Any], world: World, caplog: pytest.LogCaptureFixture
) -> None:
    from provisioning.errors import TransientError

    async def graph_down(*args: object) -> None:
        raise TransientError("Graph answered 503")

    world.directory.create_subscription = graph_down  # type: ignore[method-assign,assignment]
    caplog.set_level(logging.INFO, logger="provisioning.telemetry")
    with pytest.raises(TransientError):
        call(functions, "keep_watch", TimerRequest(past_due=False))
    assert upkeep_records(caplog) == [("failed", "TransientError: Graph answered 503")]
    assert [m.kind for m in world.queue.pending()] == ["delta"]  # type: ignore[attr-defined]


def test_keep_watch_without_the_webhook_settings_is_a_failed_upkeep(
    functions: dict[str, Any], world: World, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GRAPH_NOTIFICATION_URL")
    runtime._instance.settings = None  # read the environment again
    caplog.set_level(logging.INFO, logger="provisioning.telemetry")
    call(functions, "keep_watch", TimerRequest(past_due=False))
    ((outcome, detail),) = upkeep_records(caplog)
    assert outcome == "failed" and "GRAPH_NOTIFICATION_URL" in detail


def test_the_worker_reports_latency_from_when_the_notification_was_received(
    functions: dict[str, Any], world: World, caplog: pytest.LogCaptureFixture
) -> None:
    received = (world.clock.now() - timedelta(seconds=2)).isoformat()
    caplog.set_level(logging.INFO, logger="provisioning.telemetry")
    call(
        functions,
        "worker",
        sb_message({"kind": "delta", "body": {"reason": "test", "received_at": received}}),
    )
    (record,) = [r for r in caplog.records if getattr(r, "event", None) == "provisioning.pass"]
    # two seconds before the (fixed) clock, plus the pass's own time, which a monotonic clock measures
    assert 2000 <= record.notification_latency_ms < 3000  # type: ignore[attr-defined]


class OpenedServices:
    """Stands in for ``bootstrap.build_services``: counts what it opens and what gets closed."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.opened: list[Services] = []
        self.closed: list[Services] = []

    async def __call__(self, *args: object, **kwargs: object) -> Services:
        await asyncio.sleep(0)  # a real open awaits: a concurrent invocation may open at the same time
        world = self.world
        services = Services(world.directory, world.druva, world.state, world.clock)
        closed = self.closed

        async def aclose() -> None:
            closed.append(services)

        services.aclose = aclose  # type: ignore[method-assign]
        self.opened.append(services)
        return services


async def _used() -> Services:
    async with runtime.services() as services:
        return services


def test_a_warm_instance_keeps_its_adapters_open_across_invocations(monkeypatch: pytest.MonkeyPatch) -> None:
    opener = OpenedServices(World())
    runtime.reset()
    runtime.use(queue=InProcessQueue(), build=opener)

    async def invocations() -> list[Services]:
        concurrent = await asyncio.gather(_used(), _used())  # the first two, at once
        return [*concurrent, await _used()]

    used = asyncio.run(invocations())
    assert used[0] is used[1] is used[2]
    (raced,) = [s for s in opener.opened if s is not used[0]]  # both opened at once: one set is kept
    assert opener.closed == [raced]  # the other closed, not left open
    later = asyncio.run(_used())  # another event loop: its own connections
    assert later is not used[0]
    runtime.use(queue=InProcessQueue())  # built with another queue or clock: opened again
    assert asyncio.run(_used()) is not later
    runtime.reset()


def test_the_functions_open_their_adapters_with_reads_that_end_before_the_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    opener = OpenedServices(World())
    asked: list[dict[str, object]] = []

    async def recording(*args: object, **kwargs: object) -> Services:
        asked.append(kwargs)
        return await opener(*args, **kwargs)

    runtime.reset()
    runtime.use(queue=InProcessQueue(), build=recording)
    asyncio.run(_used())
    runtime.reset()
    assert asked and asked[0]["read_seconds"] == runtime.READ_SECONDS


def test_build_services_bounds_every_read_it_is_asked_to(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from provisioning.adapters.graph.directory import GraphDirectory
    from provisioning.bootstrap import build_services
    from provisioning.settings import Settings

    monkeypatch.setenv("GRAPH_ACCESS_TOKEN", "token")
    monkeypatch.setenv("DRUVA_CLIENT_ID", "client")
    monkeypatch.setenv("DRUVA_CLIENT_SECRET", "secret")
    monkeypatch.setenv("PROVISIONING_STATE", str(tmp_path))

    async def opened() -> tuple[float, float]:
        services = await build_services(Settings(), read_seconds=42.0)
        try:
            directory = services.directory
            assert isinstance(directory, GraphDirectory)
            return directory.read_bounds.seconds, services.druva._options.read_bounds.seconds  # type: ignore[attr-defined]
        finally:
            await services.aclose()

    assert asyncio.run(opened()) == (42.0, 42.0)


def test_an_upkeep_graph_refuses_is_named_by_status(functions: dict[str, Any], world: World) -> None:
    """A deployment whose Graph grant was handed over and not done yet: status names the refusal."""
    from provisioning.domain.health import ACCESS_REFUSED
    from provisioning.errors import AuthError
    from provisioning.service.status import read_status

    async def not_granted(*args: object) -> None:
        raise AuthError("Graph POST /subscriptions: 403 Authorization_RequestDenied")

    granted = world.directory.create_subscription
    world.directory.create_subscription = not_granted  # type: ignore[method-assign,assignment]
    with pytest.raises(AuthError):
        call(functions, "keep_watch", TimerRequest(past_due=False))
    status = asyncio.run(read_status(world.state, world.clock.now()))
    assert status.problems[0].code == ACCESS_REFUSED
    assert "subscription upkeep refused" in status.problems[0].detail
    world.directory.create_subscription = granted  # type: ignore[method-assign]
    call(functions, "keep_watch", TimerRequest(past_due=False))  # the grant is done
    status = asyncio.run(read_status(world.state, world.clock.now()))
    assert ACCESS_REFUSED not in [p.code for p in status.problems]
