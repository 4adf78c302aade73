"""The event path end to end, as Azure runs it, on the local Functions host: Graph change notification →
webhook → Service Bus stand-in → worker → Druva, with the simulators in their own processes."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from simulators.localapp import RunningApp, running_app
from simulators.tenants import make_user, seed_use_case


@pytest.fixture(scope="module")
def app() -> Iterator[RunningApp]:
    with running_app() as running:
        running.run_function("keep_watch")
        assert running.wait_until(lambda: len(running.druva_users()) == 10, timeout=60)
        assert running.wait_idle()
        yield running
    for pid in (running.process.pid, *running.simulator_pids):  # stopped by PID, the simulators too
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_the_app_is_discovered_and_subscribed_through_the_handshake(app: RunningApp) -> None:
    functions = app.status()["functions"]
    assert {name: f["trigger"] for name, f in functions.items()} == {
        "graph_notifications": "httpTrigger",
        "graph_lifecycle": "httpTrigger",
        "keep_watch": "timerTrigger",
        "nightly_reconciliation": "timerTrigger",
        "worker": "serviceBusTrigger",
    }
    subscriptions = app.graph_api("GET", "/subscriptions")["value"]
    assert sorted(s["resource"] for s in subscriptions) == ["groups", "users"]
    assert all(s["notificationUrl"].startswith(app.url) for s in subscriptions)


def test_a_new_hire_then_a_group_move_reach_druva_through_the_functions(app: RunningApp) -> None:
    before = len(app.invocations())
    hire = app.graph("POST", "/users", make_user("rita", office="Chicago", country="US"))["id"]
    assert app.wait_until(lambda: "rita@contoso.com" in app.druva_users(), timeout=20)
    app.graph("POST", f"/groups/{seed_use_case().group_id('US Finance')}/members", {"id": hire})

    def finance() -> bool:
        user = app.druva_users()["rita@contoso.com"]
        return app.druva_profiles()[user["profileID"]] == "Finance"

    assert app.wait_until(finance, timeout=20)  # seconds, not the 15-minute timer
    kinds = {i["function"] for i in app.invocations()[before:]}
    assert {"graph_notifications", "worker"} <= kinds


def test_a_leaver_is_preserved(app: RunningApp) -> None:
    app.graph("PATCH", "/users/erin@contoso.com", {"accountEnabled": False})
    assert app.wait_until(lambda: app.druva_users()["erin@contoso.com"]["status"] == "preserved", timeout=20)
    assert app.wait_idle()
    queue = app.status()["queue"]
    assert queue["dead_lettered"] == 0 and queue["counters"]["refused"] == 0
    assert all(i["outcome"] == "ok" for i in app.invocations())


def test_the_local_app_keeps_its_state_in_table_storage_when_asked() -> None:
    with running_app("--table") as app:
        app.run_function("keep_watch")
        assert app.wait_until(lambda: len(app.druva_users()) == 10, timeout=60)
        assert app.wait_idle()
        assert all(i["outcome"] == "ok" for i in app.invocations())
