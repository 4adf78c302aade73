"""When and how long the Druva client waits before trying again (tenacity does the looping).

Druva publishes no rate limits and sends no ``Retry-After``; its own sample sleeps 60 s on a 429, and its
error envelope says "if retryable, retry using exponential backoff". So: honour ``Retry-After`` if it
ever comes, otherwise back off exponentially with jitter, starting higher for throttling than for
faults, capped. Every wait is injectable so tests run in milliseconds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt
from tenacity.stop import stop_base
from tenacity.wait import wait_base, wait_exponential_jitter

from provisioning.adapters.druva.envelope import CertificateRefused, Throttled
from provisioning.errors import TransientError

log = logging.getLogger("provisioning.adapters.druva")
T = TypeVar("T")


@dataclass(frozen=True)
class DruvaRetryPolicy:
    attempts: int = 6  # in all, the first included
    backoff_seconds: float = 1.0  # first wait after a 5xx, a retryable error or a network fault
    throttle_seconds: float = 5.0  # first wait after a 429 without Retry-After
    max_wait_seconds: float = 60.0
    jitter_seconds: float = 1.0
    max_retry_after_seconds: float = 300.0
    # Network faults (refused, unreachable, no answer) are retried for at most this long per client,
    # that is per run, counted from the first failed request: an unreachable Druva fails the run in
    # about this time instead of every request sitting out its own backoff.
    outage_seconds: float = 30.0
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    def retrying(self, outage: NetworkOutage | None = None) -> AsyncRetrying:
        """A fresh tenacity controller for one logical request."""
        stop = stop_after_attempt(self.attempts)
        return AsyncRetrying(
            stop=stop if outage is None else stop | _OutageOver(outage),
            wait=_DruvaWait(self, outage),
            retry=retry_if_exception(worth_retrying),
            sleep=self.sleep,
            reraise=True,
            before_sleep=lambda state: _log_retry(self.attempts, state),
        )

    async def call(
        self, outage: NetworkOutage | None, attempt: Callable[..., Awaitable[T]], *arguments: Any
    ) -> T:
        """``attempt(*arguments)``, retried as ``retrying`` says. Tenacity takes over only once the first
        attempt failed for a reason worth retrying: nearly every call succeeds at once, and setting up
        its controller cost more CPU than the request itself. What tenacity decides is unchanged: it
        sees that first failure as its own first attempt, and the outage counts from when it started."""
        started = time.monotonic()  # the clock tenacity's own start_time reads
        try:
            return await attempt(*arguments)
        except TransientError as error:
            if not worth_retrying(error):
                raise
            first: TransientError = error
        if outage is not None:
            outage.failed(first, started)
        replayed = False

        async def again(*same: Any) -> T:
            nonlocal replayed
            if not replayed:
                replayed = True
                raise first
            return await attempt(*same)

        result: T = await self.retrying(outage)(again, *arguments)
        return result


def worth_retrying(error: BaseException) -> bool:
    """Transient failures are, except a refused TLS certificate: every attempt would meet it again."""
    return isinstance(error, TransientError) and not isinstance(error, CertificateRefused)


class NetworkOutage:
    """How long Druva has been unreachable, across every request of one client."""

    def __init__(self, budget_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.budget_seconds = budget_seconds
        self._clock = clock
        self._since: float | None = None

    def note(self, state: RetryCallState) -> None:
        """A failed attempt: a network fault starts (or continues) the outage."""
        self.failed(state.outcome.exception() if state.outcome else None, state.start_time)

    def failed(self, error: BaseException | None, started: float) -> None:
        network = isinstance(error, TransientError) and isinstance(error.__cause__, httpx.TransportError)
        if network and self._since is None:
            self._since = started  # the failing request's start, not its timeout

    def reachable(self) -> None:
        self._since = None

    def remaining(self) -> float:
        if self._since is None:
            return self.budget_seconds
        return max(0.0, self.budget_seconds - (self._clock() - self._since))


class _OutageOver(stop_base):
    def __init__(self, outage: NetworkOutage) -> None:
        self._outage = outage

    def __call__(self, retry_state: RetryCallState) -> bool:
        self._outage.note(retry_state)
        return self._outage.remaining() <= 0


class _DruvaWait(wait_base):
    def __init__(self, policy: DruvaRetryPolicy, outage: NetworkOutage | None = None) -> None:
        self._policy = policy
        self._outage = outage
        self._fault = wait_exponential_jitter(
            multiplier=policy.backoff_seconds, max=policy.max_wait_seconds, jitter=policy.jitter_seconds
        )
        self._throttle = wait_exponential_jitter(
            multiplier=policy.throttle_seconds, max=policy.max_wait_seconds, jitter=policy.jitter_seconds
        )

    def __call__(self, retry_state: RetryCallState) -> float:
        error = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(error, TransientError) and error.retry_after is not None:
            return min(error.retry_after, self._policy.max_retry_after_seconds)
        backoff = self._throttle if isinstance(error, Throttled) else self._fault
        wait = backoff(retry_state)
        return wait if self._outage is None else min(wait, self._outage.remaining())


def _log_retry(attempts: int, state: RetryCallState) -> None:
    # The error's message already names the call ("Druva GET /usermanagement/v1/users: HTTP 429").
    error = state.outcome.exception() if state.outcome else None
    wait = state.next_action.sleep if state.next_action else 0.0
    log.warning("%s; retrying in %.1f s (attempt %d of %d)", error, wait, state.attempt_number + 1, attempts)
