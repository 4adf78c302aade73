"""The embedded state store: one SQLite file, the default for the CLI, the demo and a laptop.

The file is ``<PROVISIONING_STATE>/state.sqlite3`` (default ``.provisioning/``), in WAL mode so readers
never block the writer. The schema is created on open and stamped with ``PRAGMA user_version``; a file
written by a newer release is refused rather than guessed at.

Two processes on one file (a CLI ``sync`` beside the demo) are safe because every write is either one
conditional statement or one ``BEGIN IMMEDIATE`` transaction, and the busy timeout makes the second
writer wait instead of failing:

- links and cursors carry an integer ``version``; a write is ``UPDATE … WHERE version = ?`` (or an
  ``INSERT`` for a record that must not exist yet), and no row changed means someone else won:
  ``ConcurrencyConflict``. The unique index on ``druva_user_id`` makes "one Druva user, one account" a
  constraint, so ``owner_of`` can never be ambiguous;
- the membership index is one table with a primary key (group, member) for ``load_memberships`` and a
  second index (member, group) for ``memberships_of``: the reverse index is SQLite's own, always in step;
- audit rows are ordered by (time in µs, insertion sequence), so entries within one second, or even at
  the same instant, come back newest first in the order they were appended.

Size limits are Table Storage's (``encoding``): what Azure would refuse, this store refuses too.
Work is done synchronously inside ``async def``: the file is local and each call takes microseconds.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import AsyncIterator, Collection, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from provisioning.adapters.clock import SystemClock
from provisioning.adapters.state.base import StateRules
from provisioning.adapters.state.encoding import (
    check_audit,
    check_subscription,
    chunks,
    decodes,
    micros,
    parse_failures,
    parse_time,
    time_text,
    to_json,
)
from provisioning.config_reading import regular_file_problem
from provisioning.domain.directory import Subscription
from provisioning.domain.followups import Hold, HoldReason, PromiseRecord
from provisioning.domain.groups import MembershipIndex, MembershipPlan
from provisioning.domain.links import AccountLink, LinkStatus
from provisioning.domain.state import AuditEntry, AuditOutcome, CursorState, RunKind, RunSummary
from provisioning.errors import (
    DAMAGED_ADVICE,
    ConcurrencyConflict,
    ProvisioningError,
    StateFileBusy,
    StateFileError,
    TransientError,
)
from provisioning.ports import Clock

FILE_NAME = "state.sqlite3"
SCHEMA_VERSION = 3
# Schema 2 adds runs.failures; schema 3 the holds and promises tables (created like any table of the
# schema, below). An older file is brought up to date on open, and read as it is by a read-only open (its
# runs read back with no failures, and it has no holds or promises).
_MIGRATIONS = {2: ("ALTER TABLE runs ADD COLUMN failures TEXT",)}
_READABLE_FROM = 1
_FINGERPRINT = "client_state_fingerprint"  # added to schema 1 in place: older files gain the column on open
BUSY_TIMEOUT_SECONDS = 30.0
_IN_CHUNK = 500  # ids per "IN (…)" list, well under SQLite's bound-parameter limit
_PAGE = 1000  # links per page when iterating all of them

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS links (
        entra_id TEXT PRIMARY KEY,
        druva_user_id INTEGER NOT NULL UNIQUE,
        email TEXT NOT NULL,
        mapping TEXT,
        profile TEXT,
        storage TEXT,
        quota TEXT,
        status TEXT NOT NULL,
        decided_at TEXT NOT NULL,
        version INTEGER NOT NULL
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS cursors (
        name TEXT PRIMARY KEY,
        value TEXT,
        lease_owner TEXT,
        lease_until TEXT,
        updated_at TEXT,
        version INTEGER NOT NULL
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS subscriptions (
        resource TEXT PRIMARY KEY,
        id TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        notification_url TEXT NOT NULL,
        lifecycle_url TEXT,
        client_state_fingerprint TEXT
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS memberships (
        group_id TEXT NOT NULL,
        member_id TEXT NOT NULL,
        member_is_group INTEGER NOT NULL,
        PRIMARY KEY (group_id, member_id)
    ) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS memberships_by_member ON memberships (member_id, group_id)",
    """CREATE TABLE IF NOT EXISTS audit (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        entra_id TEXT NOT NULL,
        at TEXT NOT NULL,
        at_us INTEGER NOT NULL,
        principal TEXT NOT NULL,
        action TEXT NOT NULL,
        outcome TEXT NOT NULL,
        reason TEXT NOT NULL,
        run_id TEXT NOT NULL,
        detail TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS audit_by_account ON audit (entra_id, at_us DESC, seq DESC)",
    """CREATE TABLE IF NOT EXISTS runs (
        run_id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        started_at TEXT NOT NULL,
        started_us INTEGER NOT NULL,
        finished_at TEXT NOT NULL,
        counts TEXT NOT NULL,
        dry_run INTEGER NOT NULL,
        stopped TEXT,
        failures TEXT
    ) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS runs_newest_first ON runs (started_us DESC, run_id DESC)",
    """CREATE TABLE IF NOT EXISTS holds (
        entra_id TEXT PRIMARY KEY,
        reason TEXT NOT NULL,
        detail TEXT NOT NULL,
        since TEXT NOT NULL,
        recheck_at TEXT NOT NULL,
        principal TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        advice TEXT,
        kind TEXT,
        signature TEXT
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS promises (
        object_id TEXT PRIMARY KEY,
        resource TEXT NOT NULL,
        notified_at TEXT,
        seen_at TEXT,
        version INTEGER NOT NULL
    ) WITHOUT ROWID""",
)
_HOLD_COLUMNS = "entra_id, reason, detail, since, recheck_at, principal, attempts, advice, kind, signature"
_LINK_COLUMNS = (
    "entra_id, druva_user_id, email, mapping, profile, storage, quota, status, decided_at, version"
)


class SqliteStateStore(StateRules):
    def __init__(self, connection: sqlite3.Connection, path: Path, clock: Clock) -> None:
        self._db = connection
        self.path = path
        self._clock = clock

    @classmethod
    def open(
        cls, folder: Path, *, clock: Clock | None = None, create_missing: bool = True
    ) -> SqliteStateStore:
        """``create_missing`` False (a dry run) opens an empty in-memory store instead of creating the
        file: a plan on a machine that never synced must leave nothing behind; an existing file is then
        read as it is (``_read_only``)."""
        path = folder / FILE_NAME
        _refuse_unusable_files(path)
        if not create_missing and path.exists():
            return cls._read_only(path, clock)
        if create_missing:
            _make_folder(folder)
        target = str(path) if create_missing else ":memory:"
        connection = _connect(target, path if create_missing else Path(":memory:"))
        try:
            _prepare(connection, path)
        except BaseException:
            connection.close()
            raise
        return cls(connection, path, clock or SystemClock())

    @classmethod
    def in_memory(cls, *, clock: Clock | None = None) -> SqliteStateStore:
        """A store that lives and dies with the process: a dry run on a machine that never synced, and
        the service tests' stand-in (the real rules, no file)."""
        connection = _connect(":memory:", Path(":memory:"))
        _create_schema(connection, Path(":memory:"))
        return cls(connection, Path(":memory:"), clock or SystemClock())

    @classmethod
    def _read_only(cls, path: Path, clock: Clock | None) -> SqliteStateStore:
        """The existing file, opened so that nothing can be written (a dry run's guarantee, enforced) and
        nothing is created beside it: ``status``, ``explain`` and ``--dry-run`` read the state of a running
        deployment, perhaps from a folder they may not write, perhaps as root (a root-owned ``-shm`` left
        behind would lock the deployment's own user out).

        While a write-ahead log exists, a writer has the file open (the last connection to close folds
        the log in and removes it) or crashed with commits in it: the log must be read, with its ``-shm``
        index, which then exists too. A rollback journal means a write is under way (or was cut short):
        the read must take its lock and wait. Without either, every commit is in the file itself, and
        ``immutable`` reads it with no index and no lock, which a read-only folder allows. A writer that
        starts meanwhile appends to a new log and changes the file only at a checkpoint (after 1,000 pages
        of log, or when it closes), so a read of milliseconds stays whole unless a checkpoint lands within
        it; SQLite then finds the file damaged, and the message says to try again first."""
        waiting = any(Path(f"{path}{suffix}").exists() for suffix in ("-wal", "-journal"))
        uri = f"{path.absolute().as_uri()}?mode=ro" + ("" if waiting else "&immutable=1")
        connection = _connect(uri, path, read_only=True)
        try:
            found = connection.execute("PRAGMA user_version").fetchone()[0]
            problem = _schema_problem(found, writing=False)
            if problem:
                raise StateFileError(f"state file {path} {problem}")
        except BaseException:
            connection.close()
            raise
        return cls(connection, path, clock or SystemClock())

    async def aclose(self) -> None:
        self._db.close()

    # links

    async def get_link(self, entra_id: str) -> AccountLink | None:
        with _locked():
            row = self._db.execute(
                f"SELECT {_LINK_COLUMNS} FROM links WHERE entra_id = ?",  # noqa: S608 (constant columns)
                (entra_id,),
            ).fetchone()
        return _link(row) if row else None

    async def get_links(self, entra_ids: Collection[str]) -> dict[str, AccountLink]:
        found: dict[str, AccountLink] = {}
        with _locked():
            for chunk in chunks(sorted(set(entra_ids)), _IN_CHUNK):
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(
                    f"SELECT {_LINK_COLUMNS} FROM links WHERE entra_id IN ({marks})",  # noqa: S608
                    tuple(chunk),
                )
                found.update((row["entra_id"], _link(row)) for row in rows)
        return found

    async def links(self) -> AsyncIterator[AccountLink]:
        # Keyset pages rather than one open cursor: no read transaction is held across the caller's awaits.
        after = ""
        while True:
            with _locked():
                rows = self._db.execute(
                    f"SELECT {_LINK_COLUMNS} FROM links WHERE entra_id > ? "  # noqa: S608
                    "ORDER BY entra_id LIMIT ?",
                    (after, _PAGE),
                ).fetchall()
            for row in rows:
                yield _link(row)
            if len(rows) < _PAGE:
                return
            after = rows[-1]["entra_id"]

    async def owner_of(self, druva_user_id: int) -> str | None:
        with _locked():
            row = self._db.execute(
                "SELECT entra_id FROM links WHERE druva_user_id = ?", (druva_user_id,)
            ).fetchone()
        return row["entra_id"] if row else None

    async def _write_link(self, link: AccountLink) -> AccountLink:
        values = (
            link.druva_user_id,
            link.email,
            link.mapping,
            link.profile,
            link.storage,
            link.quota,
            link.status.value,
            time_text(link.decided_at),
        )
        with _locked():
            try:
                version = self._write_link_row(link, values)
            except sqlite3.IntegrityError:
                raise self._link_conflict(link) from None
        return replace(link, version=str(version))

    def _write_link_row(self, link: AccountLink, values: tuple[object, ...]) -> int:
        if link.version is None:
            self._db.execute(
                f"INSERT INTO links ({_LINK_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1)",  # noqa: S608
                (link.entra_id, *values),
            )
            return 1
        expected = _version_number(link.version)
        changed = self._db.execute(
            "UPDATE links SET druva_user_id = ?, email = ?, mapping = ?, profile = ?, storage = ?, "
            "quota = ?, status = ?, decided_at = ?, version = version + 1 "
            "WHERE entra_id = ? AND version = ?",
            (*values, link.entra_id, expected),
        ).rowcount
        if changed != 1:
            raise ConcurrencyConflict(
                f"the link of account {link.entra_id} changed since version {link.version}"
            )
        return expected + 1

    def _link_conflict(self, link: AccountLink) -> ConcurrencyConflict:
        owner = self._db.execute(
            "SELECT entra_id FROM links WHERE druva_user_id = ? AND entra_id <> ?",
            (link.druva_user_id, link.entra_id),
        ).fetchone()
        if owner:
            return ConcurrencyConflict(
                f"Druva user {link.druva_user_id} is already linked to Entra account {owner['entra_id']}"
            )
        return ConcurrencyConflict(f"account {link.entra_id} is already linked (expected no link yet)")

    async def count_managed(self) -> int:
        with _locked():
            row = self._db.execute(
                "SELECT count(*) FROM links WHERE status = ?", (LinkStatus.ACTIVE.value,)
            ).fetchone()
        return int(row[0])

    # delta cursors

    async def get_cursor(self, name: str) -> CursorState:
        with _locked():
            row = self._db.execute("SELECT * FROM cursors WHERE name = ?", (name,)).fetchone()
        return _cursor(row) if row else CursorState(name=name)

    async def _write_cursor(self, state: CursorState, expected: str | None) -> CursorState:
        values = (state.value, state.lease_owner, time_text(state.lease_until), time_text(state.updated_at))
        with _locked():
            if expected is None:
                version = self._insert_cursor(state.name, values)
            else:
                version = self._update_cursor(state.name, values, _version_number(expected))
        return replace(state, version=str(version))

    def _insert_cursor(self, name: str, values: tuple[object, ...]) -> int:
        try:
            self._db.execute(
                "INSERT INTO cursors (name, value, lease_owner, lease_until, updated_at, version) "
                "VALUES (?, ?, ?, ?, ?, 1)",
                (name, *values),
            )
        except sqlite3.IntegrityError:
            raise ConcurrencyConflict(f"cursor {name!r} was created by another writer first") from None
        return 1

    def _update_cursor(self, name: str, values: tuple[object, ...], expected: int) -> int:
        changed = self._db.execute(
            "UPDATE cursors SET value = ?, lease_owner = ?, lease_until = ?, updated_at = ?, "
            "version = version + 1 WHERE name = ? AND version = ?",
            (*values, name, expected),
        ).rowcount
        if changed != 1:
            raise ConcurrencyConflict(f"cursor {name!r} moved since this pass read it")
        return expected + 1

    # change-notification subscriptions

    async def get_subscription(self, resource: str) -> Subscription | None:
        with _locked():
            row = self._db.execute("SELECT * FROM subscriptions WHERE resource = ?", (resource,)).fetchone()
        if row is None:
            return None
        return Subscription(
            id=row["id"],
            resource=row["resource"],
            expires_at=_time(row["expires_at"]),
            notification_url=row["notification_url"],
            lifecycle_url=row["lifecycle_url"],
            # sqlite3.Row's "in" looks at values, not column names: ask for the names.
            client_state_fingerprint=row[_FINGERPRINT] if _FINGERPRINT in row.keys() else None,  # noqa: SIM118
        )

    async def put_subscription(self, subscription: Subscription) -> None:
        check_subscription(subscription)
        with _locked():
            self._db.execute(
                "INSERT OR REPLACE INTO subscriptions "
                "(resource, id, expires_at, notification_url, lifecycle_url, client_state_fingerprint) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    subscription.resource,
                    subscription.id,
                    time_text(subscription.expires_at),
                    subscription.notification_url,
                    subscription.lifecycle_url,
                    subscription.client_state_fingerprint,
                ),
            )

    async def delete_subscription(self, resource: str) -> None:
        with _locked():
            self._db.execute("DELETE FROM subscriptions WHERE resource = ?", (resource,))

    # membership index

    async def load_memberships(self, group_ids: Collection[str] | None = None) -> MembershipIndex:
        with _locked():
            return MembershipIndex.from_edges(
                (row["group_id"], row["member_id"], bool(row["member_is_group"]))
                for row in self._membership_rows(group_ids)
            )

    def _membership_rows(self, group_ids: Collection[str] | None) -> Iterator[sqlite3.Row]:
        if group_ids is None:
            yield from self._db.execute("SELECT group_id, member_id, member_is_group FROM memberships")
            return
        for chunk in chunks(sorted(set(group_ids)), _IN_CHUNK):
            marks = ",".join("?" * len(chunk))
            yield from self._db.execute(
                "SELECT group_id, member_id, member_is_group FROM memberships "  # noqa: S608
                f"WHERE group_id IN ({marks})",
                tuple(chunk),
            )

    async def memberships_of(self, member_id: str) -> frozenset[str]:
        with _locked():
            rows = self._db.execute("SELECT group_id FROM memberships WHERE member_id = ?", (member_id,))
            return frozenset(row["group_id"] for row in rows)

    async def _write_memberships(self, plan: MembershipPlan) -> None:
        with _locked(), self._transaction() as db:
            db.executemany("DELETE FROM memberships WHERE group_id = ?", [(g,) for g in plan.forget])
            db.executemany("DELETE FROM memberships WHERE member_id = ?", [(g,) for g in plan.vanished])
            db.executemany(
                "DELETE FROM memberships WHERE group_id = ? AND member_id = ?",
                [(edge.group_id, edge.member_id) for edge in plan.removed],
            )
            db.executemany(
                "INSERT OR REPLACE INTO memberships (group_id, member_id, member_is_group) VALUES (?, ?, ?)",
                [(edge.group_id, edge.member_id, int(edge.member_is_group)) for edge in plan.added],
            )

    # follow-ups

    async def holds(self, entra_ids: Collection[str] | None = None) -> dict[str, Hold]:
        with _locked(), _absent_table_is_empty():
            if entra_ids is None:
                rows = self._db.execute(f"SELECT {_HOLD_COLUMNS} FROM holds").fetchall()  # noqa: S608
            else:
                rows = []
                for chunk in chunks(sorted(set(entra_ids)), _IN_CHUNK):
                    marks = ",".join("?" * len(chunk))
                    rows += self._db.execute(
                        f"SELECT {_HOLD_COLUMNS} FROM holds WHERE entra_id IN ({marks})",  # noqa: S608
                        tuple(chunk),
                    ).fetchall()
            return {row["entra_id"]: _hold(row) for row in rows}
        return {}

    async def _write_holds(self, holds: Sequence[Hold]) -> None:
        with _locked(), self._transaction() as db:
            db.executemany(
                f"INSERT OR REPLACE INTO holds ({_HOLD_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608
                [_hold_row(hold) for hold in holds],
            )

    async def clear_holds(self, entra_ids: Collection[str]) -> None:
        if not entra_ids:
            return
        with _locked(), self._transaction() as db:
            db.executemany("DELETE FROM holds WHERE entra_id = ?", [(i,) for i in set(entra_ids)])

    async def _promise_records(self, object_ids: Collection[str] | None = None) -> dict[str, PromiseRecord]:
        columns = "SELECT object_id, resource, notified_at, seen_at, version FROM promises"
        with _locked(), _absent_table_is_empty():
            rows: list[sqlite3.Row] = []
            if object_ids is None:
                rows = self._db.execute(columns).fetchall()
            for chunk in chunks(sorted(set(object_ids or ())), _IN_CHUNK):
                marks = ",".join("?" * len(chunk))
                rows += self._db.execute(f"{columns} WHERE object_id IN ({marks})", tuple(chunk)).fetchall()
            return {
                row["object_id"]: PromiseRecord(
                    row["object_id"],
                    row["resource"],
                    parse_time(row["notified_at"]),
                    parse_time(row["seen_at"]),
                    str(row["version"]),
                )
                for row in rows
            }
        return {}

    async def _write_promise_records(
        self, writes: Sequence[PromiseRecord], forget: Sequence[PromiseRecord]
    ) -> None:
        """One transaction: all of it, or (a record changed since it was read) none of it."""
        if not writes and not forget:
            return
        with _locked(), self._transaction() as db:
            for record in forget:
                _expect_one(
                    db.execute(
                        "DELETE FROM promises WHERE object_id = ? AND version = ?",
                        (record.object_id, _version_number(record.version or "0")),
                    ),
                    record,
                )
            for record in writes:
                _expect_one(_write_promise(db, record), record)

    # audit trail and run history

    async def append_audit(self, entries: Sequence[AuditEntry]) -> None:
        rows = [_audit_row(entry) for entry in entries]
        with _locked(), self._transaction() as db:
            db.executemany(
                "INSERT INTO audit (entra_id, at, at_us, principal, action, outcome, reason, run_id, detail) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    async def audit_for(self, entra_id: str, limit: int = 50) -> list[AuditEntry]:
        with _locked():
            rows = self._db.execute(
                "SELECT * FROM audit WHERE entra_id = ? ORDER BY at_us DESC, seq DESC LIMIT ?",
                (entra_id, max(limit, 0)),
            ).fetchall()
        return [_audit(row) for row in rows]

    async def _write_run(self, summary: RunSummary, counts: str, failures: str | None) -> None:
        with _locked():
            self._db.execute(
                "INSERT OR REPLACE INTO runs "
                "(run_id, kind, started_at, started_us, finished_at, counts, dry_run, stopped, failures) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    summary.run_id,
                    summary.kind,
                    time_text(summary.started_at),
                    micros(summary.started_at),
                    time_text(summary.finished_at),
                    counts,
                    int(summary.dry_run),
                    summary.stopped,
                    failures,
                ),
            )

    async def recent_runs(self, limit: int = 20) -> list[RunSummary]:
        with _locked():
            rows = self._db.execute(
                "SELECT * FROM runs ORDER BY started_us DESC, run_id DESC LIMIT ?", (max(limit, 0),)
            ).fetchall()
        return [_run(row) for row in rows]

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        # IMMEDIATE takes the write lock up front, so two processes never both read then clash on write.
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")


def _prepare(connection: sqlite3.Connection, path: Path) -> None:
    with _locked():
        _use_wal(connection, path)
        # NORMAL is durable across process crashes; a power cut may lose the last commits, which the
        # product recovers from anyway (a delta pass is replayed, a lost link is re-adopted by e-mail).
        connection.execute("PRAGMA synchronous = NORMAL")
        connection.execute("BEGIN IMMEDIATE")
        try:
            _create_schema(connection, path)
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")


def _use_wal(connection: sqlite3.Connection, path: Path) -> None:
    """Switch to WAL, waiting for a process that opens the same new file at the same moment: SQLite
    answers "locked" at once to a journal-mode change instead of calling the busy handler."""
    deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
    while True:
        try:
            connection.execute("PRAGMA journal_mode = WAL")
            return
        except StateFileBusy:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _create_schema(connection: sqlite3.Connection, path: Path) -> None:
    found = connection.execute("PRAGMA user_version").fetchone()[0]
    problem = _schema_problem(found, writing=True)
    if problem:
        raise StateFileError(f"state file {path} {problem}")
    if found:  # an existing file: bring it up to date, one version at a time
        for version in range(found + 1, SCHEMA_VERSION + 1):
            for statement in _MIGRATIONS.get(version, ()):
                connection.execute(statement)
    for statement in _SCHEMA:
        connection.execute(statement)
    columns = {row[1] for row in connection.execute("PRAGMA table_info(subscriptions)")}
    if _FINGERPRINT not in columns:  # a file from before subscriptions kept their clientState fingerprint
        connection.execute(f"ALTER TABLE subscriptions ADD COLUMN {_FINGERPRINT} TEXT")
    connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _schema_problem(found: int, *, writing: bool) -> str | None:
    """What is wrong with a file's schema stamp, and what to do, or None. A writer brings any older file
    up to date (0 is a new, empty file); a reader reads what it can (``_READABLE_FROM`` onwards)."""
    if found > SCHEMA_VERSION:
        return (
            f"was written by a newer release (state schema {found}; this one understands up to "
            f"{SCHEMA_VERSION}): upgrade the app, or point PROVISIONING_STATE at another folder"
        )
    if not writing and found < _READABLE_FROM:
        return (
            f"holds no state of this product (state schema {found}: an empty or another program's "
            "database): point PROVISIONING_STATE at the folder a sync wrote, or move the file aside"
        )
    return None


def _refuse_unusable_files(path: Path) -> None:
    """The file and its companions must be regular files: SQLite would block on a FIFO for ever and
    cannot use a directory or a device. Checked without opening anything."""
    for candidate in (path, *(Path(f"{path}{suffix}") for suffix in _COMPANIONS)):
        try:
            problem = regular_file_problem(candidate)
        except OSError as error:  # a symbolic-link loop, a folder this user may not enter
            problem = f"cannot be used ({error.strerror or error})"
        if problem:
            raise StateFileError(
                f"state file {candidate} {problem}: remove or rename it, or point PROVISIONING_STATE at "
                "another folder"
            )


_COMPANIONS = ("-wal", "-shm", "-journal")


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise StateFileError(
            f"state folder {folder} cannot be created ({error.strerror or error}): set PROVISIONING_STATE "
            "to a folder this user may write"
        ) from None


def _connect(target: str, path: Path, *, read_only: bool = False) -> sqlite3.Connection:
    """Autocommit (isolation_level None): transactions are explicit, BEGIN IMMEDIATE where needed."""
    with _classified(path, read_only=read_only):
        connection = sqlite3.connect(
            target,
            timeout=BUSY_TIMEOUT_SECONDS,
            isolation_level=None,
            uri=target.startswith("file:"),
            factory=_StateConnection,
        )
    connection.path, connection.read_only = path, read_only
    connection.row_factory = sqlite3.Row
    return connection


class _StateConnection(sqlite3.Connection):
    """Every statement's failure is classified here, once, naming the file: the record code stays about
    records, and no SQLite error reaches an operator as "unexpected OperationalError". Rows are fetched
    through ``_StateCursor``, so a page found damaged half-way through a scan is classified too."""

    path = Path(":memory:")
    read_only = False

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        return self.cursor(_StateCursor).execute(sql, parameters)

    def executemany(self, sql: str, parameters: Any, /) -> sqlite3.Cursor:
        return self.cursor(_StateCursor).executemany(sql, parameters)


class _StateCursor(sqlite3.Cursor):
    def _classified(self) -> AbstractContextManager[None]:
        connection = self.connection
        assert isinstance(connection, _StateConnection)
        return _classified(connection.path, read_only=connection.read_only)

    def execute(self, sql: str, parameters: Any = (), /) -> _StateCursor:
        with self._classified():
            return super().execute(sql, parameters)

    def executemany(self, sql: str, parameters: Any, /) -> _StateCursor:
        with self._classified():
            return super().executemany(sql, parameters)

    def fetchone(self) -> Any:
        with self._classified():
            return super().fetchone()

    def fetchall(self) -> list[Any]:
        with self._classified():
            return super().fetchall()

    def fetchmany(self, size: int | None = 1) -> list[Any]:
        with self._classified():
            return super().fetchmany(size)

    def __next__(self) -> Any:
        with self._classified():
            return super().__next__()


@contextmanager
def _classified(path: Path, *, read_only: bool) -> Iterator[None]:
    """SQLite's error codes, mapped once to the product's: busy is worth trying again (exit 1), the disk
    or a read failing for now too; a file that is not a database, is damaged or cannot be written where
    writing is needed is a ``StateFileError`` (exit 2). Anything else (a constraint, a missing table)
    is the record code's to handle, unchanged."""
    try:
        yield
    except sqlite3.DatabaseError as error:
        mapped = _mapped(error, path, read_only=read_only)
        if mapped is None:
            raise
        raise mapped from error


def _mapped(error: sqlite3.DatabaseError, path: Path, *, read_only: bool) -> ProvisioningError | None:
    code = getattr(error, "sqlite_errorcode", 0)
    primary = code & 0xFF
    if primary in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return StateFileBusy(
            f"state file {path} is busy: another process held its lock for {BUSY_TIMEOUT_SECONDS:g} s "
            f"({error}); try again when it is done",
            retry_after=1.0,
        )
    if primary == sqlite3.SQLITE_READONLY:
        return _read_only_problem(path, error, read_only=read_only)
    if primary in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        first = "if a sync was starting at that moment, try again; otherwise " if read_only else ""
        return StateFileError(f"{path} is not a usable SQLite state file ({error}): {first}{DAMAGED_ADVICE}")
    if primary == sqlite3.SQLITE_FULL:
        return TransientError(f"the disk holding the state file {path} is full ({error}): free some space")
    if primary in (sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM) or code in _SHARED_MEMORY_CODES:
        return StateFileError(_cannot_open(path, error, read_only=read_only))
    if primary == sqlite3.SQLITE_IOERR:
        return TransientError(f"state file {path}: the disk failed to read or write it ({error})")
    return None


# The index of a write-ahead log could not be opened or mapped: in practice a folder this user may not
# write, while a writer's log waits to be folded in.
_SHARED_MEMORY_CODES = frozenset(
    {sqlite3.SQLITE_IOERR_SHMOPEN, sqlite3.SQLITE_IOERR_SHMMAP, sqlite3.SQLITE_IOERR_SHMSIZE}
)


def _read_only_problem(path: Path, error: sqlite3.DatabaseError, *, read_only: bool) -> ProvisioningError:
    if not read_only:
        return StateFileError(
            f"state file {path} cannot be written ({error}): the file or its folder is read-only for this "
            "user; give it write access (status, explain and sync --dry-run only read it)"
        )
    if error.sqlite_errorcode == sqlite3.SQLITE_READONLY:  # plain: this connection was asked to write
        return ProvisioningError(
            f"state file {path} is only read by this command, yet a write was attempted ({error}); "
            "nothing was written. Please report this"
        )
    return StateFileError(_cannot_open(path, error, read_only=True))  # its log or lock cannot be used


def _cannot_open(path: Path, error: sqlite3.DatabaseError, *, read_only: bool) -> str:
    if read_only:
        return (
            f"state file {path} cannot be read ({error}): its write-ahead log {path}-wal needs an index "
            "beside it that this user cannot create (the folder is read-only for it). Run as the user "
            "that writes the state, or once the running sync has ended (the log is then folded in)"
        )
    return (
        f"state file {path} cannot be opened ({error}): PROVISIONING_STATE must be a folder this user "
        "may read and write"
    )


@contextmanager
def _locked() -> Iterator[None]:
    """A lock held past the busy timeout is worth retrying later, like any transient fault. Statements
    are classified by the connection (``_classified``); this keeps a connection of another kind honest."""
    try:
        yield
    except sqlite3.OperationalError as error:
        if _busy(error):
            raise StateFileBusy(f"state file busy: {error}; try again", retry_after=1.0) from error
        raise


@contextmanager
def _absent_table_is_empty() -> Iterator[None]:
    """A file of an older schema opened read-only has no follow-up tables yet: nothing is held there.
    The caller returns its empty answer after this block when the table was missing."""
    try:
        yield
    except sqlite3.OperationalError as error:
        if "no such table" not in str(error):
            raise


def _busy(error: sqlite3.OperationalError) -> bool:
    code = getattr(error, "sqlite_errorcode", 0) & 0xFF
    return code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) or "locked" in str(error)


def _version_number(version: str) -> int:
    try:
        return int(version)
    except ValueError:
        raise ConcurrencyConflict(f"version {version!r} was not issued by this state store") from None


def _time(text: str) -> datetime:
    moment = parse_time(text)
    assert moment is not None  # NOT NULL column
    return moment


@decodes("link")
def _link(row: sqlite3.Row) -> AccountLink:
    return AccountLink(
        entra_id=row["entra_id"],
        druva_user_id=row["druva_user_id"],
        email=row["email"],
        mapping=row["mapping"],
        profile=row["profile"],
        storage=row["storage"],
        quota=row["quota"],
        status=LinkStatus(row["status"]),
        decided_at=_time(row["decided_at"]),
        version=str(row["version"]),
    )


def _write_promise(db: sqlite3.Connection, record: PromiseRecord) -> sqlite3.Cursor:
    times = (time_text(record.notified_at), time_text(record.seen_at))
    if record.version is None:
        return db.execute(
            "INSERT OR IGNORE INTO promises (object_id, resource, notified_at, seen_at, version) "
            "VALUES (?, ?, ?, ?, 1)",
            (record.object_id, record.resource, *times),
        )
    return db.execute(
        "UPDATE promises SET resource = ?, notified_at = ?, seen_at = ?, version = version + 1 "
        "WHERE object_id = ? AND version = ?",
        (record.resource, *times, record.object_id, _version_number(record.version)),
    )


def _expect_one(cursor: sqlite3.Cursor, record: PromiseRecord) -> None:
    # Raised inside the transaction, which then rolls back whatever it wrote before.
    if cursor.rowcount != 1:
        raise ConcurrencyConflict(f"the followed change of {record.object_id} changed since it was read")


def _hold_row(hold: Hold) -> tuple[object, ...]:
    return (
        hold.entra_id,
        hold.reason.value,
        hold.detail,
        time_text(hold.since),
        time_text(hold.recheck_at),
        hold.principal,
        hold.attempts,
        hold.advice,
        hold.kind,
        hold.signature,
    )


@decodes("hold")
def _hold(row: sqlite3.Row) -> Hold:
    return Hold(
        entra_id=row["entra_id"],
        reason=HoldReason(row["reason"]),
        detail=row["detail"],
        since=_time(row["since"]),
        recheck_at=_time(row["recheck_at"]),
        principal=row["principal"],
        attempts=int(row["attempts"]),
        advice=row["advice"],
        kind=row["kind"],
        signature=row["signature"],
    )


@decodes("cursor")
def _cursor(row: sqlite3.Row) -> CursorState:
    return CursorState(
        name=row["name"],
        value=row["value"],
        lease_owner=row["lease_owner"],
        lease_until=parse_time(row["lease_until"]),
        updated_at=parse_time(row["updated_at"]),
        version=str(row["version"]),
    )


def _audit_row(entry: AuditEntry) -> tuple[object, ...]:
    detail = to_json(entry.detail)
    check_audit(entry, detail)
    return (
        entry.entra_id,
        time_text(entry.at),
        micros(entry.at),
        entry.principal,
        entry.action,
        entry.outcome,
        entry.reason,
        entry.run_id,
        detail,
    )


@decodes("audit")
def _audit(row: sqlite3.Row) -> AuditEntry:
    return AuditEntry(
        at=_time(row["at"]),
        entra_id=row["entra_id"],
        principal=row["principal"],
        action=row["action"],
        outcome=AuditOutcome(row["outcome"]),
        reason=row["reason"],
        run_id=row["run_id"],
        detail=json.loads(row["detail"]),
    )


@decodes("run")
def _run(row: sqlite3.Row) -> RunSummary:
    return RunSummary(
        run_id=row["run_id"],
        kind=RunKind(row["kind"]),
        started_at=_time(row["started_at"]),
        finished_at=_time(row["finished_at"]),
        counts=json.loads(row["counts"]),
        dry_run=bool(row["dry_run"]),
        stopped=row["stopped"],
        # A schema-1 file opened read-only has no failures column (sqlite3.Row's "in" looks at values).
        failures=parse_failures(row["failures"] if "failures" in row.keys() else None),  # noqa: SIM118
    )
