"""``DruvaRetryPolicy.call``: tenacity only after a first failure, deciding exactly as if it had run the
first attempt itself."""

from __future__ import annotations

import httpx
import pytest

from provisioning.adapters.druva.retry import DruvaRetryPolicy, NetworkOutage
from provisioning.errors import InvalidRequestError, TransientError

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def no_sleep(seconds: float) -> None:
    return None


def policy(attempts: int) -> DruvaRetryPolicy:
    return DruvaRetryPolicy(attempts=attempts, jitter_seconds=0, sleep=no_sleep)


class Flaky:
    """Fails ``failures`` times with ``error``, then answers "done"."""

    def __init__(self, failures: int, error: Exception) -> None:
        self.failures, self.error, self.calls = failures, error, 0

    async def __call__(self, value: str) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return value


@pytest.mark.parametrize(
    ("attempts", "failures", "calls", "succeeds"),
    [(1, 0, 1, True), (1, 1, 1, False), (3, 2, 3, True), (3, 3, 3, False), (6, 9, 6, False)],
)
async def test_the_first_failure_counts_as_the_first_attempt(
    attempts: int, failures: int, calls: int, succeeds: bool
) -> None:
    attempt = Flaky(failures, TransientError("HTTP 503"))
    if succeeds:
        assert await policy(attempts).call(None, attempt, "done") == "done"
    else:
        with pytest.raises(TransientError, match="HTTP 503"):
            await policy(attempts).call(None, attempt, "done")
    assert attempt.calls == calls


async def test_an_error_not_worth_retrying_is_raised_at_once() -> None:
    attempt = Flaky(1, InvalidRequestError("HTTP 400"))
    with pytest.raises(InvalidRequestError):
        await policy(6).call(None, attempt, "done")
    assert attempt.calls == 1


async def test_a_first_network_failure_starts_the_outage() -> None:
    network = TransientError("could not connect")
    network.__cause__ = httpx.ConnectError("refused")
    outage = NetworkOutage(30.0, clock=lambda: 1_000_000.0)  # far later than the failure: budget spent
    attempt = Flaky(9, network)
    with pytest.raises(TransientError):
        await policy(6).call(outage, attempt, "done")
    assert attempt.calls == 1  # the budget was gone before a second attempt
