"""The one composition root: settings in, the object graph out.

Adapters are imported inside the functions that build them: an Azure Function that never talks to
Graph should not pay msgraph-sdk's import time on a cold start.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime

from provisioning.ports import Clock
from provisioning.service.context import Services
from provisioning.settings import Settings


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


@asynccontextmanager
async def open_services(
    settings: Settings,
    *,
    dry_run: bool = False,
    clock: Clock | None = None,
    sleep: Callable[[float], Awaitable[None]] | None = None,
) -> AsyncIterator[Services]:
    """Build the ports from settings; in a dry run the Druva adapter refuses every write.

    ``clock`` and ``sleep`` replace real time everywhere the adapters read or spend it (the state's
    leases and records, subscription expiry, Druva's token lifetime, retry back-off): the soak runs
    months on a simulated clock through them."""
    from provisioning.adapters.druva import DruvaClient, DruvaOptions
    from provisioning.adapters.graph import open_directory
    from provisioning.adapters.state import open_state_store

    clock = clock or SystemClock()
    options = DruvaOptions(dry_run=dry_run)
    if sleep is not None:
        options = replace(options, retry=replace(options.retry, sleep=sleep))
    druva = DruvaClient.from_settings(settings, options, clock=lambda: clock.now().timestamp())
    directory = open_directory(settings, clock=clock.now)
    state = await open_state_store(settings, clock=clock, create_missing=not dry_run)
    services = Services(directory, druva, state, clock)
    try:
        yield services
    finally:
        await services.aclose()
