"""The one composition root: settings in, the object graph out.

Every adapter is chosen here: Graph, Druva, Table Storage or SQLite, the clock, and the work queue when
the caller has one. An override replaces the adapter chosen for its port (the local Functions host
passes its Service Bus stand-in, tests a fixed clock); nothing else builds a port from settings.

Adapters are imported inside the functions that build them: an Azure Function that never talks to
Graph should not pay msgraph-sdk's import time on a cold start.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AbstractContextManager, asynccontextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from provisioning.adapters.clock import SystemClock
from provisioning.domain.work import WorkMessage
from provisioning.ports import Clock, StateStore, WorkQueue
from provisioning.service.context import Services
from provisioning.settings import Settings

if TYPE_CHECKING:
    import httpx

    from provisioning.adapters.druva import DruvaClient
    from provisioning.service.subscriptions import Endpoint


@dataclass
class _Installed:
    """What a test installed in place of the adapters the command line would open (``install``)."""

    services: Callable[..., AbstractAsyncContextManager[Services]] | None = None
    state: Callable[..., Awaitable[StateStore]] | None = None


_installed = _Installed()


def install(
    *,
    services: Callable[..., AbstractAsyncContextManager[Services]] | None = None,
    state: Callable[..., Awaitable[StateStore]] | None = None,
) -> None:
    """The seam for tests of the command line: ``services`` opens the ports instead of the settings'
    adapters (called as ``services(settings, dry_run=...)``), ``state`` opens the state alone (called as
    ``state(settings, existing_only=...)``). ``install()`` with nothing puts the real ones back."""
    _installed.services, _installed.state = services, state


@asynccontextmanager
async def open_services(
    settings: Settings,
    *,
    dry_run: bool = False,
    queue: WorkQueue | None = None,
    clock: Clock | None = None,
    sleep: Callable[[float], Awaitable[None]] | None = None,
) -> AsyncIterator[Services]:
    """Build the ports from settings; in a dry run the Druva adapter refuses every write.

    ``clock`` and ``sleep`` replace real time everywhere the adapters read or spend it (the state's
    leases and records, subscription expiry, Druva's token lifetime, retry back-off): the soak runs
    months on a simulated clock through them."""
    if _installed.services is not None:  # a test's ports (``install``)
        async with _installed.services(settings, dry_run=dry_run) as installed:
            yield installed
        return
    services = await build_services(settings, dry_run=dry_run, queue=queue, clock=clock, sleep=sleep)
    try:
        yield services
    finally:
        await services.aclose()


async def build_services(
    settings: Settings,
    *,
    dry_run: bool = False,
    queue: WorkQueue | None = None,
    clock: Clock | None = None,
    sleep: Callable[[float], Awaitable[None]] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    read_seconds: float | None = None,
) -> Services:
    """The ports of ``open_services``, for a caller that keeps them open longer than one block (a warm
    Functions instance) and closes them itself with ``await services.aclose()``. ``transport`` carries
    the Graph and Druva clients' requests instead of the network (the long soak's in-process simulators).
    ``read_seconds``: how long one paged Graph or Druva read may take (None: the adapters' own bounds)."""
    from provisioning.adapters.graph import open_directory
    from provisioning.adapters.state import open_state_store

    clock = clock or SystemClock()
    druva = open_druva(
        settings, dry_run=dry_run, clock=clock, sleep=sleep, transport=transport, read_seconds=read_seconds
    )
    directory = open_directory(settings, clock=clock, transport=transport, read_seconds=read_seconds)
    try:
        state = await open_state_store(settings, clock=clock, create_missing=not dry_run)
    except BaseException:
        await directory.aclose()
        await druva.aclose()
        raise
    return Services(directory, druva, state, clock, queue)


def open_druva(
    settings: Settings,
    *,
    dry_run: bool = False,
    clock: Clock | None = None,
    sleep: Callable[[float], Awaitable[None]] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    read_seconds: float | None = None,
) -> DruvaClient:
    """The Druva client for these settings. Both credentials are required: refused as a settings
    problem (``ConfigError``, as the command line reports every settings problem) before any request.
    With a ``clock`` its token lifetime and outage budget run on that clock's time; ``sleep`` spends
    its back-off."""
    from provisioning.adapters.druva import DruvaClient, DruvaOptions
    from provisioning.config import ConfigError

    if not settings.druva_client_id or settings.druva_client_secret is None:
        raise ConfigError(["DRUVA_CLIENT_ID and DRUVA_CLIENT_SECRET must both be set to reach Druva"])
    options = DruvaOptions(dry_run=dry_run, max_concurrency=settings.druva_max_concurrency)
    if read_seconds is not None:
        options = replace(options, read_bounds=replace(options.read_bounds, seconds=read_seconds))
    if sleep is not None:
        options = replace(options, retry=replace(options.retry, sleep=sleep))
    secret = settings.druva_client_secret
    if clock is None or isinstance(clock, SystemClock):  # real time: the monotonic clock never steps
        return DruvaClient(
            settings.druva_api_url, settings.druva_client_id, secret, options, transport=transport
        )
    return DruvaClient(
        settings.druva_api_url,
        settings.druva_client_id,
        secret,
        options,
        clock=_seconds(clock),
        transport=transport,
    )


def _seconds(clock: Clock) -> Callable[[], float]:
    return lambda: clock.now().timestamp()


def webhook_endpoint(settings: Settings) -> Endpoint | None:
    """Where Graph delivers to the deployed app (``GRAPH_NOTIFICATION_URL`` and the current clientState),
    or None where the settings name no webhook: the functions' upkeep and doctor's trial subscription."""
    from provisioning.service.subscriptions import Endpoint

    if not (settings.graph_notification_url and settings.client_states):
        return None
    return Endpoint(settings.graph_notification_url, settings.graph_lifecycle_url, settings.client_states[0])


# What the entry points need of the adapters, so that they reach them only through here ----------------
def system_clock() -> Clock:
    return SystemClock()


async def open_state(settings: Settings, *, existing_only: bool = False) -> StateStore:
    """The state store alone (``status``, ``mode``): ``existing_only`` opens what exists, read-only, and
    raises ``NoState`` where nothing does."""
    if _installed.state is not None:  # a test's state (``install``)
        return await _installed.state(settings, existing_only=existing_only)
    from provisioning.adapters.state import open_state_store

    return await open_state_store(settings, existing_only=existing_only)


def state_location(settings: Settings) -> str:
    """Where the state is, for a message (never the connection string)."""
    from provisioning.adapters.state import state_location as location

    return location(settings)


def local_state_missing(settings: Settings) -> bool:
    """Whether the settings name a SQLite state that does not exist (Table Storage is never missing)."""
    from provisioning.adapters.state.sqlite import FILE_NAME

    return not settings.uses_table_storage and not (settings.provisioning_state / FILE_NAME).exists()


def command_line_identity() -> AbstractContextManager[None]:
    """The command line's Azure identity: the admin's ``az login`` before a managed identity."""
    from provisioning.adapters.identity import signed_in_user_first

    return signed_in_user_first()


def open_queue(settings: Settings) -> WorkQueue:
    """The Service Bus sender: by connection string (the emulator, or a key) when ``ServiceBusConnection``
    is set, otherwise the namespace with the app's Azure identity."""
    from provisioning.adapters.identity import azure_credential
    from provisioning.adapters.queue.servicebus import ServiceBusQueue
    from provisioning.config import ConfigError

    if settings.service_bus_connection_string is not None:
        return ServiceBusQueue.from_connection_string(
            settings.service_bus_connection_string.get_secret_value(), settings.provisioning_queue
        )
    if settings.service_bus_namespace:
        return ServiceBusQueue(
            settings.service_bus_namespace, settings.provisioning_queue, azure_credential(settings)
        )
    raise ConfigError(
        [
            "no Service Bus connection: set ServiceBusConnection__fullyQualifiedNamespace (Azure identity) "
            "or ServiceBusConnection (a connection string, e.g. the emulator's)"
        ]
    )


def work_from_message(body: bytes, message_id: str | None) -> WorkMessage:
    """A received queue message as typed work, once; ``MalformedWork`` (so it dead-letters) otherwise."""
    from provisioning.adapters.queue.servicebus import from_service_bus

    return from_service_bus(body, message_id)
