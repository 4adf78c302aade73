"""What the users cursor records: the policy the delta was read under, Graph's delta link, and the pass
in progress when a sliced pass is unfinished. One typed value, parsed and dumped here only.

Stored as JSON (``{"policy": …, "delta": …, "pass": {"id", "kind", "slices"}}``): a delta link is kept
with the fingerprint of the policy it was read under, since a changed mappings file must read everyone
again; a pass in progress is recorded without moving the delta link (only the slice that finishes a
pass moves it). A value that cannot be read is no cursor: the next pass reads everything.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

from provisioning.domain.state import RunKind


@dataclass(frozen=True)
class PassInProgress:
    """A sliced pass that is unfinished: its id, its kind, and how many slices it has done."""

    pass_id: str
    kind: RunKind
    slices_done: int

    def as_json(self) -> dict[str, object]:
        return {"id": self.pass_id, "kind": self.kind, "slices": self.slices_done}

    def next_slice(self) -> PassInProgress:
        return replace(self, slices_done=self.slices_done + 1)


@dataclass(frozen=True)
class UsersCursor:
    policy: str | None = None  # the policy fingerprint the delta link was read under
    delta: str | None = None  # Graph's users delta link; None: read everyone
    in_progress: PassInProgress | None = None

    def resumes(self, policy: str) -> str | None:
        """The delta link to resume from under ``policy``, or None (none kept, or another policy)."""
        return self.delta if self.delta and self.policy == policy else None

    @property
    def full_in_progress(self) -> bool:
        return self.in_progress is not None and self.in_progress.kind == RunKind.FULL

    def going_on(self, progress: PassInProgress | None) -> UsersCursor:
        """The same cursor with ``progress`` recorded (None: the pass is over); the delta link unmoved."""
        return replace(self, in_progress=progress)

    @classmethod
    def moved_to(cls, policy: str, delta: str | None) -> UsersCursor:
        """A finished pass's cursor: the delta link it ended on, under its policy, nothing in progress."""
        return cls(policy, delta) if delta else cls()

    def dump(self) -> str | None:
        stored: dict[str, object] = {}
        if self.delta:
            stored |= {"policy": self.policy, "delta": self.delta}
        if self.in_progress is not None:
            stored["pass"] = self.in_progress.as_json()
        return json.dumps(stored) if stored else None

    @classmethod
    def parse(cls, value: str | None) -> UsersCursor:
        try:
            stored = json.loads(value) if value else {}
        except ValueError:
            return cls()
        if not isinstance(stored, dict):
            return cls()
        return cls(*_delta(stored), _pass(stored.get("pass")))


def _delta(stored: dict[str, object]) -> tuple[str | None, str | None]:
    delta, policy = stored.get("delta"), stored.get("policy")
    if not delta or policy is None:
        return None, None
    return str(policy), str(delta)


def _pass(value: object) -> PassInProgress | None:
    if not isinstance(value, dict) or not value:
        return None
    try:
        return PassInProgress(str(value["id"]), RunKind(str(value["kind"])), int(value["slices"]))
    except (KeyError, ValueError, TypeError):
        return None
