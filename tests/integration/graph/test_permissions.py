"""Application permissions, enforced per endpoint by the Graph simulator and named by the product.

Each row: an endpoint, the permission Graph requires for it, and what the app holds without it. A missing
permission is a 403 naming the permission, and nothing happens (no subscription, no handshake, no data).
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from provisioning.adapters.graph import GraphDirectory
from provisioning.adapters.graph.client import connect
from provisioning.errors import AuthError
from provisioning.service.context import Services
from provisioning.service.doctor import subscription_permissions
from provisioning.service.subscriptions import Endpoint
from provisioning.settings import Settings
from simulators.graph import GraphSimulator
from simulators.graph.permissions import GRANTED_BY_BICEP, OPEN_ROUTES, ROUTES
from simulators.running import SimulatorProcess
from simulators.tenants import seed_use_case
from tests.fakes import FakeDruva, FixedClock, InMemoryState

from .conftest import FAST_RETRIES, Receiver

pytestmark = pytest.mark.anyio
ALL = GRANTED_BY_BICEP
TOKEN = {"Authorization": "Bearer test-token"}


def a_user_and_a_group(simulator: GraphSimulator) -> tuple[str, str]:
    return next(iter(simulator.store.users)), next(iter(simulator.store.groups))


READS = [
    # (route name, path template, the permission the Bicep grants for it)
    ("users delta", "/users/delta()", "User.Read.All"),
    ("users", "/users", "User.Read.All"),
    ("user", "/users/{user}", "User.Read.All"),
    ("mailbox settings", "/users/{user}/mailboxSettings", "MailboxSettings.Read"),
    ("groups delta", "/groups/delta()", "Group.Read.All"),
    ("groups", "/groups", "Group.Read.All"),
    ("group", "/groups/{group}", "Group.Read.All"),
    ("group members", "/groups/{group}/members", "Group.Read.All"),
]


@pytest.mark.parametrize(("route", "path", "permission"), READS, ids=[r[0] for r in READS])
def test_a_read_without_its_permission_is_refused_naming_it(
    simulator: GraphSimulator, route: str, path: str, permission: str
) -> None:
    user, group = a_user_and_a_group(simulator)
    url = simulator.graph_url + path.format(user=user, group=group)
    assert httpx.get(url, headers=TOKEN).status_code in (200, 404)  # 404: a user without a mailbox

    simulator.set_roles(ALL - {permission})
    refused = httpx.get(url, headers=TOKEN)

    assert refused.status_code == 403
    error = refused.json()["error"]
    assert error["code"] == "Authorization_RequestDenied" and permission in error["message"]
    assert "value" not in refused.json()


def test_group_reads_accept_group_member_read_all_alone() -> None:
    with GraphSimulator(seed_use_case(), roles=["GroupMember.Read.All"]) as simulator:
        group = next(iter(simulator.store.groups))
        for path in ("/groups", f"/groups/{group}/members", "/groups/delta()"):
            assert httpx.get(simulator.graph_url + path, headers=TOKEN).status_code == 200
        assert httpx.get(simulator.graph_url + "/users", headers=TOKEN).status_code == 403


def test_every_graph_route_says_what_it_needs(simulator: GraphSimulator) -> None:
    graph_routes = {r.name for r in simulator.router.routes if not r.name.startswith("admin")}
    subscriptions = {n for n in graph_routes if "subscription" in n}
    assert graph_routes - subscriptions - OPEN_ROUTES <= set(ROUTES)
    assert set(ROUTES) <= graph_routes


def test_a_batch_step_is_checked_on_its_own(simulator: GraphSimulator) -> None:
    user, group = a_user_and_a_group(simulator)
    simulator.set_roles(ALL - {"MailboxSettings.Read"})
    steps = [
        {"id": "1", "method": "GET", "url": f"/users/{user}/mailboxSettings"},
        {"id": "2", "method": "GET", "url": f"/groups/{group}"},
    ]
    answer = httpx.post(f"{simulator.graph_url}/$batch", json={"requests": steps}, headers=TOKEN)
    statuses = {a["id"]: a["status"] for a in answer.json()["responses"]}
    assert answer.status_code == 200 and statuses == {"1": 403, "2": 200}


@pytest.mark.parametrize(
    ("resource", "permission"), [("users", "User.Read.All"), ("groups", "Group.Read.All")]
)
async def test_a_subscription_without_its_permission_is_refused_and_nothing_is_created(
    directory: GraphDirectory, simulator: GraphSimulator, resource: str, permission: str
) -> None:
    simulator.set_roles(ALL - {permission} | {"GroupMember.Read.All"})  # not enough for groups
    receiver = Receiver()
    expires = datetime.now(UTC) + timedelta(days=2)
    with receiver.server, pytest.raises(AuthError) as raised:
        await directory.create_subscription(resource, receiver.url, None, "secret", expires)

    assert permission in str(raised.value)  # named by the product, whatever Graph's text says
    assert f"create {resource} subscription needs" in str(raised.value)
    assert simulator.subscriptions() == [] and receiver.validations == []


async def test_renewing_or_deleting_a_subscription_needs_its_resource_permission(
    directory: GraphDirectory, simulator: GraphSimulator
) -> None:
    receiver = Receiver()
    with receiver.server:
        created = await directory.create_subscription(
            "groups", receiver.url, None, "secret", datetime.now(UTC) + timedelta(days=2)
        )
        simulator.set_roles(ALL - {"Group.Read.All"})
        with pytest.raises(AuthError, match=r"Group\.Read\.All"):
            await directory.renew_subscription(created.id, datetime.now(UTC) + timedelta(days=20))
        with pytest.raises(AuthError, match=r"Group\.Read\.All"):
            await directory.delete_subscription(created.id)

    assert [s["id"] for s in simulator.subscriptions()] == [created.id]
    assert simulator.subscriptions()[0]["expirationDateTime"].startswith(
        created.expires_at.strftime("%Y-%m-%d")
    )


@pytest.mark.parametrize(
    ("missing", "read"),
    [
        ("User.Read.All", lambda d: d.read_users(None, ["officeLocation"])),
        ("Group.Read.All", lambda d: d.read_memberships(None, ["00000000-0000-0000-0000-000000000001"])),
    ],
    ids=["users delta", "groups delta"],
)
async def test_the_adapter_names_the_missing_permission(
    directory: GraphDirectory, simulator: GraphSimulator, missing: str, read: object
) -> None:
    simulator.set_roles(ALL - {missing})
    with pytest.raises(AuthError) as raised:
        async for _ in read(directory):  # type: ignore[operator]
            pass
    assert f"needs the Microsoft Graph application permission {missing}" in str(raised.value)


def test_roles_are_set_through_the_admin_api(simulator: GraphSimulator) -> None:
    admin = f"{simulator.url}/_admin/roles"
    assert sorted(httpx.get(admin).json()["roles"]) == sorted(ALL)
    assert httpx.put(admin, json={"roles": ["User.Read.All"]}).status_code == 204
    assert httpx.get(f"{simulator.graph_url}/groups", headers=TOKEN).status_code == 403
    assert httpx.put(admin, json={"roles": "User.Read.All"}).status_code == 400  # a list, nothing else
    assert httpx.get(admin).json()["roles"] == ["User.Read.All"]


def test_roles_are_set_on_the_command_line(tmp_path: Path) -> None:
    process = SimulatorProcess.start("graph", "--roles", "User.Read.All,MailboxSettings.Read")
    url = process.url
    try:
        assert httpx.get(f"{url}/v1.0/users", headers=TOKEN).status_code == 200
        refused = httpx.get(f"{url}/v1.0/groups", headers=TOKEN)
        assert refused.status_code == 403 and "GroupMember.Read.All" in refused.text
    finally:
        assert process.stop() == 0


def unsigned_jwt(claims: dict[str, object]) -> str:
    def part(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}.signature"


async def test_the_adapter_reads_the_roles_claim_of_an_app_token(simulator: GraphSimulator) -> None:
    roles = ["User.Read.All", "GroupMember.Read.All"]
    token = unsigned_jwt({"aud": "https://graph.microsoft.com", "roles": roles})
    with_claim = GraphDirectory(
        connect(Settings(GRAPH_API_URL=simulator.graph_url, GRAPH_ACCESS_TOKEN=token), FAST_RETRIES)
    )
    try:
        assert await with_claim.app_roles() == frozenset(roles)
    finally:
        await with_claim.aclose()


async def test_an_opaque_token_has_no_roles(directory: GraphDirectory) -> None:
    assert await directory.app_roles() is None


async def test_doctor_trial_subscriptions_name_the_missing_permission_and_leave_nothing(
    directory: GraphDirectory, simulator: GraphSimulator
) -> None:
    simulator.set_roles({"User.Read.All", "GroupMember.Read.All", "MailboxSettings.Read"})
    receiver = Receiver()
    services = Services(directory, FakeDruva(), InMemoryState(), FixedClock())
    with receiver.server:
        probes = await subscription_permissions(services, Endpoint(receiver.url, None, "secret"))

    verdicts = {p.check.split()[0]: (p.ok, p.detail) for p in probes}
    assert verdicts["users"][0] is True
    assert verdicts["groups"][0] is False and "Group.Read.All" in verdicts["groups"][1]
    assert simulator.subscriptions() == []
