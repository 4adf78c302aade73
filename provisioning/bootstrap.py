"""The one composition root: settings in, the object graph out.

Adapters are imported inside the functions that build them: an Azure Function that never talks to
Graph should not pay msgraph-sdk's import time on a cold start.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from provisioning.adapters.clock import SystemClock
from provisioning.service.context import Services
from provisioning.settings import Settings


@asynccontextmanager
async def open_services(settings: Settings, *, dry_run: bool = False) -> AsyncIterator[Services]:
    """Build the ports from settings; in a dry run the Druva adapter refuses every write."""
    from provisioning.adapters.druva import DruvaClient, DruvaOptions
    from provisioning.adapters.graph import open_directory
    from provisioning.adapters.state import open_state_store

    druva = DruvaClient.from_settings(
        settings, DruvaOptions(dry_run=dry_run, max_concurrency=settings.druva_max_concurrency)
    )
    directory = open_directory(settings)
    state = await open_state_store(settings, create_missing=not dry_run)
    services = Services(directory, druva, state, SystemClock())
    try:
        yield services
    finally:
        await services.aclose()
