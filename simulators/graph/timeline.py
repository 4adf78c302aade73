"""When each change happens: made (now, or planned for later), readable (replication), notified.

How real Entra ID behaves is set by a ``GraphRealism`` (``simulators/realism.py``); the kind one makes
every change readable and notified the moment it is made, as a test wants.

- *Made.* A change made through the simulator is made on the directory at once. Some are planned for
  later, as Entra makes them: the properties of a new user beyond its skeleton (``skeleton_fill``, one
  change and one notification each), its mailbox (``mailbox_provisioning``; until then Exchange answers
  404), the dynamic-group memberships of a hire (``dynamic_membership``). A planned change is made at its
  moment (its notification and replication timers start then), and a later write of the same property
  or mailbox by an admin cancels it: the later write wins, as it would in Entra.
- *Readable.* ``replication`` seconds after it is made (``replica.py``).
- *Notified.* ``notification`` seconds after it is made, independently of when it becomes readable; a
  fraction is posted twice, a fraction never. Different changes' notifications so arrive out of order.

Time is the simulator's clock, never a sleeping thread: whatever is due is done when the simulator
catches up (every request, every admin call, ``flush_deliveries``, ``next_due``), in the order it fell
due; under real time the clockwork thread (``Clockwork``) catches up when the next thing falls due, as
nobody else may call. Every draw comes from a ``random.Random`` seeded from the simulator's seed, so runs
repeat. ``ChangeLog`` (``changes.py``) records when each change was made, readable and notified.
"""

from __future__ import annotations

import contextlib
import copy
import heapq
import itertools
import random
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from simulators.graph.changes import ChangeLog, ChangeRecord
from simulators.graph.replica import Replication, write_of
from simulators.graph.store import Change, DirectoryStore, NotFound, Write
from simulators.graph.subscriptions import notice_of
from simulators.graph.webhooks import Notice, Webhooks
from simulators.realism import GraphRealism
from simulators.tenants import Tenant

SKELETON = ("id", "userPrincipalName", "displayName", "createdDateTime")  # what a new user starts with
# Graph leaves createdDateTime out for some users created before June 2018. Loaded users were created
# at some moment up to OLDEST_ACCOUNT_DAYS ago; of those older than that date, this fraction has none.
STAMPED_SINCE = datetime(2018, 6, 1, tzinfo=UTC)
OLDEST_ACCOUNT_DAYS = 12 * 365
UNSTAMPED_BEFORE_2018 = 0.3

PlanKey = tuple[str, ...]  # ("fill", user, property) | ("mailbox", user) | ("member", group, user)


@dataclass(order=True)
class Planned:
    at: datetime
    order: int
    key: PlanKey = field(compare=False)
    make: Callable[[], object] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)


class PlannedChanges:
    """Changes to make at a later moment, first due first; one per key."""

    def __init__(self) -> None:
        self._heap: list[Planned] = []
        self._by_key: dict[PlanKey, Planned] = {}
        self._order = itertools.count()

    def plan(self, at: datetime, key: PlanKey, make: Callable[[], object]) -> None:
        self.cancel(key)
        planned = Planned(at, next(self._order), key, make)
        heapq.heappush(self._heap, planned)
        self._by_key[key] = planned

    def cancel(self, key: PlanKey) -> None:
        found = self._by_key.pop(key, None)
        if found is not None:
            found.cancelled = True

    def due(self, now: datetime) -> Iterator[Planned]:
        while self._heap and self._heap[0].at <= now:
            planned = heapq.heappop(self._heap)
            if not planned.cancelled:
                del self._by_key[planned.key]
                yield planned

    def objects(self) -> set[str]:
        """Every user or group a planned change is for (a member change: the group and the member)."""
        return {part for key in self._by_key for part in key[1:]}

    def next_due(self) -> datetime | None:
        while self._heap and self._heap[0].cancelled:
            heapq.heappop(self._heap)
        return self._heap[0].at if self._heap else None

    def clear(self) -> None:
        self._heap.clear()
        self._by_key.clear()


class Timeline:
    """The changes made on ``directory`` on their way to ``replica`` (the same store in the kind profile)
    and to the subscribers of ``webhooks``. Callers that make changes hold ``lock`` and catch up first."""

    def __init__(
        self,
        realism: GraphRealism,
        directory: DirectoryStore,
        replica: DirectoryStore,
        webhooks: Webhooks,
        *,
        clock: Callable[[], datetime],
        seed: int,
    ) -> None:
        self.realism = realism
        self.directory = directory
        self.replica = replica
        self.webhooks = webhooks
        self.clock = clock
        self.seed = seed
        self.log = ChangeLog()
        self.planned = PlannedChanges()
        self.replication = None if directory is replica else Replication(replica)
        self.quiet = realism == GraphRealism()  # the kind profile: nothing ever waits for its moment
        self._draws = random.Random(f"graph-timeline:{seed}")
        self._moment: datetime | None = None  # the moment of the planned change being made
        # A benchmark's pins: every change made while set is readable (notified, once) after exactly
        # these seconds instead of the profile's draws, so a figure can be read per delay band.
        self.pinned_replication: float | None = None
        self.pinned_notification: float | None = None
        directory.listeners.append(self.made)

    @property
    def lock(self) -> threading.RLock:
        return self.replica.lock

    def now(self) -> datetime:
        return self._moment if self._moment is not None else self.clock()

    # catching up -----------------------------------------------------------------------------------
    def catch_up(self) -> None:
        """Everything due by now, in the order it fell due: planned changes made, writes readable,
        notifications posted."""
        if self.quiet:
            return
        with self.lock:
            now = self.clock()
            for planned in self.planned.due(now):
                self._make(planned)
            if self.replication is not None:
                self.replication.apply_due(now)
            self.webhooks.release_due()

    def _make(self, planned: Planned) -> None:
        self._moment = planned.at
        try:
            with contextlib.suppress(NotFound, ValueError):  # its object is gone: so is the change
                planned.make()
        finally:
            self._moment = None

    def next_due(self) -> datetime | None:
        """The next planned change or notification (replication needs nobody to wait for it)."""
        with self.lock:
            moments = [m for m in (self.planned.next_due(), self.webhooks.next_due()) if m is not None]
        return min(moments, default=None)

    def forget(self) -> None:
        """A tenant was loaded over the directory: planned changes and writes in flight are void."""
        self.planned.clear()
        if self.replication is not None:
            self.replication.forget()

    # made ------------------------------------------------------------------------------------------
    def made(self, change: Change) -> None:
        """The directory recorded ``change``: start its replication and notification timers."""
        made_at = self.now()
        record = self.log.made(change, made_at)
        if self.replication is not None:
            self._replicate(write_of(change, self.directory), record, made_at)
        else:
            record.readable(made_at)
        self._notify(notice_of(change), record, made_at)

    def _replicate(
        self, write: Write, record: ChangeRecord, made_at: datetime, delay: float | None = None
    ) -> None:
        if self.replication is None:
            record.readable(made_at)
            return
        if delay is None:
            pinned = self.pinned_replication
            delay = self.realism.replication.draw(self._draws) if pinned is None else pinned
        self.replication.send(write, made_at, delay, record.readable)

    def _notify(self, notice: Notice, record: ChangeRecord, made_at: datetime) -> None:
        if self.pinned_notification is not None:
            record.notifications = 1
            due = made_at + timedelta(seconds=self.pinned_notification)
            self.webhooks.schedule(due, notice, record.notified)
            return
        record.notifications = self._copies()
        for _ in range(record.notifications):
            if not self.realism.notification.bands:
                self.webhooks.post(notice)
                record.notified(made_at)
                continue
            due = made_at + timedelta(seconds=self.realism.notification.draw(self._draws))
            self.webhooks.schedule(due, notice, record.notified)

    def _copies(self) -> int:
        """How many times a change's notification is posted: 0 (lost), 1 or 2 (a duplicate)."""
        if self.realism.notification_lost and self._draws.random() < self.realism.notification_lost:
            return 0
        duplicate = self.realism.notification_duplicate
        return 2 if duplicate and self._draws.random() < duplicate else 1

    def set_mailbox(
        self, user_id: str, settings: dict[str, Any] | None, *, provisioned: bool = False
    ) -> None:
        """``provisioned``: Exchange finished a new mailbox; it answers from then on, no replica lag."""
        self.directory.set_mailbox(user_id, settings)
        made_at = self.now()
        record = self.log.mailbox(user_id, made_at)
        write = Write("mailbox", user_id, state=copy.deepcopy(settings))
        self._replicate(write, record, made_at, 0.0 if provisioned else None)

    def owner_changed(self, group_id: str, owner_id: str, present: bool) -> None:
        """Owners are a relation of their own: readable after replication, never notified."""
        made_at = self.now()
        record = self.log.related("owner", group_id, owner_id, present, made_at)
        self._replicate(Write("owner", group_id, other=owner_id, present=present), record, made_at)

    # users as Entra creates them -------------------------------------------------------------------
    def create_user(self, user: dict[str, Any]) -> str:
        """A new user: whole (kind), or a skeleton filled in later, its mailbox provisioned later."""
        made_at = self.now()
        given = copy.deepcopy(user)
        if self.realism.created_stamp:
            given.setdefault("createdDateTime", _stamp(made_at))
        mailbox = given.get("mailboxSettings")
        provision_later = mailbox is not None and bool(self.realism.mailbox_provisioning.bands)
        if provision_later:
            given["mailboxSettings"] = None
        later: dict[str, Any] = {}
        if self.realism.skeleton_fill.bands:
            later = {k: v for k, v in given.items() if k not in (*SKELETON, "mailboxSettings")}
            given = {k: v for k, v in given.items() if k not in later}
        user_id = self.directory.add_user(given)
        for name, value in later.items():
            if value is not None:  # never set: nothing to fill in
                self._plan_fill(user_id, name, value, made_at)
        if provision_later:
            at = made_at + timedelta(seconds=self.realism.mailbox_provisioning.draw(self._draws))
            self.planned.plan(
                at, ("mailbox", user_id), lambda: self.set_mailbox(user_id, mailbox, provisioned=True)
            )
        return user_id

    def _plan_fill(self, user_id: str, name: str, value: Any, made_at: datetime) -> None:
        at = made_at + timedelta(seconds=self.realism.skeleton_fill.draw(self._draws))
        self.planned.plan(
            at, ("fill", user_id, name), lambda: self.directory.update_user(user_id, {name: value})
        )

    def hire(self, user: dict[str, Any], groups: Iterable[str]) -> str:
        """A new user whose dynamic groups take them in ``dynamic_membership`` seconds later."""
        wanted = list(dict.fromkeys(groups))
        for group_id in wanted:
            self.directory.find_group(group_id)  # an unknown group refuses the hire before it is made
        user_id = self.create_user(user)
        made_at = self.now()
        for group_id in wanted:
            if not self.realism.dynamic_membership.bands:
                self.directory.add_member(group_id, user_id)
                continue
            at = made_at + timedelta(seconds=self.realism.dynamic_membership.draw(self._draws))
            self._plan_membership(group_id, user_id, at)
        return user_id

    def _plan_membership(self, group_id: str, user_id: str, at: datetime) -> None:
        self.planned.plan(
            at, ("member", group_id, user_id), lambda: self.directory.add_member(group_id, user_id)
        )

    def overwritten(self, user_id: str, names: Iterable[str]) -> None:
        """An admin wrote these properties (or ``mailboxSettings``): what was planned for them is void."""
        for name in names:
            self.planned.cancel(
                ("mailbox", user_id) if name == "mailboxSettings" else ("fill", user_id, name)
            )

    # loaded tenants --------------------------------------------------------------------------------
    def stamped(self, tenant: Tenant) -> Tenant:
        """The tenant's users with a ``createdDateTime`` in the past (``created_stamp``), except some of
        the accounts older than June 2018, as Graph has them."""
        if not self.realism.created_stamp:
            return tenant
        draws = random.Random(f"graph-created:{self.seed}")
        now = self.clock()
        return Tenant([_stamped_user(u, draws, now) for u in tenant.users], tenant.groups)


def _stamped_user(user: dict[str, Any], draws: random.Random, now: datetime) -> dict[str, Any]:
    if "createdDateTime" in user:
        return user
    created = now - timedelta(days=draws.uniform(1.0, OLDEST_ACCOUNT_DAYS))
    if created < STAMPED_SINCE and draws.random() < UNSTAMPED_BEFORE_2018:
        return user
    return {**user, "createdDateTime": _stamp(created)}


def _stamp(moment: datetime) -> str:
    """Graph's createdDateTime: ISO 8601 in UTC to the second, with Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Clockwork:
    """Under real time nobody may call for a while (the product waits for a notification), so this
    thread catches up when the next planned change or notification falls due. It reads the clock again
    at least every ``POLL`` seconds: a clock that jumps is noticed within that."""

    POLL = 0.05

    def __init__(
        self,
        catch_up: Callable[[], None],
        next_due: Callable[[], datetime | None],
        clock: Callable[[], datetime],
    ) -> None:
        self._catch_up, self._next_due, self._clock = catch_up, next_due, clock
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="graph-clockwork", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        while not self._stopping.wait(self._pause()):
            self._catch_up()

    def _pause(self) -> float:
        due = self._next_due()
        if due is None:
            return self.POLL
        return min(self.POLL, max(0.0, (due - self._clock()).total_seconds()))
