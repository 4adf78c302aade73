"""The adaptive concurrency limit on its own: additive increase, multiplicative decrease."""

from __future__ import annotations

import asyncio

import pytest

from provisioning.adapters.druva.limiter import AdaptiveLimit


class Ticks:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def answer(limit: AdaptiveLimit, clock: Ticks, status: int, seconds: float = 0.05) -> None:
    async def one() -> None:
        async with limit.slot() as answered:
            clock.now += seconds
            answered(status)

    asyncio.run(one())


def test_prompt_answers_raise_the_limit_by_about_one_per_round_up_to_the_ceiling() -> None:
    clock = Ticks()
    limit = AdaptiveLimit(10, initial=4, clock=clock)
    for _ in range(4):
        answer(limit, clock, 200)
    assert limit.limit == 4  # 4 answers of 1/4 each: one more only once the window is full
    answer(limit, clock, 200)
    assert limit.limit in (4, 5)
    for _ in range(200):
        answer(limit, clock, 201)
    assert limit.limit == limit.peak == 10


@pytest.mark.parametrize("status", [429, 500, 503])
def test_a_refusal_halves_the_limit_once_per_window(status: int) -> None:
    clock = Ticks()
    limit = AdaptiveLimit(32, initial=16, clock=clock)

    async def burst() -> None:
        async def one() -> None:
            async with limit.slot() as answered:
                await asyncio.sleep(0)
                answered(status)

        await asyncio.gather(*(one() for _ in range(10)))

    asyncio.run(burst())  # ten refusals to requests sent under the same limit: one cut
    assert limit.limit == 8 and limit.cuts == 1
    clock.now += 1
    answer(limit, clock, status)  # sent after the cut: cuts again
    assert limit.limit == 4
    for _ in range(5):
        clock.now += 1
        answer(limit, clock, status)
    assert limit.limit == 1  # never below one request


def test_slow_answers_do_not_raise_the_limit() -> None:
    clock = Ticks()
    limit = AdaptiveLimit(16, initial=4, clock=clock)
    answer(limit, clock, 200, seconds=0.05)
    for _ in range(50):
        answer(limit, clock, 200, seconds=2.0)  # Druva slowing down without refusing
    assert limit.limit == 4


def test_client_errors_and_lost_answers_leave_the_limit_alone() -> None:
    clock = Ticks()
    limit = AdaptiveLimit(16, initial=4, clock=clock)
    for status in (400, 404, 409, 0):
        answer(limit, clock, status)
    assert limit.limit == 4 and limit.cuts == 0


def test_no_more_requests_in_flight_than_the_limit() -> None:
    limit = AdaptiveLimit(3, initial=3)
    in_flight, peak = 0, 0

    async def one() -> None:
        nonlocal in_flight, peak
        async with limit.slot() as answered:
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(0.001)
            in_flight -= 1
            answered(200)

    async def many() -> None:
        await asyncio.gather(*(one() for _ in range(50)))

    asyncio.run(many())
    assert peak == 3


def test_a_ceiling_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        AdaptiveLimit(0)


def test_the_ceiling_is_a_setting_with_sane_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    from provisioning.settings import Settings

    assert Settings().druva_max_concurrency == 16
    monkeypatch.setenv("DRUVA_MAX_CONCURRENCY", "40")
    assert Settings().druva_max_concurrency == 40
    for bad in ("0", "1000", "many"):
        monkeypatch.setenv("DRUVA_MAX_CONCURRENCY", bad)
        with pytest.raises(ValidationError):
            Settings()
