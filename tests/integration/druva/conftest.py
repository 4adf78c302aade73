"""A Druva simulator on a free loopback port, with the catalog the project's examples use."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from provisioning.adapters.druva import DruvaClient, DruvaOptions, DruvaRetryPolicy
from simulators.druva import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DruvaSimulator
from simulators.running import SimulatorThread

CREDENTIALS = (DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET)
SEED: dict[str, Any] = {
    "profiles": [
        {"id": 1, "name": "Standard"},
        {"id": 2, "name": "Finance", "quota": "200 GB"},
        {"id": 3, "name": "Mailboxes"},
    ],
    "storages": [{"id": 10, "name": "US-East"}, {"id": 11, "name": "EU-West"}],
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def simulator() -> DruvaSimulator:
    return DruvaSimulator(SEED)


@pytest.fixture
def server(simulator: DruvaSimulator) -> Iterator[SimulatorThread]:
    with simulator.serve() as running:
        yield running


def bearer(client: httpx.Client) -> dict[str, str]:
    answer = client.post("/token", auth=CREDENTIALS, data={"grant_type": "client_credentials"})
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


@pytest.fixture
def api(server: SimulatorThread) -> Iterator[httpx.Client]:
    """Raw HTTP to the simulator, already holding a token."""
    with httpx.Client(base_url=server.url) as client:
        client.headers.update(bearer(client))
        yield client


class Sleeps:
    """Stands in for asyncio.sleep in the retry policy: records each wait, waits for nothing."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def fast_retry(sleeps: Sleeps | None = None, **overrides: Any) -> DruvaRetryPolicy:
    settings: dict[str, Any] = {"backoff_seconds": 0.0, "throttle_seconds": 0.0, "jitter_seconds": 0.0}
    settings.update(overrides)
    return DruvaRetryPolicy(sleep=sleeps or Sleeps(), **settings)


def client_for(server: SimulatorThread, retry: DruvaRetryPolicy | None = None, **options: Any) -> DruvaClient:
    return client_for_url(server.url, retry, **options)


def client_for_url(url: str, retry: DruvaRetryPolicy | None = None, **options: Any) -> DruvaClient:
    return DruvaClient(url, *CREDENTIALS, DruvaOptions(retry=retry or fast_retry(), **options))


@pytest.fixture
async def druva(server: SimulatorThread) -> AsyncIterator[DruvaClient]:
    async with client_for(server) as client:
        yield client
