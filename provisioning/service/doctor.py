"""Pre-flight checks before anyone turns automatic import on."""

from __future__ import annotations

from dataclasses import dataclass

from provisioning.config import ProvisioningConfig
from provisioning.domain.directory import Probe
from provisioning.service.context import Services
from provisioning.service.policy import catalog_problems, resolve_groups

KEY_MANAGEMENT = (
    "Druva requires KMS or BYOK to be enabled in the inSync Admin Console for automatic import of Entra "
    "users; the API cannot tell whether it is. When it is missing, creating users fails: the sync counts "
    "those accounts as failed and names KMS/BYOK in the error. Check Druva Cloud Settings → key management."
)


@dataclass(frozen=True)
class Finding:
    area: str  # Graph | Druva | Mappings
    probe: Probe


async def diagnose(config: ProvisioningConfig, services: Services) -> list[Finding]:
    findings = [Finding("Graph", p) for p in await services.directory.check_access()]
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
