"""Microsoft Graph (msgraph-sdk) behind the ``Directory`` port.

Heavy: importing this package imports msgraph-sdk. Entry points import it inside the functions that
need Graph, so cold starts of the webhook (which never calls Graph) stay light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from provisioning.adapters.graph.client import GraphRetryPolicy, connect
from provisioning.adapters.graph.delta import ReadBounds
from provisioning.adapters.graph.directory import GraphDirectory
from provisioning.ports import Clock, Directory
from provisioning.settings import Settings

if TYPE_CHECKING:
    import httpx


def open_directory(
    settings: Settings,
    *,
    retry: GraphRetryPolicy | None = None,
    timeout: float = 30.0,
    clock: Clock | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    read_seconds: float | None = None,
) -> Directory:
    """The Directory for these settings (credentials and base URL, see ``client.py``); close it with
    ``await directory.aclose()``. ``transport`` replaces the network (the soak's in-process simulators).
    ``read_seconds``: how long one paged read may take (None: ``ReadBounds``' own)."""
    bounds = ReadBounds() if read_seconds is None else ReadBounds(seconds=read_seconds)
    connection = connect(settings, retry, timeout, transport=transport)
    return GraphDirectory(connection, clock=clock, read_bounds=bounds)


__all__ = ["GraphDirectory", "GraphRetryPolicy", "open_directory"]
