"""The time limits fit together: the slice bound, the lease, host.json and the queue in infra/.

A pass slice must end well inside the Service Bus lock renewal (or the message is redelivered while it
still runs) and the function timeout (or the host kills it); a lease must outlive the gap between two
heartbeats; and a worker that died holding a lease must have lost it by the time Service Bus hands its
message to another instance.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

from provisioning.adapters.druva.client import DruvaOptions
from provisioning.service import lease
from provisioning.service.slicing import STEP, WORKER_SLICE

ROOT = Path(__file__).parents[2]


def host_duration(text: str) -> timedelta:
    hours, minutes, seconds = (int(part) for part in text.split(":"))
    return timedelta(hours=hours, minutes=minutes, seconds=seconds)


def iso_duration(text: str) -> timedelta:
    found = re.fullmatch(r"PT(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?", text)
    assert found, f"not an ISO 8601 time duration: {text}"
    hours, minutes, seconds = (int(part or 0) for part in found.groups())
    return timedelta(hours=hours, minutes=minutes, seconds=seconds)


def host() -> dict[str, object]:
    loaded: dict[str, object] = json.loads((ROOT / "host.json").read_text())
    return loaded


def queue_lock_duration() -> timedelta:
    bicep = (ROOT / "infra" / "main.bicep").read_text()
    queue = bicep[bicep.index("resource provisioningQueue") :]
    queue = queue[: queue.index("\n}\n")]
    [value] = re.findall(r"lockDuration:\s*'([^']+)'", queue)
    return iso_duration(value)


def test_function_timeout_is_set_explicitly_and_outlasts_the_lock_renewal() -> None:
    settings = host()
    service_bus = settings["extensions"]["serviceBus"]  # type: ignore[index]
    timeout = host_duration(str(settings["functionTimeout"]))
    renewal = host_duration(service_bus["maxAutoLockRenewalDuration"])

    assert renewal < timeout <= timedelta(minutes=30)  # Flex Consumption's default is 30 minutes
    assert timeout - renewal >= timedelta(minutes=2)  # room to finish a write begun near the end


def test_a_slice_ends_well_inside_the_lock_renewal() -> None:
    renewal = host_duration(host()["extensions"]["serviceBus"]["maxAutoLockRenewalDuration"])  # type: ignore[index]
    slice_time = timedelta(seconds=WORKER_SLICE.seconds)

    # Half the renewal is left for planning (reading Entra) before the slice's first step and for
    # the last step begun before the bound.
    assert slice_time <= renewal / 2
    assert 0 < STEP <= WORKER_SLICE.accounts


def test_the_queue_lock_is_renewable_and_outlives_a_dead_holder_s_lease() -> None:
    lock = queue_lock_duration()
    renewal = host_duration(host()["extensions"]["serviceBus"]["maxAutoLockRenewalDuration"])  # type: ignore[index]

    assert timedelta(seconds=30) <= lock <= timedelta(minutes=5)  # Service Bus allows at most 5 minutes
    assert lock <= renewal
    # An instance that died mid-slice: by the time its message is redelivered, its lease has lapsed,
    # so the redelivery carries the pass on instead of bouncing off a dead holder's lease.
    assert timedelta(seconds=lease.LEASE_SECONDS) <= lock


def test_the_lease_survives_a_missed_heartbeat_and_fences_before_it_ends() -> None:
    assert lease.HEARTBEAT_SECONDS * 3 <= lease.LEASE_SECONDS  # two beats may fail before it lapses
    assert lease.HEARTBEAT_SECONDS + lease.FENCE_MARGIN_SECONDS < lease.LEASE_SECONDS
    assert lease.FENCE_MARGIN_SECONDS > 0


def test_a_druva_request_cannot_outlive_the_fence_margin_by_much() -> None:
    # A write already on the wire when the fence closes finishes within the client's timeout; it
    # must not run past the lease by more than the lease itself.
    assert DruvaOptions().timeout_seconds <= lease.LEASE_SECONDS


def test_a_read_in_functions_ends_before_the_function_timeout() -> None:
    """A read that never ends is stopped with its own error, not killed by the host and redelivered."""
    from provisioning.entrypoints.functions.runtime import READ_SECONDS

    timeout = host_duration(str(host()["functionTimeout"]))
    assert timedelta(seconds=READ_SECONDS) <= timeout - timedelta(minutes=3)
    assert timedelta(seconds=READ_SECONDS) >= timedelta(seconds=WORKER_SLICE.seconds)
