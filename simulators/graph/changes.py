"""What happened to every change made, for benchmarks: when it was made, when it became readable, when
its notifications were posted.

A benchmark in another process reads ``GET /_admin/changes?since=N`` (or ``GraphSimulator.change_log``)
and matches the records with what reached Druva: "readable → written" is the product's latency, whatever
Graph's replication and notifications did. ``readable_at`` is the moment the change became readable (it
is set once the replica has taken it in, which happens at the first request or admin call after that
moment); ``notified_at`` has one moment per notification posted (none when it was lost, two for a
duplicate); ``notifications`` is how many were to be posted.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from simulators.graph.store import Change


def iso(moment: datetime) -> str:
    """ISO 8601 in UTC to the millisecond, always the same width: the strings sort as the moments do."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(slots=True)
class ChangeRecord:
    index: int  # 1, 2, ... in the order changes were made
    kind: str  # user | group | member | owner | mailbox
    id: str  # the user or group
    touched: tuple[str, ...]  # property names ("*": the whole object), or the relation changed
    made_at: datetime
    removed: str | None = None  # "changed" (soft) or "deleted" (hard)
    other: str | None = None  # the member or owner that joined or left
    added: bool | None = None
    restored: bool = False
    readable_at: datetime | None = None
    notifications: int = 0
    notified_at: list[datetime] = field(default_factory=list)

    def readable(self, moment: datetime) -> None:
        self.readable_at = moment

    def notified(self, moment: datetime) -> None:
        self.notified_at.append(moment)

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "kind": self.kind,
            "id": self.id,
            "touched": list(self.touched),
            "removed": self.removed,
            "other": self.other,
            "added": self.added,
            "restored": self.restored,
            "made_at": iso(self.made_at),
            "readable_at": None if self.readable_at is None else iso(self.readable_at),
            "notifications": self.notifications,
            "notified_at": [iso(m) for m in list(self.notified_at)],
        }


class ChangeLog:
    def __init__(self) -> None:
        self._records: list[ChangeRecord] = []
        self._lock = threading.Lock()

    def made(self, change: Change, made_at: datetime) -> ChangeRecord:
        """A directory change (user, group, member)."""
        if change.kind == "member":
            return self.related("member", change.id, change.member_id or "", change.member_added, made_at)
        touched = () if change.removed else tuple(sorted(change.props))
        return self._add(
            change.kind, change.id, touched, made_at, removed=change.removed, restored=change.restored
        )

    def related(self, kind: str, group_id: str, other: str, added: bool, made_at: datetime) -> ChangeRecord:
        """A member or owner joined or left a group."""
        relation = "members" if kind == "member" else "owners"
        return self._add(kind, group_id, (relation,), made_at, other=other, added=added)

    def mailbox(self, user_id: str, made_at: datetime) -> ChangeRecord:
        return self._add("mailbox", user_id, ("mailboxSettings",), made_at)

    def _add(
        self, kind: str, object_id: str, touched: tuple[str, ...], made_at: datetime, **extra: Any
    ) -> ChangeRecord:
        with self._lock:
            record = ChangeRecord(len(self._records) + 1, kind, object_id, touched, made_at, **extra)
            self._records.append(record)
            return record

    def records_since(self, index: int = 0) -> list[ChangeRecord]:
        """The records themselves (a driver in this process reads ``readable_at`` as it is filled in)."""
        with self._lock:
            return self._records[max(index, 0) :]

    def since(self, index: int = 0) -> list[dict[str, Any]]:
        """The records after the ``index``-th, as JSON."""
        with self._lock:
            later = self._records[max(index, 0) :]
        return [r.to_json() for r in later]
