"""When and how long the Druva client waits before trying again (tenacity does the looping).

Druva publishes no rate limits and sends no ``Retry-After``; its own sample sleeps 60 s on a 429, and its
error envelope says "if retryable, retry using exponential backoff". So: honour ``Retry-After`` if it
ever comes, otherwise back off exponentially with jitter, starting higher for throttling than for
faults, capped. Every wait is injectable so tests run in milliseconds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_base, wait_exponential_jitter

from provisioning.adapters.druva.envelope import Throttled
from provisioning.errors import TransientError

log = logging.getLogger("provisioning.adapters.druva")


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6  # in all, the first included
    backoff_seconds: float = 1.0  # first wait after a 5xx, a retryable error or a network fault
    throttle_seconds: float = 5.0  # first wait after a 429 without Retry-After
    max_wait_seconds: float = 60.0
    jitter_seconds: float = 1.0
    max_retry_after_seconds: float = 300.0
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    def retrying(self) -> AsyncRetrying:
        """A fresh tenacity controller for one logical request."""
        return AsyncRetrying(
            stop=stop_after_attempt(self.attempts),
            wait=_DruvaWait(self),
            retry=retry_if_exception_type(TransientError),
            sleep=self.sleep,
            reraise=True,
            before_sleep=lambda state: _log_retry(self.attempts, state),
        )


class _DruvaWait(wait_base):
    def __init__(self, policy: RetryPolicy) -> None:
        self._policy = policy
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
        return backoff(retry_state)


def _log_retry(attempts: int, state: RetryCallState) -> None:
    # The error's message already names the call ("Druva GET /usermanagement/v1/users: HTTP 429").
    error = state.outcome.exception() if state.outcome else None
    wait = state.next_action.sleep if state.next_action else 0.0
    log.warning("%s; retrying in %.1f s (attempt %d of %d)", error, wait, state.attempt_number + 1, attempts)
