"""Keeping one Graph subscription for users and one for groups alive, for weeks, without an operator.

Graph caps user and group subscriptions at 41,760 minutes (under 29 days) and deletes those not renewed
in time; a renewal of a deleted subscription answers 404, and then it is created again. Renewal runs
from the timer, never from the webhook (creating a subscription makes Graph call the webhook back).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from provisioning.domain.directory import Subscription
from provisioning.errors import NotFoundError
from provisioning.service.binding import ensure_bound
from provisioning.service.context import Services

log = logging.getLogger("provisioning")

RESOURCES = ("users", "groups")
LIFETIME = timedelta(minutes=41_760) - timedelta(hours=1)  # a margin for clock skew below Graph's maximum
RENEW_WHEN_LEFT = timedelta(days=7)


@dataclass(frozen=True)
class Endpoint:
    """Where Graph delivers: the webhook URLs, and the secret it echoes back in every notification."""

    notification_url: str
    lifecycle_url: str | None
    client_state: str


def fingerprint(client_state: str) -> str:
    """A one-way fingerprint of a clientState: tells a changed secret apart without keeping it."""
    return hashlib.sha256(b"graph-client-state\x00" + client_state.encode()).hexdigest()[:32]


def _still_current(stored: Subscription, endpoint: Endpoint) -> bool:
    """Delivering where we listen, with the secret we check (no fingerprint: made before we kept one)."""
    return (
        stored.notification_url == endpoint.notification_url
        and stored.client_state_fingerprint == fingerprint(endpoint.client_state)
    )


async def keep_subscriptions(services: Services, endpoint: Endpoint, now: datetime) -> list[str]:
    """Create, renew or re-create the users and groups subscriptions; returns what was done.

    Each resource on its own: one failing (Graph, the state store) is logged as an error naming it and
    the reason, and the other is still kept; then the first failure is raised, so the run shows failed."""
    # Subscriptions are the state's: for another tenant's Graph they would be created and recorded here.
    await ensure_bound(services, "subscription-upkeep")
    done, failures = [], []
    for resource in RESOURCES:
        try:
            done.append(await _keep(services, endpoint, resource, now))
        except Exception as error:
            log.error("subscription for %s not kept: %s: %s", resource, type(error).__name__, error)
            failures.append(error)
    if failures:
        raise failures[0]
    return done


async def _keep(services: Services, endpoint: Endpoint, resource: str, now: datetime) -> str:
    stored = await services.state.get_subscription(resource)
    if stored is not None and _still_current(stored, endpoint):
        if stored.expires_at - now > RENEW_WHEN_LEFT:
            return f"{resource}: valid until {stored.expires_at:%Y-%m-%d %H:%M} UTC"
        try:
            renewed = await services.directory.renew_subscription(stored.id, now + LIFETIME)
        except NotFoundError:
            log.warning("subscription gone, creating it again", extra={"resource": resource})
        else:
            kept = replace(renewed, client_state_fingerprint=stored.client_state_fingerprint)
            await services.state.put_subscription(kept)
            return f"{resource}: renewed until {renewed.expires_at:%Y-%m-%d %H:%M} UTC"
    elif stored is not None and stored.notification_url == endpoint.notification_url:
        log.warning("the clientState changed: re-creating the subscription", extra={"resource": resource})
        created = await _create(services, endpoint, resource, now, replacing=stored)
        return f"{resource}: created {created.id} with the new clientState"
    created = await _create(services, endpoint, resource, now, replacing=stored)
    return f"{resource}: created {created.id}"


async def _create(
    services: Services, endpoint: Endpoint, resource: str, now: datetime, replacing: Subscription | None
) -> Subscription:
    # Drop our own stale subscriptions for this resource first: Graph allows 100 per app and tenant,
    # and two live ones would deliver every change twice.
    for existing in await services.directory.list_subscriptions():
        ours = existing.notification_url == endpoint.notification_url or (
            replacing and existing.id == replacing.id
        )
        if ours and existing.resource.strip("/").lower() == resource:
            with contextlib.suppress(NotFoundError):  # already gone is what we wanted
                await services.directory.delete_subscription(existing.id)
    created = await services.directory.create_subscription(
        resource, endpoint.notification_url, endpoint.lifecycle_url, endpoint.client_state, now + LIFETIME
    )
    created = replace(created, client_state_fingerprint=fingerprint(endpoint.client_state))
    await services.state.put_subscription(created)
    return created


async def on_lifecycle_event(
    services: Services, endpoint: Endpoint, subscription_id: str, event: str, now: datetime
) -> str:
    """React to a lifecycle notification. The delta pass that covers any gap is enqueued by the webhook."""
    resource = await _resource_of(services, subscription_id)
    if resource is None:
        return f"{event}: subscription {subscription_id} is not one of ours; ignored"
    if event == "reauthorizationRequired":
        try:
            await services.directory.reauthorize_subscription(subscription_id)
            return f"{resource}: reauthorized"
        except NotFoundError:
            pass
    if event in {"reauthorizationRequired", "subscriptionRemoved"}:
        stored = await services.state.get_subscription(resource)
        created = await _create(services, endpoint, resource, now, replacing=stored)
        return f"{resource}: created {created.id} after {event}"
    return f"{resource}: {event}: the delta pass covers the gap"


async def _resource_of(services: Services, subscription_id: str) -> str | None:
    for resource in RESOURCES:
        stored = await services.state.get_subscription(resource)
        if stored is not None and stored.id == subscription_id:
            return resource
    return None
