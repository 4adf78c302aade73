"""The worker: hints become passes, busy cursors become one follow-up, passing failures wait."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from provisioning.domain.work import (
    FOLLOW_UP_SECONDS,
    RETRY_SECONDS,
    LifecycleEvent,
    Reconcile,
    WorkMessage,
    delta_hint,
    rescheduled,
)
from provisioning.errors import TransientError
from provisioning.service.context import Run, Services
from provisioning.service.dispatch import PoisonMessage, handle_work
from provisioning.service.notifications import RECONCILE
from provisioning.service.subscriptions import Endpoint, keep_subscriptions
from tests.queue_fake import InProcessQueue
from tests.unit.service.test_sync import World

ENDPOINT = Endpoint("https://app.example/api/graph/notifications", None, "s3cret")


def handle(world: World, queue: InProcessQueue, message: WorkMessage) -> str:
    services = Services(world.directory, world.druva, world.state, world.clock, queue)
    return asyncio.run(handle_work(message, Run(services, world.policy), ENDPOINT))


def test_a_hint_runs_a_pass() -> None:
    world, queue = World(), InProcessQueue()
    said = handle(world, queue, delta_hint(world.clock.now(), "test"))
    assert said.startswith("full pass") and "created 6" in said
    assert world.druva.by_email("fay@contoso.com") is not None
    assert queue.pending() == []


def test_a_hint_during_a_pass_schedules_one_follow_up() -> None:
    world, queue = World(), InProcessQueue()
    asyncio.run(world.state.claim_cursor("users", "other-pass", world.clock.now(), 600))
    for _ in range(3):
        said = handle(world, queue, delta_hint(world.clock.now(), "test"))
    assert said.endswith("follow-up scheduled")
    assert len(queue.pending()) == 1
    not_before = queue.pending()[0].not_before
    assert not_before is not None and not_before > world.clock.now()


def test_a_passing_failure_is_retried_later_not_hot_looped() -> None:
    world, queue = World(), InProcessQueue()

    async def broken(*args: object, **kwargs: object) -> AsyncIterator[None]:
        raise TransientError("Graph answered 503", retry_after=12)
        yield  # an async generator, like the port's

    world.directory.read_memberships = broken  # type: ignore[method-assign,assignment]
    said = handle(world, queue, WorkMessage(Reconcile("nightly"), message_id="nightly"))
    assert "retry in 12s" in said
    (retry,) = queue.pending()
    assert retry.kind == RECONCILE and retry.not_before is not None


def test_lifecycle_work_reacts_on_the_subscription() -> None:
    world, queue = World(), InProcessQueue()
    services = Services(world.directory, world.druva, world.state, world.clock)
    asyncio.run(keep_subscriptions(services, ENDPOINT, world.clock.now()))
    users = asyncio.run(world.state.get_subscription("users"))
    assert users is not None
    message = WorkMessage(LifecycleEvent(users.id, "reauthorizationRequired"), "m1")
    assert handle(world, queue, message) == "users: reauthorized"


def test_lifecycle_work_without_the_endpoint_settings_is_poison() -> None:
    world, queue = World(), InProcessQueue()
    services = Services(world.directory, world.druva, world.state, world.clock, queue)
    message = WorkMessage(LifecycleEvent("s-1", "missed"), "m2")
    with pytest.raises(PoisonMessage):
        asyncio.run(handle_work(message, Run(services, world.policy), None))


def test_passes_failing_during_an_outage_share_their_retries() -> None:
    """Every hint that fails while a service is down asks for a retry; those failing within one retry
    slot share one message, so an outage does not grow a retry chain per hint."""
    start = datetime(2026, 11, 26, 12, 0, 3, tzinfo=UTC)
    failed = [start + timedelta(seconds=s) for s in (0, 10, 40, 56)]
    retries = [rescheduled(delta_hint(at, "timer"), at, RETRY_SECONDS) for at in failed]
    assert len({r.message_id for r in retries}) == 1
    for at, retry in zip(failed, retries, strict=True):
        assert retry.not_before is not None and retry.not_before >= at + timedelta(seconds=RETRY_SECONDS)
    # the retry itself failing asks for the next slot, not the one it ran in
    ran = retries[0].not_before
    assert ran is not None
    again = rescheduled(retries[0], ran, RETRY_SECONDS)
    assert again.message_id != retries[0].message_id and again.not_before == ran + timedelta(seconds=60)
    # a Retry-After is honoured in full, and a short one is not stretched to the minute
    for delay in (120, 25):
        later = rescheduled(delta_hint(start, "timer"), start, delay)
        assert later.not_before is not None
        assert timedelta(seconds=delay) <= later.not_before - start < timedelta(seconds=2 * delay)


def test_a_busy_cursor_still_waits_for_the_hint_window_only() -> None:
    now = datetime(2026, 11, 26, 12, 0, 3, 500_000, tzinfo=UTC)
    follow = rescheduled(delta_hint(now, "test"), now, FOLLOW_UP_SECONDS)
    assert follow.not_before is not None and follow.not_before - now <= timedelta(
        seconds=2 * FOLLOW_UP_SECONDS
    )
