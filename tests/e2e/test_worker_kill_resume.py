"""The worker killed with SIGKILL mid-import, through the worker path on the local Functions host: the
import resumes from the queue and the cursors, finishes, and creates nobody twice.

The queue lives in its own process (``simulators.servicebus_process``), as Service Bus outlives a
crashed Functions instance; the worker host (``simulators.worker_host``) is the process killed and
started again. The numbers are small so the test takes seconds: a 3-second queue lock, a 4-second lease,
slices of 40 accounts. The cycle is the deployed one (a 5-minute lock, a 60-second lease, 5,000 accounts).
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

from simulators.local import local_cloud
from simulators.tenants import make_user, seed_use_case
from simulators.worker_host import holdings, read_lease_log
from simulators.worker_import import import_through_the_worker

ROOT = Path(__file__).parents[2]
NEW_USERS = 300
SLICE = 40


def test_a_killed_worker_resumes_through_the_queue_and_the_lease_without_duplicates(tmp_path: Path) -> None:
    tenant = seed_use_case()
    for n in range(NEW_USERS):
        tenant.users.append(make_user(f"hire{n:03d}", office="Chicago"))
    with local_cloud(tenant) as cloud:
        cloud.druva.set_faults(latency_seconds=0.02, routes=["create user"])
        environment = {
            **cloud.environment(tmp_path / "state"),
            "GRAPH_CLIENT_STATE": "kill-resume-client-state-0123456789",
            "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        }
        run = import_through_the_worker(
            work=tmp_path,
            druva_url=cloud.druva_server.url,
            environment=environment,
            config=ROOT / "examples" / "mappings.yaml",
            kill_after=[120],
            broker_arguments=["--lock-seconds", "3"],
            host_arguments=["--no-timers", "--lease-seconds", "4", "--slice-accounts", str(SLICE)],
            timeout=90,
        )
        emails = Counter(user["emailID"].lower() for user in cloud.druva.users())

    [kill] = run.kills
    assert 0 < kill.created_before < NEW_USERS  # it died mid-import...
    assert kill.seconds_lost is not None  # ...and a pass took the cursors again afterwards
    assert max(emails.values()) == 1 and run.duplicates == 0  # nobody created twice
    assert len(emails) == NEW_USERS + 10  # everyone the seed tenant imports, and every new hire
    assert run.overlapping_holders == 0
    assert len({h.holder for h in holdings(read_lease_log(tmp_path / "leases.jsonl"))}) >= 3
    assert run.slices >= NEW_USERS // SLICE  # slices, with continuations through the queue
    assert any(i["outcome"] == "killed" for i in run.invocations)
    assert run.dead_letters == 0
