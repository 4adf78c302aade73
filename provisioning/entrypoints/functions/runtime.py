"""What the functions share within one warm instance: settings, the queue sender, the adapters (Graph
and Druva clients, the state store), the resolved policy.

Built lazily on first use, so a cold start pays only for what the triggered function needs, and kept
while the instance is warm: an invocation reuses the connections, the Druva token and the learned Druva
concurrency of the ones before it instead of opening its own. The Python worker runs an instance's async
invocations concurrently on one event loop; the adapters are safe to share there (httpx clients and the
Table client are; the Druva token and catalog refreshes take a lock; the SQLite store holds no transaction
across an await). They are kept per event loop, since a client's connections belong to the loop that
opened them. Nothing closes them on shutdown (Azure does not promise a hook): nothing they hold needs
it, every write is committed when its call returns.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from provisioning import redaction
from provisioning.bootstrap import system_clock
from provisioning.domain.mappings import Policy
from provisioning.domain.state import one_line
from provisioning.errors import NeedsHuman
from provisioning.ports import Clock, WorkQueue
from provisioning.service.context import Run, Services
from provisioning.service.subscriptions import Endpoint
from provisioning.settings import Settings

if TYPE_CHECKING:
    import httpx

    from provisioning.config import ProvisioningConfig

APP_ROOT = Path(__file__).resolve().parents[3]  # where function_app.py and the deployed mappings.yaml live
# Group names and Druva catalog names rarely change: the policy is resolved again after 30 minutes. It was
# 10, which made it once per pass (a timer pass every 15 minutes, notified passes between): a Graph
# $batch and two Druva reads each time, for answers that almost never change. A stale policy errs
# safely: a group it names keeps its id when renamed, a deleted profile or storage fails the writes that
# use it (failing accounts, retried); a mappings file that does not resolve is not kept, it is tried
# again on every pass, so a fix is picked up at once.
POLICY_TTL_SECONDS = 1800
# A Graph or Druva read that would outlast the function timeout (15 min, host.json) ends on its own, with a
# clear error and a rescheduled pass, instead of being killed mid-read and redelivered: 10 min leaves the
# rest for deciding and writing. (The command line keeps the adapters' own bounds, hours.)
READ_SECONDS = 600.0


ServicesOpener = Callable[[], AbstractAsyncContextManager[Services]]
Builder = Callable[..., Awaitable[Services]]


@dataclass
class Instance:
    """What one warm instance has built so far; each part is built on first use."""

    settings: Settings | None = None
    redacting: bool = False  # the one redaction step is installed on the host's log handlers
    queue: WorkQueue | None = None
    clock: Clock | None = None
    policy: Policy | None = None
    policy_resolved_at: float = 0.0  # the instance clock's timestamp of the last resolution
    policy_source: ProvisioningConfig | None = None  # the parsed mappings file it was resolved from
    config: tuple[tuple[Path, int, int], ProvisioningConfig] | None = None  # (path, mtime, size), parsed
    sleep: Callable[[float], Awaitable[None]] | None = None  # spends the clock's time (None: real time)
    transport: httpx.AsyncBaseTransport | None = None  # the adapters' HTTP, if not the network
    opened: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Services] = field(
        default_factory=weakref.WeakKeyDictionary
    )  # the adapters, per event loop (one in Azure)
    # What a test installs (``use``) instead of what the instance would build:
    services_opener: ServicesOpener | None = None  # the ports, opened per invocation
    fixed_policy: Policy | None = None  # the policy, not resolved from the mappings file
    build: Builder | None = None  # what opens the warm adapters (bootstrap.build_services)


_instance = Instance()


class SettingsRefused(NeedsHuman):
    """The app settings are unusable: every invocation fails loudly, naming the settings (no values)."""


def settings() -> Settings:
    """The app settings, read once per instance (or those a test installed with ``use``)."""
    if _instance.settings is None:
        from pydantic import ValidationError

        _redacting()
        try:
            _instance.settings = Settings()
        except ValidationError as error:  # its text would quote the offending values: name them only
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
            raise SettingsRefused(f"app settings refused: {problems}") from None
    return _instance.settings


def _redacting() -> None:
    """The one redaction step for the Functions host's log handlers too, before anything can log."""
    if not _instance.redacting:
        redaction.install(redaction.Redactor.from_environment())
        _instance.redacting = True


class Invocation:
    """One invocation of a function, and what it is doing now: the failure line says where it stopped."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.doing = ""

    @contextmanager
    def step(self, doing: str) -> Iterator[None]:
        """``doing`` while the block runs; a failure leaving the block keeps it for the failure line."""
        before, self.doing = self.doing, doing
        yield
        self.doing = before


@contextmanager
def reported(log: logging.Logger, name: str) -> Iterator[Invocation]:
    """Every exception that leaves an invocation is first logged on one error line of its own, saying
    what failed and why, secrets masked: otherwise the invocation's log may end on "subscription upkeep
    ok" and the host's bare "Failed". Re-raised, so the host still records the failure (and Service Bus
    redelivers)."""
    invocation = Invocation(name)
    try:
        yield invocation
    except (Exception, asyncio.CancelledError) as error:
        _redacting()
        log.error("%s", failure_line(invocation, error))
        raise


def failure_line(invocation: Invocation, error: BaseException) -> str:
    """``keep_watch failed asking for the safety-net delta pass: ServiceBusError: … (after …)``."""
    where = f"{invocation.name} failed" + (f" {invocation.doing}" if invocation.doing else "")
    why = _why(error)
    earlier = error.__context__
    if earlier is not None and not error.__suppress_context__:  # a failure the finally block followed
        why += f" (after {_why(earlier)})"
    return redaction.scrub(one_line(f"{where}: {why}", FAILURE_LINE_CHARS))


FAILURE_LINE_CHARS = 2000


def _why(error: BaseException) -> str:
    if isinstance(error, asyncio.CancelledError):
        return "cancelled (the host stopped the invocation: its time limit, or a shutdown)"
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def reset() -> None:
    """Forget everything built (tests, and a settings change within a process)."""
    for name, value in vars(Instance()).items():
        setattr(_instance, name, value)


def use(
    *,
    queue: WorkQueue | None = None,
    clock: Clock | None = None,
    sleep: Callable[[float], Awaitable[None]] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    services: ServicesOpener | None = None,
    policy: Policy | None = None,
    settings: Settings | None = None,
    build: Builder | None = None,
) -> None:
    """Override what the instance would build: the local Functions host's Service Bus stand-in (what
    ``ServiceBusConnection`` gives the functions in Azure), a test's queue, another clock (the soak's
    simulated one) with the ``sleep`` that spends its time, or the HTTP transport under the Graph and
    Druva clients (the long soak's in-process simulators). Tests also install the ports themselves
    (``services``: opened per invocation), a ``policy`` not resolved from a mappings file, ``settings``,
    or what opens the warm adapters (``build``): the seam is this function, never a module global."""
    if services is not None:
        _instance.services_opener = services
    if policy is not None:
        _instance.fixed_policy = policy
    if settings is not None:
        _instance.settings = settings
    if build is not None:
        _instance.build = build
    if queue is not None:
        _instance.queue = queue
    if clock is not None:
        _instance.clock, _instance.sleep = clock, sleep
    if transport is not None:
        _instance.transport = transport
    _instance.opened.clear()  # adapters built with the old queue or clock: open them again
    _instance.policy = _instance.policy_source = None  # resolved through them, on the old clock


def clock() -> Clock:
    """Real time, unless the instance runs on another clock (``use``)."""
    if _instance.clock is None:
        _instance.clock = system_clock()
    return _instance.clock


def queue() -> WorkQueue:
    """The Service Bus sender, opened once per instance: by connection string (the emulator, or a key)
    when ``ServiceBusConnection`` is set, otherwise the namespace with the app's Azure identity."""
    if _instance.queue is None:
        from provisioning.bootstrap import open_queue

        _instance.queue = open_queue(settings())
    return _instance.queue


def endpoint() -> Endpoint | None:
    from provisioning.bootstrap import webhook_endpoint

    return webhook_endpoint(settings())


@asynccontextmanager
async def services() -> AsyncIterator[Services]:
    """The instance's adapters, opened on first use on this event loop and kept open after it (or what
    a test installed with ``use``)."""
    if _instance.services_opener is not None:
        async with _instance.services_opener() as installed:
            yield installed
        return
    yield await _warm_services()


async def _warm_services() -> Services:
    from provisioning.bootstrap import build_services

    loop = asyncio.get_running_loop()
    kept = _instance.opened.get(loop)
    if kept is not None:
        return kept
    build = _instance.build or build_services
    opened = await build(
        settings(),
        queue=queue(),
        clock=clock(),
        sleep=_instance.sleep,
        transport=_instance.transport,
        read_seconds=READ_SECONDS,
    )
    kept = _instance.opened.setdefault(loop, opened)  # a concurrent invocation may have opened them first
    if kept is not opened:
        await opened.aclose()
    return kept


@asynccontextmanager
async def run() -> AsyncIterator[Run]:
    """Services plus the policy, resolved at most every ``POLICY_TTL_SECONDS``."""
    async with services() as opened:
        policy = _instance.fixed_policy or await _policy(opened)
        yield Run(opened, policy, initial_mode=settings().provisioning_initial_mode)


async def _policy(opened: Services) -> Policy:
    from provisioning.service.policy import resolve_policy

    # Policy age on the instance's clock: a simulated month re-resolves as a real one would. A changed
    # mappings file (a new object from _config) is resolved at once, whatever the policy's age.
    now, config = clock().now().timestamp(), _config()
    fresh = 0 <= now - _instance.policy_resolved_at < POLICY_TTL_SECONDS  # a clock set back: resolve
    if _instance.policy is not None and fresh and _instance.policy_source is config:
        return _instance.policy
    policy = await resolve_policy(config, opened.directory, opened.druva)
    _instance.policy, _instance.policy_resolved_at, _instance.policy_source = policy, now, config
    return policy


def _config() -> ProvisioningConfig:
    """The mappings file, parsed again only when it changed: the policy's groups and catalog names are
    re-resolved every ``POLICY_TTL_SECONDS``, but the file is part of the deployment and reading and
    validating it each time would buy nothing."""
    from provisioning.config import load_config

    path = settings().provisioning_config or Path("mappings.yaml")
    path = path if path.is_absolute() else APP_ROOT / path  # not the host's working directory
    try:
        found = path.stat()
    except OSError:
        return load_config(path)  # reports the file it cannot read, as it always has
    key = (path, found.st_mtime_ns, found.st_size)
    if _instance.config is None or _instance.config[0] != key:
        _instance.config = (key, load_config(path))
    return _instance.config[1]
