"""What ``mode`` prints: the state's mode, and the latest plans recorded while it plans."""

from __future__ import annotations

from collections.abc import Mapping

from rich.console import Console

from provisioning.domain.golive import ModeRecord, PlanSummary
from provisioning.redaction import printable, printable_json


def mode_json(record: ModeRecord, plans: Mapping[str, PlanSummary]) -> dict[str, object]:
    return {
        "mode": record.mode.value,
        "since": record.since.isoformat() if record.since else None,
        "confirmed_creates": record.confirmed_creates,
        "first_apply_pending": record.first_apply_pending,
        "created_so_far": record.created_so_far,
        "recorded": record.recorded,
        "plans": {kind: plan.to_json() for kind, plan in plans.items()},
    }


def render_mode(
    console: Console,
    record: ModeRecord,
    plans: Mapping[str, PlanSummary],
    *,
    json_output: bool,
    where: str = "",
) -> None:
    if json_output:
        print(printable_json({**mode_json(record, plans), "state": where}), flush=True)
        return
    since = f" since {record.since:%Y-%m-%d %H:%M} UTC" if record.since else ""
    if not record.recorded:
        since = " (not recorded yet: what this state starts in; its first pass records it)"
    if record.plan_only:
        line = f"mode: plan{since}: passes are planned and recorded; nothing is written to Druva"
    elif record.first_apply_pending:
        line = (
            f"mode: apply{since}: the next pass reads everyone and creates at most "
            f"{record.confirmed_creates} Druva users"
        )
    else:
        line = f"mode: apply{since}"
    console.print(printable(line), markup=False)
    if where:
        console.print(printable(f"state: {where}"), markup=False)
    for kind in ("full", "delta"):
        plan = plans.get(kind)
        if plan is None:
            continue
        console.print(printable(f"latest {plan.describe()}"), markup=False)
        for mapping, counts in plan.by_mapping.items():
            done = ", ".join(f"{n} {outcome}" for outcome, n in counts.items() if n)
            console.print(printable(f"  {mapping}: {done}"), markup=False)
        for example in plan.examples:
            console.print(printable(f"  e.g. {example.principal}: {example.what}"), markup=False)
    if record.plan_only:
        full = plans.get("full")
        creates = str(full.creates) if full else "N"
        console.print(
            printable(f"to go live: python -m provisioning mode apply --confirm-creates {creates}"),
            markup=False,
        )
