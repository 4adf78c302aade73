"""Guarantees the business code relies on without checking: dry run writes nothing, secrets stay secret."""

from __future__ import annotations

import logging

import pytest

from provisioning.adapters.druva import DruvaClient, DruvaOptions
from provisioning.domain.druva import NewDruvaUser
from provisioning.domain.quota import Quota
from provisioning.errors import AuthError, DryRunRejected, ProvisioningError
from simulators.druva import DruvaSimulator
from simulators.outages import Outage, OutageKind
from simulators.running import SimulatorThread

from .conftest import SEED, client_for, fast_retry

pytestmark = pytest.mark.anyio

WRITES = ("create user", "update user", "preserve user", "activate user", "delete user")


def writes_received(simulator: DruvaSimulator) -> int:
    return sum(simulator.counts[route] for route in WRITES)


async def test_dry_run_refuses_every_write_before_sending_it(
    simulator: DruvaSimulator, server: SimulatorThread
) -> None:
    user_id = simulator.add_user("bob@contoso.com", profile="Standard", storage="US-East")["userID"]
    async with client_for(server, dry_run=True) as druva:
        with pytest.raises(DryRunRejected) as create:
            await druva.create_user(
                NewDruvaUser("ann@contoso.com", "Ann", "Finance", "EU-West", Quota.parse("5 GB"))
            )
        with pytest.raises(DryRunRejected) as update:
            await druva.update_user(user_id, profile="Finance")
        with pytest.raises(DryRunRejected):
            await druva.preserve_user(user_id)
        with pytest.raises(DryRunRejected):
            await druva.activate_user(user_id)
    assert create.value.method == "POST"
    assert create.value.url == f"{server.url}/insync/usermanagement/v1/users"
    assert create.value.body == {
        "userName": "Ann",
        "emailID": "ann@contoso.com",
        "profileID": 2,
        "storageID": 11,
        "sendPasswordByEmail": False,
        "quota": 5,
        "quotaUnit": "GB",
    }
    assert (update.value.method, update.value.body) == ("PATCH", {"profileID": 2})
    assert writes_received(simulator) == 0
    assert [user["emailID"] for user in simulator.users()] == ["bob@contoso.com"]
    assert simulator.users()[0]["status"] == "active"


async def test_dry_run_refusal_sends_nothing_at_all(
    simulator: DruvaSimulator, server: SimulatorThread
) -> None:
    async with client_for(server, dry_run=True) as druva:
        with pytest.raises(DryRunRejected):
            await druva.preserve_user(42)
    assert simulator.api_requests() == 0  # not even a token


async def test_dry_run_still_reads(simulator: DruvaSimulator, server: SimulatorThread) -> None:
    simulator.add_user("bob@contoso.com", profile="Standard", storage="US-East")
    async with client_for(server, dry_run=True) as druva:
        assert [user.email async for user in druva.users()] == ["bob@contoso.com"]
        assert await druva.find_user("BOB@contoso.com") is not None
        assert [probe.ok for probe in await druva.check_access()] == [True, True, True, True]


async def test_secrets_never_reach_logs_reprs_or_errors(caplog: pytest.LogCaptureFixture) -> None:
    secret = "s3cr3t-never-print-me"
    simulator = DruvaSimulator(SEED | {"credentials": {"client_id": "sim-client", "client_secret": secret}})
    caplog.set_level(logging.DEBUG)
    errors: list[ProvisioningError] = []
    with simulator.serve() as server:
        async with DruvaClient(server.url, "sim-client", "wrong-" + secret) as refused:
            with pytest.raises(AuthError) as denied:
                await refused.profiles()
            errors.append(denied.value)
        options = DruvaOptions(retry=fast_retry(attempts=2))
        async with DruvaClient(server.url, "sim-client", secret, options) as druva:
            await druva.create_user(NewDruvaUser("ann@contoso.com", "Ann", "Standard", "US-East"))
            simulator.expire_tokens()
            simulator.apply_outage(Outage(OutageKind.THROTTLED))
            with pytest.raises(ProvisioningError) as throttled:
                await druva.find_user("ann@contoso.com")
            errors.append(throttled.value)
            simulator.set_faults(lost_response_rate=1.0)
            await druva.create_user(NewDruvaUser("bob@contoso.com", "Bob", "Standard", "US-East"))
            shown = [repr(druva), str(druva), *(str(error) for error in errors), *(repr(e) for e in errors)]
            shown += [str(probe) for probe in await druva.check_access()]
    tokens = simulator.issued_tokens()
    assert len(tokens) == 2
    assert caplog.records  # retries and token renewals were logged
    for text in [caplog.text, *shown]:
        assert secret not in text
        for token in tokens:
            assert token not in text
