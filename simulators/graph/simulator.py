"""The Graph simulator put together: the directory, its route modules, and what every Graph request
passes before its handler (a bearer token, the injected faults, the app's permissions, catching up with
whatever fell due on the timeline, the directory's lock). Its methods change the tenant and switch faults
on from Python; ``admin.py`` does the same over HTTP.

``realism`` says how real Graph behaves (``simulators/realism.py``): the kind profile (the default) makes
every change readable and notified the moment it is made, exactly as the tests expect; the production
profile delays both (``timeline.py``, ``replica.py``), creates new users as skeletons filled in over
seconds, provisions mailboxes over minutes, adds a hire's dynamic groups over minutes, repeats objects in
delta rounds, leaves never-set properties out of them and hides restored users from ``$select`` users
deltas. Changes are made on ``directory``; requests read ``store``, the replica (the same store when
nothing is replicated late). ``next_due`` tells a driver that jumps its clock where the next planned change
or notification is, and ``change_log`` when each change was made, readable and notified.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from simulators.graph.admin import add_admin_routes
from simulators.graph.batch import STEP, Batch
from simulators.graph.delta import DeltaQueries
from simulators.graph.faults import Fault, InjectedFaults
from simulators.graph.pages import PageSizes
from simulators.graph.permissions import (
    GRANTED_BY_BICEP,
    SUBSCRIPTION_ROUTES,
    PermissionMissing,
    check_route,
    check_subscription,
    parse_roles,
)
from simulators.graph.reads import DirectoryReads
from simulators.graph.store import DirectoryStore
from simulators.graph.subscriptions import Subscriptions
from simulators.graph.timeline import Clockwork, Timeline
from simulators.graph.webhooks import Webhooks
from simulators.graph.wire import PREFIX, GraphRoute, error
from simulators.http import Request, Response, Router
from simulators.outages import Outage, OutageKind, refuse_server_outage
from simulators.realism import KIND, GraphRealism, Realism
from simulators.running import SimulatorThread
from simulators.tenants import TENANT_ID, Tenant

_BEARER = re.compile(r"^Bearer\s+\S+")


class GraphSimulator:
    def __init__(
        self,
        tenant: Tenant | None = None,
        *,
        page_sizes: PageSizes | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        validation_timeout: float = 10.0,
        seed: int = 0,
        roles: Iterable[str] = GRANTED_BY_BICEP,
        realism: Realism | GraphRealism = KIND,
    ) -> None:
        self.roles = parse_roles(roles)  # the app's Graph application permissions (permissions.py)
        self.realism = realism.graph if isinstance(realism, Realism) else realism
        self.page_sizes = page_sizes or PageSizes()
        self.store = DirectoryStore()  # what requests read: the replica
        # where changes are made: a store of its own only when they become readable late
        self.directory = DirectoryStore(self.store.lock) if self.realism.replication.bands else self.store
        self.router = Router()
        self.clock = clock
        self.webhooks = Webhooks(TENANT_ID, clock=clock, validation_timeout=validation_timeout)
        draws = random.Random(seed)  # one sequence for fault fractions and batch order: runs repeat
        self.faults = InjectedFaults(draws)
        self.delta = DeltaQueries(
            self.store, self.page_sizes, clock, self.realism, random.Random(f"graph-delta:{seed}")
        )
        self.timeline = Timeline(
            self.realism, self.directory, self.store, self.webhooks, clock=clock, seed=seed
        )
        self._clockwork = Clockwork(self.timeline.catch_up, self.timeline.next_due, clock)
        self._subscriptions = Subscriptions(self.webhooks)
        self._running: SimulatorThread | None = None
        reads = DirectoryReads(self.store, self.page_sizes)
        batch = Batch(self.router, draws)
        # Order matters: "/users/delta" must be tried before "/users/{ref}".
        for route in [*self.delta.routes(), *reads.routes(), *batch.routes(), *self._subscriptions.routes()]:
            self._add(route)
        add_admin_routes(self.router, self)
        if tenant is not None:
            self.load(tenant)
        if not self.timeline.quiet:
            self._clockwork.start()

    # running ---------------------------------------------------------------------------------------
    def serve(self, port: int = 0) -> SimulatorThread:
        """A handle to run it in a thread (``running.py``), not yet started."""
        return SimulatorThread(self, port)

    def start(self, port: int = 0) -> GraphSimulator:
        """Served from a thread of this process; ``running`` is the handle (outages, recovery)."""
        self._running = self.serve(port).start()
        if not self.timeline.quiet:
            self._clockwork.start()
        return self

    def stop(self) -> None:
        """Stop serving, and stop the clockwork thread (planned changes and notifications then wait for
        the next call that catches up)."""
        self._clockwork.stop()
        if self._running is not None:
            self._running.stop()
            self._running = None

    def __enter__(self) -> GraphSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> SimulatorThread:
        if self._running is None:
            raise RuntimeError("the simulator is not started")
        return self._running

    @property
    def url(self) -> str:
        return self.running.url

    @property
    def graph_url(self) -> str:
        """What ``GRAPH_API_URL`` should be set to."""
        return f"{self.url}{PREFIX}"

    # inspecting ------------------------------------------------------------------------------------
    @property
    def counts(self) -> dict[str, int]:
        return dict(self.router.counts)

    def graph_requests(self) -> int:
        """HTTP requests made to Graph endpoints: a batch counts once, however many steps it holds."""
        return sum(n for name, n in self.router.counts.items() if not name.startswith(("admin", STEP)))

    def reset_counts(self) -> None:
        self.router.reset_counts()

    @property
    def deliveries(self) -> list[Any]:
        return list(self.webhooks.deliveries)

    def flush_deliveries(self, timeout: float = 5.0) -> bool:
        """Post every notification due by the clock (after making the changes planned before it), then
        wait until every posted one has been delivered."""
        self.catch_up()
        return self.webhooks.flush(timeout)

    def subscriptions(self) -> list[dict[str, Any]]:
        return self.webhooks.live()

    def catch_up(self) -> None:
        """Make, replicate and notify whatever fell due by the clock (every request does this first)."""
        self.timeline.catch_up()

    def next_due(self) -> datetime | None:
        """When the next planned change is made or the next notification posted: where a driver that
        jumps its clock must stop. None: nothing is waiting."""
        self.catch_up()
        return self.timeline.next_due()

    def change_log(self, since: int = 0) -> list[dict[str, Any]]:
        """Every change made (after the ``since``-th), with when it was made, readable and notified."""
        self.catch_up()
        return self.timeline.log.since(since)

    # changing the directory ------------------------------------------------------------------------
    @contextmanager
    def _changing(self) -> Iterator[None]:
        """A change is made after everything due before it, under the directory's lock."""
        with self.store.lock:
            self.timeline.catch_up()
            yield

    def load(self, tenant: Tenant) -> None:
        with self._changing():
            stamped = self.timeline.stamped(tenant)
            self.directory.load(stamped)
            if self.directory is not self.store:
                self.store.load(stamped)
            self.timeline.forget()
        self.expire_cursors()

    def add_user(self, user: dict[str, Any]) -> str:
        with self._changing():
            return self.timeline.create_user(user)

    def hire(self, user: dict[str, Any], groups: Sequence[str] = ()) -> str:
        """A new user and their groups: in the production profile the memberships come minutes later, as
        dynamic groups evaluate them."""
        with self._changing():
            return self.timeline.hire(user, groups)

    def update_user(self, ref: str, **props: Any) -> None:
        with self._changing():
            user_id = str(self.directory.find_user(ref)["id"])
            self.timeline.overwritten(user_id, props)
            if "mailboxSettings" in props:
                self.timeline.set_mailbox(user_id, props.pop("mailboxSettings"))
            self.directory.update_user(user_id, props)

    def delete_user(self, ref: str, *, permanent: bool = False) -> None:
        with self._changing():
            user_id = ref if self.directory.is_soft_deleted(ref) else self.directory.find_user(ref)["id"]
            self.directory.delete_user(user_id, permanent=permanent)

    def restore_user(self, user_id: str) -> None:
        with self._changing():
            self.directory.restore_user(user_id)

    def set_mailbox(self, ref: str, purpose: str | None) -> None:
        """``purpose`` None: the user has no mailbox (mailboxSettings answers 404)."""
        with self._changing():
            user_id = str(self.directory.find_user(ref)["id"])
            self.timeline.overwritten(user_id, ["mailboxSettings"])
            self.timeline.set_mailbox(user_id, None if purpose is None else {"userPurpose": purpose})

    def scope_mailbox_away(self, ref: str) -> None:
        """An Exchange application access policy keeps this mailbox from the app: its mailboxSettings
        answer 403 ErrorAccessDenied, whatever the profile."""
        with self._changing():
            self.store.scoped_away.add(str(self.directory.find_user(ref)["id"]))

    def scope_mailbox_back(self, ref: str) -> None:
        with self._changing():
            self.store.scoped_away.discard(str(self.directory.find_user(ref)["id"]))

    def add_group(self, group: dict[str, Any]) -> str:
        with self._changing():
            return self.directory.add_group(group)

    def update_group(self, group_id: str, **props: Any) -> None:
        with self._changing():
            self.directory.update_group(group_id, props)

    def delete_group(self, group_id: str, *, permanent: bool = False) -> None:
        with self._changing():
            self.directory.delete_group(group_id, permanent=permanent)

    def add_member(self, group_id: str, member_ref: str) -> None:
        with self._changing():
            self.directory.add_member(group_id, self._object_id(member_ref))

    def remove_member(self, group_id: str, member_ref: str) -> None:
        with self._changing():
            self.directory.remove_member(group_id, self._object_id(member_ref))

    def add_owner(self, group_id: str, owner_ref: str) -> None:
        with self._changing():
            owner_id = self._object_id(owner_ref)
            self.directory.add_owner(group_id, owner_id)
            self.timeline.owner_changed(group_id, owner_id, present=True)

    def remove_owner(self, group_id: str, owner_ref: str) -> None:
        with self._changing():
            owner_id = self._object_id(owner_ref)
            self.directory.remove_owner(group_id, owner_id)
            self.timeline.owner_changed(group_id, owner_id, present=False)

    def _object_id(self, ref: str) -> str:
        return ref if self.directory.is_group(ref) else str(self.directory.find_user(ref)["id"])

    # switches --------------------------------------------------------------------------------------
    def expire_cursors(self) -> None:
        """Every delta and skip token issued so far answers 410 syncStateNotFound from now on."""
        self.delta.expire()

    def set_roles(self, roles: Iterable[str]) -> None:
        """Change the application permissions the app holds (an admin granting or revoking them)."""
        self.roles = parse_roles(roles)

    def inject(
        self,
        status: int,
        *,
        count: int | None = None,
        fraction: float | None = None,
        retry_after: int | None = None,
        routes: Iterable[str] | None = None,
    ) -> Fault:
        return self.faults.inject(
            status, count=count, fraction=fraction, retry_after=retry_after, routes=routes
        )

    def apply_outage(self, outage: Outage) -> None:
        """An outage of the shared vocabulary (``outages.py``) as Graph has it: 503 serviceNotAvailable,
        429 TooManyRequests, or latency on every Graph route."""
        refuse_server_outage(outage)
        if outage.kind == OutageKind.SLOW:
            self.router.latency_seconds = outage.seconds
            return
        status = 503 if outage.kind == OutageKind.ERRORS else 429
        self.inject(status, fraction=outage.fraction, retry_after=outage.retry_after, routes=outage.routes)

    def clear_faults(self) -> None:
        """Every injected fault and outage off."""
        self.faults.clear()
        self.router.latency_seconds = 0.0

    def set_delivery_mode(self, mode: str) -> None:
        """``deliver`` (default; also releases held ones), ``hold`` (queue until deliver) or ``drop``."""
        self.webhooks.set_mode(mode)

    def expire_subscription(self, subscription_id: str) -> None:
        self.webhooks.expire(subscription_id)

    def require_reauthorization(self, subscription_id: str) -> None:
        self.webhooks.require_reauthorization(subscription_id)

    def remove_subscription(self, subscription_id: str) -> None:
        self.webhooks.remove(subscription_id)

    def report_missed(self, subscription_id: str) -> None:
        self.webhooks.missed(subscription_id)

    # what every Graph request passes -----------------------------------------------------------------
    def _add(self, route: GraphRoute) -> None:
        def guarded(request: Request) -> Response:
            if not _BEARER.match(request.headers.get("authorization", "")):
                return error(401, "InvalidAuthenticationToken", "Access token is empty.")
            refusal = self.faults.answer(route.name) or self._denied(route.name, request)
            if refusal is not None:
                return refusal
            if not route.locked:
                self.timeline.catch_up()
                return route.handler(request)
            with self.store.lock:
                self.timeline.catch_up()
                return route.handler(request)

        self.router.add(route.method, PREFIX + route.pattern, guarded, route.name)

    def _denied(self, route_name: str, request: Request) -> Response | None:
        """403 when the app holds none of the permissions the route (or the subscribed resource) needs."""
        try:
            if route_name in SUBSCRIPTION_ROUTES:
                resource = self._subscriptions.resource_of(route_name, request)
                if resource is not None:
                    check_subscription(self.roles, resource)
            else:
                check_route(self.roles, route_name)
        except PermissionMissing as missing:
            return error(403, "Authorization_RequestDenied", str(missing))
        return None
