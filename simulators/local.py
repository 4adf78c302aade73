"""Both simulators side by side on loopback, and the settings that point the product at them.

The demo, the end-to-end tests and the benchmarks all run the product exactly as an admin would, with
only these environment variables pointing it at 127.0.0.1 instead of Microsoft and Druva.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simulators.druva import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_SEED,
    DruvaSimulator,
)
from simulators.graph import GraphSimulator
from simulators.running import SimulatorThread
from simulators.tenants import Tenant, seed_use_case

LOCAL_GRAPH_TOKEN = "local-simulator-token"  # the Graph simulator accepts any bearer token


def simulator_settings(graph_api_url: str, druva_url: str, state_folder: Path) -> dict[str, str]:
    """The settings that point the product at a Graph and a Druva simulator, with local state."""
    return {
        "GRAPH_API_URL": graph_api_url,
        "GRAPH_ACCESS_TOKEN": LOCAL_GRAPH_TOKEN,
        "DRUVA_API_URL": druva_url,
        "DRUVA_CLIENT_ID": DEFAULT_CLIENT_ID,
        "DRUVA_CLIENT_SECRET": DEFAULT_CLIENT_SECRET,
        "PROVISIONING_STATE": str(state_folder),
    }


@dataclass
class LocalCloud:
    graph: GraphSimulator
    druva: DruvaSimulator
    druva_server: SimulatorThread  # the Druva simulator's running handle (outages, recovery)

    def environment(self, state_folder: Path) -> dict[str, str]:
        """The product's settings for this local cloud (see provisioning/settings.py)."""
        return simulator_settings(self.graph.graph_url, self.druva_server.url, state_folder)

    def reset_counts(self) -> None:
        self.graph.reset_counts()
        self.druva.reset_counts()


@contextmanager
def local_cloud(
    tenant: Tenant | None = None, druva_seed: Mapping[str, Any] | None = None, **graph_options: Any
) -> Iterator[LocalCloud]:
    """Start the Graph simulator (the seed use case by default) and the Druva simulator (profiles
    Standard, Finance, Mailboxes; storages US-East, EU-West by default); stop both on exit."""
    graph = GraphSimulator(tenant if tenant is not None else seed_use_case(), **graph_options)
    druva = DruvaSimulator(druva_seed if druva_seed is not None else DEFAULT_SEED)
    with graph, druva.serve() as server:
        yield LocalCloud(graph, druva, server)
