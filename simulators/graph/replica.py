"""Replication: changes made on the directory reach the replica Graph reads from some time later.

A change is readable ``delay`` seconds after it was made, except that, per object, changes become
readable in the order they were made: a write's moment is the later of its own and that of the last
write pending for any object it touches (a membership touches the group and the member, so a member is
never listed before it can be read itself). Writes are applied lazily, in the order of those moments,
whenever the simulator catches up (the start of every request, every admin call): nothing runs on a
timer, so a simulated clock that jumps sees the same order as real time.
"""

from __future__ import annotations

import copy
import heapq
import itertools
from collections.abc import Callable
from datetime import datetime, timedelta

from simulators.graph.store import EVERYTHING, Change, DirectoryStore, Write

Readable = Callable[[datetime], None]  # told the moment its write became readable


def write_of(change: Change, directory: DirectoryStore) -> Write:
    """The write a replica needs for a change just recorded on ``directory`` (read at that moment)."""
    if change.kind == "member":
        return Write("member", change.id, other=change.member_id, present=change.member_added)
    if change.removed:
        return Write(change.kind, change.id, removed=change.removed)
    if change.kind == "user":
        user = copy.deepcopy(directory.users[change.id])
        if change.props == EVERYTHING and not change.restored:
            user["mailboxSettings"] = copy.deepcopy(directory.mailboxes.get(change.id))
        return Write("user", change.id, change.props, user, restored=change.restored)
    group = copy.deepcopy(directory.groups[change.id])
    if change.props == EVERYTHING:
        group["owners"] = list(directory.owners.get(change.id, ()))
    return Write("group", change.id, change.props, group)


class Replication:
    """The writes on their way to ``replica``. Callers hold the replica's lock."""

    def __init__(self, replica: DirectoryStore) -> None:
        self.replica = replica
        self._pending: list[tuple[datetime, int, Write, Readable]] = []
        self._latest: dict[str, datetime] = {}  # object id → when its last write becomes readable
        self._order = itertools.count()

    def send(self, write: Write, made_at: datetime, delay: float, readable: Readable) -> datetime:
        """Queue ``write``; returns when it becomes readable."""
        moment = made_at + timedelta(seconds=delay)
        for object_id in write.touches:
            moment = max(moment, self._latest.get(object_id, moment))
        for object_id in write.touches:
            self._latest[object_id] = moment
        heapq.heappush(self._pending, (moment, next(self._order), write, readable))
        return moment

    def apply_due(self, now: datetime) -> None:
        while self._pending and self._pending[0][0] <= now:
            moment, _, write, readable = heapq.heappop(self._pending)
            self.replica.apply(write)
            readable(moment)

    def next_due(self) -> datetime | None:
        return self._pending[0][0] if self._pending else None

    def forget(self) -> None:
        """The directory was replaced wholesale (a tenant loaded): nothing in flight survives it."""
        self._pending.clear()
        self._latest.clear()
