"""The event path, timed: figures, not tests. ``make bench-events`` (``REALISM=kind`` for the kind profile)

    .venv/bin/python -m bench.events [--realism kind|production] [--changes 50] [--burst 1000]
                                     [--burst-seconds 60] [--notifications 10000] [--per-post 100]
                                     [--posts-per-second 200] [--per-band 6]

The local Functions host runs ``function_app.py`` with the Service Bus stand-in; Graph and Druva
simulators run in processes of their own (``python -m simulators.localapp``). This process
only changes the directory (the Graph simulator's admin API), watches Druva, and posts notifications.

- single change: changes one at a time (new hire, group move, leaver, in turn), each waited for: from
  the notification's arrival at the webhook to the Druva write, and from the change in Entra to the write;
- burst: new hires created evenly over the given seconds: from the last notification until the last
  hire is in Druva; worker invocations (passes and follow-ups); Graph requests the app made;
- webhook load: notifications in POSTs of up to ``--per-post`` (as Graph batches them) at a steady rate
  from 4 connections: acknowledgement p50 and p99 measured by the client, messages enqueued.

On the production profile (``--realism production``: changes readable late, notifications late, twice or
never, skeleton users, dynamic groups; ``simulators/realism.py``) it measures instead what the follow-ups
of ``provisioning/domain/followups.py`` promise, with the Graph simulator's delays pinned per change
(``PUT /_admin/delays``) so that each figure belongs to a known delay:

- quiet tenant: one change at a time, its notification at once, readable 0, 5, 30 or 120 s later: the time
  from "readable in Graph" to the Druva write, and every Graph request the app made for it until nothing
  was left to look for;
- delay bands: changes readable 0-10 s, 10-60 s, 60-120 s and 2-10 min after their notification, made
  together: p50/p95/max from readable to the Druva write and from the notification's arrival, against
  the target max(10 s, a quarter of the delay);
- hires that settle: new users whose office, mailbox and dynamic group arrive over their first minutes:
  created once, through their final mapping, and what waiting for ``lifecycle.settle`` costs;
- a burst of new hires on the production profile: passes per 2-second window, Graph requests per hire.

Druva is watched by polling its admin state every 20 ms, so write times carry up to ~20 ms of slack.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import secrets
import statistics
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from simulators.localapp import RunningApp, running_app
from simulators.realism import PROFILES
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


# the production profile -----------------------------------------------------------------------------
BANDS = ((0.0, 10.0), (10.0, 60.0), (60.0, 120.0), (120.0, 600.0))
QUIET_DELAYS = (0.0, 5.0, 30.0, 120.0)
OFFICES = ("Paris", "London", "Boston", "Bangalore")  # none of the seed mappings' US offices: a move


@dataclass
class Timed:
    """One change: when it became readable in Graph and when its notification reached the webhook
    (the simulator's change log), and when Druva was written."""

    delay: float
    readable: float
    notified: float
    written: float

    @property
    def from_readable(self) -> float:
        return self.written - self.readable

    @property
    def from_notification(self) -> float:
        return self.written - self.notified

    @property
    def target(self) -> float:
        return max(10.0, (self.readable - self.notified) / 4)


def _seconds(text: str | None) -> float:
    return datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp() if text else float("nan")


def _last_change(app: RunningApp, object_id: str, since: int) -> dict[str, Any]:
    """The latest change of ``object_id`` since the ``since``-th (the one that set what Druva should hold)."""
    found: list[dict[str, Any]] = app.graph("GET", f"/changes?since={since}")["changes"]
    return [c for c in found if c["id"] == object_id and c["kind"] == "user"][-1]


def _mark(app: RunningApp) -> int:
    return len(app.graph("GET", "/changes")["changes"])


def _pin(app: RunningApp, readable: float | None, notified: float | None = 0.0) -> None:
    app.graph("PUT", "/delays", {"replication": readable, "notification": notified})


def _quiet(app: RunningApp, timeout: float = 900.0) -> None:
    """Until nothing runs and nothing is queued, looks included: the change has cost all it will."""
    app.wait_until(lambda: app.status()["queue"]["active"] == 0, timeout=timeout, every=0.2)
    app.wait_idle(timeout=60)


def quiet_tenant(app: RunningApp, users: list[tuple[str, str]]) -> None:
    """One move at a time: an existing user's office changes to one the catch-all maps to EU-West."""
    print("quiet tenant: one change at a time, notified at once, readable D seconds later")
    storages = {s["storageName"]: s["StorageID"] for s in app.druva_state()["storages"]}
    for delay, (email, user_id) in zip(QUIET_DELAYS, users, strict=False):
        _quiet(app)
        before, mark = app.graph_requests(), _mark(app)
        _pin(app, delay)
        office = random.choice(OFFICES)
        app.graph("PATCH", f"/users/{user_id}", {"officeLocation": office})
        _pin(app, None, None)
        written = app.wait_until(
            lambda email=email: app.druva_users()[email]["storageID"] == storages["EU-West"],  # type: ignore[misc]
            timeout=delay + 120,
        )
        change = _last_change(app, user_id, mark)
        _quiet(app)
        requests = app.graph_requests() - before
        if written is None:
            print(f"  readable after {delay:>5.0f} s: not in Druva within {delay + 120:.0f} s")
            continue
        timed = Timed(delay, _seconds(change["readable_at"]), _seconds(change["notified_at"][0]), written)
        print(
            f"  readable after {delay:>5.0f} s: in Druva {timed.from_readable:5.1f} s after it became "
            f"readable (target ≤ {timed.target:.0f} s), {requests} Graph requests in all (target ≤ 10)"
        )


def delay_bands(app: RunningApp, users: list[tuple[str, str]], per_band: int) -> None:
    print(f"delay bands: {per_band} changes per band, made together, each notified at once")
    storages = {s["storageName"]: s["StorageID"] for s in app.druva_state()["storages"]}
    _quiet(app)
    mark, made = _mark(app), []
    draws = random.Random(7)
    pool = iter(users)
    for low, high in BANDS:
        for _ in range(per_band):
            email, user_id = next(pool)
            delay = draws.uniform(low, high)
            _pin(app, delay)
            app.graph("PATCH", f"/users/{user_id}", {"officeLocation": draws.choice(OFFICES)})
            made.append((delay, email, user_id))
    _pin(app, None, None)
    written: dict[str, float] = {}
    deadline = time.time() + BANDS[-1][1] + 180

    def all_written() -> bool:
        druva = app.druva_users()
        for _, email, _ in made:
            if email not in written and druva[email]["storageID"] == storages["EU-West"]:
                written[email] = time.time()
        return len(written) == len(made)

    app.wait_until(all_written, timeout=deadline - time.time(), every=0.05)
    timed: dict[tuple[float, float], list[Timed]] = {band: [] for band in BANDS}
    for delay, email, user_id in made:
        change = _last_change(app, user_id, mark)
        band = next(b for b in BANDS if b[0] <= delay < b[1])
        if email in written:
            notified = _seconds(change["notified_at"][0])
            timed[band].append(Timed(delay, _seconds(change["readable_at"]), notified, written[email]))
    for (low, high), found in timed.items():
        missing = per_band - len(found)
        if not found:
            print(f"  {low:>4.0f}-{high:<4.0f} s: none in Druva")
            continue
        after_readable = [t.from_readable for t in found]
        after_notified = [t.from_notification for t in found]
        within = sum(t.from_readable <= t.target for t in found)
        print(
            f"  {low:>4.0f}-{high:<4.0f} s: readable → Druva p50 {statistics.median(after_readable):5.1f} s, "
            f"p95 {percentile(after_readable, 0.95):5.1f} s, max {max(after_readable):5.1f} s; "
            f"notification → Druva p50 {statistics.median(after_notified):5.1f} s, "
            f"max {max(after_notified):5.1f} s; within max(10 s, D/4): "
            f"{within} of {len(found)}" + (f"; {missing} never reached Druva" if missing else "")
        )


@dataclass
class Hires:
    """Hires made at ``started``, and when each appeared in Druva with which profile, watched from a
    thread while other measurements run (bounded: ``WATCH_SECONDS``)."""

    started: float
    wanted: list[tuple[str, str]]  # e-mail, the profile its final mapping gives
    seen: dict[str, tuple[float, str]]
    watcher: threading.Thread | None = None

    WATCH_SECONDS = 900.0

    def watch(self, app: RunningApp) -> None:
        def poll() -> None:
            deadline = self.started + self.WATCH_SECONDS
            while len(self.seen) < len(self.wanted) and time.time() < deadline:
                druva, profiles = app.druva_users(), app.druva_profiles()
                for email, _ in self.wanted:
                    if email in druva and email not in self.seen:
                        self.seen[email] = (time.time(), profiles[druva[email]["profileID"]])
                time.sleep(0.25)

        self.watcher = threading.Thread(target=poll, name="hire-watch", daemon=True)
        self.watcher.start()


def start_hires(app: RunningApp, count: int) -> Hires:
    """Hires whose properties, mailbox and (for half) the US Finance group arrive over minutes."""
    finance = seed_use_case().group_id("US Finance")
    hires = Hires(time.time(), [], {})
    for n in range(count):
        groups = [finance] if n % 2 == 0 else []
        body = {"user": make_user(f"settle-{n}", office="Chicago", country="US"), "groups": groups}
        app.graph("POST", "/hires", body)
        hires.wanted.append((f"settle-{n}@contoso.com", "Finance" if groups else "Standard"))
    hires.watch(app)
    return hires


def settled_hires(app: RunningApp, watched: Hires) -> None:
    if watched.watcher is not None:
        watched.watcher.join(timeout=watched.WATCH_SECONDS + 10)
    started, hires, seen = watched.started, watched.wanted, watched.seen
    _quiet(app)
    profiles, druva = app.druva_profiles(), app.druva_users()
    final = sum(1 for e, want in hires if e in seen and seen[e][1] == want)
    moved = sum(1 for e, _ in hires if e in seen and profiles[druva[e]["profileID"]] != seen[e][1])
    waits = sorted(at - started for at, _ in seen.values())
    print(f"hires that settle: {len(hires)} new users, office and mailbox within seconds, half in US Finance")
    if not waits:
        print("  none created")
        return
    print(
        f"  {len(seen)} of {len(hires)} created, {final} through their final mapping (profile, storage and "
        f"quota for good), {moved} re-mapped afterwards; creation in Entra → Druva p50 "
        f"{statistics.median(waits):.0f} s, max {waits[-1]:.0f} s: the cost of lifecycle.settle (300 s)"
    )


def production_burst(app: RunningApp, count: int, seconds: float) -> None:
    _quiet(app)
    before, calls_before = app.graph_requests(), len(app.invocations())
    started = time.time()
    for n in range(count):
        pause = started + n * seconds / count - time.time()
        if pause > 0:
            time.sleep(pause)
        app.graph("POST", "/users", make_user(f"pburst-{n}", office="Chicago", country="US"))
    emails = {f"pburst-{n}@contoso.com" for n in range(count)}
    done = app.wait_until(lambda: emails <= app.druva_users().keys(), timeout=900, every=0.2)
    _quiet(app)
    calls = app.invocations()[calls_before:]
    passes = [
        i for i in calls if i["function"] == "worker" and str(i["detail"]).startswith(("delta", "continue"))
    ]
    windows: dict[int, int] = {}
    for call in passes:
        windows[int(call["started"]) // 2] = windows.get(int(call["started"]) // 2, 0) + 1
    requests = app.graph_requests() - before
    print(f"burst on the production profile ({count} new hires over {seconds:.0f} s, lifecycle.settle 300 s)")
    if done is None:
        print("  not every hire reached Druva within 900 s")
        return
    busiest = max(windows.values(), default=0)
    print(
        f"  every hire in Druva {done - started:.0f} s after the first was created; passes {len(passes)}, "
        f"at most {busiest} in any 2-second window; Graph requests {requests} ({requests / count:.2f} a hire)"
    )


def production(app: RunningApp, per_band: int, burst_size: int) -> None:
    # The movers are part of the tenant from the start (a load is not a change: no notifications, no
    # skeletons), so the first measurement begins in a quiet tenant.
    tenant = seed_use_case()
    movers = []
    for n in range(len(QUIET_DELAYS) + per_band * len(BANDS)):
        user = make_user(f"mover-{n}", office="Chicago", country="US")
        tenant.users.append(user)
        movers.append((f"mover-{n}@contoso.com", str(user["id"])))
    app.graph("PUT", "/tenant", tenant.to_json())
    app.run_function("keep_watch")
    app.wait_until(lambda: all(e in app.druva_users() for e, _ in movers), timeout=300)
    _quiet(app)
    print(f"local host {app.url}, production profile; {len(app.druva_users())} users in Druva")
    quiet_tenant(app, movers[: len(QUIET_DELAYS)])
    hires = start_hires(app, 8)  # they settle while the bands run, watched from a thread
    delay_bands(app, movers[len(QUIET_DELAYS) :], per_band)
    settled_hires(app, hires)
    production_burst(app, burst_size, 60.0)


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
    parser.add_argument("--realism", choices=(*PROFILES, "both"), default="both")
    parser.add_argument("--per-band", type=int, default=6, help="production: changes per delay band")
    args = parser.parse_args()
    client_state = secrets.token_urlsafe(32)
    if args.realism in ("kind", "both"):
        kind(args, client_state)
    if args.realism in ("production", "both"):
        with running_app("--realism", "production", environment={"GRAPH_CLIENT_STATE": client_state}) as app:
            production(app, args.per_band, args.burst)


def kind(args: argparse.Namespace, client_state: str) -> None:
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
