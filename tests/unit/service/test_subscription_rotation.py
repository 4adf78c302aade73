"""A rotated clientState moves the subscriptions to the new secret; only a fingerprint is ever stored."""

from __future__ import annotations

import asyncio
import dataclasses
import json

from provisioning.service.context import Services
from provisioning.service.notifications import triage
from provisioning.service.subscriptions import Endpoint, fingerprint, keep_subscriptions
from tests.fakes import FakeDirectory, FakeDruva, FixedClock, InMemoryState

OLD = Endpoint("https://app.example/api/graph/notifications", None, "old-secret-" + "x" * 20)
NEW = dataclasses.replace(OLD, client_state="new-secret-" + "y" * 20)


def services() -> tuple[Services, FakeDirectory, FixedClock]:
    directory, clock = FakeDirectory(), FixedClock()
    return Services(directory, FakeDruva(), InMemoryState(), clock), directory, clock


def keep(svc: Services, endpoint: Endpoint, clock: FixedClock) -> list[str]:
    return asyncio.run(keep_subscriptions(svc, endpoint, clock.now()))


def test_the_fingerprint_is_a_hash_not_the_secret() -> None:
    print_ = fingerprint(OLD.client_state)
    assert OLD.client_state not in print_ and len(print_) == 32
    assert print_ == fingerprint(OLD.client_state) != fingerprint(NEW.client_state)


def test_subscriptions_remember_the_fingerprint_of_their_client_state() -> None:
    svc, _directory, clock = services()
    keep(svc, OLD, clock)
    for resource in ("users", "groups"):
        stored = asyncio.run(svc.state.get_subscription(resource))
        assert stored is not None and stored.client_state_fingerprint == fingerprint(OLD.client_state)
        assert OLD.client_state not in repr(stored)


def test_a_new_secret_recreates_both_subscriptions_with_it_and_the_old_ones_are_gone() -> None:
    svc, directory, clock = services()
    keep(svc, OLD, clock)
    old_ids = set(directory.subscriptions)

    done = keep(svc, NEW, clock)

    assert all("with the new clientState" in line for line in done)
    assert not old_ids & set(directory.subscriptions) and len(directory.subscriptions) == 2
    assert {directory.client_states[i] for i in directory.subscriptions} == {NEW.client_state}
    assert all("valid until" in line for line in keep(svc, NEW, clock))  # the second run writes nothing
    assert directory.calls["create_subscription"] == 4


def test_a_subscription_stored_without_a_fingerprint_is_moved_once() -> None:
    # What a deployment whose clientState was an unresolved Key Vault reference left behind.
    svc, _directory, clock = services()
    keep(svc, OLD, clock)
    for resource in ("users", "groups"):
        stored = asyncio.run(svc.state.get_subscription(resource))
        assert stored is not None
        asyncio.run(svc.state.put_subscription(dataclasses.replace(stored, client_state_fingerprint=None)))

    assert all("created" in line for line in keep(svc, OLD, clock))
    assert all("valid until" in line for line in keep(svc, OLD, clock))


def test_renewal_keeps_the_fingerprint() -> None:
    svc, _directory, clock = services()
    keep(svc, OLD, clock)
    clock.advance(25 * 86_400)
    assert all("renewed" in line for line in keep(svc, OLD, clock))
    stored = asyncio.run(svc.state.get_subscription("users"))
    assert stored is not None and stored.client_state_fingerprint == fingerprint(OLD.client_state)


def test_during_a_rotation_both_secrets_are_accepted_and_no_other() -> None:
    def notification(state: str) -> bytes:
        item = {
            "subscriptionId": "s",
            "clientState": state,
            "changeType": "updated",
            "resource": "Users/1",
            "resourceData": {"id": "1"},
            "tenantId": "t",
            "subscriptionExpirationDateTime": "2030-01-01T00:00:00Z",
        }
        return json.dumps({"value": [item]}).encode()

    accepted = [NEW.client_state, OLD.client_state]
    for state in accepted:
        assert triage(notification(state), accepted, None, None, FixedClock().now()).accepted
    assert not triage(notification("guessed"), accepted, None, None, FixedClock().now()).accepted
