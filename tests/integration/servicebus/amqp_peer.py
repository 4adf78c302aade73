"""An AMQP 1.0 peer that stands in for a Service Bus namespace on the wire, for the adapter's tests.

Run as ``python -m tests.integration.servicebus.amqp_peer MODE`` from the repository root. It listens on a
free port of 127.0.0.1, prints ``{"port": N}`` as its first line, then one JSON line per thing it saw:
``{"event": "connection", "sasl": MECHANISM}`` for each connection, ``{"event": "put-token", ...}`` for
each claims-based-security request and ``{"event": "transfer", ...}`` for each message sent to an entity
(a batch is unpacked into its messages). It runs until killed, or until its standard input closes (the
test process ended).

What it does, as Service Bus does: SASL ANONYMOUS (the SDK authenticates with a ``$cbs`` put-token, not
SASL), plain AMQP without TLS (the emulator's ``UseDevelopmentEmulator=true`` form), a ``$cbs`` node that
answers put-token with 202, and an entity link that accepts every transfer. The modes make it fail the
ways a broker fails:

- ``accept``: everything works;
- ``refuse-link:CONDITION``: the entity link is attached and at once detached with that error condition;
- ``cbs-status:CODE``: put-token is answered with that status (401: the key is wrong);
- ``silent-cbs``: put-token is never answered;
- ``no-settle``: transfers are recorded but never settled (the broker took the message and went quiet);
- ``no-settle-once``: the first transfer is never settled, later ones are.
"""

from __future__ import annotations

import base64
import json
import os
import re
import sys
import threading
from typing import Any, cast

from proton import Condition, Data, Delivery, Endpoint, Event, Handler, Message, timestamp
from proton.reactor import Container

CBS = "$cbs"
MESSAGE_ANNOTATIONS, PROPERTIES, DATA_SECTION = 0x72, 0x73, 0x75  # section descriptors (AMQP 1.0, 3.2)
# An encoded message starts with a described section: 0x00, smallulong 0x53, then 0x70..0x78.
SECTION_START = re.compile(rb"\x00\x53[\x70-\x78]")


def emit(record: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(record, default=str) + "\n")
    sys.stdout.flush()


def plain(value: Any) -> Any:
    """A JSON-friendly copy of an AMQP value; a timestamp keeps its type (Service Bus requires it)."""
    if isinstance(value, timestamp):
        return {"timestamp": int(value)}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, bytes | memoryview):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, int | float | bool | str) or value is None:
        return value
    return str(value)


def sections(raw: bytes) -> list[tuple[int, Any]]:
    """(descriptor, value) of each section of an encoded message."""
    found = []
    data = Data()
    while raw:
        raw = raw[data.decode(raw) :]
        data.rewind()
        data.next()
        described = data.get_object()
        value = described.value
        # proton hands binary values out as views of its own buffer: copy them before it is cleared
        found.append((int(described.descriptor), bytes(value) if isinstance(value, memoryview) else value))
        data.clear()
    return found


def unpack(raw: bytes) -> list[bytes]:
    """The encoded messages of one transfer: itself, or each message of a Service Bus batch. The batch's
    own message format (0x80013700) is not visible through proton's Python API, so a batch is recognised by
    its data sections each holding an encoded message."""
    data = [value for descriptor, value in sections(raw) if descriptor == DATA_SECTION]
    if data and all(isinstance(item, bytes) and SECTION_START.match(item) for item in data):
        return data
    return [raw]


def describe(raw: bytes, address: str) -> dict[str, Any]:
    """What the broker would see of one message, read from its sections as they came on the wire."""
    found = dict(sections(raw))
    properties = list(found.get(PROPERTIES) or []) + [None] * 13  # absent trailing fields are null
    body = found.get(DATA_SECTION)
    return {
        "event": "transfer",
        "address": address,
        "message_id": plain(properties[0]),
        "subject": plain(properties[3]),
        "content_type": plain(properties[6]),
        "annotations": plain(found.get(MESSAGE_ANNOTATIONS) or {}),
        "body": base64.b64encode(body).decode() if isinstance(body, bytes) else None,
    }


class Peer(Handler):
    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode, _, self.argument = mode.partition(":")
        self.cbs_replies: dict[Any, Any] = {}  # connection → the link $cbs answers on

    def on_connection_bound(self, event: Event) -> None:
        sasl = event.transport.sasl()
        sasl.allow_insecure_mechs = True  # plain AMQP, as the emulator speaks it
        sasl.allowed_mechs("ANONYMOUS")

    def on_connection_remote_open(self, event: Event) -> None:
        emit({"event": "connection", "sasl": event.transport.sasl().mech})
        if event.connection.state & Endpoint.LOCAL_UNINIT:
            event.connection.open()

    def on_session_remote_open(self, event: Event) -> None:
        if event.session.state & Endpoint.LOCAL_UNINIT:
            event.session.open()

    def on_link_remote_open(self, event: Event) -> None:
        link = event.link
        if not link.state & Endpoint.LOCAL_UNINIT:
            return
        link.source.copy(link.remote_source)
        link.target.copy(link.remote_target)
        link.open()
        address = self._address(link)
        if link.is_sender:
            if address == CBS:
                self.cbs_replies[link.connection] = link
            return
        if address != CBS and self.mode == "refuse-link":
            link.condition = Condition(self.argument, f"refused by the test peer ({self.argument})")
            link.close()
            return
        link.flow(100)

    def on_delivery(self, event: Event) -> None:
        link, delivery = event.link, event.delivery
        if link.is_sender:
            if delivery.updated:
                delivery.settle()
            return
        if delivery.partial:
            return
        if link.state & Endpoint.LOCAL_CLOSED:
            return  # a refused link takes nothing, even what the client sent before it read the refusal
        raw = cast(bytes, link.recv(delivery.pending))  # a whole delivery is pending: never None
        link.advance()
        link.flow(1)
        address = self._address(link)
        if address == CBS:
            self._put_token(link, raw)
            delivery.update(Delivery.ACCEPTED)
            delivery.settle()
            return
        for message in unpack(raw):
            emit(describe(message, address))
        if self.mode == "no-settle-once":
            self.mode = "accept"
        elif self.mode != "no-settle":
            delivery.update(Delivery.ACCEPTED)
            delivery.settle()

    def _put_token(self, link: Any, raw: bytes) -> None:
        request = Message()
        request.decode(raw)
        properties: dict[Any, Any] = dict(request.properties or {})
        emit(
            {
                "event": "put-token",
                "operation": plain(properties.get("operation")),
                "type": plain(properties.get("type")),
                "audience": plain(properties.get("name")),
            }
        )
        if self.mode == "silent-cbs":
            return
        status = int(self.argument) if self.mode == "cbs-status" else 202
        reply = Message(
            correlation_id=request.id,
            properties={"status-code": status, "status-description": "Accepted" if status == 202 else "No"},
        )
        self.cbs_replies[link.connection].send(reply)

    def on_link_remote_close(self, event: Event) -> None:
        if not event.link.state & Endpoint.LOCAL_CLOSED:
            event.link.close()

    def on_session_remote_close(self, event: Event) -> None:
        if not event.session.state & Endpoint.LOCAL_CLOSED:
            event.session.close()

    def on_connection_remote_close(self, event: Event) -> None:
        self.cbs_replies.pop(event.connection, None)
        if not event.connection.state & Endpoint.LOCAL_CLOSED:
            event.connection.close()

    @staticmethod
    def _address(link: Any) -> str:
        terminus = link.remote_target if link.is_receiver else link.remote_source
        return str(terminus.address or "")


class Listening(Handler):
    def __init__(self, peer: Peer) -> None:
        super().__init__()
        self.peer = peer

    def on_reactor_init(self, event: Event) -> None:
        acceptor = event.container.listen("127.0.0.1:0")
        port = acceptor._selectable.getsockname()[1]  # proton does not expose the port it bound
        emit({"port": port})


def exit_with_parent() -> None:
    """The test process holds this peer's stdin: when it ends, however it ends, so does the peer."""
    sys.stdin.read()
    os._exit(0)


def main() -> None:
    threading.Thread(target=exit_with_parent, daemon=True).start()
    mode = sys.argv[1] if len(sys.argv) > 1 else "accept"
    peer = Peer(mode)
    container = Container(peer)
    container.handler.add(Listening(peer))
    container.run()


if __name__ == "__main__":
    main()
