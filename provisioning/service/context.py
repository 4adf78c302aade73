"""What every use case runs with: the ports, the policy, and the run's identity."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from provisioning.domain.golive import Mode
from provisioning.domain.mappings import Policy
from provisioning.ports import Clock, Directory, Druva, StateStore, WorkQueue

ProgressCallback = Callable[[str, int, int | None], None]  # stage, done so far, total if known


def _no_progress(stage: str, done: int, total: int | None) -> None:
    return None


def _unfenced() -> None:
    return None


@dataclass
class Services:
    directory: Directory
    druva: Druva
    state: StateStore
    clock: Clock
    queue: WorkQueue | None = None

    async def aclose(self) -> None:
        for port in (self.directory, self.druva, self.state):
            await port.aclose()


@dataclass
class Run:
    """One run of a use case: its id (in every log line and audit entry), mode and progress sink."""

    services: Services
    policy: Policy
    dry_run: bool = False
    # Accounts carried out at once. Above any Druva concurrency ceiling on purpose: the Druva client's
    # adaptive limit is what bounds the requests in flight.
    concurrency: int = 64
    progress: ProgressCallback = _no_progress
    # Called before every Druva or state write; raises ``LeaseLost`` once this run may no longer write
    # (a pass whose cursor lease lapsed or was taken over). Runs that hold no lease are never fenced.
    fence: Callable[[], None] = _unfenced
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    # The mode of a state that records none (``PROVISIONING_INITIAL_MODE``): a deployment starts planning.
    initial_mode: Mode = Mode.APPLY

    def now(self) -> datetime:
        return self.services.clock.now()
