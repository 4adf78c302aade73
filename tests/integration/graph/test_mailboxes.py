"""Mailbox purpose through JSON batches of 20 with relative URLs; per-step failures and throttling."""

from __future__ import annotations

import pytest

from provisioning.adapters.graph import GraphDirectory
from provisioning.domain.accounts import Unreadable
from provisioning.errors import TransientError
from simulators.graph import GraphSimulator
from simulators.tenants import Tenant, make_user

pytestmark = pytest.mark.anyio


def add_users(simulator: GraphSimulator, count: int, purpose: str | None = "user") -> list[str]:
    return [simulator.add_user(make_user(f"box{n:02d}", purpose=purpose)) for n in range(count)]


async def test_purposes_come_in_batches_of_twenty(
    directory: GraphDirectory, simulator: GraphSimulator, tenant: Tenant
) -> None:
    ids = [*add_users(simulator, 42), tenant.user_id("finance-shared"), tenant.user_id("gus")]
    simulator.reset_counts()

    purposes = await directory.mailbox_purposes(ids)

    assert purposes[tenant.user_id("finance-shared")] == "shared"
    assert purposes[tenant.user_id("gus")] is None  # no mailbox: 404 in its step
    assert [purposes[i] for i in ids[:42]] == ["user"] * 42
    assert simulator.counts == {"batch": 3, "batch step": 44}


async def test_a_forbidden_step_says_nothing_about_the_mailbox(
    directory: GraphDirectory, simulator: GraphSimulator, tenant: Tenant
) -> None:
    """Exchange answers 403 for a mailbox an application access policy scopes away from the app (or
    without MailboxSettings.Read): read as "no mailbox", a shared mailbox would look like a disabled
    user and be preserved, stopping its backups."""
    simulator.inject(403, count=1, routes=["mailbox settings"])

    purposes = await directory.mailbox_purposes([tenant.user_id("dan"), tenant.user_id("gus")])

    refused = purposes[tenant.user_id("dan")]
    assert isinstance(refused, Unreadable) and "scoped away" in refused.cause
    assert purposes[tenant.user_id("gus")] is None  # 404 MailboxNotEnabledForRESTAPI: no mailbox


async def test_throttled_steps_are_sent_again_after_retry_after(
    directory: GraphDirectory, simulator: GraphSimulator, tenant: Tenant
) -> None:
    ids = add_users(simulator, 5, purpose="room")
    simulator.reset_counts()
    simulator.inject(429, count=2, retry_after=2, routes=["mailbox settings"])

    purposes = await directory.mailbox_purposes(ids)

    assert purposes == dict.fromkeys(ids, "room")
    assert directory.waits == [2.0]
    assert simulator.counts == {"batch": 2, "batch step": 7}  # 5 steps, then the 2 throttled again


async def test_steps_throttled_beyond_the_retries_are_a_transient_error(
    directory: GraphDirectory, simulator: GraphSimulator, tenant: Tenant
) -> None:
    simulator.inject(429, fraction=1.0, retry_after=3, routes=["mailbox settings"])

    with pytest.raises(TransientError) as raised:
        await directory.mailbox_purposes([tenant.user_id("alice")])

    assert raised.value.retry_after == 3
    assert simulator.counts["batch"] == 4  # the first try and 3 retries
    assert directory.waits == [3.0, 3.0, 3.0]


async def test_no_ids_no_requests(directory: GraphDirectory, simulator: GraphSimulator) -> None:
    assert await directory.mailbox_purposes([]) == {}
    assert simulator.counts == {}
