"""The soak on a simulated clock: a short one passes with every event met, a broken product fails it."""

from __future__ import annotations

from simulators.soak import Plan, render, run_soak

EVENTS = (
    "reauthorizationRequired",
    "subscriptionRemoved",
    "missed",
    "Graph down 6 h",
    "delta state lost (410)",
    "Service Bus down 1 h",
    "Druva down 4 h",
    "Druva answers 5xx",
    "redeploy: changed mappings",
    "clientState rotated",
)
KINDS = {"new_hire", "leaver", "re_enabled", "shared_mailbox", "group_move", "attribute"}


def test_two_weeks_with_every_event_reach_druva_in_bound_without_a_human() -> None:
    report = run_soak(Plan(days=14, changes_per_day=120, bursts_per_day=12, users=120))
    summary = render(report)
    assert report.ok, summary
    assert report.changes >= 14 * 100, summary
    assert set(report.kinds) == KINDS, summary
    for event in EVENTS:
        assert any(event in e for e in report.events), f"{event} never happened:\n{summary}"
    assert report.worst(up=True) and report.worst(up=False), summary
    assert max(x[0] for x in report.latencies if x[3]).total_seconds() < 60, summary
    assert report.passes_by_outcome.get("ok", 0) > 14 * 96, summary  # the safety net ran all along


def test_without_subscription_upkeep_the_soak_reports_misses() -> None:
    """No subscriptions: changes wait for the 15-minute safety net, far past the seconds they get."""
    report = run_soak(
        Plan(days=1, changes_per_day=120, bursts_per_day=12, users=60, renew_subscriptions=False)
    )
    assert report.misses and not report.ok, render(report)
    assert all("want" in miss for miss in report.misses), render(report)


def test_without_the_safety_net_lost_notifications_become_lost_changes() -> None:
    """Graph is down for 6 hours and delivers nothing meanwhile; without the timer's delta pass nothing
    picks those changes up until the next notified change, past the 15-minute bound."""
    plan = Plan(
        days=1, changes_per_day=48, bursts_per_day=4, users=60, safety_net=False, only=("Graph down 6 h",)
    )
    report = run_soak(plan)
    assert report.misses and not report.ok, render(report)


def test_a_safety_stop_needs_a_human_and_raises_the_alert_condition() -> None:
    report = run_soak(Plan(days=1, changes_per_day=24, bursts_per_day=2, users=60, mass_exodus=True))
    assert report.safety_stops >= 1 and not report.ok, render(report)
    assert report.alerts_raised >= report.safety_stops, render(report)
    assert any("safety stop" in step for step in report.manual_steps), render(report)


def test_the_in_process_transport_meets_the_same_outages_without_a_miss() -> None:
    """What ``make soak`` runs (``transport="in-process"``): Druva refusing connections, then answering
    5xx, reaches the product as it does over loopback HTTP, and the checks still pass. (Graph's outage
    and every other fault are the simulators' own answers, the same whichever way the request came.)"""
    plan = Plan(
        days=1,
        changes_per_day=96,
        bursts_per_day=8,
        users=60,
        only=("Druva down 4 h",),
        transport="in-process",
    )
    report = run_soak(plan)
    summary = render(report)
    assert report.ok, summary
    assert any("Druva answers 5xx" in e for e in report.events), summary
    assert report.worst(up=False), summary  # changes made during the outages, in Druva after them
    assert "transport in-process" in summary
