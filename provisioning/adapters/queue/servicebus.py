"""Work messages over Azure Service Bus, sent with the SDK.

The Functions output binding cannot set ``MessageId`` (nor schedule a message), and duplicate detection
on ``MessageId`` is what collapses a burst of hints into one pass, so sends go through the SDK. The
client is opened once per process and reused: an AMQP connection and its token cost more than the
3 seconds Graph gives the webhook would comfortably allow on every call.

Two ways in, as the Functions host itself reads the ``ServiceBusConnection`` setting: a namespace and an
Azure identity (Azure), or a connection string (the Service Bus emulator, whose
``UseDevelopmentEmulator=true`` makes the SDK speak plain AMQP to the endpoint's host and port).

A send is bounded: the webhook answers Graph within 2 seconds, whatever Service Bus does. The SDK gets one
attempt with its own timeout, and a hard bound covers the phases the SDK does not time strictly (opening
the connection, the token exchange, a broker that never settles). The SDK's errors leave as the project's
own: transient (retry later) or auth (a rejected key, a missing role).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from provisioning.domain.work import MalformedWork, WorkMessage, parse_work
from provisioning.errors import AuthError, InvalidRequestError, TransientError

CONTENT_TYPE = "application/json"
# The SDK's budget for one send; the hard bound adds a margin for the SDK's own overrun and is still inside
# the webhook's 2 seconds.
SEND_TIMEOUT_SECONDS = 1.5
HARD_BOUND_SECONDS = 1.75
# One attempt, no SDK retries. Opening a connection and its token takes 0.5-1 s, so a retry would not fit in
# the budget; it would only turn a clear refusal (a rejected key or role) into a timeout. The retry is the
# caller's redelivery instead (Graph re-sends a notification answered 503, the queue redelivers the worker's
# message), and the next send opens a fresh connection. The SDK's defaults (3 retries backing off from
# 0.8 s up to 120 s) would sleep past any webhook deadline.
RETRY_OPTIONS: dict[str, Any] = {"retry_total": 0}
CLOSE_SECONDS = 5.0  # closing a client whose broker stopped answering must not hold anything up either

__all__ = ["MalformedWork", "ServiceBusQueue", "encode_work", "from_service_bus", "to_service_bus_message"]


def encode_work(message: WorkMessage) -> bytes:
    """The message body on the wire: ``{"kind": …, "body": {…}}`` as JSON (ASCII: no surrogate survives)."""
    return json.dumps({"kind": message.kind, "body": message.body}).encode()


def from_service_bus(body: bytes, message_id: str | None) -> WorkMessage:
    """Parse a received body into typed work, once; MalformedWork (so it dead-letters) for anything else."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as error:
        raise MalformedWork(f"message {message_id}: body is not JSON") from error
    if not isinstance(data, dict):
        raise MalformedWork(f"message {message_id}: not a work message")
    try:
        work = parse_work(data.get("kind"), data.get("body", {}))
    except MalformedWork as error:
        raise MalformedWork(f"message {message_id}: {error}") from None
    return WorkMessage(work, message_id=message_id or "")


def to_service_bus_message(message: WorkMessage) -> Any:
    from azure.servicebus import ServiceBusMessage

    return ServiceBusMessage(
        encode_work(message),
        message_id=message.message_id or None,
        subject=message.kind,
        content_type=CONTENT_TYPE,
        scheduled_enqueue_time_utc=message.not_before,
    )


class ServiceBusQueue:
    """Sends work messages to one queue; opened on the first send, reopened after a failed one."""

    def __init__(self, namespace: str, queue_name: str, credential: Any, *, client: Any = None) -> None:
        self._queue_name = queue_name
        self.target = f"queue {queue_name!r} on {namespace}"  # for logs and doctor: never a key
        self._connect: Callable[[], Any] = lambda: _client_for_namespace(namespace, credential)
        self._client = client
        self._sender: Any = None
        self._closing: set[asyncio.Task[None]] = set()

    @classmethod
    def from_connection_string(cls, connection_string: str, queue_name: str) -> ServiceBusQueue:
        """A queue reached with a connection string (a secret: kept in the client, never in a message)."""
        queue = cls(_endpoint_of(connection_string), queue_name, None)
        queue._connect = lambda: _client_for_connection_string(connection_string)
        return queue

    async def _open_sender(self) -> Any:
        if self._sender is None:
            if self._client is None:
                self._client = self._connect()
            self._sender = self._client.get_queue_sender(self._queue_name)
        return self._sender

    async def send(self, messages: Sequence[WorkMessage]) -> None:
        if not messages:
            return
        built = [to_service_bus_message(m) for m in messages]
        sender = await self._open_sender()
        # The SDK runs in its own task so the bound holds even while it cleans up after a cancellation.
        sending = asyncio.ensure_future(sender.send_messages(built, timeout=SEND_TIMEOUT_SECONDS))
        try:
            with _service_bus_errors(self._queue_name):
                await asyncio.wait_for(asyncio.shield(sending), HARD_BOUND_SECONDS)
        except (TransientError, asyncio.CancelledError):
            # A connection that failed or went quiet mid-send is not trusted again; nor is one whose send
            # the caller gave up on (its own deadline).
            self._discard(sending)
            raise

    def _discard(self, sending: asyncio.Future[None]) -> None:
        """Forget the client and close it in the background, once the abandoned send has stopped: closing a
        broker that stopped answering takes time this send no longer has."""
        client, sender = self._client, self._sender
        self._client = self._sender = None
        sending.cancel()
        task = asyncio.get_running_loop().create_task(_close_quietly(sending, sender, client))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def aclose(self) -> None:
        client, sender = self._client, self._sender
        self._sender = self._client = None
        if client is not None:
            await _close_quietly(None, sender, client)
        if self._closing:
            await asyncio.gather(*self._closing)


def _endpoint_of(connection_string: str) -> str:
    """The connection string's endpoint, the one part of it that is not secret."""
    for part in connection_string.split(";"):
        key, _, value = part.partition("=")
        if key.strip().lower() == "endpoint":
            return value.strip()
    return "an endpoint the connection string does not name"


def _client_for_namespace(namespace: str, credential: Any) -> Any:
    from azure.servicebus.aio import ServiceBusClient

    return ServiceBusClient(namespace, credential, **RETRY_OPTIONS)


def _client_for_connection_string(connection_string: str) -> Any:
    from azure.servicebus.aio import ServiceBusClient

    return ServiceBusClient.from_connection_string(connection_string, **RETRY_OPTIONS)


async def _close_quietly(sending: asyncio.Future[None] | None, sender: Any, client: Any) -> None:
    """Close within ``CLOSE_SECONDS``; a failure to close loses nothing (the messages were not sent)."""
    with contextlib.suppress(Exception, asyncio.CancelledError):
        async with asyncio.timeout(CLOSE_SECONDS):
            if sending is not None:
                await asyncio.wait({sending})  # the SDK finishes its own clean-up first
                if not sending.cancelled():
                    sending.exception()  # seen here: the caller had its TransientError already
            if sender is not None:
                await sender.close()
            if client is not None:
                await client.close()


@contextlib.contextmanager
def _service_bus_errors(queue_name: str) -> Iterator[None]:
    """The SDK's errors, mapped once to the product's taxonomy. Messages name the queue and the SDK's error
    type, never the SDK's text: that can carry the endpoint of a connection string."""
    from azure.core.exceptions import ClientAuthenticationError
    from azure.servicebus import exceptions as sb

    doing = f"sending to Service Bus queue {queue_name!r}"
    try:
        yield
    except TimeoutError as error:
        raise TransientError(f"timed out {doing} after {HARD_BOUND_SECONDS} s") from error
    except (sb.ServiceBusAuthenticationError, sb.ServiceBusAuthorizationError) as error:
        raise AuthError(
            f"Service Bus refused the credentials {doing} ({type(error).__name__}): the identity needs "
            "the Azure Service Bus Data Sender role, or the connection string's key is wrong"
        ) from error
    except ClientAuthenticationError as error:
        raise AuthError(f"no Azure token for Service Bus while {doing}") from error
    except sb.MessageSizeExceededError as error:
        raise InvalidRequestError(f"message too large {doing}", "MessageSizeExceeded") from error
    except sb.MessagingEntityNotFoundError as error:
        # A queue that does not exist is a deployment fault, but the work is kept by failing over to retry
        # (Graph redelivers, the queue redelivers) until it is fixed.
        raise TransientError(f"no such queue {doing}: check PROVISIONING_QUEUE") from error
    except (sb.ServiceBusError, OSError) as error:
        # connection and communication errors, timeouts, server busy, quota exceeded, entity disabled
        raise TransientError(f"Service Bus failed {doing} ({type(error).__name__})") from error
