"""429 storms and 5xx: Retry-After honoured within bounds, then a TransientError for the queue."""

from __future__ import annotations

import logging

import pytest

from provisioning.adapters.graph import GraphDirectory
from provisioning.errors import AuthError, TransientError
from simulators.graph import GraphSimulator
from simulators.tenants import Tenant

pytestmark = pytest.mark.anyio


async def users(directory: GraphDirectory) -> int:
    return sum([len(page.changes) async for page in directory.read_users(None, ["department"])])


async def test_a_short_storm_is_sat_out_with_retry_after(
    directory: GraphDirectory, simulator: GraphSimulator
) -> None:
    simulator.inject(429, count=2, retry_after=2, routes=["users delta"])

    assert await users(directory) == 13
    assert directory.waits == [2.0, 2.0]
    assert simulator.counts["users delta"] == 4 + 2


async def test_a_long_storm_ends_in_a_transient_error_with_retry_after(
    directory: GraphDirectory, simulator: GraphSimulator
) -> None:
    simulator.inject(429, count=10, retry_after=5, routes=["users delta"])

    with pytest.raises(TransientError) as raised:
        await users(directory)

    assert raised.value.retry_after == 5
    assert simulator.counts["users delta"] == 4  # the first try and 3 retries


async def test_a_retry_after_longer_than_a_lock_can_wait_is_handed_back_at_once(
    directory: GraphDirectory, simulator: GraphSimulator
) -> None:
    simulator.inject(429, count=1, retry_after=120, routes=["users delta"])

    with pytest.raises(TransientError) as raised:
        await users(directory)

    assert raised.value.retry_after == 120 and directory.waits == []
    assert simulator.counts["users delta"] == 1


async def test_unavailable_without_retry_after_backs_off_doubling(
    directory: GraphDirectory, simulator: GraphSimulator
) -> None:
    simulator.inject(503, count=2, routes=["users delta"])

    assert await users(directory) == 13
    assert directory.waits == [1.0, 2.0]


async def test_scattered_throttling_across_a_whole_pass_still_completes(
    directory: GraphDirectory, simulator: GraphSimulator, tenant: Tenant
) -> None:
    simulator.inject(429, fraction=0.3, retry_after=1)
    groups = [tenant.group_id("US Finance"), tenant.group_id("US Sales")]

    assert await users(directory) == 13
    changes = [c async for page in directory.read_memberships(None, groups) for c in page.changes]
    assert len(changes) == 8
    assert directory.waits and set(directory.waits) == {1.0}


async def test_a_rejected_token_stops_the_run(directory: GraphDirectory, simulator: GraphSimulator) -> None:
    simulator.inject(401, count=1)

    with pytest.raises(AuthError, match="401"):
        await users(directory)


async def test_the_token_never_reaches_the_logs_or_the_errors(
    directory: GraphDirectory, simulator: GraphSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    simulator.inject(429, count=1, retry_after=1)
    await users(directory)
    simulator.inject(401, count=1)

    with pytest.raises(AuthError) as raised:
        await users(directory)

    assert "retrying in 1.0 s" in caplog.text
    assert "test-token" not in caplog.text and "test-token" not in str(raised.value)
