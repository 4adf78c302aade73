"""``python -m simulators.graph`` as its own process, driven through its admin API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from provisioning.adapters.graph import open_directory
from provisioning.domain.accounts import EntraAccount
from provisioning.settings import Settings
from simulators.running import SimulatorProcess
from simulators.tenants import make_user, seed_use_case

from .conftest import FAST_RETRIES

pytestmark = pytest.mark.anyio


@pytest.fixture
def running(tmp_path: Path) -> Iterator[str]:
    seed = tmp_path / "tenant.json"
    seed_use_case().dump(seed)
    process = SimulatorProcess.start("graph", "--seed", str(seed))
    try:
        assert process.url.startswith("http://127.0.0.1:")
        yield process.url
    finally:
        assert process.stop() == 0


async def test_the_command_line_simulator_serves_graph_and_takes_admin_changes(running: str) -> None:
    directory = open_directory(
        Settings(GRAPH_API_URL=f"{running}/v1.0", GRAPH_ACCESS_TOKEN="test-token"), retry=FAST_RETRIES
    )
    try:
        pages = [page async for page in directory.read_users(None, ["officeLocation"])]
        assert sum(len(p.changes) for p in pages) == 13
        async with httpx.AsyncClient(base_url=running) as admin:
            answer = await admin.post("/_admin/users", json=make_user("nina", office="Chicago"))
            assert answer.status_code == 201
            assert (await admin.get("/v1.0/users")).status_code == 401  # Graph routes want a bearer token
            counts = (await admin.get("/_admin/counts")).json()["counts"]
            assert counts["users delta"] == len(pages)

        changed = [
            c
            async for page in directory.read_users(pages[-1].cursor, ["officeLocation"])
            for c in page.changes
        ]
    finally:
        await directory.aclose()

    assert [c.user_principal_name for c in changed if isinstance(c, EntraAccount)] == ["nina@contoso.com"]
