"""The Service Bus stand-in in a process of its own, so the queue outlives a worker that dies.

Development and test tooling, not part of the product. In Azure the queue is a service: when a Functions
instance is killed, the messages it held stay locked until their lock expires, then they are delivered
again. To show that on this machine the broker cannot live inside the process being killed, so this
module serves a :class:`~simulators.servicebus.LocalServiceBus` over loopback HTTP::

    python -m simulators.servicebus_process [--port N] [--lock-seconds S] [--max-delivery-count N]

It keeps the queue's properties from ``infra/main.bicep`` and the trigger's from ``host.json`` unless
told otherwise (tests shorten the lock). :class:`RemoteServiceBus` is the client: the same
``QueueBroker`` surface as the in-process stand-in, so the local Functions host runs against either.
Each call is one short request; nothing waits on the server side.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import http.client
import json
import threading
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from simulators.http import Request, Response, Router, serve_from_command_line
from simulators.servicebus import (
    Counters,
    Envelope,
    LocalServiceBus,
    Locked,
    MessageLockLost,
    QueueSettings,
    ServiceBusRefused,
)

NAME = "servicebus_process"
CALL_TIMEOUT_SECONDS = 10.0  # one loopback request to the broker; longer means the broker is gone


# the server ----------------------------------------------------------------------------------------------
def envelope_json(envelope: Envelope) -> dict[str, Any]:
    fields = dataclasses.asdict(envelope)
    fields["body"] = base64.b64encode(envelope.body).decode()
    return fields


def envelope_from_json(fields: dict[str, Any]) -> Envelope:
    return Envelope(**{**fields, "body": base64.b64decode(fields["body"])})


def build_router(bus: LocalServiceBus) -> Router:
    router = Router()

    @router.route("POST", "/send", "send")
    def send(request: Request) -> Response:
        batch = [
            (m["id"], base64.b64decode(m["body"]), m["subject"], m.get("scheduled"))
            for m in request.json()["messages"]
        ]
        try:
            return Response(200, {"added": bus.send_raw(batch)})
        except ServiceBusRefused as refused:
            return Response(400, {"error": str(refused)})

    @router.route("POST", "/receive", "receive")
    def receive(request: Request) -> Response:
        locked = bus.receive()
        return Response(200, {"message": None if locked is None else envelope_json(locked.envelope)})

    @router.route("GET", "/due", "due")
    def due(request: Request) -> Response:
        return Response(200, {"seconds": bus.seconds_until_due()})

    def settle(action: Callable[[Locked, dict[str, Any]], Any]) -> Callable[[Request], Response]:
        def handle(request: Request) -> Response:
            asked = request.json()
            try:
                return Response(
                    200, {"result": action(bus.holding(asked["sequence"], asked["token"]), asked)}
                )
            except MessageLockLost as lost:
                return Response(410, {"error": str(lost)})

        return handle

    router.add("POST", "/renew", settle(lambda locked, _: bus.renew_lock(locked)), "renew")
    router.add("POST", "/complete", settle(lambda locked, _: bus.complete(locked)), "complete")
    router.add("POST", "/abandon", settle(lambda locked, _: bus.abandon(locked)), "abandon")
    router.add(
        "POST", "/dead-letter", settle(lambda locked, asked: bus.dead_letter(locked, asked["reason"])), "dead"
    )

    @router.route("GET", "/describe", "describe")
    def describe(request: Request) -> Response:
        return Response(200, bus.describe())

    @router.route("GET", "/active", "active")
    def active(request: Request) -> Response:
        return Response(200, [envelope_json(e) for e in bus.active()])

    @router.route("GET", "/dead-letters", "dead letters")
    def dead_letters(request: Request) -> Response:
        return Response(200, [envelope_json(e) for e in bus.dead_letters()])

    return router


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--lock-seconds", type=float, default=None, help="the queue's lock duration")
    parser.add_argument("--max-delivery-count", type=int, default=None)
    parser.add_argument("--max-auto-lock-renewal", type=float, default=None, help="seconds (host.json)")
    known, rest = parser.parse_known_args(argv)
    settings = QueueSettings.from_project()
    overrides = {
        "lock_duration": known.lock_seconds,
        "max_delivery_count": known.max_delivery_count,
        "max_auto_lock_renewal": known.max_auto_lock_renewal,
    }
    settings = dataclasses.replace(settings, **{k: v for k, v in overrides.items() if v is not None})
    if settings.lock_duration <= 0 or settings.max_delivery_count < 1:
        parser.error("--lock-seconds must be positive and --max-delivery-count at least 1")
    bus = LocalServiceBus(settings)
    serve_from_command_line(NAME, lambda _seed: build_router(bus), rest)


# the client ----------------------------------------------------------------------------------------------
class BrokerUnavailable(RuntimeError):
    """The broker process did not answer as a broker does."""


class RemoteServiceBus:
    """A ``QueueBroker`` whose queue lives in the broker process at ``url``.

    Sends from this process wake this process's receivers at once (``on_send``); a send from elsewhere
    is seen at the receiver's next poll, as a separate Functions instance would see it.
    """

    def __init__(self, url: str) -> None:
        split = urlsplit(url)
        self._address = (split.hostname or "127.0.0.1", split.port or 80)
        self._local = threading.local()  # one keep-alive connection per thread
        self._on_send: list[Callable[[], None]] = []
        self.settings = QueueSettings(**self.describe()["settings"])

    # the broker protocol -----------------------------------------------------------------------------
    def _call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        payload = None if body is None else json.dumps(body).encode()
        for attempt in (1, 2):  # a kept-alive connection the server closed meanwhile: open a new one
            connection = getattr(self._local, "connection", None)
            if connection is None:
                connection = http.client.HTTPConnection(*self._address, timeout=CALL_TIMEOUT_SECONDS)
                self._local.connection = connection
            try:
                connection.request(method, path, payload, {"Content-Type": "application/json"})
                answer = connection.getresponse()
                text = answer.read()
                return answer.status, json.loads(text) if text else None
            except (ConnectionError, http.client.HTTPException) as error:
                connection.close()
                self._local.connection = None
                if attempt == 2:
                    raise BrokerUnavailable(
                        f"the Service Bus stand-in at {self._address}: {error}"
                    ) from error
        raise AssertionError("unreachable")

    def _ok(self, method: str, path: str, body: Any = None) -> Any:
        status, answer = self._call(method, path, body)
        if status == 410:
            raise MessageLockLost(answer["error"])
        if status == 400:
            raise ServiceBusRefused(answer["error"])
        if status != 200:
            raise BrokerUnavailable(f"{method} {path}: HTTP {status}")
        return answer

    # sending -------------------------------------------------------------------------------------------
    def send(self, messages: Sequence[Any]) -> int:
        from provisioning.adapters.queue.servicebus import encode_work

        raw = [
            (m.message_id, encode_work(m), m.kind, m.not_before.timestamp() if m.not_before else None)
            for m in messages
        ]
        return self.send_raw(raw)

    def send_raw(self, messages: Sequence[tuple[str, bytes, str, float | None]]) -> int:
        batch = [
            {"id": i, "body": base64.b64encode(b).decode(), "subject": s, "scheduled": n}
            for i, b, s, n in messages
        ]
        added = int(self._ok("POST", "/send", {"messages": batch})["added"])
        for listener in self._on_send:
            listener()
        return added

    def on_send(self, listener: Callable[[], None]) -> None:
        self._on_send.append(listener)

    # receiving -----------------------------------------------------------------------------------------
    def receive(self) -> Locked | None:
        found = self._ok("POST", "/receive", {})["message"]
        if found is None:
            return None
        envelope = envelope_from_json(found)
        return Locked(envelope, str(envelope.lock_token))

    def seconds_until_due(self) -> float | None:
        seconds = self._ok("GET", "/due")["seconds"]
        return None if seconds is None else float(seconds)

    def _settle(self, path: str, locked: Locked, **extra: Any) -> Any:
        return self._ok("POST", path, {"sequence": locked.envelope.sequence, "token": locked.token, **extra})[
            "result"
        ]

    def renew_lock(self, locked: Locked) -> float:
        locked.envelope.locked_until = float(self._settle("/renew", locked))
        return locked.envelope.locked_until

    def complete(self, locked: Locked) -> None:
        self._settle("/complete", locked)

    def abandon(self, locked: Locked) -> None:
        self._settle("/abandon", locked)

    def dead_letter(self, locked: Locked, reason: str) -> None:
        self._settle("/dead-letter", locked, reason=reason)

    # looking -------------------------------------------------------------------------------------------
    @property
    def counters(self) -> Counters:
        return Counters(**self.describe()["counters"])

    def active(self) -> list[Envelope]:
        return [envelope_from_json(e) for e in self._ok("GET", "/active")]

    def dead_letters(self) -> list[Envelope]:
        return [envelope_from_json(e) for e in self._ok("GET", "/dead-letters")]

    def describe(self) -> dict[str, Any]:
        found: dict[str, Any] = self._ok("GET", "/describe")
        return found


if __name__ == "__main__":
    main()
