"""The soak on the production profile: Graph and Druva as they really behave (changes readable late,
notifications late, twice, out of order or lost; hires that settle; Druva out of licences; mailboxes
scoped away from the app). A short run passes; products without the rules it proves fail it."""

from __future__ import annotations

import pytest

from provisioning.domain.accounts import Unreadable
from simulators.soak import Plan, render, run_soak

PRODUCTION_EVENTS = ("Druva out of licences 6 h", "shared mailboxes scoped away 2 days")


def test_two_production_days_reach_druva_in_bound_without_a_wrong_write() -> None:
    plan = Plan(
        days=2,
        changes_per_day=240,
        bursts_per_day=12,
        users=120,
        realism="production",
        only=PRODUCTION_EVENTS,
    )
    report = run_soak(plan)
    summary = render(report)
    assert report.ok, summary
    assert report.changes >= 400, summary
    for event in PRODUCTION_EVENTS:
        assert any(event in e for e in report.events), f"{event} never happened:\n{summary}"
    assert report.refusals_raised >= 1, summary  # the licence outage refused someone, and status said so
    assert report.costs is not None and report.costs.graph_requests > 0, summary


def test_without_following_notified_changes_the_production_soak_reports_misses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Only the hint passes look: a change readable after them waits for the 15-minute safety net."""
    from provisioning.service import dispatch

    async def no_look(run: object, due: object) -> None:
        return None

    monkeypatch.setattr(dispatch, "_look_at", no_look)
    report = run_soak(Plan(days=1, changes_per_day=240, bursts_per_day=12, users=60, realism="production"))
    assert report.misses and not report.ok, render(report)


def test_reading_a_forbidden_mailbox_as_no_mailbox_is_a_wrong_write(monkeypatch: pytest.MonkeyPatch) -> None:
    """The product as it was: a 403 on mailboxSettings read as "no mailbox", so a shared mailbox scoped
    away from the app looked like a leaver and was preserved."""
    from provisioning.adapters.graph import directory

    def no_mailbox(status: int, body: object) -> Unreadable | None:
        return None

    monkeypatch.setattr(directory, "_mailbox_refusal", no_mailbox)
    plan = Plan(
        days=1,
        changes_per_day=96,
        bursts_per_day=8,
        users=60,
        realism="production",
        only=("shared mailboxes scoped away 2 days",),
    )
    report = run_soak(plan)
    assert report.wrong_writes and not report.ok, render(report)
