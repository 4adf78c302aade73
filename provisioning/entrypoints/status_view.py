"""How ``status`` shows health: the verdict first, then the passes, subscriptions, cursors and failing
accounts behind it; or one JSON object on stdout with ``--json``."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from provisioning.domain.health import age
from provisioning.redaction import printable_json
from provisioning.redaction import printable_markup as shown
from provisioning.service.report import COUNT_KEYS
from provisioning.service.status import Status

SHOWN_PASSES = 10
SHOWN_HELD = 20
NO_STATE = "no_state"


def render_no_state(console: Console, detail: str, *, json_output: bool) -> None:
    if json_output:
        problem = {"code": NO_STATE, "detail": detail}
        print(printable_json({"healthy": False, "problems": [problem]}), flush=True)
        return
    console.print(f"[bold red]no state yet[/]: {shown(detail)}", highlight=False)
    console.print("A first `sync` (or the deployed timer) creates it; `status` never does.")


def render_status(console: Console, status: Status, *, json_output: bool) -> None:
    if json_output:
        print(printable_json(status.to_json(SHOWN_PASSES)), flush=True)
        return
    verdict = "[bold green]healthy[/]" if status.healthy else "[bold red]UNHEALTHY[/]"
    console.print(f"{verdict} at {status.now:%Y-%m-%d %H:%M:%S} UTC")
    for problem in status.problems:
        console.print(f"  [red]✗[/] {problem.code}: {shown(problem.detail)}", highlight=False)
    _passes(console, status)
    _subscriptions(console, status)
    _cursors(console, status)
    _failing(console, status)
    _held(console, status)
    full = status.last_full
    when = (
        f"{full.started_at:%Y-%m-%d %H:%M} UTC ({age(status.now - full.started_at)} ago)" if full else "never"
    )
    console.print(f"[bold]Last full reconciliation[/]: {when}")


def _passes(console: Console, status: Status) -> None:
    if not status.runs:
        console.print("[bold]Recent passes[/]: none recorded")
        return
    table = Table("started (UTC)", "kind", "seconds", "what it did", title="Recent passes")
    for run in status.runs[:SHOWN_PASSES]:
        seconds = (run.finished_at - run.started_at).total_seconds()
        did = ", ".join(f"{key} {run.counts[key]}" for key in COUNT_KEYS if run.counts.get(key))
        if run.stopped:
            did = f"stopped: {run.stopped}"
        table.add_row(
            f"{run.started_at:%Y-%m-%d %H:%M:%S}", run.kind, f"{seconds:.1f}", shown(did or "nothing to do")
        )
    console.print(table)


def _subscriptions(console: Console, status: Status) -> None:
    table = Table("resource", "subscription", "expires (UTC)", "in", title="Graph subscriptions")
    for resource, sub in status.subscriptions.items():
        if sub is None:
            table.add_row(shown(resource), "none", "", "")
            continue
        left = sub.expires_at - status.now
        when = age(left) if left.total_seconds() > 0 else f"expired {age(-left)} ago"
        table.add_row(shown(resource), shown(sub.id), f"{sub.expires_at:%Y-%m-%d %H:%M}", when)
    console.print(table)


def _cursors(console: Console, status: Status) -> None:
    table = Table("cursor", "moved", "lease held by", "lease until (UTC)", title="Delta cursors")
    for cursor in status.cursors:
        moved = f"{age(status.now - cursor.updated_at)} ago" if cursor.updated_at else "never"
        until = f"{cursor.lease_until:%Y-%m-%d %H:%M:%S}" if cursor.lease_until else ""
        table.add_row(shown(cursor.name), moved, shown(cursor.lease_owner or "nobody"), until)
    console.print(table)


def _failing(console: Console, status: Status) -> None:
    if not status.failing:
        console.print("[bold]Failing accounts[/]: none in the latest pass")
        return
    table = Table("account", "Entra id", "passes in a row", "why", title="Failing accounts")
    for account in status.failing:
        table.add_row(
            shown(account.principal), shown(account.entra_id), str(account.consecutive), shown(account.reason)
        )
    console.print(table)


def _held(console: Console, status: Status) -> None:
    if not status.held:
        console.print("[bold]Held accounts[/]: none")
        return
    table = Table("account", "why", "since (UTC)", "read again (UTC)", "to do", title="Held accounts")
    for hold in status.held[:SHOWN_HELD]:
        table.add_row(
            shown(hold.principal or hold.entra_id),
            shown(f"{hold.reason.value}: {hold.detail}"),
            f"{hold.since:%Y-%m-%d %H:%M}",
            f"{hold.recheck_at:%Y-%m-%d %H:%M}",
            shown(hold.advice or ""),
        )
    console.print(table)
    if len(status.held) > SHOWN_HELD:
        console.print(f"  and {len(status.held) - SHOWN_HELD} more (status --json lists them all)")
