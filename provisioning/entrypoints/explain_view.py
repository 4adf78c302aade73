"""How ``explain`` shows one decision: account, mappings looked at, decision, Druva, history."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from provisioning.domain.mappings import Policy
from provisioning.domain.quota import describe_bytes
from provisioning.entrypoints.search_view import ENABLED
from provisioning.redaction import printable
from provisioning.redaction import printable_markup as shown
from provisioning.service.import_and_explain import Explanation


def render_explanation(console: Console, explanation: Explanation, policy: Policy) -> None:
    account, decision = explanation.account, explanation.decision
    enabled = ENABLED[account.account_enabled]
    console.print(f"[bold]{shown(account.user_principal_name)}[/] ({shown(account.id)})")
    kind = f"{account.user_type or 'no user type'}, {enabled}, kind {account.kind.value}"
    console.print(f"  {printable(kind)}", markup=False)

    console.print("[bold]Mappings[/] (first match wins)")
    if not decision.checks:
        why = decision.notes[0] if decision.notes else "no mapping applies"
        console.print(f"  not evaluated: {printable(why)}", markup=False)
    for check in decision.checks:
        mark = "[green]✓[/]" if check.matched else "[dim]✗[/]"
        console.print(
            f"  {mark} #{check.priority} {shown(check.mapping)}: {shown(check.reason)}", highlight=False
        )
    for lower in explanation.lower:
        also = f"#{lower.priority} {shown(lower.mapping)} also matches, at lower priority"
        console.print(f"  [dim]· {also}[/]")

    console.print(f"[bold]Decision[/]: {decision.outcome.value}")
    target = decision.desired.target if decision.desired else None
    if target is not None:
        console.print(f"  target: {printable(target.describe())}", markup=False)
    for action in decision.actions:
        console.print(f"  → {printable(action.describe())}", markup=False)
    for note in decision.notes:
        console.print(f"  note: {printable(note)}", markup=False)
    _hold(console, explanation)

    console.print("[bold]Druva[/]")
    druva = explanation.druva
    if druva is None:
        console.print("  no Druva user with this e-mail")
    else:
        quota = describe_bytes(druva.quota_bytes) if druva.quota_bytes is not None else "unknown"
        line = (
            f"  user {druva.user_id} {druva.email}: {druva.status.value}, profile {druva.profile}, "
            f"storage {druva.storage}, quota {quota}"
        )
        console.print(printable(line), markup=False)
    link = explanation.link
    if link is not None:
        line = (
            f"  linked through mapping {link.mapping or '(none)'}, we last made it {link.status.value} "
            f"on {link.decided_at:%Y-%m-%d %H:%M} UTC"
        )
        console.print(printable(line), markup=False)

    if explanation.history:
        table = Table("when (UTC)", "action", "outcome", "reason", title="history (newest first)")
        for entry in explanation.history:
            cells = (entry.action, entry.outcome, entry.reason)
            table.add_row(f"{entry.at:%Y-%m-%d %H:%M:%S}", *(shown(cell) for cell in cells))
        console.print(table)
    else:
        console.print("[dim]no history recorded for this account[/]")


def _hold(console: Console, explanation: Explanation) -> None:
    hold = explanation.hold
    if hold is not None:
        line = (
            f"  held by the automatic passes: {hold.describe()}; read again after "
            f"{hold.recheck_at:%Y-%m-%d %H:%M} UTC"
        )
        console.print(printable(line), markup=False)
