"""From the admin's configuration to the planner's policy: every name resolved, or a clear refusal."""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from provisioning.config import ConfigError, ProvisioningConfig, require_resolvable
from provisioning.domain.groups import EntraGroup
from provisioning.domain.mappings import Policy
from provisioning.errors import AmbiguousGroup, GroupNotFound
from provisioning.ports import Directory, Druva


async def resolve_groups(
    config: ProvisioningConfig, directory: Directory
) -> tuple[dict[str, EntraGroup], list[str]]:
    """Each group reference resolved to a group, and the problems of those that could not be."""
    groups: dict[str, EntraGroup] = {}
    problems: list[str] = []
    found = await directory.find_groups(config.group_refs) if config.group_refs else {}
    for ref, answer in found.items():
        if isinstance(answer, EntraGroup):
            groups[ref] = answer
        elif isinstance(answer, (GroupNotFound, AmbiguousGroup)):
            problems.append(f"group {ref!r}: {answer}")
        else:
            raise answer
    try:
        require_resolvable(tuple(groups), groups)
    except ConfigError as unsupported:
        problems.extend(unsupported.problems)
    return groups, problems


async def catalog_problems(config: ProvisioningConfig, druva: Druva) -> list[str]:
    """Profiles and storages the mappings name that Druva does not have, with close matches. Asked of
    Druva as it is now, not of a catalog the client read earlier: a profile just created or renamed
    for a new mappings file is found at once."""
    await druva.refresh_catalog()
    profiles, storages = await druva.profiles(), await druva.storages()
    problems = []
    for mapping in config.mappings:
        for kind, name, known in (
            ("profile", mapping.target.profile, profiles),
            ("storage", mapping.target.storage, storages),
        ):
            if name not in known:
                problems.append(f'mapping "{mapping.name}": {unknown(kind, name, known)}')
    return problems


def unknown(kind: str, name: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = (
        f"; close matches: {', '.join(close)}"
        if close
        else f"; Druva has: {', '.join(sorted(known)) or 'none'}"
    )
    return f"Druva has no {kind} named {name!r}{hint}"


async def resolve_policy(config: ProvisioningConfig, directory: Directory, druva: Druva) -> Policy:
    """The policy a run uses. Raises ``ConfigError`` listing every unresolvable name at once."""
    groups, problems = await resolve_groups(config, directory)
    problems += await catalog_problems(config, druva)
    if problems:
        raise ConfigError(problems)
    return config.to_policy(groups)
