"""Subscriptions kept alive for weeks: created once, renewed before Graph drops them, re-created after."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from provisioning.service.context import Services
from provisioning.service.subscriptions import LIFETIME, Endpoint, keep_subscriptions, on_lifecycle_event
from tests.fakes import FakeDirectory, FakeDruva, FixedClock, InMemoryState

ENDPOINT = Endpoint(
    "https://app.example/api/graph/notifications", "https://app.example/api/graph/lifecycle", "s3cret"
)


def services() -> tuple[Services, FakeDirectory, FixedClock]:
    directory, clock = FakeDirectory(), FixedClock()
    return Services(directory, FakeDruva(), InMemoryState(), clock), directory, clock


def keep(svc: Services, clock: FixedClock) -> list[str]:
    return asyncio.run(keep_subscriptions(svc, ENDPOINT, clock.now()))


def test_first_run_creates_one_subscription_per_resource() -> None:
    svc, directory, clock = services()
    done = keep(svc, clock)
    assert [line.split(":")[0] for line in done] == ["users", "groups"]
    assert all("created" in line for line in done)
    assert sorted(s.resource for s in directory.subscriptions.values()) == ["groups", "users"]
    stored = asyncio.run(svc.state.get_subscription("users"))
    assert stored is not None and stored.expires_at == clock.now() + LIFETIME
    assert timedelta(minutes=41_760) > LIFETIME


def test_valid_subscriptions_are_left_alone_then_renewed_in_time() -> None:
    svc, directory, clock = services()
    keep(svc, clock)
    assert all("valid until" in line for line in keep(svc, clock))
    clock.advance((LIFETIME - timedelta(days=6)).total_seconds())
    assert all("renewed" in line for line in keep(svc, clock))
    assert directory.calls["create_subscription"] == 2 and directory.calls["renew_subscription"] == 2


def test_a_subscription_graph_dropped_is_created_again() -> None:
    svc, directory, clock = services()
    keep(svc, clock)
    directory.subscriptions.clear()  # Graph deleted them: not renewed in time
    clock.advance((LIFETIME - timedelta(days=1)).total_seconds())
    assert all("created" in line for line in keep(svc, clock))
    assert len(directory.subscriptions) == 2


def test_a_new_webhook_url_replaces_our_old_subscriptions() -> None:
    svc, directory, clock = services()
    keep(svc, clock)
    moved = Endpoint("https://new.example/api/graph/notifications", None, "s3cret")
    asyncio.run(keep_subscriptions(svc, moved, clock.now()))
    assert {s.notification_url for s in directory.subscriptions.values()} == {moved.notification_url}
    assert len(directory.subscriptions) == 2


def test_reauthorization_required_reauthorizes_or_recreates() -> None:
    svc, directory, clock = services()
    keep(svc, clock)
    users = asyncio.run(svc.state.get_subscription("users"))
    assert users is not None
    said = asyncio.run(on_lifecycle_event(svc, ENDPOINT, users.id, "reauthorizationRequired", clock.now()))
    assert said == "users: reauthorized"
    del directory.subscriptions[users.id]
    said = asyncio.run(on_lifecycle_event(svc, ENDPOINT, users.id, "reauthorizationRequired", clock.now()))
    assert said.startswith("users: created")
    assert asyncio.run(on_lifecycle_event(svc, ENDPOINT, "someone-elses", "missed", clock.now())).endswith(
        "ignored"
    )
