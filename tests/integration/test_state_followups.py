"""State store contract: holds (accounts left as they are) and promises (notified objects followed
until a delta read returns them), the same on SQLite and Table Storage."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from provisioning.adapters.state.sqlite import SqliteStateStore
from provisioning.domain.followups import (
    SEEN_MARKER_LIFE,
    TENANT_WIDE,
    Hold,
    HoldReason,
    Promise,
    PromiseRecord,
    Sighting,
)
from provisioning.errors import ConcurrencyConflict, InvalidRequestError
from provisioning.ports import StateStore
from tests.builders import NOW
from tests.integration.conftest import Backend

pytestmark = pytest.mark.anyio


def hold(entra_id: str = "id-ann", reason: HoldReason = HoldReason.UNREADABLE, **fields: object) -> Hold:
    values: dict[str, object] = {
        "entra_id": entra_id,
        "reason": reason,
        "detail": "mailbox settings could not be read: 403 ✓",
        "since": NOW,
        "recheck_at": NOW + timedelta(seconds=30),
        "principal": f"{entra_id.removeprefix('id-')}@contoso.com",
    }
    values.update(fields)
    return Hold(**values)  # type: ignore[arg-type]


async def test_holds_are_kept_read_by_account_and_cleared(store: StateStore) -> None:
    refused = hold(
        "id-ben", HoldReason.REFUSED, advice="free a licence", kind="licence", signature="abc", attempts=3
    )
    everyone = hold(TENANT_WIDE, HoldReason.REFUSED, kind="permission", signature="https://druva/client")
    await store.put_holds([hold(), refused, everyone])

    assert await store.holds(["id-ben", "id-nobody"]) == {"id-ben": refused}
    assert set(await store.holds()) == {"id-ann", "id-ben", TENANT_WIDE}
    assert (await store.holds())[TENANT_WIDE] == everyone

    await store.put_holds([hold(detail="again", attempts=2)])  # replaced, not added
    assert (await store.holds(["id-ann"]))["id-ann"].detail == "again"

    await store.clear_holds(["id-ann", "id-nobody"])
    assert set(await store.holds()) == {"id-ben", TENANT_WIDE}


async def test_holds_of_many_accounts_are_read_in_one_call(store: StateStore) -> None:
    ids = [f"id-{n:03d}" for n in range(40)]  # more than one Table query's worth of keys
    await store.put_holds([hold(i) for i in ids])
    assert set(await store.holds(ids[5:35])) == set(ids[5:35])


async def test_a_hold_too_large_for_a_table_entity_is_refused_before_anything_is_written(
    store: StateStore,
) -> None:
    with pytest.raises(InvalidRequestError, match="hold"):
        await store.put_holds([hold(detail="x" * 600_000)])
    assert await store.holds() == {}


async def test_promises_are_kept_by_a_read_that_began_after_them(store: StateStore, backend: Backend) -> None:
    backend.clock.moment = NOW + timedelta(seconds=30)
    early, late = Promise("u1", "users", NOW), Promise("u2", "users", NOW + timedelta(seconds=20))
    await store.notice([early, late, Promise("g1", "groups", NOW)])

    pending = await store.sighted(Sighting(NOW + timedelta(seconds=10), frozenset({"u1", "u2"})), mark=True)

    # u1 was notified before the read began: kept. u2 was notified after it: its change may be newer.
    assert [p.object_id for p in pending] == ["g1", "u2"]
    assert await store.promises() == pending


async def test_a_notification_answered_before_it_was_noticed_is_not_followed(store: StateStore) -> None:
    """The hint pass may read the change before the follow-up is recorded: its sighting answers it."""
    await store.sighted(Sighting(NOW + timedelta(seconds=5), frozenset({"u1"})), mark=True)
    await store.notice([Promise("u1", "users", NOW)])
    assert await store.promises() == []
    await store.notice([Promise("u1", "users", NOW + timedelta(seconds=6))])  # a later change: followed
    assert await store.promises() == [Promise("u1", "users", NOW + timedelta(seconds=6))]


async def test_a_later_notification_extends_a_promise_and_stale_marks_are_forgotten(
    store: StateStore, backend: Backend
) -> None:
    await store.notice([Promise("u1", "users", NOW), Promise("u1", "users", NOW + timedelta(seconds=3))])
    assert await store.promises() == [Promise("u1", "users", NOW + timedelta(seconds=3))]
    await store.sighted(Sighting(NOW + timedelta(seconds=4), frozenset({"u1", "u9"})), mark=True)
    assert await store.promises() == []

    backend.clock.moment = NOW + timedelta(seconds=4) + SEEN_MARKER_LIFE
    await store.sighted(Sighting(backend.clock.moment, frozenset()), mark=True)
    # both marks are gone: a notification from before them is followed again
    await store.notice([Promise("u9", "users", NOW)])
    assert await store.promises() == [Promise("u9", "users", NOW)]


async def test_a_full_pass_keeps_promises_without_leaving_marks(store: StateStore) -> None:
    await store.notice([Promise("u1", "users", NOW)])
    await store.sighted(Sighting(NOW + timedelta(seconds=1), frozenset({"u1", "u2"})), mark=False)
    assert await store.promises() == []
    await store.notice([Promise("u2", "users", NOW)])  # no mark of u2: followed
    assert await store.promises() == [Promise("u2", "users", NOW)]
    await store.forget_promises([Promise("u2", "users", NOW)])
    assert await store.promises() == []


async def test_a_state_file_of_the_previous_schema_has_no_holds_when_read_only(tmp_path: Path) -> None:
    folder = tmp_path / "old"
    current = SqliteStateStore.open(folder)
    current._db.execute("DROP TABLE holds")
    current._db.execute("DROP TABLE promises")
    current._db.execute("PRAGMA user_version = 2")
    await current.aclose()

    read_only = SqliteStateStore.open(folder, create_missing=False)
    assert await read_only.holds() == {} and await read_only.promises() == []
    await read_only.aclose()
    upgraded = SqliteStateStore.open(folder)
    await upgraded.put_holds([hold()])
    assert set(await upgraded.holds()) == {"id-ann"}
    await upgraded.aclose()


async def test_a_promise_renewed_meanwhile_is_not_forgotten(store: StateStore) -> None:
    """A pass forgets the promises that passed the horizon as it loaded them; a Watch may have renewed
    one since, and that one stays."""
    old = Promise("u1", "users", NOW)
    await store.notice([old, Promise("u2", "users", NOW)])
    await store.notice([Promise("u1", "users", NOW + timedelta(minutes=12))])  # renewed
    await store.forget_promises([old, Promise("u2", "users", NOW)])
    assert await store.promises() == [Promise("u1", "users", NOW + timedelta(minutes=12))]


async def test_a_write_of_a_record_changed_since_it_was_read_is_refused(backend: Backend) -> None:
    """The primitive behind notice and sighted: conditional on what was read, all or nothing."""
    from provisioning.adapters.state.base import StateRules

    store = await backend.open()
    other = await backend.open()
    assert isinstance(store, StateRules) and isinstance(other, StateRules)
    await store.notice([Promise("u1", "users", NOW)])
    read = await store._promise_records()
    await other.notice([Promise("u1", "users", NOW + timedelta(seconds=5))])  # another writer
    stale = replace(read["u1"], seen_at=NOW)
    with pytest.raises(ConcurrencyConflict):
        await store._write_promise_records([stale, PromiseRecord("u2", "", None, NOW)], [])
    assert set(await store._promise_records()) == {"u1"}  # nothing of the refused batch was written
    await store.sighted(Sighting(NOW + timedelta(seconds=6), frozenset({"u1"})), mark=True)
    assert await store.promises() == []  # read again, decided again, written
    await store.aclose()
    await other.aclose()
