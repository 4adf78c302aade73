"""State store contract: audit trail (newest first, for ``explain``), run history and subscriptions."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from provisioning.adapters.state.encoding import MAX_TEXT_CHARS
from provisioning.domain.directory import Subscription
from provisioning.domain.state import (
    MAX_RUN_FAILURES,
    AuditEntry,
    AuditOutcome,
    RunFailure,
    RunKind,
    RunSummary,
    bounded_failures,
)
from provisioning.errors import InvalidRequestError
from provisioning.ports import StateStore
from tests.builders import NOW

pytestmark = pytest.mark.anyio


def entry(
    account: str = "id-alice", *, at_ms: float = 0, action: str = "create", run: str = "run-1"
) -> AuditEntry:
    return AuditEntry(
        at=NOW + timedelta(milliseconds=at_ms),
        entra_id=account,
        principal=f"{account.removeprefix('id-')}@contoso.com",
        action=action,
        outcome=AuditOutcome.DONE,
        reason="mapping US offices: officeLocation is New York",
        run_id=run,
        detail={"mapping": "US offices", "profile": "Standard", "quota_bytes": 0, "notes": ["ünïcode ✓"]},
    )


def run(run_id: str, *, started_s: int, stopped: str | None = None) -> RunSummary:
    start = NOW + timedelta(seconds=started_s)
    return RunSummary(
        run_id=run_id,
        kind=RunKind.DELTA,
        started_at=start,
        finished_at=start + timedelta(seconds=3),
        counts={"created": 2, "unchanged": 40},
        stopped=stopped,
    )


async def test_audit_round_trips(store: StateStore) -> None:
    written = entry()
    await store.append_audit([written])
    assert await store.audit_for("id-alice") == [written]
    assert await store.audit_for("id-nobody") == []


async def test_audit_is_newest_first_within_one_second_and_per_account(store: StateStore) -> None:
    # Written out of order, several within the same second, and another account's entries interleaved.
    await store.append_audit([entry(at_ms=500, action="patch"), entry("id-bob", at_ms=1)])
    await store.append_audit([entry(at_ms=0.001, action="create"), entry(at_ms=999.999, action="preserve")])
    await store.append_audit([entry(at_ms=2_000, action="activate"), entry(at_ms=0.002, action="adopt")])

    actions = [found.action for found in await store.audit_for("id-alice")]

    assert actions == ["activate", "preserve", "patch", "adopt", "create"]
    assert [found.action for found in await store.audit_for("id-alice", limit=2)] == ["activate", "preserve"]
    assert await store.audit_for("id-alice", limit=0) == []
    assert [found.entra_id for found in await store.audit_for("id-bob")] == ["id-bob"]


async def test_entries_at_the_same_instant_come_back_last_written_first(store: StateStore) -> None:
    await store.append_audit([entry(action="first"), entry(action="second")])
    await store.append_audit([entry(action="third")])

    assert [found.action for found in await store.audit_for("id-alice")] == ["third", "second", "first"]


async def test_more_audit_entries_than_one_transaction_holds(store: StateStore) -> None:
    await store.append_audit([entry(at_ms=i, action=f"a{i}") for i in range(230)])

    newest = await store.audit_for("id-alice", limit=150)

    assert [found.action for found in newest] == [f"a{i}" for i in range(229, 79, -1)]


async def test_a_long_reason_is_kept_whole_and_an_absurd_one_refused(store: StateStore) -> None:
    long_reason = "because " * 10_000  # 80,000 characters: split over several properties
    await store.append_audit([replace(entry(), reason=long_reason)])
    assert (await store.audit_for("id-alice"))[0].reason == long_reason

    with pytest.raises(InvalidRequestError, match="at most"):
        await store.append_audit([replace(entry("id-bob"), reason="x" * MAX_TEXT_CHARS)])
    assert await store.audit_for("id-bob") == []


async def test_recent_runs_newest_first(store: StateStore) -> None:
    for run_id, started in (("run-b", 20), ("run-a", 10), ("run-c", 30)):
        await store.record_run(run(run_id, started_s=started))
    await store.record_run(run("run-b", started_s=20, stopped="safety stop"))  # recorded again: replaced

    runs = await store.recent_runs()

    assert [r.run_id for r in runs] == ["run-c", "run-b", "run-a"]
    assert runs[1] == run("run-b", started_s=20, stopped="safety stop")
    assert [r.run_id for r in await store.recent_runs(limit=1)] == ["run-c"]


async def test_a_dry_run_summary_round_trips(store: StateStore) -> None:
    summary = replace(run("run-1", started_s=0), dry_run=True, counts={})
    await store.record_run(summary)
    assert await store.recent_runs() == [summary]


async def test_subscriptions_by_resource(store: StateStore) -> None:
    users = Subscription(
        "sub-1", "users", NOW + timedelta(days=2), "https://app/api/notify", "https://app/api/life"
    )
    groups = Subscription("sub-2", "/groups", NOW + timedelta(days=1), "https://app/api/notify")
    assert await store.get_subscription("users") is None

    await store.put_subscription(users)
    await store.put_subscription(groups)
    renewed = replace(users, expires_at=NOW + timedelta(days=3), lifecycle_url=None)
    await store.put_subscription(renewed)

    assert await store.get_subscription("users") == renewed
    assert await store.get_subscription("/groups") == groups
    await store.delete_subscription("users")
    await store.delete_subscription("users")  # already gone: fine
    assert await store.get_subscription("users") is None
    assert await store.get_subscription("/groups") == groups


async def test_a_runs_failures_round_trip(store: StateStore) -> None:
    failures = (
        RunFailure("id-alice", "alice@contoso.com", "Druva answered 500: internal error"),
        RunFailure("id-bob", "bob@contoso.com", "profile ünïcode ✓ is unknown"),
    )
    summary = replace(run("run-1", started_s=0), failures=failures, counts={"failed": 2})

    await store.record_run(summary)

    assert await store.recent_runs() == [summary]


async def test_the_most_failures_a_run_keeps_fit_the_store(store: StateStore) -> None:
    many = [RunFailure(f"id-{i:03}", "x" * 500 + "@contoso.com", "why " * 500) for i in range(100)]
    summary = replace(run("run-1", started_s=0), failures=bounded_failures(many))

    await store.record_run(summary)

    (found,) = await store.recent_runs()
    assert len(found.failures) == MAX_RUN_FAILURES
    assert found == summary


async def test_a_subscription_keeps_its_client_state_fingerprint(store: StateStore) -> None:
    users = Subscription(
        "sub-1",
        "users",
        NOW + timedelta(days=2),
        "https://app/api/notify",
        None,
        client_state_fingerprint="f1",
    )
    await store.put_subscription(users)
    assert await store.get_subscription("users") == users
