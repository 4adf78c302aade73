"""A simulated clock for the soak: real speed while work runs, a jump forward when nothing is due.

Everything that reads time in the soak reads this clock: the product through its ``Clock`` port (and the
``sleep`` its retry policies spend time with), the Service Bus stand-in (seconds), the Graph simulator
(subscription expiry, delta links) and the Druva simulator (token lifetime). Between jumps it advances
with ``time.perf_counter``, so what the product does in a few real milliseconds takes as long in
simulated time and latencies measured on it are honest; the driver jumps it only when nothing is due
before the next timer, scheduled message or scenario event. It never goes backwards.
"""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import datetime, timedelta


class SimClock:
    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("the simulated clock needs an aware UTC start")
        # The moment and the perf_counter reading it was taken at, replaced as one tuple: a reader
        # needs no lock (it is read a couple of million times in a 90-day soak); jumps take one.
        self._origin = (start, time.perf_counter())
        self._lock = threading.Lock()
        self.jumped = timedelta(0)  # simulated time skipped by jumps (the rest ran at real speed)

    def now(self) -> datetime:
        base, anchor = self._origin
        return base + timedelta(seconds=time.perf_counter() - anchor)

    def timestamp(self) -> float:
        return self.now().timestamp()

    def advance_to(self, moment: datetime) -> None:
        """Jump to ``moment`` if it is ahead; a moment already passed changes nothing."""
        with self._lock:
            # The new anchor is the reading ``current`` is computed at: a reader between the two would
            # otherwise see the old timeline run past ``current`` and then the clock step back.
            anchor = time.perf_counter()
            base, old = self._origin
            current = base + timedelta(seconds=anchor - old)
            if moment > current:
                self.jumped += moment - current
                self._origin = (moment, anchor)

    def advance(self, seconds: float) -> None:
        self.advance_to(self.now() + timedelta(seconds=seconds))

    async def sleep(self, seconds: float) -> None:
        """What a retry back-off spends: simulated time, at once (the soak has one worker at a time)."""
        self.advance(max(0.0, seconds))
        await asyncio.sleep(0)
