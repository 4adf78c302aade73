"""Every pass emits one structured record, with the fields the alert rules read; failures reach the run
history too, so 'the same account failing in consecutive passes' can be computed from either."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta

import pytest

from provisioning.domain.directory import UserPage
from provisioning.domain.health import ACCOUNT_FAILING, HealthFacts, assess
from provisioning.domain.state import MAX_REASON_CHARS, MAX_RUN_FAILURES, RunFailure, RunKind, RunSummary
from provisioning.errors import CursorBusy, TransientError
from provisioning.service import telemetry
from provisioning.service.telemetry import (
    ACCOUNTS_FAILED,
    DRY_RUN,
    DURATION_MS,
    ERROR,
    ERROR_TEXT,
    EVENT,
    FAILED_ACCOUNTS,
    FAILURES,
    FAILURES_TOTAL,
    LATENCY_MS,
    OK,
    OUTCOME,
    PASS_EVENT,
    RUN_ID,
    SAFETY_STOP,
    STOPPED,
    UPKEEP_EVENT,
)
from tests.builders import NOW
from tests.unit.service.test_sync import World

# What a LogRecord already carries: an extra field with one of these names would make logging raise.
RESERVED = set(vars(logging.LogRecord("n", logging.INFO, "p", 1, "m", None, None))) | {"message", "asctime"}


@pytest.fixture
def world() -> World:
    return World()


def records(caplog: pytest.LogCaptureFixture, event: str = PASS_EVENT) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == telemetry.LOGGER and getattr(r, EVENT, None) == event]


def test_a_pass_emits_one_record_with_its_counts(world: World, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=telemetry.LOGGER)
    world.clock.advance(0)

    report = world.sync()

    (record,) = records(caplog)
    assert getattr(record, RUN_ID) == report.run_id
    assert getattr(record, OUTCOME) == OK and record.levelno == logging.INFO
    assert record.kind == "full"  # type: ignore[attr-defined]  # the first pass reads everyone
    assert record.count_created == 6 and record.count_failed == 0  # type: ignore[attr-defined]
    assert getattr(record, DRY_RUN) == "false"
    assert isinstance(getattr(record, DURATION_MS), int)
    assert getattr(record, FAILURES_TOTAL) == 0 and getattr(record, FAILED_ACCOUNTS) == ""
    assert json.loads(getattr(record, FAILURES)) == []
    assert not hasattr(record, LATENCY_MS)  # no notification behind this pass
    assert f"pass {report.run_id} ok" in record.getMessage()


def test_failed_accounts_are_named_in_the_record_and_in_the_run_history(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=telemetry.LOGGER)
    world.druva.fail_creates["ben@contoso.com"] = TransientError("Druva answered 503\nretry later")

    world.sync()

    (record,) = records(caplog)
    assert getattr(record, OUTCOME) == ACCOUNTS_FAILED and record.levelno == logging.WARNING
    assert getattr(record, FAILED_ACCOUNTS) == "id-ben" and getattr(record, FAILURES_TOTAL) == 1
    (failure,) = json.loads(getattr(record, FAILURES))
    assert failure == {
        "entra_id": "id-ben",
        "principal": "ben@contoso.com",
        "reason": "TransientError: Druva answered 503 retry later",
    }
    assert world.state.runs[-1].failures == (
        RunFailure("id-ben", "ben@contoso.com", "TransientError: Druva answered 503 retry later"),
    )


def test_an_account_failing_in_three_passes_in_a_row_is_unhealthy(world: World) -> None:
    for _ in range(3):
        world.druva.fail_creates["ben@contoso.com"] = TransientError("Druva answered 503")
        world.sync()
        world.clock.advance(900)

    facts = HealthFacts(world.clock.now(), asyncio.run(world.state.recent_runs()), {}, [])

    assert [problem.code for problem in assess(facts)] == [ACCOUNT_FAILING]


def test_a_safety_stop_is_its_own_outcome(world: World, caplog: pytest.LogCaptureFixture) -> None:
    world.sync()
    for name in ("ann", "ben", "cat"):
        world.directory.delete_user(f"id-{name}")
    caplog.set_level(logging.INFO, logger=telemetry.LOGGER)

    world.sync()

    (record,) = records(caplog)
    assert getattr(record, OUTCOME) == SAFETY_STOP
    assert "would preserve 3 of 6 managed users" in getattr(record, STOPPED)
    assert world.state.runs[-1].stopped is not None


def test_a_pass_that_fails_emits_its_record_and_still_raises(
    world: World, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def graph_down(cursor: str | None, select: Sequence[str]) -> AsyncIterator[UserPage]:
        raise TransientError("Graph answered 503")
        yield  # an async generator, like the port

    monkeypatch.setattr(world.directory, "read_users", graph_down)
    caplog.set_level(logging.INFO, logger=telemetry.LOGGER)

    with pytest.raises(TransientError):
        world.sync()

    (record,) = records(caplog)
    assert getattr(record, OUTCOME) == ERROR
    assert getattr(record, ERROR_TEXT) == "TransientError: Graph answered 503"
    assert world.state.runs == []  # the history holds passes that ran to the end


def test_a_pass_that_never_started_emits_nothing(world: World, caplog: pytest.LogCaptureFixture) -> None:
    asyncio.run(world.state.claim_cursor("users", "someone-else", world.clock.now(), 600))
    caplog.set_level(logging.INFO, logger=telemetry.LOGGER)

    with pytest.raises(CursorBusy):
        world.sync()

    assert records(caplog) == []


def test_a_dry_run_says_so(world: World, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=telemetry.LOGGER)

    world.sync(dry_run=True)

    (record,) = records(caplog)
    assert getattr(record, DRY_RUN) == "true"


def test_latency_from_the_notification_when_known(world: World, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=telemetry.LOGGER)
    notified = world.clock.now() - timedelta(milliseconds=1500)

    world.sync(notified_at=notified)

    (record,) = records(caplog)
    assert 1500 <= getattr(record, LATENCY_MS) < 2500  # plus the pass's own (monotonic) time


def summary(failures: Sequence[RunFailure] = (), stopped: str | None = None) -> RunSummary:
    return RunSummary(
        "run-1",
        RunKind.DELTA,
        NOW,
        NOW + timedelta(seconds=2.5),
        {"created": 1},
        stopped=stopped,
        failures=tuple(failures),
    )


def test_every_dimension_is_flat_and_clashes_with_nothing_logging_owns() -> None:
    """OpenTelemetry keeps attributes that are text, numbers or booleans and drops the rest; a field
    named like a LogRecord attribute makes logging raise."""
    failures = [RunFailure("id-a", "a@contoso.com", "Druva answered 500")]
    built = [
        telemetry.pass_record(summary(failures), failures_total=1, error="boom", notified_at=NOW),
        telemetry.pass_record(summary(stopped="would preserve 40 %"), failures_total=0),
        telemetry.upkeep_record(["users: renewed"]),
        telemetry.upkeep_record([], error="Graph answered 403"),
    ]
    for record in built:
        assert all(isinstance(value, str | int) for value in record.values()), record
        assert not RESERVED & set(record), RESERVED & set(record)
    # The declared dimension sets (what the alert queries may name) cover what the records carry.
    assert set(built[0]) | set(built[1]) <= telemetry.PASS_DIMENSIONS
    assert {built[0][OUTCOME], built[1][OUTCOME]} <= telemetry.PASS_OUTCOMES
    assert set(built[2]) | set(built[3]) == telemetry.UPKEEP_DIMENSIONS
    assert {built[2][OUTCOME], built[3][OUTCOME]} == telemetry.UPKEEP_OUTCOMES


def test_a_real_pass_carries_only_declared_dimensions(world: World, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=telemetry.LOGGER)
    world.druva.fail_creates["ben@contoso.com"] = TransientError("Druva answered 503")

    world.sync(notified_at=world.clock.now())

    (record,) = records(caplog)
    carried = set(vars(record)) - RESERVED - {"taskName"}
    assert carried <= telemetry.PASS_DIMENSIONS
    assert {telemetry.COUNT_PREFIX + key for key in ("created", "failed", "skipped")} <= carried


def test_the_record_is_bounded_however_many_accounts_fail() -> None:
    from provisioning.domain.state import bounded_failures

    many = bounded_failures(RunFailure(f"id-{i:04}", f"u{i}@contoso.com", "x" * 10_000) for i in range(5_000))
    record = telemetry.pass_record(summary(many), failures_total=5_000)

    assert len(json.loads(str(record[FAILURES]))) == MAX_RUN_FAILURES
    assert len(str(record[FAILURES])) < 8_000  # well within one customDimensions value
    assert record[FAILURES_TOTAL] == 5_000
    assert str(record[FAILED_ACCOUNTS]).split(",")[:2] == ["id-0000", "id-0001"]
    assert all(len(f.reason) <= MAX_REASON_CHARS for f in many)


def test_the_upkeep_record(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=telemetry.LOGGER)

    telemetry.emit(telemetry.upkeep_record(["users: renewed", "groups: valid"]))
    telemetry.emit(telemetry.upkeep_record([], error="NotFoundError: gone\nand more"))

    ok, failed = records(caplog, UPKEEP_EVENT)
    assert (getattr(ok, OUTCOME), ok.detail) == ("ok", "users: renewed; groups: valid")  # type: ignore[attr-defined]
    assert (getattr(failed, OUTCOME), failed.detail) == ("failed", "NotFoundError: gone and more")  # type: ignore[attr-defined]
    assert failed.levelno == logging.WARNING


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"received_at": "2026-11-26T12:00:00+00:00"}, datetime(2026, 11, 26, 12, tzinfo=UTC)),
        ({"received_at": "2026-11-26T12:00:00"}, None),  # naive: not trusted
        ({"received_at": "yesterday"}, None),
        ({"received_at": 1764158400}, None),
        ({}, None),
    ],
)
def test_received_at(body: dict[str, object], expected: datetime | None) -> None:
    assert telemetry.received_at(body) == expected


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the SDK's handler, as the distro still uses it
def test_the_records_reach_opentelemetry_as_attributes(caplog: pytest.LogCaptureFixture) -> None:
    """What the Functions worker's Azure Monitor distro does with a log record: an OpenTelemetry
    LoggingHandler turns every extra field into an attribute, and Azure Monitor's exporter sends the
    attributes as customDimensions."""
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
    from opentelemetry.sdk._logs.export import InMemoryLogExporter, SimpleLogRecordProcessor

    caplog.set_level(logging.INFO, logger=telemetry.LOGGER)  # the command line quiets it
    exporter = InMemoryLogExporter()  # type: ignore[no-untyped-call]
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    handler = LoggingHandler(logger_provider=provider)
    logger = logging.getLogger(telemetry.LOGGER)
    logger.addHandler(handler)
    try:
        record = telemetry.pass_record(
            summary([RunFailure("id-a", "a@contoso.com", "why")]), failures_total=1
        )
        telemetry.emit(record)
    finally:
        logger.removeHandler(handler)
        provider.shutdown()

    (exported,) = exporter.get_finished_logs()
    attributes = dict(exported.log_record.attributes or {})
    assert {name: attributes.get(name) for name in record} == record


def test_each_action_on_an_account_is_recorded(world: World, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=telemetry.LOGGER)
    world.druva.fail_creates["ben@contoso.com"] = TransientError("Druva answered 503")

    report = world.sync()

    accounts = {r.principal: r for r in records(caplog, telemetry.ACCOUNT_EVENT)}  # type: ignore[attr-defined]
    assert len(accounts) == 6  # five created, one failed
    ann, ben = accounts["ann@contoso.com"], accounts["ben@contoso.com"]
    assert (ann.entra_id, ann.action, ann.outcome, ann.run_id) == ("id-ann", "create", "done", report.run_id)  # type: ignore[attr-defined]
    assert "US offices" in ann.reason and ann.levelno == logging.INFO  # type: ignore[attr-defined]
    assert (ben.outcome, ben.error) == ("failed", "TransientError: Druva answered 503")  # type: ignore[attr-defined]
    assert ben.levelno == logging.WARNING
    for record in accounts.values():
        carried = set(vars(record)) - RESERVED - {"taskName"}
        assert carried <= telemetry.ACCOUNT_DIMENSIONS
        assert getattr(record, OUTCOME) in telemetry.ACCOUNT_OUTCOMES
