"""The worker: hints become passes, busy cursors become one follow-up, passing failures wait."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from provisioning.domain.work import LifecycleEvent, Reconcile, WorkMessage
from provisioning.errors import TransientError
from provisioning.service.context import Run, Services
from provisioning.service.notifications import RECONCILE, delta_hint
from provisioning.service.subscriptions import Endpoint, keep_subscriptions
from provisioning.service.worker import PoisonMessage, handle_work
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
