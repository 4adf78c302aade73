"""What the functions share within one warm instance: settings, the queue sender, the resolved policy.

Built lazily on first use, so a cold start pays only for what the triggered function needs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from provisioning import redaction
from provisioning.bootstrap import SystemClock
from provisioning.domain.mappings import Policy
from provisioning.ports import Clock
from provisioning.service.context import Run, Services
from provisioning.service.subscriptions import Endpoint
from provisioning.settings import Settings

APP_ROOT = Path(__file__).resolve().parents[3]  # where function_app.py and the deployed mappings.yaml live
POLICY_TTL_SECONDS = 600  # group names and Druva catalog names rarely change; re-resolve every 10 minutes

_cache: dict[str, Any] = {}


class SettingsRefused(RuntimeError):
    """The app settings are unusable: every invocation fails loudly, naming the settings (no values)."""


def settings() -> Settings:
    if "settings" not in _cache:
        from pydantic import ValidationError

        # The one redaction step for the Functions host's log handlers too, before anything can log.
        redaction.install(redaction.Redactor.from_environment())
        try:
            _cache["settings"] = Settings()
        except ValidationError as error:  # its text would quote the offending values: name them only
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
            raise SettingsRefused(f"app settings refused: {problems}") from None
    found: Settings = _cache["settings"]
    return found


def reset() -> None:
    """Forget everything cached (tests, and a settings change within a process)."""
    _cache.clear()


def clock() -> Clock:
    """Real time, unless a local host runs the app on a simulated clock (``use_clock``)."""
    found: Clock = _cache.get("clock") or SystemClock()
    return found


def use_clock(replacement: Clock, sleep: Callable[[float], Awaitable[None]] | None = None) -> None:
    """Run this instance on another clock (the soak's simulated one); ``sleep`` spends its time."""
    _cache["clock"], _cache["sleep"] = replacement, sleep


def queue() -> Any:
    """The Service Bus sender, opened once per instance: by connection string (the emulator, or a key)
    when ``ServiceBusConnection`` is set, otherwise the namespace with the app's Azure identity."""
    if "queue" not in _cache:
        from provisioning.adapters.identity import azure_credential
        from provisioning.adapters.queue.servicebus import ServiceBusQueue

        current = settings()
        if current.service_bus_connection_string is not None:
            _cache["queue"] = ServiceBusQueue.from_connection_string(
                current.service_bus_connection_string.get_secret_value(), current.provisioning_queue
            )
        elif current.service_bus_namespace:
            _cache["queue"] = ServiceBusQueue(
                current.service_bus_namespace, current.provisioning_queue, azure_credential(current)
            )
        else:
            raise RuntimeError(
                "no Service Bus connection: set ServiceBusConnection__fullyQualifiedNamespace (Azure "
                "identity) or ServiceBusConnection (a connection string, e.g. the emulator's)"
            )
    return _cache["queue"]


def use_queue(replacement: Any) -> None:
    """The local hosts' Service Bus: their stand-in behind the ``WorkQueue`` port."""
    _cache["queue"] = replacement


def endpoint() -> Endpoint | None:
    current = settings()
    if not (current.graph_notification_url and current.client_states):
        return None
    return Endpoint(current.graph_notification_url, current.graph_lifecycle_url, current.client_states[0])


@asynccontextmanager
async def services() -> AsyncIterator[Services]:
    from provisioning.bootstrap import open_services

    async with open_services(settings(), clock=clock(), sleep=_cache.get("sleep")) as opened:
        opened.queue = queue()
        yield opened


@asynccontextmanager
async def run() -> AsyncIterator[Run]:
    """Services plus the policy, resolved at most every ``POLICY_TTL_SECONDS``."""
    async with services() as opened:
        yield Run(opened, await _policy(opened))


async def _policy(opened: Services) -> Policy:
    from provisioning.config import load_config
    from provisioning.service.policy import resolve_policy

    cached = _cache.get("policy")
    now = clock().now().timestamp()
    if cached is not None and now - cached[0] < POLICY_TTL_SECONDS:
        policy: Policy = cached[1]
        return policy
    path = settings().provisioning_config or Path("mappings.yaml")
    path = path if path.is_absolute() else APP_ROOT / path  # not the host's working directory
    policy = await resolve_policy(load_config(path), opened.directory, opened.druva)
    _cache["policy"] = (now, policy)
    return policy
