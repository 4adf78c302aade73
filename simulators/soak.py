"""The soak: months of Entra changes, expiries and outages on a simulated clock, checked continuously.

``python -m simulators.soak [--days 90] [--changes-per-day 1000] [--users 600]`` (``make soak``).

What runs: the product's own functions (``function_app.py``) on the local Functions host, its webhook
reached over HTTP by the Graph simulator's deliveries, the product talking HTTP to the Graph and Druva
simulators, SQLite state, and the Service Bus stand-in. One :class:`SimClock` is the time of all of them:
the product reads it through its ``Clock`` port (``runtime.use``), the stand-in, the Graph simulator
(subscription expiry, delta links unused for 7 days) and the Druva simulator (30-minute tokens) read it
directly. The driver here owns time: it fires the timers on their NCRONTAB schedules, delivers the
queue's messages when they are due (one at a time, as one worker instance would), and jumps the clock to
the next due moment (timer, scheduled message, scenario event) when nothing is left to do.

The expected Druva state comes from the scenario's own model of Entra and of the mappings (``_target``),
not from the product's planner. After every step, each account changed since Druva last matched the
model is compared with Druva: the time it took is its latency; one still wrong past its bound is a miss.
Bounds: ``UP_BOUND`` while everything is up; 15 minutes (plus one pass) after the end of a disruption that
overlapped the change (an outage, a lost or paused stream of notifications, a redeploy).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import logging
import os
import random
import secrets
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from azure.functions.timer import TimerRequest

from simulators import REPOSITORY
from simulators.druva import DEFAULT_SEED, DruvaSimulator
from simulators.functions_host import (
    HostedFunction,
    LocalFunctionsHost,
    Schedule,
    service_bus_message,
)
from simulators.graph import GraphSimulator
from simulators.graph.changes import ChangeRecord
from simulators.inprocess import RouterTransport
from simulators.local import simulator_settings
from simulators.outages import Outage, OutageKind
from simulators.realism import PROFILES, Profile, Realism
from simulators.servicebus import (
    LocalQueue,
    LocalServiceBus,
    Locked,
    MessageLockLost,
    QueueSettings,
)
from simulators.simclock import SimClock
from simulators.soak_costs import Costs, counting_state_calls
from simulators.tenants import DOMAIN, SECURITY, Tenant, make_group, make_user, without_user_types

log = logging.getLogger("provisioning.soak")
START = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday
UP_BOUND = timedelta(seconds=60)  # a change reaches Druva within seconds while everything is up
RECOVERY_BOUND = timedelta(minutes=15)  # ... and within 15 minutes after a disruption ends
SETTLE = timedelta(minutes=5)  # lifecycle.settle, the default the soak's mappings keep
REFUSED_RECHECK = timedelta(days=1)  # a refusal only a human can lift is tried again within a day
PASS_ALLOWANCE = timedelta(minutes=2)  # the pass that the 15th minute starts must be allowed to finish
QUEUE = "provisioning-work"
FINANCE = "Soak Finance"
OFFICES = ("New York", "Chicago", "London", "Paris", "Berlin")
US_OFFICES_V1 = ("New York", "Chicago")
US_OFFICES_V2 = ("New York", "Chicago", "London")  # the redeploy sends London to US-East


def mappings_yaml(us_offices: tuple[str, ...]) -> str:
    values = ", ".join(f'"{o}"' for o in us_offices)
    return f"""source:
  user_id_attribute: userPrincipalName
mappings:
  - name: Finance
    match: {{groups: ["{FINANCE}"]}}
    target: {{profile: Finance, storage: US-East}}
  - name: US offices
    match: {{attribute: officeLocation, values: [{values}]}}
    target: {{profile: Standard, storage: US-East}}
  - name: Shared mailboxes
    match: {{all: true, kinds: [shared_mailbox]}}
    target: {{profile: Mailboxes, storage: US-East}}
  - name: Everyone else
    match: {{all: true}}
    target: {{profile: Standard, storage: EU-West}}
lifecycle: {{disabled: preserve, deleted: preserve, unmapped: preserve, remap: update}}
safety:
  max_preserve_fraction: 0.5
"""


# the scenario's model of Entra, and what Druva should hold -------------------------------------------
@dataclass
class Person:
    id: str
    upn: str
    office: str
    enabled: bool = True
    finance: bool = False
    shared: bool = False
    deleted: bool = False


Expected = tuple[str, str, str] | tuple[str] | None  # (active, profile, storage) | (preserved,) | absent


def _target(person: Person, us_offices: tuple[str, ...]) -> tuple[str, str]:
    """The mappings above, evaluated independently of the product's planner."""
    if person.shared:
        return "Mailboxes", "US-East"
    if person.finance:
        return "Finance", "US-East"
    if person.office in us_offices:
        return "Standard", "US-East"
    return "Standard", "EU-West"


def expected(person: Person, us_offices: tuple[str, ...], ever: bool) -> Expected:
    if person.deleted or (not person.enabled and not person.shared):
        return ("preserved",) if ever else None
    return ("active", *_target(person, us_offices))


# the scenario --------------------------------------------------------------------------------------------
KINDS = (
    ("new_hire", 0.04),
    ("leaver", 0.04),
    ("re_enabled", 0.03),
    ("shared_mailbox", 0.01),
    ("group_move", 0.40),
    ("attribute", 0.48),
)


@dataclass(frozen=True)
class Disruption:
    name: str
    start: datetime
    end: datetime


@dataclass
class Plan:
    days: int = 14
    changes_per_day: int = 1000
    bursts_per_day: int = 24
    users: int = 600
    seed: int = 7
    cycle_days: int = 14  # the disruptions repeat every cycle, so a 90-day soak meets each several times
    renew_subscriptions: bool = True  # False: the deliberately broken product of the tests
    safety_net: bool = True  # False: the safety-net delta pass of keep_watch is removed
    mass_exodus: bool = False  # True: at noon on day 0, 60% of the users are disabled at once (a safety stop)
    only: tuple[str, ...] = ()  # only these disruptions, all on day 0 (the tests of the checks themselves)
    transport: str = "http"  # or "in-process": the product's requests reach the simulators without sockets
    realism: str = "kind"  # or "production": Graph and Druva as they really behave (simulators/realism.py)


@dataclass
class DayFigures:
    changes: int = 0
    reached: int = 0
    worst: timedelta = timedelta(0)
    passes: int = 0
    misses: int = 0
    events: list[str] = field(default_factory=list)
    wall_seconds: float = 0.0  # real time the soak spent on this simulated day


@dataclass
class Report:
    plan: Plan
    days: dict[int, DayFigures] = field(default_factory=dict)
    latencies: list[tuple[timedelta, str, str, bool]] = field(
        default_factory=list
    )  # (latency, kind, upn, up)
    misses: list[str] = field(default_factory=list)
    kinds: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    lost: int = 0
    dead_lettered: int = 0
    safety_stops: int = 0
    alerts_raised: int = 0
    manual_steps: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    wall_seconds: float = 0.0
    load_average: tuple[float, float, float] = (0.0, 0.0, 0.0)  # the machine's, when the run ended
    passes_by_outcome: dict[str, int] = field(default_factory=dict)
    wrong_writes: list[str] = field(default_factory=list)  # Druva changed for an account it could not read
    refusals_raised: int = 0  # Druva refusals reported (telemetry), each also a status problem
    refusals_unreported: list[str] = field(default_factory=list)  # a refusal status did not name
    costs: Costs | None = None
    hires_created: int = 0
    hires_on_final_mapping: int = 0  # created through the mapping they ended on (quota for good)

    @property
    def changes(self) -> int:
        return sum(d.changes for d in self.days.values())

    @property
    def ok(self) -> bool:
        return not (
            self.misses
            or self.duplicates
            or self.lost
            or self.manual_steps
            or self.wrong_writes
            or self.refusals_unreported
        )

    def worst(self, up: bool, count: int = 5) -> list[tuple[timedelta, str, str, bool]]:
        return sorted((x for x in self.latencies if x[3] == up), reverse=True)[:count]


class _QueueDown(ConnectionError):
    """Service Bus unreachable (the outage)."""


class _SwitchableQueue(LocalQueue):
    """The stand-in behind the ``WorkQueue`` port, with an outage switch: sends fail while it is down."""

    down = False

    async def send(self, messages: Any) -> None:
        if self.down:
            raise _QueueDown("Service Bus namespace unreachable")
        await super().send(messages)


class _PassRecords(logging.Handler):
    """The telemetry records the alerts read (``provisioning.telemetry``), as the soak sees them."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append({k: v for k, v in vars(record).items() if isinstance(v, str | int)})


class Soak:
    def __init__(self, plan: Plan, folder: Path) -> None:
        self.plan, self.folder = plan, folder
        self.random = random.Random(plan.seed)
        self.clock = SimClock(START)
        self.report = Report(plan)
        self.people: dict[str, Person] = {}
        self.ever: set[str] = set()  # people Druva has had a user for (seen there, or there from the start)
        self.pending: dict[str, tuple[datetime, str]] = {}  # id → (since, kind of the first change)
        self.missed: set[str] = set()
        self.disruptions: list[Disruption] = []
        self.us_offices: tuple[str, ...] = US_OFFICES_V1
        self.serial = 0
        self.held: list[Locked] = []
        self._id_cache: list[str] = []
        self._stops_seen = 0  # safety stops since the alert condition was last checked
        self.transport: RouterTransport | None = None  # the in-process transport, when the plan asks for it
        self.realism = Realism.named(plan.realism)
        self.production = self.realism.profile is Profile.PRODUCTION
        # production: every change the Graph simulator made, by person (its readable and notified times)
        self.changes_of: dict[str, list[ChangeRecord]] = {}
        self._changes_read = 0
        self.scoped: dict[str, tuple[object, ...]] = {}  # mailboxes scoped away: what Druva held then
        self._refusals_seen = 0
        self.refused_at: dict[str, datetime] = {}  # person → when Druva last refused a write for them
        self.created_with: dict[str, bool] = {}  # hire → first seen in Druva with the profile the model wants
        self.hires: set[str] = set()
        self.state_calls: Counter[str] = Counter()  # state store calls: Table Storage transactions

    # setting up ------------------------------------------------------------------------------------
    def _tenant(self) -> Tenant:
        users = [self._new_person(f"user{n:05d}") for n in range(self.plan.users)]
        for person in users[: self.plan.users // 5]:
            person.finance = True
        tenant = Tenant(
            users=[make_user(p.upn.split("@")[0], office=p.office, user_id=p.id) for p in users],
            groups=[make_group(FINANCE, SECURITY, members=[p.id for p in users if p.finance])],
        )
        if self.production:  # shared mailboxes from the start, so one can be scoped away on day 0
            for n in range(max(2, self.plan.users // 50)):
                box = self._new_person(f"mailbox{n:03d}", shared=True)
                tenant.users.append(
                    make_user(
                        box.upn.split("@")[0],
                        office=box.office,
                        user_id=box.id,
                        enabled=False,
                        purpose="shared",
                    )
                )
        return tenant

    def _new_person(self, name: str, *, shared: bool = False) -> Person:
        person = Person(
            id=f"{self.random.getrandbits(128):032x}",
            upn=f"{name}@{DOMAIN}",
            office=self.random.choice(OFFICES),
            enabled=not shared,
            shared=shared,
        )
        person.id = (
            f"{person.id[:8]}-{person.id[8:12]}-4{person.id[13:16]}-8{person.id[17:20]}-{person.id[20:32]}"
        )
        self.people[person.id] = person
        return person

    def _write_mappings(self, us_offices: tuple[str, ...]) -> Path:
        path = self.folder / f"mappings-{len(us_offices)}.yaml"
        path.write_text(mappings_yaml(us_offices))
        return path

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        from provisioning.entrypoints.functions import runtime

        tenant = self._tenant()
        group_id = tenant.groups[0]["id"]
        self.finance_group = str(group_id)
        if self.production:  # some accounts from before 2014 carry no userType: still members
            tenant = without_user_types(tenant, self.realism.graph, self.plan.seed)
        self.graph = GraphSimulator(tenant, clock=self.clock.now, realism=self.realism, seed=self.plan.seed)
        self.druva = DruvaSimulator(DEFAULT_SEED, clock=self.clock.timestamp, realism=self.realism.druva)
        self.bus = LocalServiceBus(QueueSettings.from_project(), clock=self.clock.timestamp)
        self.queue = _SwitchableQueue(self.bus)
        self.records = _PassRecords()
        telemetry_log = logging.getLogger("provisioning.telemetry")
        telemetry_log.setLevel(logging.INFO)
        saved_environment = dict(os.environ)
        with contextlib.ExitStack() as stack:
            stack.callback(_restore_environment, saved_environment)
            self.graph.start()
            stack.callback(self.graph.stop)
            self.druva_server = self.druva.serve().start()
            stack.callback(self.druva_server.stop)
            if self.plan.transport == "in-process":
                self.transport = RouterTransport()
                self.transport.plug(self.graph.url, self.graph.router)
                self.transport.plug(self.druva_server.url, self.druva.router)
            self.client_state = secrets.token_urlsafe(32)
            state = self.folder / "state"
            state.mkdir()
            os.environ.update(
                {
                    **simulator_settings(self.graph.graph_url, self.druva_server.url, state),
                    "PROVISIONING_CONFIG": str(self._write_mappings(US_OFFICES_V1)),
                    "PROVISIONING_QUEUE": QUEUE,
                    "GRAPH_CLIENT_STATE": self.client_state,
                }
            )
            for name in ("GRAPH_CLIENT_STATE_PREVIOUS", "PROVISIONING_TABLE_CONNECTION_STRING"):
                os.environ.pop(name, None)
            self.host = LocalFunctionsHost(_fresh_app(), self.bus, run_timers=False).serve_http()
            stack.callback(self.host.stop)
            os.environ["GRAPH_NOTIFICATION_URL"] = f"{self.host.url}/api/graph/notifications"
            os.environ["GRAPH_LIFECYCLE_URL"] = f"{self.host.url}/api/graph/lifecycle"
            self._deploy()
            stack.callback(runtime.reset)
            telemetry_log.addHandler(self.records)
            stack.callback(lambda: telemetry_log.removeHandler(self.records))
            self.ever.update(p.id for p in self.people.values())  # the first pass creates them all
            for person in self.people.values():
                self.pending[person.id] = (START, "initial")
            yield

    def _deploy(self) -> None:
        """A (re)deployment: the instance starts cold with the settings and mappings file of now."""
        from provisioning.entrypoints.functions import runtime

        runtime.reset()
        runtime.use(queue=self.queue, clock=self.clock, sleep=self._sleep, transport=self.transport)

    async def _sleep(self, seconds: float) -> None:
        """Retry back-off spends simulated time; the host renews the lock of the message in hand meanwhile,
        as the real host does for up to maxAutoLockRenewalDuration."""
        remaining = seconds
        while remaining > 0:
            step = min(remaining, self.bus.settings.lock_duration / 2)
            self._renew_locks()
            self.clock.advance(step)
            remaining -= step
        self._renew_locks()
        await asyncio.sleep(0)

    def _renew_locks(self) -> None:
        for locked in list(self.held):
            with contextlib.suppress(MessageLockLost):
                if self.clock.timestamp() - locked.envelope.enqueued_at < 4 * 3600:
                    self.bus.renew_lock(locked)

    # the scenario's events ---------------------------------------------------------------------------
    def events(self) -> list[tuple[datetime, str, Callable[[], None]]]:
        planned: list[tuple[datetime, str, Callable[[], None]]] = []
        for cycle_start in range(0, self.plan.days, self.plan.cycle_days):
            day = START + timedelta(days=cycle_start)
            cycle = [
                (day + timedelta(days=1, hours=10), "reauthorizationRequired (users)", self._reauthorize),
                (day + timedelta(days=2, hours=11), "subscriptionRemoved (groups)", self._removed),
                (day + timedelta(days=3, hours=12), "notifications lost, then missed (users)", self._missed),
                (day + timedelta(days=4, hours=9), "Graph down 6 h", self._graph_down),
                (day + timedelta(days=5, hours=14), "delta state lost (410)", self._cursors_lost),
                (day + timedelta(days=6, hours=13), "Service Bus down 1 h", self._bus_down),
                (day + timedelta(days=8, hours=8), "Druva down 4 h", self._druva_down),
                (day + timedelta(days=10, hours=14), "redeploy: changed mappings", self._redeploy_mappings),
                (day + timedelta(days=12, hours=15), "clientState rotated", self._rotate_client_state),
            ]
            if self.plan.only:  # the named events alone, on the first day at their hour
                cycle = [
                    (START + timedelta(hours=e[0].hour), *e[1:]) for e in cycle if e[1] in self.plan.only
                ]
            planned += [e for e in cycle if e[0] < START + timedelta(days=self.plan.days)]
        if self.plan.mass_exodus:
            planned.append((START + timedelta(hours=12), "60% of users disabled", self._exodus))
        if self.production:
            planned += self._production_events()
        return sorted(planned, key=lambda e: e[0])

    def _production_events(self) -> list[tuple[datetime, str, Callable[[], None]]]:
        """What only production does: Druva refusing for want of licences, mailboxes an admin scopes
        away from the app (an application access policy)."""
        planned = []
        for cycle_start in range(0, self.plan.days, self.plan.cycle_days):
            day = START + timedelta(days=cycle_start)
            planned += [
                (day + timedelta(days=7, hours=10), "Druva out of licences 6 h", self._licences_out),
                (day + timedelta(days=9, hours=9), "shared mailboxes scoped away 2 days", self._scope_away),
            ]
        if self.plan.only:
            planned = [
                (START + timedelta(hours=e[0].hour), *e[1:]) for e in planned if e[1] in self.plan.only
            ]
        return [e for e in planned if e[0] < START + timedelta(days=self.plan.days)]

    def _licences_out(self) -> None:
        """No licence free for 6 hours: creates and activations are refused and held a day (or until the
        plan for the account changes), then made."""
        now = self.clock.now()
        active = sum(1 for u in self.druva.users() if u["status"] == "active")
        self.druva.set_licences(active)
        # No disruption window: only the accounts Druva refused wait (for their day), see _deadline.
        self._later(now + timedelta(hours=6), "licences bought", lambda: self.druva.set_licences(None))

    def _scope_away(self) -> None:
        """An admin scopes some shared mailboxes away from the app: their mailbox settings answer 403.
        They are renamed meanwhile; Druva must keep them exactly as they were (no preserve, no rename)."""
        found = self.druva.users_by_email({p.upn for p in self.people.values() if p.shared and not p.deleted})
        chosen = [p for p in self.people.values() if p.shared and found.get(p.upn)][:3]
        now = self.clock.now()
        for person in chosen:
            self.graph.scope_mailbox_away(person.id)
            druva = found[person.upn]
            self.scoped[person.id] = (
                druva["status"],
                druva["profileID"],
                druva["storageID"],
                druva["userName"],
            )
            for hours in (1, 7, 13, 30):
                self._later(now + timedelta(hours=hours), "scoped mailbox renamed", self._rename(person))
            self._later(now + timedelta(days=2), "mailbox scoped back", self._scope_back(person))

    def _rename(self, person: Person) -> Callable[[], None]:
        def rename() -> None:
            self.serial += 1
            self.graph.update_user(person.id, displayName=f"Shared mailbox {self.serial}")

        return rename

    def _scope_back(self, person: Person) -> Callable[[], None]:
        def back() -> None:
            self.scoped.pop(person.id, None)
            self.graph.scope_mailbox_back(person.id)

        return back

    def _exodus(self) -> None:
        now = self.clock.now()
        active = [p for p in self.people.values() if p.enabled and not p.deleted and not p.shared]
        for person in active[: len(active) * 3 // 5]:
            person.enabled = False
            self.graph.update_user(person.id, accountEnabled=False)
            self._changed(person, "leaver", now)

    def _disrupted(self, name: str, start: datetime, end: datetime) -> None:
        self.disruptions.append(Disruption(name, start, end))

    def _subscription(self, resource: str) -> str | None:
        return next((s["id"] for s in self.graph.subscriptions() if s["resource"] == resource), None)

    def _reauthorize(self) -> None:
        found = self._subscription("users")
        if found:
            now = self.clock.now()
            self._disrupted("reauthorization", now, now + timedelta(minutes=1))
            self.graph.require_reauthorization(found)

    def _removed(self) -> None:
        found = self._subscription("groups")
        if found:
            now = self.clock.now()
            self._disrupted("subscription removed", now, now + timedelta(minutes=1))
            self.graph.remove_subscription(found)

    def _missed(self) -> None:
        now = self.clock.now()
        self.graph.set_delivery_mode("drop")
        self._disrupted("notifications lost", now, now + timedelta(minutes=30))
        self._later(now + timedelta(minutes=30), "missed sent", self._send_missed)

    def _send_missed(self) -> None:
        self.graph.set_delivery_mode("deliver")
        found = self._subscription("users")
        if found:
            self.graph.report_missed(found)

    def _graph_down(self) -> None:
        now = self.clock.now()
        self._disrupted("Graph down", now, now + timedelta(hours=6))
        self.graph.apply_outage(Outage(OutageKind.ERRORS, retry_after=120))
        self.graph.set_delivery_mode("drop")

        def up() -> None:
            self.graph.clear_faults()
            self.graph.set_delivery_mode("deliver")

        self._later(now + timedelta(hours=6), "Graph back", up)

    def _cursors_lost(self) -> None:
        now = self.clock.now()
        self._disrupted("delta state lost", now, now + timedelta(minutes=1))
        self.graph.expire_cursors()

    def _bus_down(self) -> None:
        now = self.clock.now()
        self._disrupted("Service Bus down", now, now + timedelta(hours=1))
        self.queue.down = True

        def up() -> None:
            self.queue.down = False

        self._later(now + timedelta(hours=1), "Service Bus back", up)

    def _druva_down(self) -> None:
        """Connection refused for two hours (nothing listens on its port), then two hours of 5xx."""
        now = self.clock.now()
        self._disrupted("Druva down", now, now + timedelta(hours=4))
        self.druva_server.outage(Outage(OutageKind.REFUSED))
        if self.transport is not None:
            self.transport.unplug(self.druva_server.url)  # in-process, nothing listens either

        def errors() -> None:
            self.druva_server.recover()
            if self.transport is not None:
                self.transport.plug(self.druva_server.url, self.druva.router)
            self.druva_server.outage(Outage(OutageKind.ERRORS))

        self._later(now + timedelta(hours=2), "Druva answers 5xx", errors)
        self._later(now + timedelta(hours=4), "Druva back", self.druva_server.recover)

    def _redeploy_mappings(self) -> None:
        now = self.clock.now()
        self._disrupted("redeploy", now, now + timedelta(minutes=1))
        new = US_OFFICES_V2 if self.us_offices == US_OFFICES_V1 else US_OFFICES_V1
        os.environ["PROVISIONING_CONFIG"] = str(self._write_mappings(new))
        self._deploy()
        for person in self.people.values():
            if expected(person, self.us_offices, person.id in self.ever) != expected(
                person, new, person.id in self.ever
            ):
                self._changed(person, "mappings", now)
        self.us_offices = new

    def _rotate_client_state(self) -> None:
        now = self.clock.now()
        self._disrupted("clientState rotation", now, now + timedelta(minutes=1))
        os.environ["GRAPH_CLIENT_STATE_PREVIOUS"] = self.client_state
        self.client_state = secrets.token_urlsafe(32)
        os.environ["GRAPH_CLIENT_STATE"] = self.client_state
        self._deploy()

    def _later(self, at: datetime, name: str, action: Callable[[], None]) -> None:
        self.timeline.append((at, name, action))
        self.timeline.sort(key=lambda e: e[0])

    # Entra changes --------------------------------------------------------------------------------------
    def _changes_of_day(self, day: int) -> list[tuple[datetime, str, Callable[[], None]]]:
        base = START + timedelta(days=day)
        per_burst, extra = divmod(self.plan.changes_per_day, self.plan.bursts_per_day)
        moments = sorted(self.random.uniform(0, 86_400) for _ in range(self.plan.bursts_per_day))
        bursts = []
        for index, offset in enumerate(moments):
            count = per_burst + (1 if index < extra else 0)
            bursts.append((base + timedelta(seconds=offset), f"{count} changes", self._burst(count)))
        return bursts

    def _burst(self, count: int) -> Callable[[], None]:
        def apply() -> None:
            now = self.clock.now()
            names = [k for k, _ in KINDS]
            weights = [w for _, w in KINDS]
            for kind in self.random.choices(names, weights, k=count):
                if getattr(self, f"_{kind}")(now):
                    self.report.kinds[kind] = self.report.kinds.get(kind, 0) + 1
                    self._day().changes += 1

        return apply

    def _day(self) -> DayFigures:
        day = (self.clock.now() - START).days
        return self.report.days.setdefault(day, DayFigures())

    def _pick(self, wanted: Callable[[Person], bool]) -> Person | None:
        for _ in range(50):
            person = self.people[self.random.choice(self._ids)]
            if wanted(person):
                return person
        return None

    @property
    def _ids(self) -> list[str]:
        if len(self._id_cache) != len(self.people):
            self._id_cache = list(self.people)
        return self._id_cache

    def _changed(self, person: Person, kind: str, now: datetime) -> None:
        self.pending.setdefault(person.id, (now, kind))

    def _new_hire(self, now: datetime) -> bool:
        self.serial += 1
        person = self._new_person(f"hire{self.serial:06d}")
        person.finance = self.random.random() < 0.2
        self.hires.add(person.id)
        user = make_user(person.upn.split("@")[0], office=person.office, user_id=person.id)
        # Production: dynamic groups take a hire in minutes later; kind: at once.
        self.graph.hire(user, [self.finance_group] if person.finance else [])
        self._changed(person, "new_hire", now)
        return True

    def _shared_mailbox(self, now: datetime) -> bool:
        self.serial += 1
        person = self._new_person(f"shared{self.serial:06d}", shared=True)
        user = make_user(
            person.upn.split("@")[0], office=person.office, user_id=person.id, enabled=False, purpose="shared"
        )
        self.graph.add_user(user)
        self._changed(person, "shared_mailbox", now)
        return True

    def _leaver(self, now: datetime) -> bool:
        person = self._pick(lambda p: p.enabled and not p.deleted and not p.shared and p.id in self.ever)
        if person is None:
            return False
        if self.random.random() < 0.25:
            person.deleted = True
            self.graph.delete_user(person.id)
        else:
            person.enabled = False
            self.graph.update_user(person.id, accountEnabled=False)
        self._changed(person, "leaver", now)
        return True

    def _re_enabled(self, now: datetime) -> bool:
        person = self._pick(lambda p: not p.enabled and not p.deleted and not p.shared)
        if person is None:
            return False
        person.enabled = True
        self.graph.update_user(person.id, accountEnabled=True)
        self._changed(person, "re_enabled", now)
        return True

    def _group_move(self, now: datetime) -> bool:
        # A hire whose dynamic group has not taken it in yet is not moved meanwhile (production).
        planned = self.graph.timeline.planned.objects() if self.production else set()
        person = self._pick(lambda p: not p.deleted and not p.shared and p.id not in planned)
        if person is None:
            return False
        if person.finance:
            self.graph.remove_member(self.finance_group, person.id)
        else:
            self.graph.add_member(self.finance_group, person.id)
        person.finance = not person.finance
        self._changed(person, "group_move", now)
        return True

    def _attribute(self, now: datetime) -> bool:
        person = self._pick(lambda p: not p.deleted and not p.shared)
        if person is None:
            return False
        person.office = self.random.choice([o for o in OFFICES if o != person.office])
        self.graph.update_user(person.id, officeLocation=person.office)
        self._changed(person, "attribute", now)
        return True

    # the checks -------------------------------------------------------------------------------------
    def _bound(self, since: datetime) -> tuple[datetime, bool]:
        """When a change made at ``since`` must be in Druva, and whether it fell in an up period."""
        deadline, up = since + UP_BOUND, True
        for disruption in self.disruptions:
            if disruption.start <= since + UP_BOUND and disruption.end >= since - RECOVERY_BOUND:
                deadline = max(deadline, disruption.end + RECOVERY_BOUND + PASS_ALLOWANCE)
                up = False
        return deadline, up

    def check(self) -> None:
        self._read_changes()
        self._check_scoped()
        if not self.pending:
            return
        now = self.clock.now()
        people = {self.people[i].upn: self.people[i] for i in self.pending}
        found = self.druva.users_by_email(people)
        planned = self.graph.timeline.planned.objects() if self.production else set()
        for upn, person in people.items():
            if found.get(upn) is not None:  # hired and gone before any pass ran: Druva never had them
                self.ever.add(person.id)
                self._first_profile(person, found[upn])
            want = expected(person, self.us_offices, person.id in self.ever)
            since, kind = self.pending[person.id]
            deadline, up, moment = self._deadline(person, since, kind, planned)
            if _matches(want, found.get(upn), self.catalog):
                del self.pending[person.id]
                self.missed.discard(person.id)
                latency = max(now - moment, timedelta(0))
                if kind != "initial":
                    self.report.latencies.append((latency, kind, upn, up))
                    figures = self._day()
                    figures.reached += 1
                    figures.worst = max(figures.worst, latency)
                continue
            if now > deadline and person.id not in self.missed:
                self.missed.add(person.id)
                self._day().misses += 1
                self.report.misses.append(
                    f"{_stamp(now)} {upn} ({kind} at {_stamp(since)}): want {want}, Druva has "
                    f"{_describe(found.get(upn), self.catalog)}{self._graph_times(person, since)}"
                )
        if self.production:
            self.changes_of = {i: r for i, r in self.changes_of.items() if i in self.pending}

    def _deadline(
        self, person: Person, since: datetime, kind: str, planned: set[str]
    ) -> tuple[datetime, bool, datetime]:
        """When ``person`` must be as expected in Druva, whether everything was up meanwhile, and the
        moment its latency counts from. On the production profile that moment is when the person's
        changes became readable in Graph (no product can act before), a new account's no earlier than
        the end of its settle window; a change whose notification Graph lost waits for the safety net;
        a new shared mailbox is read again with a doubling back-off while Exchange provisions it."""
        if not self.production:
            deadline, up = self._bound(since)
            return deadline, up, since
        moment, lost, complete = self._readable(person, since, planned)
        if not complete:  # a change of theirs is not made or not readable yet: nothing is due
            return datetime.max.replace(tzinfo=UTC), True, moment
        if kind in ("new_hire", "shared_mailbox"):
            moment = max(moment, since + SETTLE)
        allowance = UP_BOUND + (
            max(timedelta(0), moment - since) if kind == "shared_mailbox" else timedelta(0)
        )
        deadline, up = self._bound(moment)
        deadline = max(deadline, moment + allowance)
        if lost:
            deadline, up = max(deadline, moment + RECOVERY_BOUND + PASS_ALLOWANCE), False
        refused = self.refused_at.get(person.id)
        if refused is not None and refused >= since:  # held a day, then made (the licence is back)
            recheck = refused + REFUSED_RECHECK  # when the product tries again: an outage then waits too
            again, _ = self._bound(recheck)
            deadline, up = max(deadline, again, recheck + RECOVERY_BOUND + PASS_ALLOWANCE), False
        return deadline, up, moment

    def _readable(self, person: Person, since: datetime, planned: set[str]) -> tuple[datetime, bool, bool]:
        """When the last of the person's changes since ``since`` that is readable became so, whether Graph
        lost the notification of any of them, and whether all of them are made and readable."""
        records = [r for r in self.changes_of.get(person.id, ()) if r.made_at >= since]
        moment = max((r.readable_at for r in records if r.readable_at is not None), default=since)
        complete = person.id not in planned and all(r.readable_at is not None for r in records)
        return moment, any(r.notifications == 0 for r in records), complete

    def _graph_times(self, person: Person, since: datetime) -> str:
        """Production: when each of the person's changes was made, readable and notified (a miss's why)."""
        if not self.production:
            return ""
        shown = [
            f"{r.kind} {','.join(r.touched)} made {_stamp(r.made_at)[-8:]} readable "
            f"{_stamp(r.readable_at)[-8:] if r.readable_at else '-'} notified "
            f"{'/'.join(_stamp(n)[-8:] for n in r.notified_at) or 'never'}"
            for r in self.changes_of.get(person.id, ())
            if r.made_at >= since
        ]
        return f" [{'; '.join(shown)}]"

    def _first_profile(self, person: Person, druva: dict[str, Any]) -> None:
        """What a hire was created with: Druva cannot change the quota later, so the right mapping must be
        the first (``lifecycle.settle``)."""
        if person.id in self.hires and person.id not in self.created_with:
            wanted = _target(person, self.us_offices)[0]
            self.created_with[person.id] = self.catalog["profile"].get(druva["profileID"]) == wanted

    def _read_changes(self) -> None:
        """Index the Graph simulator's new change records by the person they concern."""
        if not self.production:
            return
        records = self.graph.timeline.log.records_since(self._changes_read)
        self._changes_read += len(records)
        for record in records:
            person = record.other if record.kind == "member" else record.id
            if person is not None and person in self.people:
                self.changes_of.setdefault(person, []).append(record)

    def _check_scoped(self) -> None:
        """A mailbox the app may not read must be left exactly as Druva had it: any change is a wrong
        write (a preserve would stop its backups)."""
        if not self.scoped:
            return
        people = {self.people[i].upn: self.people[i] for i in self.scoped}
        found = self.druva.users_by_email(people)
        for upn, person in people.items():
            druva = found.get(upn)
            now = (
                (druva["status"], druva["profileID"], druva["storageID"], druva["userName"])
                if druva
                else None
            )
            if now != self.scoped[person.id]:
                self.report.wrong_writes.append(
                    f"{_stamp(self.clock.now())} {upn}: its mailbox is unreadable (403), yet Druva went from "
                    f"{self.scoped[person.id]} to {now}"
                )
                self.scoped[person.id] = now or ()

    def audit(self) -> None:
        """Once a day: every account against Druva, and nothing in Druva the model does not know."""
        druva_users = self.druva.users()
        emails = [u["emailID"].lower() for u in druva_users]
        self.report.duplicates = len(emails) - len(set(emails))
        known = {p.upn.lower() for p in self.people.values()}
        strangers = [e for e in emails if e not in known]
        if strangers:
            self.report.misses.append(
                f"{_stamp(self.clock.now())} Druva users nobody asked for: {strangers[:5]}"
            )

    def _alerts(self) -> None:
        """Every dead letter or safety stop must raise its alert condition (the metric, and the health
        rule the alerts and ``status`` share)."""
        dead = self.bus.counters.dead_lettered
        if dead > self.report.dead_lettered:
            self.report.dead_lettered = dead
            self.report.alerts_raised += 1  # the DeadletteredMessages metric is this counter
            self.report.manual_steps.append(f"{_stamp(self.clock.now())} {dead} message(s) dead-lettered")
        for record in self.records.records:
            if record.get("event") == "provisioning.refusal":
                self.report.refusals_raised += 1
                self._refusals_seen += 1
                self.refused_at[str(record.get("entra_id"))] = self.clock.now()
            if record.get("event") == "provisioning.pass":
                outcome = str(record.get("outcome"))
                self.report.passes_by_outcome[outcome] = self.report.passes_by_outcome.get(outcome, 0) + 1
                self._day().passes += 1
                if outcome == "safety_stop":
                    self.report.safety_stops += 1
                    self.report.manual_steps.append(f"{_stamp(self.clock.now())} safety stop")
                    self._stops_seen += 1
        self.records.records.clear()

    async def _status_alarmed(self) -> bool:
        from provisioning.domain.health import SAFETY_STOP

        return SAFETY_STOP in await self._status_problems()

    async def _status_problems(self) -> set[str]:
        """The problem codes ``status`` reports now, read from the state as the command reads it."""
        from provisioning.adapters.state import open_state_store
        from provisioning.service.status import read_status
        from provisioning.settings import Settings

        state = await open_state_store(Settings(), clock=self.clock, existing_only=True)
        try:
            status = await read_status(state, self.clock.now())
        finally:
            await state.aclose()
        return {p.code for p in status.problems}

    # the driver -----------------------------------------------------------------------------------------
    async def run(self) -> Report:
        started = time.perf_counter()
        functions = self.host.functions
        worker = next(f for f in functions.values() if f.trigger == "serviceBusTrigger")
        timers = [f for f in functions.values() if f.trigger == "timerTrigger"]
        if not self.plan.safety_net or not self.plan.renew_subscriptions:
            self._break_product()
        due = {f.name: Schedule.parse(str(f.binding["schedule"])).next_after(START) for f in timers}
        end = START + timedelta(days=self.plan.days)
        self.timeline: list[tuple[datetime, str, Callable[[], None]]] = sorted(
            self.events() + [c for d in range(self.plan.days) for c in self._changes_of_day(d)],
            key=lambda e: e[0],
        )
        self.catalog = _catalog(self.druva)
        await self._run_timer(next(f for f in timers if f.name == "keep_watch"))
        last_day = -1
        while self.clock.now() < end + timedelta(minutes=30):
            step_started, figures = time.perf_counter(), self._day()
            self._happen(self.clock.now())
            for function in timers:
                if due[function.name] <= self.clock.now():
                    await self._run_timer(function)
                    due[function.name] = Schedule.parse(str(function.binding["schedule"])).next_after(
                        self.clock.now()
                    )
            self.graph.flush_deliveries(timeout=30)
            horizon = min(due.values())
            if self.timeline:
                horizon = min(horizon, self.timeline[0][0])
            await self._drain(worker, horizon)
            self._alerts()
            await self._safety_alarm()
            await self._refusal_problem()
            self.check()
            day = (self.clock.now() - START).days
            if day != last_day:
                last_day = day
                self.audit()
            figures.wall_seconds += time.perf_counter() - step_started
            self.clock.advance_to(self._next_moment([*due.values(), end + timedelta(minutes=30)]))
        self._finish()
        self.report.costs = Costs.of(
            days=self.plan.days,
            executions=dict(self.host.executions),
            busy_seconds=dict(self.host.busy_seconds),
            bus=vars(self.bus.counters),
            graph_requests=self.graph.graph_requests(),
            druva_requests=self.druva.api_requests(),
            state_calls=self.state_calls,
        )
        self.report.wall_seconds = time.perf_counter() - started
        self.report.load_average = os.getloadavg()
        return self.report

    def _happen(self, now: datetime) -> None:
        while self.timeline and self.timeline[0][0] <= now:
            at, name, action = self.timeline.pop(0)
            if not name.endswith("changes"):
                self.report.events.append(f"{_stamp(at)} {name}")
                self._day().events.append(name)
            action()

    async def _refusal_problem(self) -> None:
        """Every refusal Druva made must be a problem ``status`` names, with what to do."""
        if not self._refusals_seen:
            return
        self._refusals_seen = 0
        from provisioning.domain.health import DRUVA_REFUSED, DRUVA_WRITES_REFUSED

        problems = await self._status_problems()
        if not problems & {DRUVA_REFUSED, DRUVA_WRITES_REFUSED}:
            self.report.refusals_unreported.append(f"{_stamp(self.clock.now())} refusal without a problem")

    async def _safety_alarm(self) -> None:
        if self._stops_seen:
            # Two passes may stop between two checks (a look right after the timer's pass): each one's
            # alert condition is the same status problem, checked once for both.
            stops, self._stops_seen = self._stops_seen, 0
            if await self._status_alarmed():
                self.report.alerts_raised += stops
            else:
                self.report.misses.append(f"{_stamp(self.clock.now())} safety stop without alert")

    def _next_moment(self, candidates: list[datetime]) -> datetime:
        """The next timer, scenario event or scheduled message: where the clock jumps when idle."""
        if self.timeline:
            candidates.append(self.timeline[0][0])
        waiting = None if self.queue.down else self.bus.seconds_until_due()
        if waiting is not None:
            candidates.append(self.clock.now() + timedelta(seconds=waiting))
        graph_due = self.graph.next_due()  # production: a planned change or a late notification
        if graph_due is not None:
            candidates.append(graph_due)
        return min(candidates)

    def _break_product(self) -> None:
        """The deliberately broken products the tests use to show the checks can fail."""
        from provisioning.entrypoints.functions import timers

        if not self.plan.renew_subscriptions:

            async def no_upkeep(services: Any, endpoint: Any, now: datetime) -> list[str]:
                return []

            self._restore = vars(timers)["keep_subscriptions"]
            vars(timers)["keep_subscriptions"] = no_upkeep
        if not self.plan.safety_net:
            from provisioning.entrypoints.functions import runtime

            real_queue = self.queue

            class NoSafetyNet(_SwitchableQueue):
                async def send(self, messages: Any) -> None:
                    kept = [m for m in messages if getattr(m.work, "reason", "") != "timer"]
                    await real_queue.send(kept)

            runtime.use(queue=NoSafetyNet(self.bus))

    def unbreak(self) -> None:
        from provisioning.entrypoints.functions import timers

        if hasattr(self, "_restore"):
            vars(timers)["keep_subscriptions"] = self._restore

    async def _run_timer(self, function: HostedFunction) -> None:
        with contextlib.suppress(Exception):  # logged by the host; the schedule goes on, as in Azure
            await self.host.invoke(function, TimerRequest(past_due=False), "schedule")

    async def _drain(self, worker: HostedFunction, horizon: datetime) -> None:
        """Every message due now, one at a time, and those that fall due while we work, until the next
        timer or scenario event is due (retry back-off moves the clock: it must not run past them)."""
        for _ in range(10_000):
            if self.queue.down or self.clock.now() >= horizon:
                return
            locked = self.bus.receive()
            if locked is None:
                return
            self.held.append(locked)
            try:
                await self.host.invoke(worker, service_bus_message(locked), locked.message_id)
            except Exception:
                with contextlib.suppress(MessageLockLost):
                    self.bus.abandon(locked)
            else:
                with contextlib.suppress(MessageLockLost):
                    self.bus.complete(locked)
            finally:
                self.held.remove(locked)
            self.graph.flush_deliveries(timeout=30)

    def _finish(self) -> None:
        self.check()
        self.audit()
        self.report.hires_created = len(self.created_with)
        self.report.hires_on_final_mapping = sum(self.created_with.values())
        for person_id, (since, kind) in self.pending.items():
            person = self.people[person_id]
            self.report.lost += 1
            self.report.misses.append(f"never reached Druva: {person.upn} ({kind} at {_stamp(since)})")


def _restore_environment(saved: dict[str, str]) -> None:
    os.environ.clear()
    os.environ.update(saved)


def _fresh_app() -> Any:
    """``function_app.py`` loaded afresh, as a new worker process would: an app object lists its
    functions only once, and a test process may soak more than once."""
    spec = importlib.util.spec_from_file_location(
        f"function_app_soak_{secrets.token_hex(4)}", REPOSITORY / "function_app.py"
    )
    if spec is None or spec.loader is None:
        raise RuntimeError("function_app.py not found")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.app


def _catalog(druva: DruvaSimulator) -> dict[str, dict[int, str]]:
    state = druva.state()
    return {
        "profile": {p["profileID"]: p["profileName"] for p in state["profiles"]},
        "storage": {s["StorageID"]: s["storageName"] for s in state["storages"]},
    }


def _matches(want: Expected, found: dict[str, Any] | None, catalog: dict[str, dict[int, str]]) -> bool:
    if want is None:
        return found is None
    if found is None:
        return False
    if want[0] == "preserved":
        return bool(found["status"] == "preserved")
    return (
        found["status"],
        catalog["profile"].get(found["profileID"]),
        catalog["storage"].get(found["storageID"]),
    ) == want


def _describe(found: dict[str, Any] | None, catalog: dict[str, dict[int, str]]) -> str:
    if found is None:
        return "nothing"
    profile, storage = catalog["profile"].get(found["profileID"]), catalog["storage"].get(found["storageID"])
    return f"({found['status']}, {profile}, {storage})"


def _stamp(moment: datetime) -> str:
    return f"day {(moment - START).days:>2} {moment:%H:%M:%S}"


def _seconds(delta: timedelta) -> str:
    seconds = delta.total_seconds()
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def render(report: Report) -> str:
    lines = ["day  changes  reached  passes  worst latency  misses  wall s  events"]
    for day in sorted(report.days):
        figures = report.days[day]
        lines.append(
            f"{day:>3}  {figures.changes:>7}  {figures.reached:>7}  {figures.passes:>6}  "
            f"{_seconds(figures.worst):>13}  {figures.misses:>6}  {figures.wall_seconds:>6.1f}  "
            f"{'; '.join(figures.events)}"
        )
    lines.append("")
    lines.append(f"changes by kind: {', '.join(f'{k} {v}' for k, v in sorted(report.kinds.items()))}")
    lines.append(
        f"passes by outcome: {', '.join(f'{k} {v}' for k, v in sorted(report.passes_by_outcome.items()))}"
    )
    for up, title in (
        (True, "worst latencies while everything was up"),
        (False, "worst latencies around disruptions"),
    ):
        lines.append(f"{title}:")
        for latency, kind, upn, _ in report.worst(up):
            lines.append(f"  {_seconds(latency):>9}  {kind:<14} {upn}")
    lines.append(
        f"days {report.plan.days}, changes {report.changes}, misses {len(report.misses)}, "
        f"lost {report.lost}, "
        f"duplicates {report.duplicates}, dead-lettered {report.dead_lettered}, safety stops "
        f"{report.safety_stops}, alerts raised {report.alerts_raised}"
    )
    lines.append(
        f"wrong writes {len(report.wrong_writes)} (a mailbox the app could not read, changed in Druva), "
        f"Druva refusals raised as problems {report.refusals_raised} "
        f"({len(report.refusals_unreported)} that status did not name)"
    )
    if report.hires_created:
        lines.append(
            f"hires created through the profile they should have then: {report.hires_on_final_mapping} of "
            f"{report.hires_created} (the others were re-mapped after creation: a change readable only "
            "after their settle window)"
        )
    if report.costs is not None:
        lines.extend(report.costs.render())
    lines.append(
        f"realism {report.plan.realism}, transport {report.plan.transport}, wall {report.wall_seconds:.0f} s "
        f"({report.wall_seconds / max(report.plan.days, 1):.1f} s a simulated day), load average "
        f"{' '.join(f'{x:.2f}' for x in report.load_average)}"
    )
    for miss in report.misses[:20]:
        lines.append(f"MISS {miss}")
    for step in report.manual_steps[:20]:
        lines.append(f"NEEDS A HUMAN {step}")
    for wrong in report.wrong_writes[:20]:
        lines.append(f"WRONG WRITE {wrong}")
    return "\n".join(lines)


def run_soak(plan: Plan) -> Report:
    with tempfile.TemporaryDirectory(prefix="provisioning-soak-") as folder:
        soak = Soak(plan, Path(folder))
        with soak.running(), counting_state_calls() as soak.state_calls:
            try:
                return asyncio.run(soak.run())
            finally:
                soak.unbreak()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulators.soak", description=__doc__)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--changes-per-day", type=int, default=1000)
    parser.add_argument("--bursts-per-day", type=int, default=24)
    parser.add_argument("--users", type=int, default=600)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--transport",
        choices=("in-process", "http"),
        default="in-process",
        help="how the product's Graph and Druva requests reach the simulators: in-process (the default, "
        "what make soak runs: no sockets, see simulators/inprocess.py) or http (loopback, as the short "
        "soak in make test runs)",
    )
    parser.add_argument(
        "--realism",
        choices=PROFILES,
        default="production",
        help="production (the default, what make soak runs: changes readable late, notifications late or "
        "lost, hires that settle, Druva refusals) or kind (every change readable and notified at once)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.CRITICAL)
    for handler in logging.getLogger().handlers:  # the functions' own log lines would drown the summary
        handler.setLevel(logging.CRITICAL)
    plan = Plan(
        args.days,
        args.changes_per_day,
        args.bursts_per_day,
        args.users,
        args.seed,
        transport=args.transport,
        realism=args.realism,
    )
    report = run_soak(plan)
    print(render(report))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
