"""The loser of any cursor race hears the same thing: another sync holds the cursors (exit 1)."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path

import pytest

from provisioning.domain.state import CursorState
from provisioning.errors import ConcurrencyConflict
from tests.unit.entrypoints.test_cli import config, invoke, world  # noqa: F401 -- fixtures
from tests.unit.service.test_sync import World


def refused_as_busy(code: int, err: str) -> None:
    assert code == 1
    assert "another sync holds the cursors" in err and "this one did nothing" in err
    assert "ConcurrencyConflict" not in err and "Traceback" not in err


def test_a_held_lease(world: World, config: Path) -> None:  # noqa: F811
    asyncio.run(world.state.claim_cursor("users", "other-run", world.clock.now(), 60))
    code, _, err = invoke("sync", "--config", str(config))
    refused_as_busy(code, err)
    assert world.druva.writes == []


@pytest.mark.parametrize("cursor", ["users", "groups"])
def test_losing_the_race_for_fresh_cursors(world: World, config: Path, cursor: str) -> None:  # noqa: F811
    claim = world.state.claim_cursor

    async def lost(name: str, owner: str, now: datetime, lease_seconds: float) -> CursorState:
        if name == cursor:  # the other run inserted the record between our read and our write
            raise ConcurrencyConflict(f"cursor {name!r} was created by another writer first")
        return await claim(name, owner, now, lease_seconds)

    world.state.claim_cursor = lost  # type: ignore[method-assign]
    code, _, err = invoke("sync", "--config", str(config))
    refused_as_busy(code, err)
    assert world.druva.writes == []
    assert asyncio.run(world.state.get_cursor("users")).lease_owner is None  # what we took is given back
