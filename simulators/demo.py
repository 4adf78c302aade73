"""``make demo``: the product's main job on one machine, against local Graph and Druva simulators.

The tenant is the product brief's use case: a US Finance group mapping above an office-location mapping,
a shared-mailbox mapping and a catch-all; guests, a disabled user, a shared mailbox, a nested group and a
group owner who is not a member. The demo runs the real command line (``python -m provisioning``) the
way an admin would: doctor, a dry run, a search for "ali" and the import it suggests, the first sync;
then a new Finance hire, a leaver and a mover; a second sync that shows each decision; ``explain`` for
the mover; and a last sync with nothing to do.

Then the event path, as it runs in Azure: the local Functions host runs ``function_app.py`` (webhook,
timers, worker) with a Service Bus stand-in, the simulators in their own processes. ``keep_watch``
creates the Graph subscriptions through the real validation handshake; a new hire, a group move and a
leaver happen in Entra, the Graph simulator notifies the webhook, the worker runs, and the demo prints
the measured seconds from each change in Entra to Druva.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.rule import Rule

from simulators import REPOSITORY
from simulators.local import LocalCloud, local_cloud
from simulators.localapp import RunningApp, running_app
from simulators.tenants import make_user, seed_use_case

CONFIG = REPOSITORY / "examples" / "mappings.yaml"
console = Console(highlight=False)


def step(title: str, explanation: str) -> None:
    console.print()
    console.print(Rule(f"[bold]{title}"))
    console.print(f"[dim]{explanation}[/]")


def cli(cloud: LocalCloud, state: Path, *arguments: str) -> int:
    """Run ``python -m provisioning`` as an admin would, with only the settings pointing at loopback."""
    command = [sys.executable, "-m", "provisioning", *arguments]
    console.print(f"[cyan]$ python -m provisioning {' '.join(arguments)}[/]")
    environment = {**os.environ, **cloud.environment(state), "COLUMNS": os.environ.get("COLUMNS", "110")}
    return subprocess.run(command, env=environment, check=False).returncode  # noqa: S603 - our own CLI


def cli_lines(cloud: LocalCloud, state: Path, *arguments: str) -> list[str]:
    """``cli``, keeping what the command printed (and showing it as it would have been shown)."""
    command = [sys.executable, "-m", "provisioning", *arguments]
    console.print(f"[cyan]$ python -m provisioning {' '.join(arguments)}[/]")
    environment = {**os.environ, **cloud.environment(state), "COLUMNS": os.environ.get("COLUMNS", "110")}
    done = subprocess.run(command, env=environment, check=False, capture_output=True, text=True)  # noqa: S603
    sys.stdout.write(done.stdout)
    sys.stderr.write(done.stderr)
    return done.stdout.splitlines()


def main() -> int:
    tenant = seed_use_case()
    with tempfile.TemporaryDirectory(prefix="provisioning-demo-") as folder, local_cloud(tenant) as cloud:
        state = Path(folder) / "state"
        config = ("--config", str(CONFIG))
        console.print(f"Graph simulator on {cloud.graph.url}, Druva simulator on {cloud.druva_server.url}")
        console.print(
            f"Mappings: {CONFIG.relative_to(Path.cwd()) if CONFIG.is_relative_to(Path.cwd()) else CONFIG}"
        )

        step(
            "1. doctor", "Pre-flight: Graph and Druva reachable, every group, profile and storage resolvable."
        )
        cli(cloud, state, "doctor", *config)

        step("2. sync --dry-run", "The plan for the whole tenant, before anything is written.")
        cli(cloud, state, "sync", *config, "--dry-run")

        step(
            '3. search "ali", then import by hand',
            "Find an account by the start of a name: its mapping and Druva status, and the import command.",
        )
        found = cli_lines(cloud, state, "search", *config, "ali")
        cli(cloud, state, *shlex.split(found[-1])[3:])  # the exact command search ended with

        step("4. sync", "The first import: each user through the highest-priority mapping it matches.")
        cli(cloud, state, "sync", *config)
        console.print(f"Druva now holds {len(cloud.druva.users())} users.")

        step("5. changes in Entra", "A new Finance hire, a leaver and a mover happen in the directory.")
        finance = tenant.group_id("US Finance")
        nina = cloud.graph.add_user(make_user("nina", department="Finance", office="Boston", country="US"))
        cloud.graph.add_member(finance, nina)
        console.print("  + nina@contoso.com joins, in US Finance (new hire)")
        cloud.graph.update_user("erin@contoso.com", accountEnabled=False)
        console.print("  - erin@contoso.com is disabled (leaver)")
        cloud.graph.update_user("carol@contoso.com", officeLocation="Paris")
        console.print("  ~ carol@contoso.com moves from the Chicago office to Paris (mover)")

        step("6. sync", "Only what changed is read; each decision is applied and explained.")
        cloud.reset_counts()
        cli(cloud, state, "sync", *config)
        console.print(
            f"Graph requests: {cloud.graph.graph_requests()}, Druva requests: {cloud.druva.api_requests()}"
        )

        step(
            "7. explain carol@contoso.com", "Why the mover got her new profile and storage, and her history."
        )
        cli(cloud, state, "explain", *config, "carol@contoso.com")

        step("8. sync again", "Nothing changed: nothing is written.")
        cloud.reset_counts()
        code = cli(cloud, state, "sync", *config, "--json")
        console.print(f"Druva writes: {cloud.druva.writes()}")
    return code or event_path()


def event_path() -> int:
    """The functions, as Azure runs them, on the local host: Graph → webhook → queue → worker → Druva."""
    step(
        "9. the event path",
        "python -m simulators.localapp: the local Functions host runs function_app.py, with a "
        "Service Bus stand-in (duplicate detection, scheduling, locks, dead-letters), fresh simulators in "
        "their own processes and SQLite state.",
    )
    with (
        tempfile.TemporaryDirectory(prefix="provisioning-demo-") as folder,
        running_app("--config", str(CONFIG), log_file=Path(folder) / "host.log") as app,
    ):
        console.print(f"Functions host on {app.url}; Graph on {app.graph_url}; Druva on {app.druva_url}")
        app.run_function("keep_watch")
        subscriptions = app.graph_api("GET", "/subscriptions")["value"]
        console.print(
            f"keep_watch: {len(subscriptions)} Graph subscriptions created ("
            + ", ".join(s["resource"] for s in subscriptions)
            + "), each after the webhook answered the validation handshake; and a safety-net delta pass"
        )
        app.wait_until(lambda: len(app.druva_users()) >= 10, timeout=60)
        app.wait_idle()
        console.print(f"The first pass imported the tenant: Druva holds {len(app.druva_users())} users.")

        step("10. a new hire", "quinn@contoso.com is created in Entra, in the New York office.")
        started = time.time()
        quinn = app.graph("POST", "/users", make_user("quinn", office="New York", country="US"))["id"]
        seen = app.wait_until(lambda: "quinn@contoso.com" in app.druva_users())
        _measured(app, "quinn@contoso.com", started, seen)

        step("11. a group move", "quinn joins US Finance: the higher-priority mapping now wins.")
        started = time.time()
        app.graph("POST", f"/groups/{seed_use_case().group_id('US Finance')}/members", {"id": quinn})
        seen = app.wait_until(lambda: _profile(app, "quinn@contoso.com") == "Finance")
        _measured(app, "quinn@contoso.com", started, seen)

        step("12. a leaver", "erin@contoso.com is disabled in Entra: preserved in Druva, never deleted.")
        started = time.time()
        app.graph("PATCH", "/users/erin@contoso.com", {"accountEnabled": False})
        seen = app.wait_until(lambda: app.druva_users()["erin@contoso.com"]["status"] == "preserved")
        _measured(app, "erin@contoso.com", started, seen)
        app.wait_idle()
        calls = [i for i in app.invocations() if i["function"] != "keep_watch"]
        queue = app.status()["queue"]["counters"]
        console.print(
            f"Invocations: {sum(i['function'] == 'graph_notifications' for i in calls)} webhook, "
            f"{sum(i['function'] == 'worker' for i in calls)} worker; queue: {queue['sent']} sent, "
            f"{queue['duplicates']} duplicates dropped, {queue['dead_lettered']} dead-lettered."
        )
        return 0 if seen else 1


def _profile(app: RunningApp, email: str) -> str | None:
    user = app.druva_users().get(email)
    return app.druva_profiles().get(user["profileID"]) if user else None


def _measured(app: RunningApp, email: str, started: float, seen: float | None) -> None:
    if seen is None:
        console.print(f"[red]{email} did not reach Druva within 30 s[/]")
        return
    user = app.druva_users()[email]
    profile = app.druva_profiles().get(user["profileID"])
    console.print(
        f"[green]{email} in Druva: {user['status']}, profile {profile}, "
        f"[bold]{seen - started:.2f} s[/bold] after the change in Entra[/]"
    )


if __name__ == "__main__":
    sys.exit(main())
