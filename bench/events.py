"""The event path, timed: figures, not tests. ``make bench-events``

    .venv/bin/python -m bench.events [--changes 50] [--burst 1000] [--burst-seconds 60]
                                     [--notifications 10000] [--per-post 100] [--posts-per-second 200]

The local Functions host runs ``function_app.py`` with the Service Bus stand-in; Graph and Druva
simulators run in processes of their own (``python -m simulators.localapp``). This process
only changes the directory (the Graph simulator's admin API), watches Druva, and posts notifications.

- single change: changes one at a time (new hire, group move, leaver, in turn), each waited for: from
  the notification's arrival at the webhook to the Druva write, and from the change in Entra to the write;
- burst: new hires created evenly over the given seconds: from the last notification until the last
  hire is in Druva; worker invocations (passes and follow-ups); Graph requests the app made;
- webhook load: notifications in POSTs of up to ``--per-post`` (as Graph batches them) at a steady rate
  from 4 connections: acknowledgement p50 and p99 measured by the client, messages enqueued.

Druva is watched by polling its admin state every 20 ms, so write times carry up to ~20 ms of slack.
"""

from __future__ import annotations

import argparse
import http.client
import json
import secrets
import statistics
import threading
import time
import uuid
from urllib.parse import urlsplit

from simulators.localapp import RunningApp, running_app
from simulators.tenants import make_user, seed_use_case


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered) + 0.5) - 1))]


def _profile(app: RunningApp, email: str) -> str | None:
    user = app.druva_users().get(email)
    return app.druva_profiles().get(user["profileID"]) if user else None


def single_changes(app: RunningApp, count: int) -> None:
    finance = seed_use_case().group_id("US Finance")
    from_notification, from_change = [], []
    hires: list[tuple[str, str]] = []
    for n in range(count):
        kind = ("hire", "move", "leaver")[n % 3]
        started = time.time()
        if kind == "hire" or not hires:
            name = f"bench-{n}"
            user_id = app.graph("POST", "/users", make_user(name, office="New York", country="US"))["id"]
            hires.append((f"{name}@contoso.com", user_id))
            email = hires[-1][0]
            seen = app.wait_until(lambda email=email: email in app.druva_users())  # type: ignore[misc]
        elif kind == "move":
            email, user_id = hires[-1]
            app.graph("POST", f"/groups/{finance}/members", {"id": user_id})
            seen = app.wait_until(lambda email=email: _profile(app, email) == "Finance")  # type: ignore[misc]
        else:
            email, user_id = hires[-1]
            app.graph("PATCH", f"/users/{user_id}", {"accountEnabled": False})
            seen = app.wait_until(
                lambda email=email: app.druva_users()[email]["status"] == "preserved"  # type: ignore[misc]
            )
        if seen is None:
            print(f"  change {n} ({kind}) did not reach Druva within 30 s")
            continue
        arrivals = [
            i["started"]
            for i in app.invocations()
            if i["function"] == "graph_notifications" and i["started"] >= started
        ]
        from_change.append(seen - started)
        if arrivals:
            from_notification.append(seen - min(arrivals))
        app.wait_idle()
    print(f"single change ({len(from_change)} of {count}: new hire, group move, leaver in turn)")
    for label, values in (
        ("notification → Druva write", from_notification),
        ("change in Entra → Druva write", from_change),
    ):
        if values:
            print(
                f"  {label:<30} p50 {statistics.median(values):.2f} s, p95 {percentile(values, 0.95):.2f} s, "
                f"max {max(values):.2f} s  (target p95 ≤ 2 s from the notification)"
            )


def burst(app: RunningApp, count: int, seconds: float) -> None:
    app.wait_idle()
    requests_before, invocations_before = app.graph_requests(), len(app.invocations())
    started = time.time()
    emails = []
    for n in range(count):
        pause = started + n * seconds / count - time.time()
        if pause > 0:
            time.sleep(pause)
        app.graph("POST", "/users", make_user(f"burst-{n}", office="Chicago", country="US"))
        emails.append(f"burst-{n}@contoso.com")
    created = time.time() - started
    done = app.wait_until(lambda: set(emails) <= app.druva_users().keys(), timeout=300, every=0.05)
    calls = app.invocations()[invocations_before:]
    arrivals = [i["started"] for i in calls if i["function"] == "graph_notifications"]
    workers = [i for i in calls if i["function"] == "worker"]
    follow_ups = sum("followup" in i["detail"] for i in workers)
    graph_requests = app.graph_requests() - requests_before
    print(f"burst ({count} new hires created over {created:.1f} s)")
    if done is None or not arrivals:
        print("  not every hire reached Druva within 300 s")
        return
    print(f"  last notification → last hire in Druva  {done - max(arrivals):.2f} s  (target ≤ 30 s)")
    print(f"  webhook POSTs {len(arrivals)}, worker invocations {len(workers)} ({follow_ups} follow-ups)")
    print(f"  Graph requests {graph_requests} ({graph_requests / count:.3f} per hire)")


def webhook_load(app: RunningApp, client_state: str, total: int, per_post: int, rate: float) -> None:
    # Start with an empty queue: hints of the burst's last window (still scheduled) would absorb these.
    app.wait_until(lambda: app.status()["queue"]["active"] == 0, timeout=60, every=0.1)
    before = app.status()["queue"]["counters"]
    workers_before = sum(i["function"] == "worker" for i in app.invocations())
    posts = (total + per_post - 1) // per_post
    url = urlsplit(app.url)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    started = time.monotonic() + 0.2

    def body(size: int) -> bytes:
        items = [
            {
                "subscriptionId": "bench-subscription",
                "clientState": client_state,
                "changeType": "updated",
                "resource": f"Users/{uuid.uuid4()}",
                "tenantId": str(uuid.uuid4()),
            }
            for _ in range(size)
        ]
        return json.dumps({"value": items}).encode()

    def sender(offset: int) -> None:
        connection = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=10)
        for n in range(offset, posts, 4):
            payload = body(min(per_post, total - n * per_post))
            pause = started + n / rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            sent = time.perf_counter()
            connection.request(
                "POST", "/api/graph/notifications", payload, {"Content-Type": "application/json"}
            )
            answer = connection.getresponse()
            answer.read()
            with lock:
                latencies.append(time.perf_counter() - sent)
                statuses[answer.status] = statuses.get(answer.status, 0) + 1
        connection.close()

    threads = [threading.Thread(target=sender, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    after = app.status()["queue"]["counters"]
    sent, duplicates = after["sent"] - before["sent"], after["duplicates"] - before["duplicates"]
    print(
        f"webhook load ({total} notifications in {posts} POSTs of up to {per_post}, "
        f"{posts / elapsed:.0f} POSTs/s)"
    )
    print(
        f"  acknowledgement p50 {statistics.median(latencies) * 1000:.1f} ms, "
        f"p99 {percentile(latencies, 0.99) * 1000:.1f} ms  (target p99 ≤ 50 ms); answers {statuses}"
    )
    print(f"  messages enqueued {sent - duplicates} ({sent} sent, {duplicates} dropped as duplicates)")
    app.wait_until(lambda: app.status()["queue"]["active"] == 0, timeout=60, every=0.1)
    workers = sum(i["function"] == "worker" for i in app.invocations()) - workers_before
    print(f"  worker invocations for them {workers}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--changes", type=int, default=50)
    parser.add_argument("--burst", type=int, default=1000)
    parser.add_argument("--burst-seconds", type=float, default=60.0)
    parser.add_argument("--notifications", type=int, default=10_000)
    parser.add_argument("--per-post", type=int, default=100)
    parser.add_argument("--posts-per-second", type=float, default=200.0)
    args = parser.parse_args()
    client_state = secrets.token_urlsafe(32)
    with running_app(environment={"GRAPH_CLIENT_STATE": client_state}) as app:
        app.run_function("keep_watch")
        app.wait_until(lambda: len(app.druva_users()) >= 10, timeout=60)
        app.wait_idle()
        print(
            f"local host {app.url}; the seed tenant imported by the worker ({len(app.druva_users())} users)"
        )
        single_changes(app, args.changes)
        burst(app, args.burst, args.burst_seconds)
        webhook_load(app, client_state, args.notifications, args.per_post, args.posts_per_second)


if __name__ == "__main__":
    main()
