"""``python -m simulators.druva`` as another process would run it: started, used, stopped."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from provisioning.domain.druva import NewDruvaUser
from simulators.running import SimulatorProcess

from .conftest import CREDENTIALS, SEED, client_for_url, fast_retry

pytestmark = pytest.mark.anyio


def start(*arguments: str) -> tuple[SimulatorProcess, str]:
    process = SimulatorProcess.start("druva", *arguments)
    assert process.url.startswith("http://127.0.0.1:")
    return process, process.url


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[str]:
    seed = SEED | {"users": [{"email": "ann@contoso.com", "profile": "Finance", "storage": "EU-West"}]}
    seed_file = tmp_path / "seed.json"
    seed_file.write_text(json.dumps(seed))
    process, url = start("--seed", str(seed_file))
    try:
        yield url
    finally:
        assert process.stop() == 0


async def test_the_module_serves_druva_from_a_seed_file(seeded: str) -> None:
    async with client_for_url(seeded) as druva:
        assert [(u.email, u.profile) async for u in druva.users()] == [("ann@contoso.com", "Finance")]
        created = await druva.create_user(NewDruvaUser("bob@contoso.com", "Bob", "Standard", "US-East"))
    assert created.profile == "Standard"
    async with httpx.AsyncClient(base_url=seeded) as admin:
        state = (await admin.get("/_admin/state")).json()
        assert [user["emailID"] for user in state["users"]] == ["ann@contoso.com", "bob@contoso.com"]
        assert (await admin.get("/_admin/counts")).json()["create user"] == 1


async def test_faults_and_expiry_driven_through_the_admin_api(seeded: str) -> None:
    async with httpx.AsyncClient(base_url=seeded) as admin:
        await admin.post("/_admin/faults", json={"lost_response_rate": 1.0, "throttle_rate": 0.3})
        async with client_for_url(seeded, retry=fast_retry(attempts=20)) as druva:
            await druva.create_user(NewDruvaUser("bob@contoso.com", "Bob", "Standard", "US-East"))
            await admin.post("/_admin/expire-tokens")
            await druva.create_user(NewDruvaUser("cy@contoso.com", "Cy", "Standard", "US-East"))
        users = (await admin.get("/_admin/state")).json()["users"]
        assert sorted(user["emailID"] for user in users) == [
            "ann@contoso.com",
            "bob@contoso.com",
            "cy@contoso.com",
        ]
        assert (await admin.get("/_admin/counts")).json()["token"] == 2


def test_without_a_seed_it_serves_the_demo_catalog() -> None:
    process, url = start()
    try:
        with httpx.Client(base_url=url) as admin:
            state = admin.get("/_admin/state").json()
    finally:
        assert process.stop() == 0
    assert [p["profileName"] for p in state["profiles"]] == ["Standard", "Finance", "Mailboxes"]
    assert [s["storageName"] for s in state["storages"]] == ["US-East", "EU-West"]


def test_rate_limit_and_latency_from_the_command_line() -> None:
    process, url = start("--rate-limit", "3", "--latency-ms", "20")
    try:
        with httpx.Client(base_url=url) as client:
            faults = client.get("/_admin/faults").json()
            token = client.post("/token", auth=CREDENTIALS, data={"grant_type": "client_credentials"}).json()[
                "access_token"
            ]
            answers = [
                client.get(
                    "/insync/profilemanagement/v1/profiles", headers={"Authorization": f"Bearer {token}"}
                )
                for _ in range(8)
            ]
    finally:
        assert process.stop() == 0
    assert (faults["rate_limit"], faults["latency_seconds"]) == (3, 0.02)
    assert [a.status_code for a in answers][:3] == [200, 200, 200]
    assert any(a.status_code == 429 and int(a.headers["Retry-After"]) >= 1 for a in answers)


def test_a_nonsense_rate_limit_is_refused() -> None:
    with pytest.raises(SystemExit, match="did not start"):
        start("--rate-limit", "0")
