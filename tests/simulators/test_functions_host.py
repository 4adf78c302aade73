"""The local Functions host, on a small app of its own: every trigger kind, locks, dead-letters.

(The product's app is run by the host in tests/e2e/test_event_path.py; ``get_functions`` may be called
only once per app object, so these tests build their own.)
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import azure.functions as func
import pytest

from provisioning.domain.work import DeltaPass, WorkMessage
from simulators.functions_host import LocalFunctionsHost, Schedule, discover
from simulators.servicebus import LocalServiceBus, QueueSettings

SEEN: dict[str, list[Any]] = {}


def build_app() -> func.FunctionApp:
    app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

    @app.function_name("echo")
    @app.route(route="things/echo", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
    async def echo(req: func.HttpRequest) -> func.HttpResponse:
        body = json.dumps({"params": dict(req.params), "body": req.get_body().decode(), "method": req.method})
        return func.HttpResponse(
            body, status_code=201, mimetype="application/json", headers={"X-Seen": "yes"}
        )

    @app.function_name("keyed")
    @app.route(route="keyed", methods=["GET"])
    def keyed(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("ok")

    @app.function_name("tick")
    @app.timer_trigger(arg_name="timer", schedule="*/1 * * * * *", run_on_startup=True)
    async def tick(timer: func.TimerRequest) -> None:
        SEEN.setdefault("tick", []).append(time.time())

    @app.function_name("consume")
    @app.service_bus_queue_trigger(arg_name="message", queue_name="%TEST_QUEUE%", connection="Conn")
    async def consume(message: func.ServiceBusMessage) -> None:
        body = json.loads(message.get_body())
        SEEN.setdefault("consume", []).append((message.message_id, message.delivery_count))
        if body["body"]["reason"] == "poison":
            raise ValueError("cannot do this")
        if body["body"]["reason"] == "slow":
            await asyncio.sleep(2.5)

    return app


def post(
    url: str, body: bytes = b"", headers: dict[str, str] | None = None, method: str = "POST"
) -> tuple[int, Any, bytes]:
    request = urllib.request.Request(  # noqa: S310 - loopback
        url, data=body if method != "GET" else None, method=method, headers=headers or {}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - loopback
            return answer.status, answer.headers, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, b""


def wait_for(check: Any, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.fixture
def host(monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalFunctionsHost]:
    monkeypatch.setenv("TEST_QUEUE", "work")
    SEEN.clear()
    settings = QueueSettings(
        lock_duration=1.0, max_delivery_count=3, max_auto_lock_renewal=5.0, max_concurrent_calls=2
    )
    with LocalFunctionsHost(build_app(), LocalServiceBus(settings)) as running:
        yield running


def test_functions_are_discovered_from_the_app_object(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_QUEUE", "work")
    found = {f.name: f for f in discover(build_app())}
    assert {n: f.trigger for n, f in found.items()} == {
        "echo": "httpTrigger",
        "keyed": "httpTrigger",
        "tick": "timerTrigger",
        "consume": "serviceBusTrigger",
    }
    assert (found["echo"].route, found["echo"].methods, found["echo"].anonymous) == (
        "things/echo",
        ["POST"],
        True,
    )
    assert found["keyed"].anonymous is False
    assert found["consume"].queue_name() == "work"
    monkeypatch.delenv("TEST_QUEUE")
    with pytest.raises(KeyError, match="TEST_QUEUE"):
        found["consume"].queue_name()


def test_http_requests_are_built_as_the_host_builds_them(host: LocalFunctionsHost) -> None:
    status, headers, body = post(
        f"{host.url}/api/things/echo?validationToken=a%2Bb%20c%26d&empty=&x=1", b"hello"
    )
    assert (status, headers["X-Seen"], headers["Content-Type"]) == (
        201,
        "yes",
        "application/json; charset=utf-8",
    )
    assert json.loads(body) == {
        "params": {"validationToken": "a+b c&d", "x": "1"},
        "body": "hello",
        "method": "POST",
    }
    assert post(f"{host.url}/api/things/echo", method="GET")[0] == 405
    assert post(f"{host.url}/api/nothing")[0] == 404


def test_a_function_level_route_needs_the_key(host: LocalFunctionsHost) -> None:
    assert post(f"{host.url}/api/keyed", method="GET")[0] == 401
    assert post(f"{host.url}/api/keyed?code={host.host_key}", method="GET")[0] == 200
    assert post(f"{host.url}/admin/host/status", method="GET")[0] == 401


def test_timers_run_on_startup_on_schedule_and_on_demand(host: LocalFunctionsHost) -> None:
    wait_for(lambda: len(SEEN.get("tick", [])) >= 3)  # on start, then every second
    before = len(SEEN["tick"])
    assert post(f"{host.url}/admin/functions/tick", headers={"x-functions-key": host.host_key})[0] == 202
    assert len(SEEN["tick"]) > before  # answered once the invocation finished


def test_ncrontab_schedules() -> None:
    moment = datetime(2026, 11, 30, 9, 7, 12, tzinfo=UTC)
    assert Schedule.parse("0 */15 * * * *").next_after(moment) == datetime(2026, 11, 30, 9, 15, 0, tzinfo=UTC)
    assert Schedule.parse("0 30 3 * * *").next_after(moment) == datetime(2026, 12, 1, 3, 30, 0, tzinfo=UTC)
    assert Schedule.parse("0 0 9 * * 1-5").next_after(datetime(2026, 12, 4, 10, tzinfo=UTC)) == datetime(
        2026, 12, 7, 9, tzinfo=UTC
    )  # Friday after nine → Monday
    for bad in ["* * * * *", "61 * * * * *", "x * * * * *"]:
        with pytest.raises(ValueError, match=r"NCRONTAB|invalid literal"):
            Schedule.parse(bad)


def test_queue_messages_are_delivered_once_and_completed(host: LocalFunctionsHost) -> None:
    host.bus.send([WorkMessage(DeltaPass("a"), "m-1"), WorkMessage(DeltaPass("a"), "m-1")])
    wait_for(lambda: host.bus.counters.completed == 1)
    assert SEEN["consume"] == [("m-1", 1)] and host.bus.active() == []


def test_a_failing_function_is_redelivered_then_dead_lettered(host: LocalFunctionsHost) -> None:
    host.bus.send([WorkMessage(DeltaPass("poison"), "bad")])
    wait_for(lambda: host.bus.dead_letters() != [])
    assert SEEN["consume"] == [("bad", 1), ("bad", 2), ("bad", 3)]
    assert host.bus.dead_letters()[0].dead_letter_reason == "MaxDeliveryCountExceeded"


def test_the_lock_is_renewed_while_the_function_runs(host: LocalFunctionsHost) -> None:
    host.bus.send([WorkMessage(DeltaPass("slow"), "slow-1")])  # 2.5 s against a 1 s lock, renewed every 0.5 s
    wait_for(lambda: host.bus.counters.completed == 1)
    assert SEEN["consume"] == [("slow-1", 1)] and host.bus.counters.lock_expired == 0


def test_past_the_renewal_limit_the_lock_expires_and_the_message_comes_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEST_QUEUE", "work")
    SEEN.clear()
    settings = QueueSettings(
        lock_duration=0.3, max_delivery_count=5, max_auto_lock_renewal=0.5, max_concurrent_calls=2
    )
    with LocalFunctionsHost(build_app(), LocalServiceBus(settings), run_timers=False) as host:
        host.bus.send([WorkMessage(DeltaPass("slow"), "slow-2")])
        wait_for(lambda: len(SEEN.get("consume", [])) >= 2)
        assert SEEN["consume"][:2] == [("slow-2", 1), ("slow-2", 2)]  # redelivered while the first still ran
        wait_for(lambda: host.bus.counters.lock_expired >= 1)
