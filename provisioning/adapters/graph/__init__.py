"""Microsoft Graph (msgraph-sdk) behind the ``Directory`` port.

Heavy: importing this package imports msgraph-sdk. Entry points import it inside the functions that
need Graph, so cold starts of the webhook (which never calls Graph) stay light.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from provisioning.adapters.graph.client import RetryPolicy, connect
from provisioning.adapters.graph.directory import GraphDirectory
from provisioning.ports import Directory
from provisioning.settings import Settings


def open_directory(
    settings: Settings,
    *,
    retry: RetryPolicy | None = None,
    timeout: float = 30.0,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Directory:
    """The Directory for these settings (credentials and base URL, see ``client.py``); close it with
    ``await directory.aclose()``."""
    return GraphDirectory(connect(settings, retry, timeout), clock=clock)


__all__ = ["GraphDirectory", "RetryPolicy", "open_directory"]
