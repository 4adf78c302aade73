"""A local Azure Functions host: runs the functions an app object registers, on this machine.

Development and test tooling, not part of the product (Azure runs the real host). What it does:

- **Discovery** from the app object itself (``app.get_functions()``, once per app): HTTP routes, methods
  and auth level; timer schedules; the Service Bus queue name (``%SETTING%`` resolved from the
  environment) and connection name. There is no second list of functions to keep in step.
- **HTTP triggers** on 127.0.0.1 at ``/api/<route>``, with ``azure.functions.HttpRequest`` built as the
  host builds it: query values URL-decoded, a parameter with an empty value dropped. A route whose auth
  level is not anonymous needs the host key (``?code=`` or ``x-functions-key``), printed at start.
- **Timer triggers** on their NCRONTAB schedules (six fields, UTC), ``runOnStartup`` honoured, and
  ``POST /admin/functions/<name>`` to run any timer now (as the real host's admin API does; unlike it,
  this one answers when the invocation has finished, with 202, or 500 if it raised).
- **Service Bus triggers** fed by :class:`~simulators.servicebus.LocalServiceBus`: up to
  ``maxConcurrentCalls`` invocations at once, peek-lock renewed while the function runs for at most
  ``maxAutoLockRenewalDuration``, completed on success (``autoCompleteMessages``), abandoned when the
  function raises (so the delivery count rises and the message dead-letters after ``maxDeliveryCount``).
- **functionTimeout** from ``host.json``: an invocation that runs longer is cancelled and counted as a
  failure (``error: FunctionTimeout``), as the real host does; a Service Bus message whose invocation
  timed out is abandoned, so it comes back and, after ``maxDeliveryCount``, dead-letters.
- ``GET /admin/host/status``: the functions, the queue's counters; ``GET /admin/host/invocations``: every
  invocation with its start and end (wall-clock seconds), for the demo and the benchmarks.

Run it all (simulators in their own processes, the product's functions, SQLite state) with
``python -m simulators.localapp``; Ctrl-C stops everything by PID.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import os
import re
import secrets
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import azure.functions as func
from azure.functions.servicebus import ServiceBusMessage
from azure.functions.timer import TimerRequest

from simulators import REPOSITORY
from simulators.http import LOOPBACK
from simulators.servicebus import Locked, MessageLockLost, QueueBroker, timespan_seconds

log = logging.getLogger("provisioning.localhost")
FLEX_DEFAULT_TIMEOUT_SECONDS = 30 * 60.0
HTTP_TIMEOUT_SECONDS = 230  # the Azure load balancer's limit for an HTTP-triggered function
STOP_SECONDS = 2.0  # per instance and step when the host stops: a function ignoring cancellation is left
MAX_INVOCATIONS_KEPT = 100_000  # the log of invocations a long session keeps (the oldest go first)


class FunctionTimeout(TimeoutError):
    """The invocation ran past ``functionTimeout``: cancelled, and a failure."""


def function_timeout_from_project(root: Path = REPOSITORY) -> float:
    """``functionTimeout`` from host.json, in seconds (Flex Consumption's default when it is unset)."""
    configured = json.loads((root / "host.json").read_text()).get("functionTimeout")
    return timespan_seconds(configured) if configured else FLEX_DEFAULT_TIMEOUT_SECONDS


# discovery -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HostedFunction:
    name: str
    trigger: str  # httpTrigger | timerTrigger | serviceBusTrigger
    argument: str  # the trigger's parameter name
    call: Callable[..., Any]
    binding: dict[str, Any]

    @property
    def route(self) -> str:
        return str(self.binding.get("route") or self.name).strip("/")

    @property
    def methods(self) -> list[str]:
        return [m.upper() for m in self.binding.get("methods") or ["GET", "POST"]]

    @property
    def anonymous(self) -> bool:
        return str(self.binding.get("authLevel", "FUNCTION")).upper() == "ANONYMOUS"

    def queue_name(self, environment: dict[str, str] | os._Environ[str] = os.environ) -> str:
        """``%SETTING%`` expressions resolved from the app settings, as the host does."""

        def setting(found: re.Match[str]) -> str:
            if found.group(1) not in environment:
                raise KeyError(
                    f"{self.name}: app setting {found.group(1)} (in {self.binding['queueName']}) is not set"
                )
            return environment[found.group(1)]

        return re.sub(r"%([^%]+)%", setting, str(self.binding["queueName"]))


SUPPORTED = ("httpTrigger", "timerTrigger", "serviceBusTrigger")


def discover(app: func.FunctionApp) -> list[HostedFunction]:
    """Every function the app registers, with its trigger binding. ``get_functions`` may run once per app."""
    hosted = []
    for function in app.get_functions():
        bindings = json.loads(function.get_function_json())["bindings"]
        trigger = next(
            (b for b in bindings if b["direction"] == "IN" and b["type"].endswith("Trigger")), None
        )
        if trigger is None or trigger["type"] not in SUPPORTED:
            raise ValueError(
                f"{function.get_function_name()}: trigger {trigger and trigger['type']} is not hosted here"
            )
        hosted.append(
            HostedFunction(
                str(function.get_function_name()),
                trigger["type"],
                trigger["name"],
                function.get_user_function(),
                trigger,
            )
        )
    return hosted


# NCRONTAB ----------------------------------------------------------------------------------------------
_RANGES = ((0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 6))  # second minute hour day month day-of-week


def _field(text: str, low: int, high: int) -> frozenset[int]:
    values: set[int] = set()
    for item in text.split(","):
        part, _, step_text = item.partition("/")
        step = int(step_text) if step_text else 1
        if part == "*":
            start, end = low, high
        elif "-" in part:
            start, end = (int(x) for x in part.split("-"))
        else:
            start = end = int(part)
            if step != 1:
                end = high
        if not (low <= start <= end <= high) or step < 1:
            raise ValueError(f"NCRONTAB field {text!r} is outside {low}-{high}")
        values.update(range(start, end + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class Schedule:
    """A six-field NCRONTAB expression (``{second} {minute} {hour} {day} {month} {day-of-week}``), UTC."""

    fields: tuple[frozenset[int], ...]

    @classmethod
    def parse(cls, expression: str) -> Schedule:
        parts = expression.split()
        if len(parts) != 6:
            raise ValueError(f"NCRONTAB {expression!r} needs six fields")
        return cls(tuple(_field(p, low, high) for p, (low, high) in zip(parts, _RANGES, strict=True)))

    def next_after(self, moment: datetime) -> datetime:
        second, minute, hour, day, month, weekday = self.fields
        candidate = moment.replace(microsecond=0) + timedelta(seconds=1)
        limit = candidate + timedelta(days=366 * 4)
        while candidate < limit:
            if not (
                candidate.month in month and candidate.day in day and (candidate.isoweekday() % 7) in weekday
            ):
                candidate = candidate.replace(hour=0, minute=0, second=0) + timedelta(days=1)
            elif candidate.hour not in hour:
                candidate = candidate.replace(minute=0, second=0) + timedelta(hours=1)
            elif candidate.minute not in minute:
                candidate = candidate.replace(second=0) + timedelta(minutes=1)
            elif candidate.second not in second:
                candidate += timedelta(seconds=1)
            else:
                return candidate
        raise ValueError("the schedule never fires")


# the host ----------------------------------------------------------------------------------------------
@dataclass
class Invocation:
    function: str
    trigger: str
    started: float
    ended: float | None = None
    outcome: str = "running"  # ok | error: <type> | running
    detail: str = ""  # message id, HTTP status


@dataclass
class LocalFunctionsHost:
    app: func.FunctionApp
    bus: QueueBroker
    port: int = 0
    host_key: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    run_timers: bool = True
    function_timeout: float = field(default_factory=function_timeout_from_project)  # seconds

    def __post_init__(self) -> None:
        self.functions = {f.name: f for f in discover(self.app)}
        self.invocations: deque[Invocation] = deque(maxlen=MAX_INVOCATIONS_KEPT)
        self.executions: Counter[str] = Counter()
        self.busy_seconds: dict[str, float] = defaultdict(float)
        # One event loop per scale group, as Flex Consumption scales functions: the HTTP functions
        # together, every other function on instances of its own. A long pass in the worker does not
        # hold the webhook's loop (the GIL is still shared: this is one process, not separate instances).
        self._instances = {group: _Instance(group) for group in {_group(f) for f in self.functions.values()}}
        self._server: Any = None
        self._lock = threading.Lock()

    # lifecycle -------------------------------------------------------------------------------------
    def bind(self) -> LocalFunctionsHost:
        """Take the port (so the app's settings can name its URLs) without running anything yet."""
        from simulators.http import _Server

        if self._server is None:
            handler = type("Handler", (_HostHandler,), {"host": self})
            self._server = _Server((LOOPBACK, self.port), handler)
            self.port = int(self._server.server_address[1])
        return self

    def start(self) -> LocalFunctionsHost:
        self.bind()
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        for function in self.functions.values():
            instance = self._instances[_group(function)].start()
            if function.trigger == "serviceBusTrigger":
                function.queue_name()  # an unset %SETTING% stops the start, as in Azure
                self.bus.on_send(instance.wake_up)
                instance.run_forever(self._pump(function, instance))
            elif function.trigger == "timerTrigger" and self.run_timers:
                instance.run_forever(self._timer(function))
        return self

    def serve_http(self) -> LocalFunctionsHost:
        """Only the HTTP triggers, on their instance: a driver that owns time (the soak's simulated
        clock) fires the timers and delivers the queue's messages itself, through ``invoke``."""
        self.bind()
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        for function in self.functions.values():
            if function.trigger == "httpTrigger":
                self._instances[_group(function)].start()
        return self

    async def invoke(self, function: HostedFunction, argument: Any, detail: str = "") -> Any:
        """One invocation on the caller's event loop, logged as the host logs its own."""
        return await self._invoke(function, argument, detail)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        for instance in self._instances.values():
            instance.stop()

    def __enter__(self) -> LocalFunctionsHost:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    # invoking --------------------------------------------------------------------------------------
    async def _invoke(self, function: HostedFunction, argument: Any, detail: str = "") -> Any:
        record = Invocation(function.name, function.trigger, time.time(), detail=detail)
        with self._lock:
            self.invocations.append(record)
        deadline = asyncio.timeout(self.function_timeout)
        try:
            async with deadline:
                result = function.call(**{function.argument: argument})
                if asyncio.iscoroutine(result):
                    result = await result
        except asyncio.CancelledError:
            record.outcome = "cancelled"
            raise
        except Exception as error:
            if isinstance(error, TimeoutError) and deadline.expired():  # the host's, not the function's
                error = FunctionTimeout(f"timeout value of {self.function_timeout:g}s was exceeded")
            record.outcome = f"error: {type(error).__name__}"
            log.error("%s failed: %s: %s", function.name, type(error).__name__, error)
            if isinstance(error, FunctionTimeout):
                raise error from None
            raise
        finally:
            record.ended = time.time()
            with self._lock:  # what a bill counts: executions and the seconds they ran, per trigger
                self.executions[function.trigger] += 1
                self.busy_seconds[function.trigger] += record.ended - record.started
        record.outcome = "ok"
        return result

    def call(
        self, function: HostedFunction, argument: Any, detail: str = "", timeout: float = HTTP_TIMEOUT_SECONDS
    ) -> Any:
        """Run one invocation on the host's loop from another thread (the HTTP server's)."""
        instance = self._instances[_group(function)]
        return instance.submit(self._invoke(function, argument, detail)).result(timeout=timeout)

    # timers ----------------------------------------------------------------------------------------
    async def _timer(self, function: HostedFunction) -> None:
        schedule = Schedule.parse(str(function.binding["schedule"]))
        if function.binding.get("runOnStartup"):
            await self._run_timer(function, past_due=False)
        while True:
            now = datetime.now(UTC)
            due = schedule.next_after(now)
            await asyncio.sleep((due - now).total_seconds())
            await self._run_timer(function, past_due=datetime.now(UTC) - due > timedelta(seconds=1))

    async def _run_timer(self, function: HostedFunction, *, past_due: bool) -> None:
        with contextlib.suppress(Exception):  # logged by _invoke; the schedule goes on, as in Azure
            await self._invoke(function, TimerRequest(past_due=past_due), "schedule")

    # Service Bus -----------------------------------------------------------------------------------
    async def _pump(self, function: HostedFunction, instance: _Instance) -> None:
        slots = asyncio.Semaphore(self.bus.settings.max_concurrent_calls)
        running: set[asyncio.Task[None]] = set()
        try:
            await self._receive_forever(function, instance.wake, slots, running)
        finally:  # stopping: invocations in flight are cancelled; their messages' locks simply expire
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)

    async def _receive_forever(
        self,
        function: HostedFunction,
        wake: asyncio.Event,
        slots: asyncio.Semaphore,
        running: set[asyncio.Task[None]],
    ) -> None:
        while True:
            await slots.acquire()
            wake.clear()  # before receiving: a send from now on wakes the wait below
            locked = self.bus.receive()
            if locked is None:
                slots.release()
                due = self.bus.seconds_until_due()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), timeout=min(1.0 if due is None else due, 1.0))
                continue
            task = asyncio.create_task(self._deliver(function, locked, slots))
            running.add(task)
            task.add_done_callback(running.discard)

    async def _deliver(self, function: HostedFunction, locked: Locked, slots: asyncio.Semaphore) -> None:
        renewer = asyncio.create_task(self._renew(locked))
        try:
            await self._invoke(function, service_bus_message(locked), locked.message_id)
        except asyncio.CancelledError:
            raise
        except Exception:
            self._settle(self.bus.abandon, locked)  # delivered again; dead-lettered after maxDeliveryCount
        else:
            if self.bus.settings.auto_complete:
                self._settle(self.bus.complete, locked)
        finally:
            renewer.cancel()
            slots.release()

    async def _renew(self, locked: Locked) -> None:
        """Renew the lock while the function runs, up to maxAutoLockRenewalDuration (then it may expire)."""
        settings = self.bus.settings
        deadline = time.monotonic() + settings.max_auto_lock_renewal
        interval = max(settings.lock_duration / 2, 0.01)
        while time.monotonic() + interval < deadline:
            await asyncio.sleep(interval)
            try:
                self.bus.renew_lock(locked)
            except MessageLockLost:
                return

    def _settle(self, settle: Callable[[Locked], None], locked: Locked) -> None:
        try:
            settle(locked)
        except MessageLockLost:
            log.error("message %s: the lock was lost before it could be settled", locked.message_id)

    # admin -----------------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        return {
            "functions": {name: {"trigger": f.trigger, **f.binding} for name, f in self.functions.items()},
            "queue": self.bus.describe(),
        }

    def invocation_log(self) -> list[dict[str, Any]]:
        with self._lock:
            return [vars(i).copy() for i in self.invocations]


def _group(function: HostedFunction) -> str:
    return "http" if function.trigger == "httpTrigger" else function.name


class _Instance:
    """An event loop on a thread of its own: where one scale group's functions run."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.wake = asyncio.Event()  # set when a message is sent (bound to this loop on first use)
        self._thread = threading.Thread(target=self.loop.run_forever, name=f"instance-{name}", daemon=True)

    def start(self) -> _Instance:
        if not self._thread.is_alive():
            self._thread.start()
        return self

    def submit(self, work: Coroutine[Any, Any, Any]) -> concurrent.futures.Future[Any]:
        return asyncio.run_coroutine_threadsafe(work, self.loop)

    def run_forever(self, work: Coroutine[Any, Any, None]) -> None:
        self.submit(work)

    def wake_up(self) -> None:
        self.loop.call_soon_threadsafe(self.wake.set)

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        with contextlib.suppress(concurrent.futures.TimeoutError):  # a function ignoring cancellation
            self.submit(_cancel_everything()).result(timeout=STOP_SECONDS)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=STOP_SECONDS)
        if not self._thread.is_alive():
            self.loop.close()


async def _cancel_everything() -> None:
    """Stopping: timers, receivers and invocations in flight end (their messages' locks just expire)."""
    tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def service_bus_message(locked: Locked) -> ServiceBusMessage:
    envelope = locked.envelope
    return ServiceBusMessage(
        body=envelope.body,
        message_id=envelope.message_id,
        delivery_count=envelope.delivery_count,
        enqueued_time_utc=datetime.fromtimestamp(envelope.enqueued_at, UTC),
        locked_until=datetime.fromtimestamp(envelope.locked_until, UTC),
        lock_token=locked.token,
        sequence_number=envelope.sequence,
        subject=envelope.subject,
        label=envelope.subject,
        content_type="application/json",
        application_properties={},
        user_properties={},
    )


def http_request(
    method: str, raw_path: str, headers: dict[str, str], body: bytes, route: str
) -> func.HttpRequest:
    """As the host builds it: query values URL-decoded, empty values dropped, the full URL."""
    split = urlsplit(raw_path)
    params = {k: v for k, v in parse_qsl(split.query, keep_blank_values=True) if v != ""}
    return func.HttpRequest(
        method=method,
        url=f"http://{headers.get('host', LOOPBACK)}{raw_path}",
        headers=headers,
        params=params,
        route_params={},
        body=body,
    )


class _HostHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    host: LocalFunctionsHost

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path = urlsplit(self.path).path
        try:
            status, headers, payload = self._route(path, body)
        except Exception as error:
            log.error("%s %s: %s: %s", self.command, path, type(error).__name__, error)
            status, headers, payload = 500, {"Content-Type": "text/plain"}, b"function failed"
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _route(self, path: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        host = self.host
        if path.startswith("/api/"):
            route = path[len("/api/") :].strip("/")
            function = next(
                (f for f in host.functions.values() if f.trigger == "httpTrigger" and f.route == route), None
            )
            if function is None:
                return 404, {}, b""
            if self.command not in function.methods:
                return 405, {}, b""
            if not function.anonymous and not self._has_key():
                return 401, {}, b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            request = http_request(self.command, self.path, headers, body, route)
            answer: func.HttpResponse = host.call(function, request, f"{self.command} /api/{route}")
            response_headers = dict(answer.headers)
            if answer.mimetype:
                charset = f"; charset={answer.charset}" if answer.charset else ""
                response_headers.setdefault("Content-Type", f"{answer.mimetype}{charset}")
            return answer.status_code, response_headers, answer.get_body() or b""
        if not self._has_key():
            return 401, {}, b""
        admin = re.fullmatch(r"/admin/functions/([^/]+)", path)
        if admin and self.command == "POST":
            function = host.functions.get(admin.group(1))
            if function is None or function.trigger != "timerTrigger":
                return 404, {}, b""
            host.call(function, TimerRequest(past_due=False), "admin")
            return 202, {}, b""
        if path == "/admin/host/status" and self.command == "GET":
            return 200, {"Content-Type": "application/json"}, json.dumps(host.status()).encode()
        if path == "/admin/host/invocations" and self.command == "GET":
            return 200, {"Content-Type": "application/json"}, json.dumps(host.invocation_log()).encode()
        return 404, {}, b""

    def _has_key(self) -> bool:
        given = self.headers.get("x-functions-key") or dict(parse_qsl(urlsplit(self.path).query)).get(
            "code", ""
        )
        return secrets.compare_digest(given.encode(), self.host.host_key.encode())

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle
