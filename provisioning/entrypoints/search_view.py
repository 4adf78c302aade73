"""How ``search`` shows what it found: one line per account, then the import command (or JSON)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from rich.console import Console

from provisioning.domain.decisions import Action, Activate, Adopt, Create
from provisioning.redaction import printable
from provisioning.service.search import MAX_LIMIT, Found, SearchResult, kind_of

ENABLED = {True: "enabled", False: "disabled", None: "enabled unknown"}


def import_command(config: Path, upns: list[str]) -> str:
    """The exact command that imports ``upns``, quoted for a POSIX shell (a UPN may hold a ``'``)."""
    return shlex.join(["python", "-m", "provisioning", "import", "--config", str(config), *upns])


def describe(found: Found) -> str:
    account, decision = found.account, found.decision
    name = f" ({account.display_name})" if account.display_name else ""
    parts = [
        f"{account.user_principal_name}{name}",
        f"{kind_of(account)}, {ENABLED[account.account_enabled]}",
    ]
    target = decision.desired.target if decision.desired else None
    if decision.winner is not None:
        parts.append(f"mapping {decision.winner.mapping}" + (f": {target.describe()}" if target else ""))
    else:
        parts.append(f"no mapping: {decision.notes[0] if decision.notes else 'none applies'}")
    druva = found.druva
    parts.append(f"Druva: {druva.status.value} (user {druva.user_id})" if druva else "Druva: not there")
    if found.importable:
        parts.append("import would " + ", ".join(_verb(action) for action in decision.actions))
    elif decision.winner is not None:
        parts.append(f"not importable: {found.why_not}")
    return printable(" — ".join(parts))


def _verb(action: Action) -> str:
    """What an import would do, short: the target is already on the line."""
    if isinstance(action, Create):
        return "create it"
    if isinstance(action, Adopt):
        return f"adopt Druva user {action.user_id}"
    if isinstance(action, Activate):
        return "re-activate it"
    return action.describe()


def render_search(console: Console, result: SearchResult, config: Path, *, lines: bool = True) -> None:
    if lines:
        for found in result.found:
            console.print(describe(found), markup=False, highlight=False)
    shown = len(result.found)
    console.print(
        f"{shown} account{'s' if shown != 1 else ''} found for {printable(result.text)!r}", markup=False
    )
    if result.more:
        console.print(
            f"more accounts match: type more of the name, or raise --limit (at most {MAX_LIMIT})",
            markup=False,
        )
    upns = result.importable
    if upns:
        console.print(f"import the {len(upns)} importable account(s) with:", markup=False)
        console.print(printable(import_command(config, upns)), markup=False, highlight=False)
    else:
        console.print("none of them can be imported (see the reason on each line)", markup=False)


def search_json(result: SearchResult) -> list[dict[str, Any]]:
    """The same as the lines, one object per account."""
    return [_as_json(found) for found in result.found]


def _as_json(found: Found) -> dict[str, Any]:
    account, decision, druva = found.account, found.decision, found.druva
    target = decision.desired.target if decision.desired else None
    return {
        "userPrincipalName": account.user_principal_name,
        "displayName": account.display_name,
        "id": account.id,
        "kind": kind_of(account),
        "enabled": account.account_enabled,
        "mapping": decision.winner.mapping if decision.winner else None,
        "target": None
        if target is None
        else {
            "profile": target.profile,
            "storage": target.storage,
            "quota": None if target.quota is None else str(target.quota),
        },
        "decision": decision.outcome.value,
        "actions": [a.describe() for a in decision.actions],
        "importable": found.importable,
        "reason": found.why_not,
        "druva": None
        if druva is None
        else {"userId": druva.user_id, "email": druva.email, "status": druva.status.value},
    }
