"""Finding each account's Druva user: the sweep-or-lookups rule, and lookups asked ahead, concurrently."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provisioning.domain.druva import DruvaUser
from provisioning.errors import TransientError
from provisioning.service.druva_lookup import (
    DRUVA_PAGE_SIZE,
    PAGE_ROUND_TRIPS,
    DruvaLookup,
    DruvaQuery,
    sweep_is_cheaper,
)
from tests.builders import druva_user, link
from tests.fakes import FakeDruva


@pytest.mark.parametrize(
    ("lookups", "druva_users", "in_flight", "sweep"),
    [
        (0, 0, 16, False),  # nothing to find: no request at all
        (1, 0, 16, False),
        (64, 600, 16, False),  # one page (4 round trips' worth) against 4 rounds of 16: a tie, lookups
        (65, 600, 16, True),  # 5 rounds of lookups against one page
        (42, 600, 16, False),  # a burst of new hires in a small tenant: 3 rounds
        (128, 4_200, 16, False),  # two pages (4,200 users) against 8 rounds
        (129, 4_200, 16, True),
        (64, DRUVA_PAGE_SIZE - 1, 16, False),  # the page boundary: 4,096 users are one page
        (65, DRUVA_PAGE_SIZE - 1, 16, True),
        (65, DRUVA_PAGE_SIZE, 16, False),  # 4,097 managed: a second (near-empty) page is read too
        (832, 50_000, 16, False),  # 13 pages of a 50,000-user tenant: up to 13 × 4 × 16 lookups
        (833, 50_000, 16, True),
        (53, 50_000, 1, True),  # one request at a time: 53 round trips against 13 pages (52)
        (52, 50_000, 1, False),
        (50_176, 200_000, 256, False),  # the highest ceiling (DRUVA_MAX_CONCURRENCY): 49 × 4 × 256
        (50_177, 200_000, 256, True),
    ],
)
def test_sweep_only_when_it_takes_fewer_round_trips(
    lookups: int, druva_users: int, in_flight: int, sweep: bool
) -> None:
    assert sweep_is_cheaper(lookups, druva_users, in_flight) is sweep


@given(lookups=st.integers(0, 10_000), druva_users=st.integers(0, 300_000), in_flight=st.integers(1, 256))
def test_the_rule_is_the_cost_model(lookups: int, druva_users: int, in_flight: int) -> None:
    """Sweep exactly when the lookups' rounds (ceil(n / in flight)) outnumber the round trips the
    sweep's pages are worth."""
    pages = druva_users // DRUVA_PAGE_SIZE + 1
    rounds = -(-lookups // in_flight)
    assert sweep_is_cheaper(lookups, druva_users, in_flight) is (rounds > pages * PAGE_ROUND_TRIPS)


def _counted(managed: int) -> Callable[[], Awaitable[int]]:
    async def count() -> int:
        return managed

    return count


def _druva(*users: DruvaUser) -> FakeDruva:
    druva = FakeDruva()
    for user in users:
        druva.add(user)
    return druva


ANN, BEN = druva_user("ann", user_id=1), druva_user("ben", user_id=2)


def test_few_accounts_are_looked_up_ahead_and_find_asks_nothing_more() -> None:
    druva = _druva(ANN, BEN)
    queries = [
        DruvaQuery(1, "ann@contoso.com"),  # linked, still there
        DruvaQuery(9, "ben@contoso.com"),  # linked to a user deleted in Druva: found again by e-mail
        DruvaQuery(None, "cat@contoso.com"),  # never provisioned
        DruvaQuery(None, None),  # neither link nor e-mail
    ]

    async def run() -> list[DruvaUser | None]:
        lookup = await DruvaLookup.for_run(druva, queries, managed=_counted(2))
        asked = dict(druva.reads)
        found = [
            await lookup.find(link("ann", user_id=1), "ann@contoso.com"),
            await lookup.find(link("ben", user_id=9), "ben@contoso.com"),
            await lookup.find(None, "cat@contoso.com"),
            await lookup.find(None, None),
        ]
        assert dict(druva.reads) == asked  # everything came from the answers asked for ahead
        return found

    assert asyncio.run(run()) == [ANN, BEN, None, None]
    # The linked users and the unlinked e-mail first, then the e-mail of the one whose user is gone;
    # ann's e-mail is never asked: her linked user was there.
    assert druva.reads == {"get": 2, "find": 2}


def test_each_question_is_asked_once() -> None:
    druva = _druva(ANN)
    queries = [DruvaQuery(1, "ann@contoso.com"), DruvaQuery(1, "ann@contoso.com")]
    queries += [DruvaQuery(None, "new@contoso.com")] * 3
    asyncio.run(DruvaLookup.for_run(druva, queries, managed=_counted(1)))
    assert druva.reads == {"get": 1, "find": 1}


def test_many_accounts_sweep_instead() -> None:
    druva = _druva(ANN, BEN)
    queries = [DruvaQuery(None, f"user{i}@contoso.com") for i in range(64)] + [DruvaQuery(2, None)]

    async def run() -> DruvaUser | None:
        lookup = await DruvaLookup.for_run(druva, queries, managed=_counted(600))
        return await lookup.find(link("ben", user_id=2), None)

    assert asyncio.run(run()) == BEN
    assert druva.reads == {"list": 1}


def test_a_question_not_asked_ahead_is_asked_when_needed() -> None:
    """``search`` asks again for guests: whatever was not prefetched still gets a true answer."""
    druva = _druva(ANN)

    async def run() -> DruvaUser | None:
        lookup = await DruvaLookup.for_run(druva, [], managed=_counted(1))
        return await lookup.find(None, "ann@contoso.com")

    assert asyncio.run(run()) == ANN
    assert druva.reads == {"find": 1}


class SlowDruva(FakeDruva):
    """Each lookup takes a moment; records how many were out at once, and can fail one of them."""

    def __init__(self, fail_id: int | None = None) -> None:
        super().__init__()
        self.out = self.most_out = 0
        self.finished = 0
        self.fail_id = fail_id

    async def _moment(self) -> None:
        self.out += 1
        self.most_out = max(self.most_out, self.out)
        try:
            await asyncio.sleep(0.01)
        finally:
            self.out -= 1

    async def get_user(self, user_id: int) -> DruvaUser | None:
        if user_id == self.fail_id:
            raise TransientError(f"Druva GET users/{user_id}: HTTP 503")
        await self._moment()
        self.finished += 1
        return await super().get_user(user_id)

    async def find_user(self, email: str) -> DruvaUser | None:
        await self._moment()
        self.finished += 1
        return await super().find_user(email)


def test_lookups_run_concurrently_up_to_the_clients_ceiling() -> None:
    druva = SlowDruva()
    druva.max_in_flight = 4
    queries = [DruvaQuery(i, None) for i in range(12)]  # prefetch itself: for_run would sweep these
    asyncio.run(DruvaLookup(druva).prefetch(queries))
    assert druva.most_out == 4
    assert druva.reads == {"get": 12}


def test_a_failed_lookup_fails_as_it_would_have_and_stops_the_others() -> None:
    """Not "not found", and not wrapped: the error a pass would have met asking that account alone."""
    druva = SlowDruva(fail_id=3)
    druva.max_in_flight = 2
    queries = [DruvaQuery(i, "x@contoso.com") for i in range(3, 12)]

    async def run() -> None:
        await DruvaLookup(druva).prefetch(queries)

    with pytest.raises(TransientError, match="users/3: HTTP 503"):
        asyncio.run(run())
    assert druva.finished <= 1  # the lookups still waiting were cancelled, not asked
    assert druva.out == 0


druva_users = st.lists(
    st.builds(
        druva_user,
        name=st.sampled_from(["ann", "ben", "cat", "dan"]),
        user_id=st.integers(1, 6),
    ),
    max_size=4,
    unique_by=(lambda u: u.user_id, lambda u: u.email_key),
)
queries = st.lists(
    st.builds(
        DruvaQuery,
        user_id=st.none() | st.integers(1, 6),
        email=st.none() | st.sampled_from(["ann@contoso.com", "BEN@contoso.com", "eve@contoso.com"]),
    ),
    max_size=6,
)


@settings(max_examples=200, deadline=None)
@given(users=druva_users, asked=queries)
def test_asked_ahead_swept_or_asked_one_by_one_the_same_user_is_found(
    users: list[DruvaUser], asked: list[DruvaQuery]
) -> None:
    druva = _druva(*users)

    async def found_by(lookup: DruvaLookup) -> list[DruvaUser | None]:
        return [
            await lookup.find(link("x", user_id=q.user_id) if q.user_id is not None else None, q.email)
            for q in asked
        ]

    async def run() -> None:
        ahead = DruvaLookup(druva)
        await ahead.prefetch(asked)
        one_by_one = await found_by(DruvaLookup(druva))
        assert await found_by(ahead) == one_by_one
        assert await found_by(await DruvaLookup.sweep(druva)) == one_by_one

    asyncio.run(run())


def test_the_managed_accounts_are_counted_only_when_a_sweep_could_win() -> None:
    """Counting is a read of every link in Table Storage: a pass of a few changes never needs it."""
    counted: list[int] = []

    async def count() -> int:
        counted.append(1)
        return 50_000  # 13 pages: the lookups win below 833 round trips

    # An e-mail Druva may not hold costs two lookups (exact, then by prefix): 32 are 64 round trips.
    few = [DruvaQuery(None, f"user{i}@contoso.com") for i in range(32)]
    asyncio.run(DruvaLookup.for_run(FakeDruva(), few, count))
    assert counted == []
    many = [DruvaQuery(None, f"user{i}@contoso.com") for i in range(33)]
    druva = FakeDruva()
    asyncio.run(DruvaLookup.for_run(druva, many, count))
    assert counted == [1] and "list" not in druva.reads
