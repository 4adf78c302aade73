"""The Druva client under every fault the simulator can inject, and a few only a transport can."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from provisioning.adapters.druva import DruvaClient, DruvaOptions
from provisioning.domain.druva import NewDruvaUser
from provisioning.errors import TransientError
from simulators.druva import DruvaSimulator
from simulators.outages import Outage, OutageKind
from simulators.running import SimulatorThread

from .conftest import CREDENTIALS, Sleeps, client_for, fast_retry

pytestmark = pytest.mark.anyio


def person(n: int) -> NewDruvaUser:
    return NewDruvaUser(f"user{n}@contoso.com", f"User {n}", "Standard", "US-East")


def assert_each_user_once(simulator: DruvaSimulator, count: int) -> None:
    emails = sorted(user["emailID"] for user in simulator.users())
    assert emails == sorted(f"user{n}@contoso.com" for n in range(count))


class Interfering(httpx.AsyncBaseTransport):
    """Real HTTP to the simulator, with faults the simulator cannot make on its own."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self.timeouts_after_create = 0  # create applied, then the client times out waiting
        self.refused_connections = 0  # the request never leaves
        self.lagging_lookups = 0  # e-mail searches that do not see a user created a moment ago
        self.blank_create_answers = 0  # create applied, answered 200 with no user in the body
        self.in_flight = 0
        self.most_in_flight = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.refused_connections:
            self.refused_connections -= 1
            raise httpx.ConnectError("connection refused", request=request)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            response = await self._inner.handle_async_request(request)
        finally:
            self.in_flight -= 1
        if request.method == "POST" and request.url.path.endswith("/users") and self.timeouts_after_create:
            self.timeouts_after_create -= 1
            await response.aclose()
            raise httpx.ReadTimeout("timed out", request=request)
        if request.method == "POST" and request.url.path.endswith("/users") and self.blank_create_answers:
            self.blank_create_answers -= 1
            await response.aclose()
            return httpx.Response(200, json={})
        searches_email = {"emailID", "searchPrefixEmailID"} & set(request.url.params)
        if searches_email and self.lagging_lookups:
            self.lagging_lookups -= 1
            await response.aclose()
            return httpx.Response(200, json={"totalSize": 0, "nextPageToken": "", "users": []})
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


def interfered(server: SimulatorThread, transport: Interfering, **options: object) -> DruvaClient:
    settings: dict[str, object] = {"retry": fast_retry()} | options
    return DruvaClient(server.url, *CREDENTIALS, DruvaOptions(**settings), transport=transport)  # type: ignore[arg-type]


# ---- creates whose answer is lost ----------------------------------------------------------------------


async def test_lost_response_create_makes_one_user_and_returns_it(
    simulator: DruvaSimulator, druva: DruvaClient
) -> None:
    simulator.set_faults(lost_response_rate=1.0)
    created = await druva.create_user(person(0))
    assert created.email == "user0@contoso.com"
    assert created.user_id == simulator.users()[0]["userID"]
    assert_each_user_once(simulator, 1)
    assert (simulator.counts["create user"], simulator.counts["list users"]) == (1, 1)


async def test_lost_responses_under_concurrency(simulator: DruvaSimulator, server: SimulatorThread) -> None:
    simulator.set_faults(lost_response_rate=1.0)
    async with client_for(server, max_concurrency=8) as druva:
        created = await asyncio.gather(*(druva.create_user(person(n)) for n in range(12)))
    assert [user.email for user in created] == [f"user{n}@contoso.com" for n in range(12)]
    assert_each_user_once(simulator, 12)
    assert simulator.counts["create user"] == 12


async def test_timeout_after_a_create_was_sent_is_followed_by_a_lookup(
    simulator: DruvaSimulator, server: SimulatorThread
) -> None:
    transport = Interfering()
    transport.timeouts_after_create = 1
    async with interfered(server, transport) as druva:
        created = await druva.create_user(person(0))
    assert created.email == "user0@contoso.com"
    assert_each_user_once(simulator, 1)
    assert (simulator.counts["create user"], simulator.counts["list users"]) == (1, 1)


async def test_lookup_lagging_behind_an_unanswered_create_still_yields_one_user(
    simulator: DruvaSimulator, server: SimulatorThread
) -> None:
    transport = Interfering()
    transport.timeouts_after_create = 1
    transport.lagging_lookups = 2  # both questions of the first lookup: by emailID, by prefix
    async with interfered(server, transport) as druva:
        created = await druva.create_user(person(0))
    # POST (applied, timed out) → lookup (lags: nothing, twice) → POST (422: taken) → lookup → ours.
    assert created.email == "user0@contoso.com"
    assert_each_user_once(simulator, 1)
    assert (simulator.counts["create user"], simulator.counts["list users"]) == (2, 3)


async def test_create_answered_without_a_user_is_found_not_posted_again(
    simulator: DruvaSimulator, server: SimulatorThread
) -> None:
    transport = Interfering()
    transport.blank_create_answers = 1
    async with interfered(server, transport) as druva:
        created = await druva.create_user(person(0))
    assert created.email == "user0@contoso.com"
    assert_each_user_once(simulator, 1)
    assert (simulator.counts["create user"], simulator.counts["list users"]) == (1, 1)


async def test_connection_refused_create_is_sent_again_without_lookup(
    simulator: DruvaSimulator, server: SimulatorThread
) -> None:
    transport = Interfering()
    async with interfered(server, transport) as druva:
        await druva.profiles()  # token and catalog first, so the refusal hits the create
        transport.refused_connections = 1
        await druva.create_user(person(0))
    assert_each_user_once(simulator, 1)
    assert simulator.counts["list users"] == 0


async def test_server_error_on_create_looks_before_every_new_post(
    simulator: DruvaSimulator, server: SimulatorThread
) -> None:
    simulator.apply_outage(Outage(OutageKind.ERRORS, routes=("create user",)))
    async with client_for(server, retry=fast_retry(attempts=3)) as druva:
        with pytest.raises(TransientError, match="HTTP 500 InsyncCappmaster-1006"):
            await druva.create_user(person(0))
    assert simulator.users() == []
    # Two lookups that find nothing, each asking by emailID, then by prefix.
    assert (simulator.counts["create user"], simulator.counts["list users"]) == (3, 4)


# ---- storms --------------------------------------------------------------------------------------------


async def test_throttling_storm_creates_everyone_once_and_never_looks_up(
    simulator: DruvaSimulator, server: SimulatorThread
) -> None:
    simulator.apply_outage(Outage(OutageKind.THROTTLED, fraction=0.5))
    async with client_for(server, retry=fast_retry(attempts=15)) as druva:
        for n in range(20):
            await druva.create_user(person(n))
    assert_each_user_once(simulator, 20)
    assert simulator.counts["create user"] > 20  # some were throttled and sent again
    assert simulator.counts["list users"] == 0  # a 429 is a refusal, not an ambiguity


async def test_server_error_storm_creates_everyone_once(
    simulator: DruvaSimulator, server: SimulatorThread
) -> None:
    simulator.apply_outage(Outage(OutageKind.ERRORS, fraction=0.4))
    async with client_for(server, retry=fast_retry(attempts=15)) as druva:
        for n in range(20):
            await druva.create_user(person(n))
    assert_each_user_once(simulator, 20)
    assert simulator.counts["list users"] > 0


async def test_mixed_storm_at_concurrency_creates_everyone_once(
    simulator: DruvaSimulator, server: SimulatorThread
) -> None:
    simulator.set_faults(throttle_rate=0.2, error_rate=0.2, lost_response_rate=0.3)
    async with client_for(server, retry=fast_retry(attempts=25), max_concurrency=8) as druva:
        created = await asyncio.gather(*(druva.create_user(person(n)) for n in range(30)))
    assert [user.email for user in created] == [f"user{n}@contoso.com" for n in range(30)]
    assert_each_user_once(simulator, 30)


async def test_storm_that_never_ends_gives_up_with_a_transient_error(
    simulator: DruvaSimulator, server: SimulatorThread
) -> None:
    simulator.apply_outage(Outage(OutageKind.THROTTLED))
    async with client_for(server, retry=fast_retry(attempts=4)) as druva:
        with pytest.raises(TransientError, match="HTTP 429"):
            await druva.find_user("ann@contoso.com")
    assert simulator.counts["list profiles"] == 4


# ---- waiting -------------------------------------------------------------------------------------------


async def test_retry_after_is_honoured_when_present(
    simulator: DruvaSimulator, server: SimulatorThread
) -> None:
    simulator.apply_outage(Outage(OutageKind.THROTTLED, retry_after=2))
    sleeps = Sleeps()
    async with client_for(server, retry=fast_retry(sleeps, attempts=3, throttle_seconds=5)) as druva:
        with pytest.raises(TransientError) as raised:
            await druva.profiles()
    assert sleeps.waits == [2.0, 2.0]
    assert raised.value.retry_after == 2.0


async def test_throttling_without_retry_after_backs_off_with_jitter_to_a_cap(
    simulator: DruvaSimulator, server: SimulatorThread
) -> None:
    simulator.apply_outage(Outage(OutageKind.THROTTLED))
    sleeps = Sleeps()
    retry = fast_retry(sleeps, attempts=6, throttle_seconds=5, jitter_seconds=1, max_wait_seconds=30)
    async with client_for(server, retry=retry) as druva:
        with pytest.raises(TransientError):
            await druva.profiles()
    first, second, third, *capped = sleeps.waits
    assert 5 <= first <= 6
    assert 10 <= second <= 11
    assert 20 <= third <= 21
    assert capped == [30, 30]


async def test_server_errors_back_off_exponentially_to_a_cap(
    simulator: DruvaSimulator, server: SimulatorThread
) -> None:
    simulator.apply_outage(Outage(OutageKind.ERRORS, routes=("list storages",)))
    sleeps = Sleeps()
    retry = fast_retry(sleeps, attempts=5, backoff_seconds=1, max_wait_seconds=3)
    async with client_for(server, retry=retry) as druva:
        with pytest.raises(TransientError, match="HTTP 500"):
            await druva.storages()
    assert sleeps.waits == [1, 2, 3, 3]
    assert simulator.counts["list storages"] == 5


# ---- tokens --------------------------------------------------------------------------------------------


async def test_token_expiry_in_the_middle_of_a_run(simulator: DruvaSimulator, druva: DruvaClient) -> None:
    for n in range(3):
        await druva.create_user(person(n))
    simulator.expire_tokens()
    for n in range(3, 6):
        await druva.create_user(person(n))
    assert_each_user_once(simulator, 6)
    assert simulator.counts["token"] == 2
    assert simulator.counts["create user"] == 7  # one refused with 403, sent again with the new token


async def test_token_expiry_in_the_middle_of_a_sweep(simulator: DruvaSimulator, druva: DruvaClient) -> None:
    simulator.page_size = 2
    for n in range(6):
        simulator.add_user(f"user{n}@contoso.com", profile="Standard", storage="US-East")
    seen = []
    async for user in druva.users():
        seen.append(user.email)
        if len(seen) == 2:
            simulator.expire_tokens()
    assert seen == [f"user{n}@contoso.com" for n in range(6)]
    assert simulator.counts["token"] == 2


async def test_expiry_answered_401_also_refreshes(simulator: DruvaSimulator, druva: DruvaClient) -> None:
    simulator.expired_token_status = 401
    await druva.profiles()
    simulator.expire_tokens()
    assert await druva.find_user("nobody@contoso.com") is None
    assert simulator.counts["token"] == 2


async def test_concurrent_requests_share_one_new_token(
    simulator: DruvaSimulator, server: SimulatorThread
) -> None:
    async with client_for(server, max_concurrency=8) as druva:
        await druva.profiles()
        simulator.expire_tokens()
        await asyncio.gather(*(druva.find_user(f"user{n}@contoso.com") for n in range(10)))
    assert simulator.counts["token"] == 2


async def test_token_is_renewed_before_it_expires(simulator: DruvaSimulator, server: SimulatorThread) -> None:
    now = [0.0]
    druva = DruvaClient(server.url, *CREDENTIALS, DruvaOptions(retry=fast_retry()), clock=lambda: now[0])
    async with druva:
        await druva.profiles()
        now[0] = 1499.0  # 30-minute token, renewed 5 minutes early
        await druva.find_user("ann@contoso.com")
        assert simulator.counts["token"] == 1
        now[0] = 1500.0
        await druva.find_user("ann@contoso.com")
    assert simulator.counts["token"] == 2
    # Nothing was refused and sent twice: each lookup of an absent e-mail asks by emailID, then by prefix.
    assert simulator.counts["list users"] == 4


async def test_short_lived_tokens_are_not_renewed_on_every_call(
    simulator: DruvaSimulator, server: SimulatorThread
) -> None:
    simulator.token_lifetime = 60  # shorter than the renewal margin: renew at half-life instead
    now = [0.0]
    druva = DruvaClient(server.url, *CREDENTIALS, DruvaOptions(retry=fast_retry()), clock=lambda: now[0])
    async with druva:
        await druva.profiles()
        now[0] = 29.0
        await druva.find_user("ann@contoso.com")
        assert simulator.counts["token"] == 1
        now[0] = 30.0
        await druva.find_user("ann@contoso.com")
    assert simulator.counts["token"] == 2


# ---- concurrency ---------------------------------------------------------------------------------------


async def test_requests_in_flight_never_exceed_the_limit(
    simulator: DruvaSimulator, server: SimulatorThread
) -> None:
    simulator.apply_outage(Outage(OutageKind.SLOW, seconds=0.02))
    transport = Interfering()
    async with interfered(server, transport, max_concurrency=3) as druva:
        await druva.profiles()
        await asyncio.gather(*(druva.create_user(person(n)) for n in range(12)))
    assert transport.most_in_flight == 3
    assert_each_user_once(simulator, 12)
