"""``/subscriptions``: create (with the validation handshake), list, get, renew, delete, reauthorize;
and every directory change turned into the basic change notification Graph sends (``notice_of``;
``webhooks.py`` delivers them, ``timeline.py`` decides when)."""

from __future__ import annotations

from typing import Any

from simulators.graph.store import HARD, Change
from simulators.graph.webhooks import Notice, SubscriptionRefused, Webhooks
from simulators.graph.wire import REF, GraphRoute, base_url, error
from simulators.http import Request, Response

APPLICATION_ID = "5b1f0a52-0000-4000-8000-0000000a9901"


class Subscriptions:
    def __init__(self, webhooks: Webhooks) -> None:
        self.webhooks = webhooks

    def routes(self) -> list[GraphRoute]:
        one = rf"/subscriptions/{REF}"
        return [
            GraphRoute("GET", r"/subscriptions", "subscriptions", self.live, locked=False),
            GraphRoute("POST", r"/subscriptions", "create subscription", self.create, locked=False),
            GraphRoute("GET", one, "subscription", self.one, locked=False),
            GraphRoute("PATCH", one, "renew subscription", self.one, locked=False),
            GraphRoute("DELETE", one, "delete subscription", self.one, locked=False),
            GraphRoute("POST", one + "/reauthorize", "reauthorize subscription", self.one, locked=False),
        ]

    def live(self, request: Request) -> Response:
        return Response(
            200,
            {"@odata.context": f"{base_url(request)}/$metadata#subscriptions", "value": self.webhooks.live()},
        )

    def create(self, request: Request) -> Response:
        try:
            return Response(201, self.webhooks.create(request.json() or {}, APPLICATION_ID))
        except SubscriptionRefused as refused:
            return error(refused.status, refused.code, refused.message)
        except ValueError:
            return error(400, "BadRequest", "the body is not JSON")

    def one(self, request: Request) -> Response:
        subscription_id = request.params["ref"]
        try:
            if request.method == "GET":
                return Response(200, self.webhooks.get(subscription_id))
            if request.method == "PATCH":
                return Response(200, self.webhooks.renew(subscription_id, request.json() or {}))
            if request.method == "DELETE":
                self.webhooks.delete(subscription_id)
            else:
                self.webhooks.reauthorize(subscription_id)
            return Response(204)
        except SubscriptionRefused as refused:
            return error(refused.status, refused.code, refused.message)

    def resource_of(self, route_name: str, request: Request) -> str | None:
        """The resource a subscription request is about (its permission depends on it), or None."""
        if route_name == "create subscription":
            try:
                body = request.json()
            except ValueError:
                return None  # the handler answers 400
            return str(body.get("resource") or "") if isinstance(body, dict) else None
        found = self.webhooks.subscriptions.get(request.params.get("ref", ""))
        return None if found is None else str(found.get("resource") or "")


def notice_of(change: Change) -> Notice:
    """Directory change → the basic change notification Graph sends for it."""
    change_type = "deleted" if change.removed == HARD else "updated"
    if change.kind == "user":
        return Notice("users", change.id, change_type)
    if change.kind == "group" or not change.member_id:
        return Notice("groups", change.id, change_type)
    entry: dict[str, Any] = {"id": change.member_id}
    if not change.member_added:
        entry["@removed"] = "deleted"  # a plain string in notifications, as observed from Graph
    return Notice("groups", change.id, "updated", {"members@delta": [entry]})
