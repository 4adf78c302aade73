"""What Application Insights receives: one structured record per pass, one per subscription upkeep.

Records are log records of the ``provisioning.telemetry`` logger whose ``extra`` fields are flat
dimensions (text or integers). On Azure Functions the Python worker exports the ``provisioning`` loggers
through OpenTelemetry (``PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY``), and every ``extra`` field
becomes one ``customDimensions`` entry of the trace; OpenTelemetry drops nested values, hence flat ones
and the failures as JSON text. The alert rules in ``infra/modules/alerts.bicep`` and the README's KQL
read exactly the names below (``tests/infra`` checks that they match).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from provisioning.domain.followups import Hold
from provisioning.domain.golive import PLANNED, PlanSummary
from provisioning.domain.state import AuditEntry, AuditOutcome, RunSummary, one_line
from provisioning.service.report import COUNT_KEYS

LOGGER = "provisioning.telemetry"

# The dimension every record carries, and its values.
EVENT = "event"
PASS_EVENT = "provisioning.pass"  # noqa: S105 (an event name, not a secret)
UPKEEP_EVENT = "provisioning.upkeep"
ACCOUNT_EVENT = "provisioning.account"  # one per action on one account: the audit trail, in App Insights
REFUSAL_EVENT = "provisioning.refusal"  # Druva refused a write only a human can unblock: once, with advice
PLAN_EVENT = "provisioning.plan"  # what a plan-only pass would have written (domain.golive)

# A pass's outcome. A pass "succeeded" when it ran to the end without a safety stop, even if some
# accounts failed: those have their own alert (the same account failing in consecutive passes).
OUTCOME = "outcome"
OK, ACCOUNTS_FAILED, SAFETY_STOP, ERROR = "ok", "accounts_failed", "safety_stop", "error"
SUCCEEDED = (OK, ACCOUNTS_FAILED)
UPKEEP_OK, UPKEEP_FAILED = "ok", "failed"

# Pass dimensions.
RUN_ID, KIND, DRY_RUN, DURATION_MS = "run_id", "kind", "dry_run", "duration_ms"
COUNT_PREFIX = "count_"  # count_created, count_failed, ...: "created" itself is a LogRecord attribute
FAILED_ACCOUNTS = "failed_accounts"  # Entra ids, comma-separated: what KQL's split() and mv-expand read
FAILURES = "failures"  # JSON list of {"entra_id", "principal", "reason"}, at most MAX_RUN_FAILURES
FAILURES_TOTAL = "failures_total"  # every failed account, also those beyond the list
STOPPED = "stopped"  # why a safety stop refused the plan
ERROR_TEXT = "error"  # what ended a pass early (outcome error)
LATENCY_MS = "notification_latency_ms"  # notification received → pass done (Druva written), when known
# Upkeep dimensions.
DETAIL = "detail"
# Account dimensions (and RUN_ID, OUTCOME, DETAIL): the audit entry's fields.
ENTRA_ID, PRINCIPAL, ACTION, REASON = "entra_id", "principal", "action", "reason"
# Refusal dimensions (and RUN_ID, ENTRA_ID, PRINCIPAL, DETAIL): what kind, and what to do.
REFUSAL_KIND, ADVICE = "refusal", "advice"
HELD = "held"  # a pass's accounts left as they are (unreadable, settling, refused): status names them
# Plan dimensions (and RUN_ID, KIND, the counts): by mapping and examples, as JSON text.
BY_MAPPING, EXAMPLES = "by_mapping", "examples"

# Every dimension each record may carry: what KQL may name (tests/infra holds the queries to it).
PASS_DIMENSIONS = frozenset(
    {EVENT, RUN_ID, KIND, OUTCOME, DRY_RUN, DURATION_MS, FAILURES_TOTAL, FAILED_ACCOUNTS, FAILURES}
    | {STOPPED, ERROR_TEXT, LATENCY_MS, HELD}
    | {COUNT_PREFIX + key for key in COUNT_KEYS}
)
UPKEEP_DIMENSIONS = frozenset({EVENT, OUTCOME, DETAIL})
ACCOUNT_DIMENSIONS = frozenset(
    {EVENT, RUN_ID, ENTRA_ID, PRINCIPAL, ACTION, OUTCOME, REASON, DETAIL, ERROR_TEXT}
)
REFUSAL_DIMENSIONS = frozenset({EVENT, RUN_ID, ENTRA_ID, PRINCIPAL, REFUSAL_KIND, DETAIL, ADVICE})
PLANNED_KEYS = tuple(outcome.value for outcome in PLANNED)
PLAN_DIMENSIONS = frozenset(
    {EVENT, RUN_ID, KIND, BY_MAPPING, EXAMPLES} | {COUNT_PREFIX + key for key in PLANNED_KEYS}
)
ACCOUNT_OUTCOMES = frozenset(AuditOutcome)
PASS_OUTCOMES = frozenset({OK, ACCOUNTS_FAILED, SAFETY_STOP, ERROR})
UPKEEP_OUTCOMES = frozenset({UPKEEP_OK, UPKEEP_FAILED})

# A work message's body field: when the webhook received the notification behind it (ISO 8601 UTC).
RECEIVED_AT = "received_at"

Dimensions = dict[str, str | int]

log = logging.getLogger(LOGGER)


def pass_record(
    summary: RunSummary,
    *,
    failures_total: int,
    error: str | None = None,
    notified_at: datetime | None = None,
    held: int = 0,
) -> Dimensions:
    """The one record of one pass; ``error`` when it ended early (the counts are then what was reached)."""
    record: Dimensions = {
        EVENT: PASS_EVENT,
        RUN_ID: summary.run_id,
        KIND: summary.kind,
        OUTCOME: _outcome(summary, failures_total, error),
        DRY_RUN: "true" if summary.dry_run else "false",
        DURATION_MS: _milliseconds(summary.finished_at - summary.started_at),
        FAILURES_TOTAL: failures_total,
        HELD: held,
        FAILED_ACCOUNTS: ",".join(f.entra_id for f in summary.failures),
        FAILURES: json.dumps(
            [
                {"entra_id": f.entra_id, "principal": f.principal, "reason": f.reason}
                for f in summary.failures
            ],
            ensure_ascii=False,
            separators=(",", ":"),
        ),
    }
    record.update({COUNT_PREFIX + name: value for name, value in sorted(summary.counts.items())})
    if summary.stopped:
        record[STOPPED] = one_line(summary.stopped)
    if error:
        record[ERROR_TEXT] = one_line(error)
    if notified_at is not None:
        record[LATENCY_MS] = max(_milliseconds(summary.finished_at - notified_at), 0)
    return record


def _outcome(summary: RunSummary, failures_total: int, error: str | None) -> str:
    if error:
        return ERROR
    if summary.stopped:
        return SAFETY_STOP
    return ACCOUNTS_FAILED if failures_total else OK


def plan_record(plan: PlanSummary) -> Dimensions:
    """One record per plan-only pass: the figures ``status`` shows, for a workbook or an alert."""
    record: Dimensions = {EVENT: PLAN_EVENT, RUN_ID: plan.run_id, KIND: plan.kind}
    record |= {COUNT_PREFIX + key: plan.counts.get(key, 0) for key in PLANNED_KEYS}
    record[BY_MAPPING] = json.dumps(plan.by_mapping, sort_keys=True)
    record[EXAMPLES] = json.dumps(plan.to_json()["examples"])
    return record


def upkeep_record(done: Sequence[str], error: str | None = None) -> Dimensions:
    """One subscription upkeep (the timer's keep_watch): what it did, or why it failed."""
    return {
        EVENT: UPKEEP_EVENT,
        OUTCOME: UPKEEP_FAILED if error else UPKEEP_OK,
        DETAIL: one_line(error if error else "; ".join(done), 500),
    }


def account_record(entry: AuditEntry) -> Dimensions:
    """One action on one account, as the audit trail keeps it: "what happened to user X" in KQL."""
    record: Dimensions = {
        EVENT: ACCOUNT_EVENT,
        RUN_ID: entry.run_id,
        ENTRA_ID: entry.entra_id,
        PRINCIPAL: entry.principal,
        ACTION: entry.action,
        OUTCOME: entry.outcome,
        REASON: one_line(entry.reason, 500),
        DETAIL: one_line(str(entry.detail.get("describe", "")), 500),
    }
    if entry.detail.get("error"):
        record[ERROR_TEXT] = one_line(str(entry.detail["error"]))
    return record


def refusal_record(hold: Hold, run_id: str) -> Dimensions:
    """Druva refused a write that will not succeed until a human acts: reported once, when it happens
    (later passes hold the account back instead of asking again), with what to do."""
    return {
        EVENT: REFUSAL_EVENT,
        RUN_ID: run_id,
        ENTRA_ID: hold.entra_id,
        PRINCIPAL: hold.principal,
        REFUSAL_KIND: hold.kind or "other",
        DETAIL: one_line(hold.detail, 500),
        ADVICE: one_line(hold.advice or "", 500),
    }


def emit(record: Mapping[str, str | int]) -> None:
    """Log the record: WARNING when it needs a look, INFO otherwise; the message is readable on its own."""
    outcome = record.get(OUTCOME)
    level = logging.INFO if outcome in (OK, UPKEEP_OK, "done") else logging.WARNING
    log.log(level, "%s", _message(record), extra=dict(record))


def _message(record: Mapping[str, str | int]) -> str:
    if record[EVENT] == UPKEEP_EVENT:
        return f"subscription upkeep {record[OUTCOME]}: {record[DETAIL]}"
    if record[EVENT] == ACCOUNT_EVENT:
        return f"{record[DETAIL] or f'{record[ACTION]} {record[PRINCIPAL]}'}: {record[OUTCOME]}"
    if record[EVENT] == REFUSAL_EVENT:
        return f"Druva refused a write for {record[PRINCIPAL]}: {record[DETAIL]} — to do: {record[ADVICE]}"
    counts = ", ".join(
        f"{name.removeprefix(COUNT_PREFIX)} {value}"
        for name, value in record.items()
        if name.startswith(COUNT_PREFIX) and value
    )
    if record[EVENT] == PLAN_EVENT:
        planned = counts or "nothing to do"
        return f"{record[KIND]} plan {record[RUN_ID]} (plan-only mode, nothing written): {planned}"
    return (
        f"{record[KIND]} pass {record[RUN_ID]} {record[OUTCOME]} in {record[DURATION_MS]} ms: "
        f"{counts or 'nothing to do'}"
    )


def received_at(body: Mapping[str, object]) -> datetime | None:
    """When the notification behind a work message was received, if the message says (and says it
    right: a missing or unreadable time only costs the latency figure, never the pass)."""
    value = body.get(RECEIVED_AT)
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _milliseconds(delta: timedelta) -> int:
    return round(delta.total_seconds() * 1000)
