"""Change subscriptions: the validation handshake, renewal, recreation, reauthorization, delivery."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from provisioning.adapters.graph import GraphDirectory
from provisioning.domain.directory import Subscription
from provisioning.errors import InvalidRequestError, NotFoundError
from simulators.graph import GraphSimulator
from simulators.tenants import Tenant

from .conftest import Receiver

pytestmark = pytest.mark.anyio
SECRET = "client-state-secret"


def in_days(days: float) -> datetime:
    return datetime.now(UTC) + timedelta(days=days)


async def subscribe(
    directory: GraphDirectory, receiver: Receiver, resource: str = "users", days: float = 2
) -> Subscription:
    return await directory.create_subscription(
        resource, receiver.url, receiver.lifecycle_url, SECRET, in_days(days)
    )


async def test_create_validates_both_urls_and_lists_the_subscription(
    directory: GraphDirectory, simulator: GraphSimulator, receiver: Receiver
) -> None:
    created = await subscribe(directory, receiver)

    assert created.resource == "users" and created.notification_url == receiver.url
    assert created.lifecycle_url == receiver.lifecycle_url
    assert abs(created.expires_at - in_days(2)) < timedelta(minutes=1)
    assert len(receiver.validations) == 2  # notificationUrl and lifecycleNotificationUrl
    assert receiver.validations[0].startswith("Validation: Testing client application reachability")
    assert await directory.list_subscriptions() == [created]
    assert simulator.subscriptions()[0]["changeType"] == "updated,deleted"
    assert simulator.subscriptions()[0]["clientState"] == SECRET


async def test_an_endpoint_that_fails_the_handshake_gets_no_subscription(
    directory: GraphDirectory, simulator: GraphSimulator
) -> None:
    wrong = Receiver(echo=False)
    with wrong.server, pytest.raises(InvalidRequestError) as raised:
        await subscribe(directory, wrong)

    assert raised.value.status == 400 and "validation request failed" in str(raised.value)
    assert wrong.validations and simulator.subscriptions() == []


async def test_an_endpoint_slower_than_the_validation_timeout_gets_no_subscription(
    directory: GraphDirectory, simulator: GraphSimulator
) -> None:
    simulator.webhooks.validation_timeout = 0.2
    slow = Receiver(delay=1.0)
    started = time.monotonic()
    with slow.server, pytest.raises(InvalidRequestError, match="validation request failed"):
        await subscribe(directory, slow)

    assert time.monotonic() - started < 0.8  # refused at the timeout, not when the endpoint gave up
    assert slow.validations and simulator.subscriptions() == []


async def test_an_expiry_beyond_graphs_maximum_is_capped(
    directory: GraphDirectory, receiver: Receiver
) -> None:
    created = await subscribe(directory, receiver, days=60)

    assert created.expires_at <= datetime.now(UTC) + timedelta(minutes=41_760)
    assert created.expires_at >= datetime.now(UTC) + timedelta(minutes=41_760 - 15)


async def test_renew_moves_the_expiry_and_a_dropped_subscription_is_not_found(
    directory: GraphDirectory, simulator: GraphSimulator, receiver: Receiver
) -> None:
    created = await subscribe(directory, receiver)

    renewed = await directory.renew_subscription(created.id, in_days(20))
    assert renewed.id == created.id and renewed.expires_at > created.expires_at + timedelta(days=17)

    simulator.expire_subscription(created.id)
    with pytest.raises(NotFoundError):
        await directory.renew_subscription(created.id, in_days(20))
    recreated = await subscribe(directory, receiver)
    assert [s.id for s in await directory.list_subscriptions()] == [recreated.id]


async def test_reauthorization_lifecycle_event_and_reauthorize(
    directory: GraphDirectory, simulator: GraphSimulator, receiver: Receiver, tenant: Tenant
) -> None:
    created = await subscribe(directory, receiver)

    simulator.require_reauthorization(created.id)
    simulator.update_user("alice@contoso.com", department="Audit")  # paused: this change is not sent
    assert simulator.flush_deliveries()
    events = [n for n in receiver.notifications if "lifecycleEvent" in n]
    assert events == [
        {
            "subscriptionId": created.id,
            "subscriptionExpirationDateTime": simulator.subscriptions()[0]["expirationDateTime"],
            "tenantId": events[0]["tenantId"],
            "clientState": SECRET,
            "lifecycleEvent": "reauthorizationRequired",
        }
    ]
    assert not [n for n in receiver.notifications if "changeType" in n]

    await directory.reauthorize_subscription(created.id)
    simulator.update_user("bob@contoso.com", department="Audit")
    assert simulator.flush_deliveries()
    assert [n["resource"] for n in receiver.notifications if "changeType" in n] == [
        f"Users/{tenant.user_id('bob')}"
    ]
    with pytest.raises(NotFoundError):
        await directory.reauthorize_subscription("00000000-0000-4000-8000-000000000003")


async def test_delete_removes_it_and_deleting_again_is_harmless(
    directory: GraphDirectory, simulator: GraphSimulator, receiver: Receiver
) -> None:
    created = await subscribe(directory, receiver)

    await directory.delete_subscription(created.id)
    await directory.delete_subscription(created.id)

    assert await directory.list_subscriptions() == []
    assert simulator.counts["delete subscription"] == 2


async def test_changes_are_delivered_as_basic_notifications_with_the_client_state(
    directory: GraphDirectory, simulator: GraphSimulator, receiver: Receiver, tenant: Tenant
) -> None:
    users = await subscribe(directory, receiver, "users")
    groups = await subscribe(directory, receiver, "groups")
    finance = tenant.group_id("US Finance")

    simulator.update_user("alice@contoso.com", officeLocation="Chicago")
    simulator.delete_user("frank@contoso.com", permanent=True)
    simulator.add_member(finance, "carol@contoso.com")
    assert simulator.flush_deliveries()

    got = {(n["subscriptionId"], n["changeType"], n["resource"]) for n in receiver.notifications}
    assert got == {
        (users.id, "updated", f"Users/{tenant.user_id('alice')}"),
        (users.id, "deleted", f"Users/{tenant.user_id('frank')}"),
        (groups.id, "updated", f"Groups/{finance}"),
    }
    assert {n["clientState"] for n in receiver.notifications} == {SECRET}
    membership = next(n for n in receiver.notifications if n["resource"].startswith("Groups/"))
    assert membership["resourceData"]["members@delta"] == [{"id": tenant.user_id("carol")}]
    assert membership["resourceData"]["@odata.type"] == "#Microsoft.Graph.Group"


async def test_held_deliveries_arrive_together_on_release_and_dropped_ones_never(
    directory: GraphDirectory, simulator: GraphSimulator, receiver: Receiver
) -> None:
    await subscribe(directory, receiver, "users")

    simulator.set_delivery_mode("hold")
    simulator.update_user("alice@contoso.com", department="Audit")
    simulator.update_user("bob@contoso.com", department="Audit")
    assert simulator.flush_deliveries() and receiver.notifications == []
    simulator.set_delivery_mode("deliver")
    assert simulator.flush_deliveries()
    assert len(receiver.notifications) == 2 and receiver.posts == 1  # one POST, a value of two

    simulator.set_delivery_mode("drop")
    simulator.update_user("carol@contoso.com", department="Audit")
    assert simulator.flush_deliveries()
    assert len(receiver.notifications) == 2 and simulator.webhooks.dropped == 1
