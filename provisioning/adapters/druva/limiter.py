"""How many requests the Druva client keeps in flight: additive increase, multiplicative decrease.

Druva publishes no rate limit, and one that exists shows only as 429s (and, overloaded, as 5xx or slow
answers). So the client probes: every window of prompt successful answers raises the limit by one
request; a 429 or a 5xx halves it, once per window (answers to requests sent before the cut do not cut
again). The limit stays between 1 and ``ceiling`` (``DRUVA_MAX_CONCURRENCY``). An answer is prompt when
it took at most twice the fastest answer seen plus a small allowance: a Druva that slows down without
refusing stops the growth before it starts refusing. Waiting out ``Retry-After`` is the retry policy's
job; the throttled request sleeps outside its slot, so the other requests go on at the lower limit.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

PROMPT_ALLOWANCE_SECONDS = 0.25


class AdaptiveLimit:
    def __init__(
        self, ceiling: int, *, initial: int = 4, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if ceiling < 1:
            raise ValueError(f"the concurrency ceiling must be at least 1, not {ceiling}")
        self.ceiling = ceiling
        self._limit = float(min(initial, ceiling))
        # A semaphore with as many permits as the limit; a cut is paid back by permits not returned
        # (``_owed``), so nobody waits on a condition that wakes every waiter at each answer.
        self._permits = asyncio.Semaphore(int(self._limit))
        self._owed = 0
        self._clock = clock
        self._last_cut = float("-inf")
        self._fastest: float | None = None
        self.peak = int(self._limit)  # the highest limit reached (for the benchmarks' figures)
        self.cuts = 0

    @property
    def limit(self) -> int:
        return int(self._limit)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[Callable[[int], None]]:
        """Hold one request slot; call the yielded function with the HTTP status (0: no answer)."""
        await self._permits.acquire()
        sent = self._clock()

        def answered(status: int) -> None:
            self._record(status, sent, self._clock() - sent)

        try:
            yield answered
        finally:
            if self._owed:
                self._owed -= 1  # keep this permit: the limit was cut while the request was out
            else:
                self._permits.release()

    def _resize(self, limit: float) -> None:
        change = int(limit) - int(self._limit)
        self._limit = limit
        if change < 0:
            self._owed += -change
        for _ in range(change):
            if self._owed:
                self._owed -= 1
            else:
                self._permits.release()

    def _record(self, status: int, sent: float, seconds: float) -> None:
        if status == 429 or status >= 500:
            if sent > self._last_cut:  # one cut per window: later answers to earlier requests don't count
                self._resize(max(1.0, self._limit / 2))
                self._last_cut = self._clock()
                self.cuts += 1
            return
        if not status:
            return
        self._fastest = seconds if self._fastest is None else min(self._fastest, seconds)
        if seconds <= 2 * self._fastest + PROMPT_ALLOWANCE_SECONDS:
            # +1 per limit's worth of prompt answers: one more request per round trip.
            self._resize(min(float(self.ceiling), self._limit + 1 / self._limit))
            self.peak = max(self.peak, int(self._limit))
