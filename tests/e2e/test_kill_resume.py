"""A sync killed with SIGKILL mid-import: the re-run is refused only while the dead run's lease lasts,
then succeeds within the lease's time to live, and creates nobody twice.

The command line runs in its own process (it must really die), against the simulators on loopback.
Its lease is shortened to a few seconds so the test does not wait a minute; the cycle is the same.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from simulators.local import local_cloud
from simulators.outages import Outage, OutageKind
from simulators.tenants import make_user, seed_use_case

ROOT = Path(__file__).parents[2]
CONFIG = (ROOT / "examples" / "mappings.yaml").read_text()
LEASE = 8.0
NEW_USERS = 150
# The command line with a short lease: the same code path, only the constant differs.
SHORT_LEASE_CLI = (
    "import sys; from provisioning.service import lease; "
    f"lease.LEASE_SECONDS = {LEASE}; lease.HEARTBEAT_SECONDS = {LEASE / 4}; "
    f"lease.FENCE_MARGIN_SECONDS = {LEASE / 6}; "
    "from provisioning.entrypoints.cli import app; app(prog_name='provisioning')"
)


def start_sync(env: dict[str, str], config: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(  # noqa: S603 -- our own interpreter and arguments
        [sys.executable, "-c", SHORT_LEASE_CLI, "sync", "--config", str(config), "--json"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_a_killed_sync_is_resumed_within_the_lease_without_duplicates(tmp_path: Path) -> None:
    tenant = seed_use_case()
    for n in range(NEW_USERS):
        tenant.users.append(make_user(f"hire{n:03d}", office="Chicago"))
    config = tmp_path / "mappings.yaml"
    config.write_text(CONFIG)
    with local_cloud(tenant) as cloud:
        env = {**os.environ, **cloud.environment(tmp_path / "state")}
        cloud.druva.apply_outage(Outage(OutageKind.SLOW, seconds=0.05))
        victim = start_sync(env, config)
        deadline = time.monotonic() + 60
        while cloud.druva.counts["create user"] < 20 and time.monotonic() < deadline:
            assert victim.poll() is None, victim.communicate()
            time.sleep(0.02)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
        killed_at = time.monotonic()
        created_before = len(cloud.druva.users())
        assert 0 < created_before < NEW_USERS  # it really died mid-import

        refusals, last_attempt = 0, 0.0
        while True:
            started = time.monotonic()
            rerun = start_sync(env, config)
            _, err = rerun.communicate(timeout=120)
            if rerun.returncode != 1 or b"another sync holds the cursors" not in err:
                break
            refusals += 1
            last_attempt = time.monotonic() - started  # refused; the next attempt starts right after
            assert time.monotonic() - killed_at < LEASE + 30, "the dead run's lease did not lapse"
        # The lease lapsed while the last refused attempt ran or later, and no later than its time to
        # live after the kill: the attempt that succeeded started at most one attempt after that.
        resumed_after = started - killed_at

    assert rerun.returncode == 0, err.decode()
    assert refusals >= 1  # the dead run's lease was still there at first...
    assert resumed_after < LEASE + last_attempt + 1  # ...and gone within its time to live
    emails = Counter(user["emailID"].lower() for user in cloud.druva.users())
    assert max(emails.values()) == 1  # nobody created twice
    assert len(emails) == NEW_USERS + 10  # everyone the seed tenant imports, and every new hire
