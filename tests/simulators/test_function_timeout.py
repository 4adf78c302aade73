"""The local Functions host enforces host.json's functionTimeout: a longer invocation is cancelled and
counted as a failure, as Azure does (a Service Bus message whose invocation timed out comes back)."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import azure.functions as func
import pytest

from provisioning.domain.work import DeltaPass, WorkMessage
from simulators.functions_host import LocalFunctionsHost, function_timeout_from_project
from simulators.servicebus import LocalServiceBus, QueueSettings

TIMEOUT = 0.4
CANCELLED: list[str] = []


def build_app() -> func.FunctionApp:
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @app.function_name("slow_http")
    @app.route(route="slow", methods=["GET"])
    async def slow_http(req: func.HttpRequest) -> func.HttpResponse:
        seconds = float(req.params.get("seconds", "0"))
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            CANCELLED.append("slow_http")
            raise
        if req.params.get("own"):
            raise TimeoutError("the function's own timeout")
        return func.HttpResponse("done")

    @app.function_name("slow_worker")
    @app.service_bus_queue_trigger(arg_name="message", queue_name="work", connection="Conn")
    async def slow_worker(message: func.ServiceBusMessage) -> None:
        await asyncio.sleep(30)  # never finishes within the timeout

    return app


@pytest.fixture
def host() -> Iterator[LocalFunctionsHost]:
    CANCELLED.clear()
    bus = LocalServiceBus(QueueSettings(lock_duration=5.0, max_delivery_count=2, max_concurrent_calls=1))
    with LocalFunctionsHost(build_app(), bus, run_timers=False, function_timeout=TIMEOUT) as running:
        yield running


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:  # noqa: S310 - loopback
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return error.code


def outcomes(host: LocalFunctionsHost, name: str) -> list[Any]:
    return [i["outcome"] for i in host.invocation_log() if i["function"] == name]


def test_the_timeout_is_read_from_host_json() -> None:
    assert function_timeout_from_project() == 15 * 60.0  # "functionTimeout": "00:15:00"


def test_an_invocation_past_the_timeout_is_cancelled_and_fails(host: LocalFunctionsHost) -> None:
    started = time.monotonic()
    assert get(f"{host.url}/api/slow?seconds=20") == 500
    assert time.monotonic() - started < 5  # cut at the timeout, not after the function's 20 s
    assert outcomes(host, "slow_http") == ["error: FunctionTimeout"]
    assert CANCELLED == ["slow_http"]  # the function itself was cancelled, not left running


def test_an_invocation_within_the_timeout_and_the_function_s_own_timeout_error(
    host: LocalFunctionsHost,
) -> None:
    assert get(f"{host.url}/api/slow?seconds=0.05") == 200
    assert get(f"{host.url}/api/slow?seconds=0&own=1") == 500
    assert outcomes(host, "slow_http") == ["ok", "error: TimeoutError"]


def test_a_queue_invocation_past_the_timeout_is_abandoned_and_finally_dead_lettered(
    host: LocalFunctionsHost,
) -> None:
    host.bus.send([WorkMessage(DeltaPass("slow"), message_id="slow-1")])
    deadline = time.monotonic() + 10
    while not host.bus.dead_letters() and time.monotonic() < deadline:
        time.sleep(0.05)
    [dead] = host.bus.dead_letters()
    assert (dead.delivery_count, dead.dead_letter_reason) == (2, "MaxDeliveryCountExceeded")
    assert outcomes(host, "slow_worker") == ["error: FunctionTimeout"] * 2
    assert host.bus.counters.abandoned == 2 and host.bus.counters.lock_expired == 0
