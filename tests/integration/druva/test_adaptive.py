"""The Druva client's adaptive concurrency against the simulator's rate limit (N requests a second,
then 429 with Retry-After), over real HTTP on loopback."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from provisioning.adapters.druva import DruvaClient
from provisioning.domain.druva import NewDruvaUser
from simulators.druva import DruvaSimulator
from simulators.outages import Outage, OutageKind
from simulators.running import SimulatorThread

from .conftest import client_for, fast_retry

pytestmark = pytest.mark.anyio


def new(n: int) -> NewDruvaUser:
    return NewDruvaUser(f"user{n:04d}@contoso.com", f"User {n}", "Standard", "US-East")


async def create_all(druva: DruvaClient, count: int) -> None:
    await asyncio.gather(*(druva.create_user(new(n)) for n in range(count)))


def test_the_simulator_answers_429_with_retry_after_beyond_its_rate(
    simulator: DruvaSimulator, api: httpx.Client
) -> None:
    simulator.set_faults(rate_limit=5)
    answers = [api.get("/insync/profilemanagement/v1/profiles") for _ in range(12)]

    statuses = [a.status_code for a in answers]
    assert statuses[:5] == [200] * 5  # one second's worth in a burst
    refused = [a for a in answers if a.status_code == 429]
    assert refused, statuses
    assert all(int(a.headers["Retry-After"]) >= 1 for a in refused)  # whole seconds, as HTTP has it
    assert refused[0].json()["retryable"] is True


async def test_under_a_rate_limit_it_backs_off_honours_retry_after_and_loses_nothing(
    simulator: DruvaSimulator, server: SimulatorThread
) -> None:
    # Well below what the simulator serves on a busy machine, so the limit is Druva's, not the host's.
    simulator.set_faults(rate_limit=25, latency_seconds=0.02)
    waits: list[float] = []

    async def sleep(seconds: float) -> None:  # the waits happen for real: the bucket must refill
        waits.append(seconds)
        await asyncio.sleep(seconds)

    async with client_for(server, fast_retry(sleep, attempts=20), max_concurrency=64) as druva:  # type: ignore[arg-type]
        await create_all(druva, 120)
        limit = druva.limit

    users = simulator.users()
    assert len(users) == 120 and len({u["emailID"] for u in users}) == 120  # every one, once
    assert limit.cuts >= 1  # it met the rate limit and cut its concurrency...
    assert limit.peak > 4  # ...after raising it above where it started
    assert limit.limit < limit.peak
    assert waits and all(w >= 1 for w in waits)  # each throttled request waited Retry-After
    assert len(waits) < 120  # throttling is the exception, not the rule


async def test_without_a_limit_it_climbs_to_the_ceiling_and_no_higher(
    simulator: DruvaSimulator, server: SimulatorThread
) -> None:
    simulator.apply_outage(Outage(OutageKind.SLOW, seconds=0.005))
    async with client_for(server, max_concurrency=12) as druva:
        await create_all(druva, 300)
        assert druva.limit.peak == druva.limit.limit == 12
        assert druva.limit.cuts == 0
    assert len(simulator.users()) == 300
