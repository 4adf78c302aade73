"""The Service Bus adapter's two connection forms, its bound, and how it maps the SDK's errors.

The SDK's own behaviour on the wire is in tests/integration/servicebus; here a fake sender raises each SDK
error or hangs, so every mapping is checked exactly and fast.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.servicebus import exceptions as sb

from provisioning.adapters.queue import servicebus
from provisioning.adapters.queue.servicebus import ServiceBusQueue
from provisioning.domain.work import DeltaPass, WorkMessage
from provisioning.errors import AuthError, InvalidRequestError, ProvisioningError, TransientError

EMULATOR = (
    "Endpoint=sb://localhost;SharedAccessKeyName=RootManageSharedAccessKey;"
    "SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;"
)
SECRET_KEY = "c2VjcmV0LWtleS0xMjM0NTY3ODkw"
ACCOUNT_KEY_FORM = (
    f"Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey={SECRET_KEY}"
)


class RaisingSender:
    def __init__(self, error: BaseException | None, hang: bool = False) -> None:
        self.error, self.hang = error, hang
        self.closed = False

    async def send_messages(self, messages: list[Any], timeout: float | None = None) -> None:  # noqa: ASYNC109 (the SDK's signature)
        if self.hang:
            await asyncio.sleep(3600)  # a broker that never settles; only the adapter's bound ends this
        if self.error is not None:
            raise self.error

    async def close(self) -> None:
        self.closed = True


class FakeClient:
    def __init__(self, sender: RaisingSender) -> None:
        self.sender = sender
        self.closed = False

    def get_queue_sender(self, queue_name: str) -> RaisingSender:
        return self.sender

    async def close(self) -> None:
        self.closed = True


def send_through(sender: RaisingSender) -> tuple[ServiceBusQueue, FakeClient]:
    client = FakeClient(sender)
    queue = ServiceBusQueue("ns.servicebus.windows.net", "provisioning-work", credential=None, client=client)

    async def scenario() -> None:
        try:
            await queue.send([WorkMessage(DeltaPass(), "m")])
        finally:
            await queue.aclose()

    asyncio.run(scenario())
    return queue, client


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (sb.ServiceBusConnectionError(message="connection reset"), TransientError),
        (sb.ServiceBusCommunicationError(message="host unreachable"), TransientError),
        (sb.OperationTimeoutError(message="Send operation timed out"), TransientError),
        (sb.ServiceBusServerBusyError(message="busy"), TransientError),
        (sb.ServiceBusQuotaExceededError(message="queue full"), TransientError),
        (sb.MessagingEntityDisabledError(message="disabled"), TransientError),
        (sb.MessagingEntityNotFoundError(message="no such queue"), TransientError),
        (ConnectionResetError("reset by peer"), TransientError),
        (sb.ServiceBusAuthenticationError(message="put-token 401"), AuthError),
        (sb.ServiceBusAuthorizationError(message="no Data Sender role"), AuthError),
        (ClientAuthenticationError("managed identity unavailable"), AuthError),
        (sb.MessageSizeExceededError(message="too big"), InvalidRequestError),
    ],
)
def test_sdk_errors_become_the_projects_own(error: Exception, expected: type[ProvisioningError]) -> None:
    with pytest.raises(ProvisioningError) as raised:
        send_through(RaisingSender(error))
    assert type(raised.value) is expected
    assert "provisioning-work" in str(raised.value)
    assert raised.value.__cause__ is error


def test_an_error_that_is_not_the_sdks_is_not_disguised() -> None:
    with pytest.raises(KeyError):
        send_through(RaisingSender(KeyError("a bug of ours")))


def test_a_send_that_never_finishes_is_a_transient_error_within_the_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(servicebus, "HARD_BOUND_SECONDS", 0.2)
    sender = RaisingSender(None, hang=True)
    started = time.monotonic()
    with pytest.raises(TransientError, match="timed out"):
        send_through(sender)
    assert time.monotonic() - started < 2.0
    assert sender.closed  # the abandoned client is closed (in the background), not leaked


def test_after_a_transient_failure_the_next_send_opens_a_new_client() -> None:
    clients = [
        FakeClient(RaisingSender(sb.ServiceBusConnectionError(message="gone"))),
        FakeClient(RaisingSender(None)),
    ]
    queue = ServiceBusQueue("ns.servicebus.windows.net", "provisioning-work", credential=None)
    queue._connect = lambda: clients.pop(0)  # the seam the two connection forms use

    async def scenario() -> None:
        with pytest.raises(TransientError):
            await queue.send([WorkMessage(DeltaPass(), "a")])
        await queue.send([WorkMessage(DeltaPass(), "a")])
        await queue.aclose()

    asyncio.run(scenario())
    assert clients == []


def test_the_connection_string_form_names_the_endpoint_and_never_the_key() -> None:
    queue = ServiceBusQueue.from_connection_string(ACCOUNT_KEY_FORM, "provisioning-work")
    assert queue.target == "queue 'provisioning-work' on sb://ns.servicebus.windows.net/"
    assert SECRET_KEY not in queue.target + repr(queue)
    assert ServiceBusQueue.from_connection_string(EMULATOR, "q").target == "queue 'q' on sb://localhost"


def test_the_emulator_form_gives_the_sdk_plain_amqp_on_5672() -> None:
    client = servicebus._client_for_connection_string(EMULATOR)
    assert client._config.use_tls is False  # UseDevelopmentEmulator=true: no TLS
    assert client.fully_qualified_namespace == "localhost"  # the SDK's plain AMQP port, 5672
    assert client._config.retry_total == 0
    asyncio.run(client.close())


def test_the_identity_form_uses_tls_and_the_same_retry_budget() -> None:
    client = servicebus._client_for_namespace("ns.servicebus.windows.net", credential=object())
    assert client._config.use_tls is True
    assert client._config.retry_total == 0
    asyncio.run(client.close())
