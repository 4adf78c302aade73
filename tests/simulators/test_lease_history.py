"""Counting overlapping lease holders from the lease history (what the worker-path benchmark reports):
the count must be able to say something other than 0."""

from __future__ import annotations

from typing import Any

from simulators.worker_host import Holding, holdings, overlapping_holders


def line(at: float, action: str, holder: str, until: float | None, cursor: str = "users") -> dict[str, Any]:
    return {"at": at, "action": action, "cursor": cursor, "holder": holder, "until": until}


def test_a_released_lease_ends_at_its_release_and_a_killed_one_at_its_last_renewal() -> None:
    history = [
        line(0, "claim", "a", 60),
        line(15, "renew", "a", 75),
        line(20, "release", "a", None),
        line(21, "claim", "b", 81),
        line(36, "renew", "b", 96),  # then b was killed: it renews no more
        line(97, "claim", "c", 157),
    ]
    assert holdings(history) == [
        Holding("users", "a", 0, 20),
        Holding("users", "b", 21, 96),
        Holding("users", "c", 97, 157),
    ]
    assert overlapping_holders(history) == 0


def test_a_claim_while_another_holder_s_lease_still_runs_is_counted() -> None:
    history = [
        line(0, "claim", "a", 60),
        line(15, "renew", "a", 75),
        line(70, "claim", "b", 130),  # a's lease ran until 75
    ]
    assert overlapping_holders(history) == 1


def test_holders_of_different_cursors_do_not_overlap_and_a_save_that_keeps_the_lease_extends_nothing() -> (
    None
):
    history = [
        line(0, "claim", "a", 60, cursor="users"),
        line(1, "claim", "b", 61, cursor="groups"),
        line(30, "save", "a", 60, cursor="users"),
        line(40, "save", "a", None, cursor="users"),  # saved and released
        line(41, "claim", "c", 101, cursor="users"),
    ]
    assert overlapping_holders(history) == 0
    assert Holding("users", "a", 0, 40) in holdings(history)
