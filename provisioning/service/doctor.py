"""Pre-flight checks before anyone turns automatic import on."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from provisioning.config import ProvisioningConfig
from provisioning.domain.directory import SUBSCRIPTION_PERMISSIONS, Probe
from provisioning.errors import REFUSAL_ADVICE, AuthError, ProvisioningError, RefusalKind
from provisioning.service.context import Services
from provisioning.service.policy import catalog_problems, resolve_groups
from provisioning.service.subscriptions import RESOURCES, Endpoint

TRIAL_LIFETIME = timedelta(minutes=45)  # Graph's shortest; the trial is deleted at once anyway

KEY_MANAGEMENT = (
    "Druva requires KMS or BYOK to be enabled for automatic import of Entra users, and its API cannot tell "
    "whether it is. When it is not, creates are refused and held, and status names them "
    f"(druva_refused, {RefusalKind.KEY_MANAGEMENT.value}). "
    f"To do: {REFUSAL_ADVICE[RefusalKind.KEY_MANAGEMENT]}"
)


@dataclass(frozen=True)
class Finding:
    area: str  # Graph | Druva | Mappings
    probe: Probe


async def diagnose(
    config: ProvisioningConfig, services: Services, endpoint: Endpoint | None = None
) -> list[Finding]:
    """``endpoint``: where the deployed app listens, for a trial subscription when the token's roles
    cannot be read; without it and without a roles claim the subscription permissions are not checked."""
    findings = [Finding("Graph", p) for p in await services.directory.check_access()]
    findings += [Finding("Graph", p) for p in await subscription_permissions(services, endpoint)]
    druva_probes = await services.druva.check_access()
    findings += [Finding("Druva", p) for p in druva_probes]
    groups, problems = await resolve_groups(config, services.directory)
    for ref, group in groups.items():
        if group.supported:
            findings.append(Finding("Mappings", Probe(f"group {ref}", True, group.describe())))
    findings += [Finding("Mappings", Probe("group", False, p)) for p in problems]
    if all(p.ok for p in druva_probes):
        catalog = await catalog_problems(config, services.druva)
        findings += [Finding("Mappings", Probe("profile/storage", False, p)) for p in catalog]
        if not catalog:
            names = sorted({f"{m.target.profile} / {m.target.storage}" for m in config.mappings})
            findings.append(Finding("Mappings", Probe("profiles and storages", True, "; ".join(names))))
    return findings


async def subscription_permissions(services: Services, endpoint: Endpoint | None) -> list[Probe]:
    """For each resource the app subscribes to: does the app hold the permission Graph requires?"""
    roles = await services.directory.app_roles()
    probes = []
    for resource in RESOURCES:
        needed = SUBSCRIPTION_PERMISSIONS[resource]
        check = f"{resource} subscriptions allowed ({needed[0]})"
        if roles is not None:
            held = sorted(roles.intersection(needed))
            detail = f"the token grants {held[0]}" if held else f"missing application permission {needed[0]}"
            probes.append(Probe(check, bool(held), detail))
        elif endpoint is not None:
            probes.append(Probe(check, *await _trial_subscription(services, endpoint, resource)))
        else:
            detail = "not checked: the token has no roles claim and GRAPH_NOTIFICATION_URL is not set"
            probes.append(Probe(check, True, f"{detail} (the command line needs no subscriptions)"))
    return probes


async def _trial_subscription(services: Services, endpoint: Endpoint, resource: str) -> tuple[bool, str]:
    """Create a subscription and delete it again: the one check that works with any token."""
    needed = SUBSCRIPTION_PERMISSIONS[resource][0]
    expires = datetime.now(UTC) + TRIAL_LIFETIME
    try:
        trial = await services.directory.create_subscription(
            resource, endpoint.notification_url, None, endpoint.client_state, expires
        )
    except AuthError:
        return False, f"missing application permission {needed} (Graph refused a trial subscription)"
    except ProvisioningError as error:
        return False, f"could not tell: a trial subscription failed for another reason: {error}"
    with contextlib.suppress(ProvisioningError):  # Graph drops it within the hour anyway
        await services.directory.delete_subscription(trial.id)
    return True, "a trial subscription was created and deleted again"
