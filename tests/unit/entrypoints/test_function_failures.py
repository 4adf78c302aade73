"""Every function invocation that fails says why in one error line of its own log, secrets masked,
before the failure leaves it: ``<function> failed <doing what>: <error>``. Without it the host records
a bare "Failed" after lines that may read "subscription upkeep ok". The functions are called the way
the host calls them, with a Service Bus (or Graph, or settings) that fails."""

from __future__ import annotations

import logging
import runpy
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from azure.functions.timer import TimerRequest

from provisioning.entrypoints.functions import runtime
from provisioning.errors import AuthError, TransientError
from provisioning.service.context import Services
from tests.unit.entrypoints.test_functions import PAYLOADS, SECRET, call, request, sb_message, world
from tests.unit.service.test_sync import World

__all__ = ["world"]  # the entrypoint tests' fixture: fake services and an in-process queue


@pytest.fixture(scope="module")
def functions() -> dict[str, Any]:
    """The app's functions, from its own copy of function_app.py: ``get_functions`` runs once per app,
    and the module's app is test_functions.py's."""
    app = runpy.run_path(str(Path(__file__).resolve().parents[3] / "function_app.py"))["app"]
    return {str(f.get_function_name()): f for f in app.get_functions()}


class ServiceBusDown:
    def __init__(self) -> None:
        self.sent = 0

    async def send(self, messages: object) -> None:
        self.sent += 1
        raise ConnectionError(f"amqp connection refused (sas token {SECRET})")


@pytest.fixture
def bus_down(world: World) -> ServiceBusDown:
    down = ServiceBusDown()
    runtime.use(queue=down)
    return down


def error_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def invocation_line(caplog: pytest.LogCaptureFixture, function: str) -> str:
    """The one line the invocation itself wrote (a service may have logged details before it)."""
    (line,) = [text for text in error_lines(caplog) if text.startswith(f"{function} failed")]
    assert SECRET not in line and "***" in line  # the error's text, secrets masked
    return line


def test_keep_watch_says_when_its_safety_net_pass_cannot_be_sent(
    functions: dict[str, Any], bus_down: ServiceBusDown, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="provisioning.telemetry")
    with pytest.raises(ConnectionError):
        call(functions, "keep_watch", TimerRequest(past_due=False))
    assert any(r.getMessage().startswith("subscription upkeep ok") for r in caplog.records)
    assert error_lines(caplog) == [invocation_line(caplog, "keep_watch")]
    assert invocation_line(caplog, "keep_watch").startswith(
        "keep_watch failed asking for the safety-net delta pass: ConnectionError: amqp connection refused"
    )


def test_keep_watch_names_both_failures_when_the_upkeep_fails_too(
    functions: dict[str, Any], world: World, bus_down: ServiceBusDown, caplog: pytest.LogCaptureFixture
) -> None:
    async def graph_down(*args: object) -> None:
        raise TransientError("Graph answered 503")

    world.directory.create_subscription = graph_down  # type: ignore[method-assign,assignment]
    with pytest.raises(ConnectionError):
        call(functions, "keep_watch", TimerRequest(past_due=False))
    line = invocation_line(caplog, "keep_watch")
    assert "safety-net delta pass: ConnectionError" in line
    assert line.endswith("(after TransientError: Graph answered 503)")
    assert bus_down.sent == 1


def test_keep_watch_says_when_the_upkeep_fails_and_the_pass_is_asked_for(
    functions: dict[str, Any], world: World, caplog: pytest.LogCaptureFixture
) -> None:
    @asynccontextmanager
    async def broken() -> AsyncIterator[Any]:
        raise OSError("state store unreachable")
        yield  # pragma: no cover

    runtime_services = runtime.services
    runtime.services = broken
    try:
        with pytest.raises(OSError, match="state store unreachable"):
            call(functions, "keep_watch", TimerRequest(past_due=False))
    finally:
        runtime.services = runtime_services
    assert error_lines(caplog) == [
        "keep_watch failed keeping the Graph subscriptions: OSError: state store unreachable"
    ]
    assert [m.kind for m in world.queue.pending()] == ["delta"]  # type: ignore[attr-defined]


def test_nightly_reconciliation_says_when_it_cannot_be_asked_for(
    functions: dict[str, Any], bus_down: ServiceBusDown, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(ConnectionError):
        call(functions, "nightly_reconciliation", TimerRequest(past_due=False))
    assert invocation_line(caplog, "nightly_reconciliation").startswith(
        "nightly_reconciliation failed asking for the nightly full reconciliation: ConnectionError"
    )


def graph_unavailable(error: Exception) -> Any:
    @asynccontextmanager
    async def services() -> AsyncIterator[Services]:
        raise error
        yield  # pragma: no cover

    return services


def test_the_worker_says_when_it_cannot_reschedule_work(
    functions: dict[str, Any],
    bus_down: ServiceBusDown,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runtime.use(services=graph_unavailable(TransientError("Graph 503", retry_after=120)))
    with pytest.raises(ConnectionError):
        call(functions, "worker", sb_message({"kind": "delta", "body": {"reason": "timer"}}))
    line = invocation_line(caplog, "worker (message m-1)")
    assert line.startswith("worker (message m-1) failed doing delta work: ConnectionError")
    assert line.endswith("(after TransientError: Graph 503)")


def test_the_worker_says_why_its_work_failed(
    functions: dict[str, Any], world: World, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime.use(services=graph_unavailable(AuthError(f"Graph 401 for token {SECRET}")))
    with pytest.raises(AuthError):
        call(functions, "worker", sb_message({"kind": "delta", "body": {"reason": "timer"}}))
    assert invocation_line(caplog, "worker (message m-1)").startswith(
        "worker (message m-1) failed doing delta work: AuthError: Graph 401 for token ***"
    )


def test_the_worker_says_once_why_a_message_is_unreadable(
    functions: dict[str, Any], world: World, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(ValueError, match="message m-1"):
        call(functions, "worker", sb_message(b"not json"))
    (line,) = error_lines(caplog)
    assert line.startswith("worker (message m-1) failed reading the message: MalformedWork")


@pytest.mark.parametrize(
    ("function", "argument"),
    [
        ("graph_notifications", request((PAYLOADS / "user-updated.json").read_bytes())),
        ("graph_lifecycle", request((PAYLOADS / "lifecycle-reauthorization-required.json").read_bytes())),
        ("worker", sb_message({"kind": "delta", "body": {"reason": "timer"}})),
        ("keep_watch", TimerRequest(past_due=False)),
    ],
)
def test_refused_settings_fail_every_invocation_with_the_reason(
    functions: dict[str, Any],
    world: World,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    *,
    function: str,
    argument: object,
) -> None:
    monkeypatch.setenv("GRAPH_API_URL", "PLANTED-not-a-url")
    runtime._instance.settings = None  # read the environment again
    with pytest.raises(runtime.SettingsRefused):
        call(functions, function, argument)
    lines = [text for text in error_lines(caplog) if "failed" in text]
    assert len(lines) == 1, error_lines(caplog)
    assert "SettingsRefused: app settings refused: GRAPH_API_URL" in lines[0]
    assert "PLANTED" not in "\n".join(error_lines(caplog))
