"""``/_admin``: the simulator's switches over HTTP, for a simulator in another process (the soak, the
benchmarks, ``make local``). No authentication; counted under route names starting with "admin", which
the Graph request counts leave out. Every admin call first catches up with what fell due on the
simulator's timeline, so what it reads or changes comes after it."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from simulators.graph.changes import iso
from simulators.graph.store import NotFound
from simulators.graph.webhooks import SubscriptionRefused
from simulators.http import Request, Response, Router
from simulators.outages import add_outage_routes
from simulators.tenants import Tenant

if TYPE_CHECKING:
    from simulators.graph.simulator import GraphSimulator

Handler = Callable[[Request], Response]


def add_admin_routes(router: Router, simulator: GraphSimulator) -> None:
    admin = _Admin(simulator)
    sub = r"/subscriptions/(?P<ref>[^/]+)"
    routes: list[tuple[str, str, str, Handler]] = [
        ("GET", r"/counts", "admin counts", lambda r: Response(200, {"counts": simulator.counts})),
        ("DELETE", r"/counts", "admin reset counts", admin.reset_counts),
        ("PUT", r"/tenant", "admin load tenant", admin.load),
        ("POST", r"/users", "admin add user", admin.add_user),
        ("PATCH", r"/users/(?P<ref>[^/]+)", "admin update user", admin.update_user),
        ("DELETE", r"/users/(?P<ref>[^/]+)", "admin delete user", admin.delete_user),
        ("POST", r"/users/(?P<ref>[^/]+)/restore", "admin restore user", admin.restore_user),
        ("PUT", r"/users/(?P<ref>[^/]+)/mailboxSettings", "admin set mailbox", admin.mailbox),
        ("POST", r"/users/(?P<ref>[^/]+)/mailboxScopedAway", "admin scope mailbox away", admin.scope_away),
        ("DELETE", r"/users/(?P<ref>[^/]+)/mailboxScopedAway", "admin scope mailbox back", admin.scope_back),
        ("POST", r"/hires", "admin hire", admin.hire),
        ("GET", r"/changes", "admin changes", admin.changes),
        ("GET", r"/due", "admin next due", admin.next_due),
        ("POST", r"/groups", "admin add group", admin.add_group),
        ("PATCH", r"/groups/(?P<gid>[^/]+)", "admin update group", admin.update_group),
        ("DELETE", r"/groups/(?P<gid>[^/]+)", "admin delete group", admin.delete_group),
        ("POST", r"/groups/(?P<gid>[^/]+)/(?P<rel>members|owners)", "admin add member", admin.link),
        (
            "DELETE",
            r"/groups/(?P<gid>[^/]+)/(?P<rel>members|owners)/(?P<ref>[^/]+)",
            "admin remove member",
            admin.unlink,
        ),
        ("POST", r"/cursors/expire", "admin expire cursors", admin.expire_cursors),
        ("GET", r"/roles", "admin roles", lambda r: Response(200, {"roles": sorted(simulator.roles)})),
        ("PUT", r"/roles", "admin set roles", admin.set_roles),
        ("POST", r"/faults", "admin inject fault", admin.inject),
        ("DELETE", r"/faults", "admin clear faults", admin.clear_faults),
        ("PUT", r"/deliveries", "admin delivery mode", admin.delivery_mode),
        ("GET", r"/deliveries", "admin deliveries", admin.deliveries),
        ("POST", r"/deliveries/flush", "admin flush deliveries", admin.flush),
        ("POST", sub + "/expire", "admin expire subscription", admin.expire_subscription),
        ("POST", sub + "/reauthorization", "admin require reauthorization", admin.reauthorization),
        ("PUT", r"/delays", "admin pin delays", admin.pin),
    ]
    for method, pattern, name, handler in routes:
        router.add(method, "/_admin" + pattern, _admin_errors(_caught_up(simulator, handler)), name)
    add_outage_routes(router, simulator)


class _Admin:
    def __init__(self, simulator: GraphSimulator) -> None:
        self.simulator = simulator

    def reset_counts(self, request: Request) -> Response:
        self.simulator.reset_counts()
        return Response(204)

    def load(self, request: Request) -> Response:
        self.simulator.load(Tenant.from_json(request.json()))
        return Response(204)

    def add_user(self, request: Request) -> Response:
        return Response(201, {"id": self.simulator.add_user(request.json())})

    def update_user(self, request: Request) -> Response:
        self.simulator.update_user(request.params["ref"], **request.json())
        return Response(204)

    def delete_user(self, request: Request) -> Response:
        self.simulator.delete_user(request.params["ref"], permanent=request.query.get("permanent") == "true")
        return Response(204)

    def restore_user(self, request: Request) -> Response:
        self.simulator.restore_user(request.params["ref"])
        return Response(204)

    def mailbox(self, request: Request) -> Response:
        body = request.json()
        self.simulator.set_mailbox(request.params["ref"], body.get("userPurpose") if body else None)
        return Response(204)

    def scope_away(self, request: Request) -> Response:
        self.simulator.scope_mailbox_away(request.params["ref"])
        return Response(204)

    def scope_back(self, request: Request) -> Response:
        self.simulator.scope_mailbox_back(request.params["ref"])
        return Response(204)

    def hire(self, request: Request) -> Response:
        body = request.json()
        if not isinstance(body, dict) or not isinstance(body.get("user"), dict):
            raise ValueError('the body must be {"user": {...}, "groups": ["<group id>", ...]}')
        groups = body.get("groups") or []
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            raise ValueError('"groups" must be a list of group ids')
        return Response(201, {"id": self.simulator.hire(body["user"], groups)})

    def pin(self, request: Request) -> Response:
        """``{"replication": seconds | null, "notification": seconds | null}``: the delays of every
        change made from now on (null: the profile's draws again). Production profile only."""
        body = request.json()
        timeline = self.simulator.timeline
        if timeline.replication is None:
            raise ValueError("delays can be pinned on the production profile only")
        pins = {k: body.get(k) for k in ("replication", "notification")}
        for name, value in pins.items():
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0
            ):
                raise ValueError(f"{name} must be a number of seconds or null")
        timeline.pinned_replication, timeline.pinned_notification = pins["replication"], pins["notification"]
        return Response(204)

    def changes(self, request: Request) -> Response:
        since = int(request.query.get("since") or 0)
        return Response(200, {"changes": self.simulator.change_log(since)})

    def next_due(self, request: Request) -> Response:
        due = self.simulator.next_due()
        return Response(200, {"nextDue": None if due is None else iso(due)})

    def add_group(self, request: Request) -> Response:
        return Response(201, {"id": self.simulator.add_group(request.json())})

    def update_group(self, request: Request) -> Response:
        self.simulator.update_group(request.params["gid"], **request.json())
        return Response(204)

    def delete_group(self, request: Request) -> Response:
        self.simulator.delete_group(request.params["gid"], permanent=request.query.get("permanent") == "true")
        return Response(204)

    def link(self, request: Request) -> Response:
        member = str(request.json()["id"])
        if request.params["rel"] == "members":
            self.simulator.add_member(request.params["gid"], member)
        else:
            self.simulator.add_owner(request.params["gid"], member)
        return Response(204)

    def unlink(self, request: Request) -> Response:
        if request.params["rel"] == "members":
            self.simulator.remove_member(request.params["gid"], request.params["ref"])
        else:
            self.simulator.remove_owner(request.params["gid"], request.params["ref"])
        return Response(204)

    def set_roles(self, request: Request) -> Response:
        roles = request.json().get("roles")
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise ValueError('the body must be {"roles": ["User.Read.All", ...]}')
        self.simulator.set_roles(roles)
        return Response(204)

    def expire_cursors(self, request: Request) -> Response:
        self.simulator.expire_cursors()
        return Response(204)

    def inject(self, request: Request) -> Response:
        body = request.json()
        self.simulator.inject(
            int(body["status"]),
            count=body.get("count"),
            fraction=body.get("fraction"),
            retry_after=body.get("retryAfter"),
            routes=body.get("routes"),
        )
        return Response(204)

    def clear_faults(self, request: Request) -> Response:
        self.simulator.clear_faults()
        return Response(204)

    def delivery_mode(self, request: Request) -> Response:
        self.simulator.set_delivery_mode(str(request.json()["mode"]))
        return Response(204)

    def deliveries(self, request: Request) -> Response:
        webhooks = self.simulator.webhooks
        log = [vars(d) for d in self.simulator.deliveries]
        return Response(200, {"mode": webhooks.mode, "dropped": webhooks.dropped, "deliveries": log})

    def flush(self, request: Request) -> Response:
        return Response(200 if self.simulator.flush_deliveries() else 504, {})

    def expire_subscription(self, request: Request) -> Response:
        self.simulator.expire_subscription(request.params["ref"])
        return Response(204)

    def reauthorization(self, request: Request) -> Response:
        self.simulator.require_reauthorization(request.params["ref"])
        return Response(204)


def _caught_up(simulator: GraphSimulator, handler: Handler) -> Handler:
    def after_catching_up(request: Request) -> Response:
        simulator.catch_up()
        return handler(request)

    return after_catching_up


def _admin_errors(handler: Handler) -> Handler:
    def guarded(request: Request) -> Response:
        try:
            return handler(request)
        except (NotFound, KeyError) as missing:
            return Response(404, {"error": f"not found: {missing}"})
        except (ValueError, TypeError, SubscriptionRefused) as problem:
            return Response(400, {"error": str(problem)})

    return guarded
