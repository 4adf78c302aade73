"""Webhook triage: every notification checked, hints collapsed, nothing trusted that did not prove itself."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from provisioning.domain.work import MAX_MESSAGE_ID, LifecycleEvent, Watch, delta_hint, follow_up
from provisioning.service.notifications import DELTA, LIFECYCLE, triage

WATCH = Watch.kind

PAYLOADS = Path(__file__).parents[2] / "payloads" / "graph"
SECRET = "secret-client-state-value"
TENANT = "84bd8158-6d4d-4958-8b9f-9d6445542f95"
NOW = datetime(2026, 11, 26, 12, 0, 3, tzinfo=UTC)


def payload(name: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads((PAYLOADS / name).read_text())
    return found


def body(data: Any) -> bytes:
    return json.dumps(data).encode()


def test_a_user_change_becomes_one_delta_hint() -> None:
    result = triage(body(payload("user-updated.json")), [SECRET], TENANT, None, NOW)
    assert result.rejected == [] and result.accepted == 1
    now, at_window_end, watch = result.messages
    assert (now.kind, now.not_before) == (DELTA, None)
    assert now.body == {"reason": "change notification", "received_at": NOW.isoformat()}  # for latency
    assert (at_window_end.kind, at_window_end.not_before) == (
        DELTA,
        datetime(2026, 11, 26, 12, 0, 4, tzinfo=UTC),
    )
    # and the changed user is followed until a delta read returns it (it may not be readable yet)
    changed = payload("user-updated.json")["value"][0]["resourceData"]["id"]
    assert watch.work == Watch(NOW.isoformat(), users=changed)


def test_every_notification_of_a_batch_is_checked_and_one_pass_covers_them() -> None:
    result = triage(body(payload("group-members-changed.json")), [SECRET], TENANT, None, NOW)
    assert result.accepted == 2
    assert [m.kind for m in result.messages] == [DELTA, DELTA, WATCH]


def test_the_objects_a_post_names_are_followed_in_bounded_messages_sent_once() -> None:
    items = [
        {
            "subscriptionId": "s",
            "clientState": SECRET,
            "changeType": "updated",
            "resource": f"{'Users' if n % 2 else 'Groups'}/00000000-0000-4000-8000-{n:012d}",
            "tenantId": TENANT,
        }
        for n in range(250)
    ]
    result = triage(body({"value": items}), [SECRET], TENANT, None, NOW)
    watches = [m for m in result.messages if m.kind == WATCH]
    assert len(watches) == 3  # at most MAX_WATCHED objects each
    followed = [i for m in watches for i in (*m.work.user_ids, *m.work.group_ids)]  # type: ignore[union-attr]
    assert sorted(followed) == sorted(i["resource"].split("/")[1] for i in items)
    again = triage(body({"value": items}), [SECRET], TENANT, None, NOW + timedelta(seconds=0.5))
    assert [m.message_id for m in again.messages] == [m.message_id for m in result.messages]


def test_lifecycle_event_asks_for_a_reaction_and_a_pass() -> None:
    result = triage(body(payload("lifecycle-reauthorization-required.json")), [SECRET], TENANT, None, NOW)
    assert [m.kind for m in result.messages] == [LIFECYCLE, DELTA, DELTA]
    assert result.messages[0].work == LifecycleEvent(
        "7f105c7d-2dc5-4530-97cd-4e7ae6534c07", "reauthorizationRequired"
    )


def test_hints_in_one_window_share_a_message_id_so_the_queue_keeps_one() -> None:
    first = triage(body(payload("user-updated.json")), [SECRET], TENANT, None, NOW)
    second = triage(body(payload("user-updated.json")), [SECRET], TENANT, None, NOW + timedelta(seconds=0.5))
    later = triage(body(payload("user-updated.json")), [SECRET], TENANT, None, NOW + timedelta(seconds=2))
    assert [m.message_id for m in first.messages] == [m.message_id for m in second.messages]
    assert not {m.message_id for m in later.messages} & {m.message_id for m in first.messages}


def test_a_rotated_secret_is_accepted_during_the_rotation() -> None:
    result = triage(body(payload("user-updated.json")), ["new-secret", SECRET], TENANT, None, NOW)
    assert result.accepted == 1


def mutate(change: dict[str, Any]) -> bytes:
    data = payload("user-updated.json")
    data["value"][0].update(change)
    data["value"][0] = {k: v for k, v in data["value"][0].items() if v is not None}
    return body(data)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (mutate({"clientState": "guess"}), "clientState does not match"),
        (mutate({"clientState": None}), "clientState does not match"),
        (mutate({"clientState": 12}), "clientState does not match"),
        (mutate({"subscriptionId": None}), "no subscriptionId"),
        (mutate({"tenantId": "00000000-0000-0000-0000-000000000000"}), "tenantId is not this tenant"),
        (mutate({"changeType": "exploded"}), "unknown changeType"),
        (mutate({"resource": "Users/../../admin"}), "is not a user or group"),
        (mutate({"resource": "me/messages/1"}), "is not a user or group"),
        (mutate({"lifecycleEvent": "party"}), "unknown lifecycleEvent"),
        (mutate({"lifecycleEvent": ["missed"]}), "unknown lifecycleEvent"),
        (mutate({"lifecycleEvent": {"a": 1}}), "unknown lifecycleEvent"),
        (mutate({"changeType": ["updated"]}), "unknown changeType"),
        (mutate({"changeType": {"updated": 1}}), "unknown changeType"),
        (mutate({"resource": "Users/abc\n"}), "is not a user or group"),
        (mutate({"clientState": "\ud800"}), "clientState does not match"),
        (mutate({"tenantId": ["x"]}), "tenantId is not this tenant"),
        (b'{"value": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deep"),
        (b"not json", "body is not JSON"),
        (b'{"value": {}}', "no 'value' list"),
        (b"[]", "no 'value' list"),
        (body({"value": ["x"]}), "not an object"),
        (b" " * 1_000_001, "larger than any Graph notification"),
    ],
)
def test_anything_unproven_is_dropped_with_its_reason(raw: bytes, reason: str) -> None:
    result = triage(raw, [SECRET], TENANT, None, NOW)
    assert result.messages == [] and result.accepted == 0
    assert reason in result.rejected[0]


def test_no_secret_configured_accepts_nothing() -> None:
    assert triage(body(payload("user-updated.json")), [], TENANT, None, NOW).accepted == 0


def test_unknown_subscription_is_refused_when_the_known_ones_are_given() -> None:
    result = triage(body(payload("user-updated.json")), [SECRET], TENANT, ["other"], NOW)
    assert "unknown subscription" in result.rejected[0]


def test_a_bad_item_does_not_spoil_the_good_ones() -> None:
    data = payload("group-members-changed.json")
    data["value"][0]["clientState"] = "wrong"
    result = triage(body(data), [SECRET], TENANT, None, NOW)
    assert result.accepted == 1 and len(result.rejected) == 1


def test_a_mixed_post_enqueues_its_valid_items_whatever_the_others_hold() -> None:
    good = payload("user-updated.json")["value"][0]
    hostile = [
        {**good, "changeType": ["updated"]},
        {**good, "lifecycleEvent": {"x": []}},
        {**good, "resource": "Users/abc\n"},
        {**good, "clientState": "\ud800"},
        {**good, "subscriptionId": "s" * 300, "lifecycleEvent": "missed"},
        [[[]]],
    ]
    result = triage(body({"value": [*hostile, good]}), [SECRET], TENANT, None, NOW)
    assert result.accepted == 2 and len(result.rejected) == 5
    assert all(len(m.message_id) <= MAX_MESSAGE_ID for m in result.messages)
    assert "and 2 more" in result.summary() and result.summary().count("\n") == 0


def test_follow_up_is_scheduled_and_deduplicated() -> None:
    one, two = follow_up(NOW, 30), follow_up(NOW + timedelta(seconds=0.5), 30)
    assert one.not_before == NOW.replace(second=34)  # the end of the window it falls in
    assert one.message_id == two.message_id != delta_hint(NOW, "x").message_id
