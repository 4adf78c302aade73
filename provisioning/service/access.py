"""An access refusal a human must fix, remembered for ``status``: the app's Graph token lacks a permission
(a deployment whose Graph grant was handed over and not yet done), or Druva refuses its credential.

Passes and the subscription upkeep that end in an ``AuthError`` record it; the next pass that gets
through clears it. Status reads only the state, so without this record a deployment that may not read
Entra would show nothing but "no recent pass" an hour later, or nothing at all before its first
subscription exists."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime

from provisioning.domain.state import one_line
from provisioning.errors import ConcurrencyConflict, CursorBusy
from provisioning.ports import StateStore

log = logging.getLogger("provisioning")

ACCESS = "access"  # the cursor record that holds it
LEASE_SECONDS = 30.0


@dataclass(frozen=True)
class AccessRefused:
    at: datetime
    where: str  # what was refused: "pass", "subscription upkeep"
    error: str

    def describe(self) -> str:
        return f"{self.where} refused at {self.at:%Y-%m-%d %H:%M} UTC: {self.error}"


async def refused_access(state: StateStore) -> list[AccessRefused]:
    """Every refusal not got past since, one per kind of work (passes, the subscription upkeep)."""
    found = []
    for where, entry in _entries((await state.get_cursor(ACCESS)).value).items():
        try:
            found.append(AccessRefused(datetime.fromisoformat(entry["at"]), where, str(entry["error"])))
        except (ValueError, KeyError, TypeError):
            continue
    return sorted(found, key=lambda r: r.at)


async def record_refusal(state: StateStore, now: datetime, where: str, error: Exception) -> None:
    """Best effort: the failure itself is what the caller raises; this only helps status say why."""
    entries = _entries((await state.get_cursor(ACCESS)).value)
    entries[where] = {"at": now.isoformat(), "error": one_line(str(error), 300)}
    await _save(state, now, json.dumps(entries, sort_keys=True))


async def clear_refusal(state: StateStore, now: datetime, where: str) -> None:
    """``where`` got through: forget its earlier refusal (one read when there is none)."""
    entries = _entries((await state.get_cursor(ACCESS)).value)
    if entries.pop(where, None) is not None:
        await _save(state, now, json.dumps(entries, sort_keys=True) if entries else None)


def _entries(value: str | None) -> dict[str, dict[str, str]]:
    try:
        data = json.loads(value) if value else {}
    except ValueError:
        return {}
    return {str(k): v for k, v in data.items() if isinstance(v, dict)} if isinstance(data, dict) else {}


async def _save(state: StateStore, now: datetime, value: str | None) -> None:
    try:
        claim = await state.claim_cursor(ACCESS, "access", now, LEASE_SECONDS)
        await state.save_cursor(claim, value)
    except (CursorBusy, ConcurrencyConflict):
        log.info("access record busy; left to the run writing it")
    except Exception:  # the state itself may be what fails: never hide the caller's error behind this
        log.warning("could not record an access refusal for status", exc_info=True)
