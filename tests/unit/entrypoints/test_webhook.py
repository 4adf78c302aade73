"""The webhook under hostile input and a failing queue: an answer within Graph's budget, always.

Whatever the body (any JSON shape, depth, type or unicode, lone surrogates included), the answer is 202,
400 or 503, nothing escapes, every valid item is enqueued and every MessageId fits Service Bus.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provisioning.domain.work import MAX_MESSAGE_ID, WorkMessage
from provisioning.entrypoints.functions import runtime, webhook
from tests.queue_fake import InProcessQueue

PAYLOADS = Path(__file__).parents[2] / "payloads" / "graph"
SECRET = "secret-client-state-value"
TENANT = "84bd8158-6d4d-4958-8b9f-9d6445542f95"


class Recorder(InProcessQueue):
    """Keeps every send as it was asked for (before duplicate detection), to check what was enqueued."""

    def __init__(self) -> None:
        super().__init__()
        self.sends: list[list[WorkMessage]] = []

    async def send(self, messages: Sequence[WorkMessage]) -> None:
        self.sends.append(list(messages))
        await super().send(messages)


@pytest.fixture
def queue(monkeypatch: pytest.MonkeyPatch) -> Iterator[Recorder]:
    monkeypatch.setenv("GRAPH_CLIENT_STATE", SECRET)
    monkeypatch.setenv("AZURE_TENANT_ID", TENANT)
    runtime.reset()
    found = Recorder()
    runtime.use(queue=found)
    yield found
    runtime.reset()


def post(body: bytes, route: str = "graph/notifications") -> func.HttpResponse:
    request = func.HttpRequest(method="POST", url=f"/api/{route}", params={}, body=body)
    return asyncio.run(webhook.receive(request))


def good_item() -> dict[str, Any]:
    item: dict[str, Any] = json.loads((PAYLOADS / "user-updated.json").read_text())["value"][0]
    return item


def good_lifecycle() -> dict[str, Any]:
    raw = (PAYLOADS / "lifecycle-reauthorization-required.json").read_text()
    item: dict[str, Any] = json.loads(raw)["value"][0]
    return item


class Hangs:
    """A queue that accepts the connection and then never answers (the case that used to take 11.9 s)."""

    async def send(self, messages: Sequence[WorkMessage]) -> None:
        await asyncio.sleep(3600)


class Fails:
    async def send(self, messages: Sequence[WorkMessage]) -> None:
        raise ConnectionError("service bus unreachable")


@pytest.mark.parametrize("route", ["graph/notifications", "graph/lifecycle"])
@pytest.mark.parametrize("broken", [Hangs, Fails])
def test_a_queue_that_hangs_or_fails_gets_503_within_the_bound(
    queue: InProcessQueue, route: str, broken: type, caplog: pytest.LogCaptureFixture
) -> None:
    runtime.use(queue=broken())
    name = "lifecycle-reauthorization-required.json" if route.endswith("lifecycle") else "user-updated.json"
    started = time.monotonic()
    answer = post((PAYLOADS / name).read_bytes(), route)
    elapsed = time.monotonic() - started
    assert answer.status_code == 503
    assert elapsed < webhook.ENQUEUE_SECONDS + 0.5  # Graph allows 3 s
    assert [r.levelname for r in caplog.records] == ["ERROR"]


def test_a_queue_that_cannot_even_be_built_gets_503(
    queue: InProcessQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime.reset()  # no queue cached, and no Service Bus namespace set
    monkeypatch.delenv("ServiceBusConnection__fullyQualifiedNamespace", raising=False)
    assert post(json.dumps({"value": [good_item()]}).encode()).status_code == 503


def test_a_forged_post_is_one_log_line(queue: InProcessQueue, caplog: pytest.LogCaptureFixture) -> None:
    forged = [{**good_item(), "clientState": f"guess-{n}"} for n in range(1500)]
    caplog.set_level(logging.INFO)
    assert post(json.dumps({"value": forged}).encode()).status_code == 400
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith("notifications refused: 0 accepted, 1500 refused") and "and 1497 more" in line


def test_the_handshake_refuses_a_token_that_cannot_be_echoed() -> None:
    assert webhook.validation_answer("\ud800").status_code == 400
    assert webhook.validation_answer("x" * 8193).status_code == 400


# Arbitrary JSON, any depth and type, with unicode of every category (lone surrogates included).
TEXT = st.text(st.characters(), max_size=40) | st.sampled_from(
    [SECRET, "users/abc", "Users/abc\n", "created", "updated", "missed", "bogusEvent", "\ud800", "s" * 300]
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=20,
)
FIELDS = ["clientState", "subscriptionId", "tenantId", "changeType", "resource", "lifecycleEvent"]
MUTATED = st.fixed_dictionaries({}, optional=dict.fromkeys(FIELDS, JSON))
ITEM = st.builds(lambda changes: {**good_item(), **changes}, MUTATED) | JSON


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    items=st.lists(ITEM, max_size=6),
    valid=st.integers(0, 3),
    raw=st.none() | JSON,
    depth=st.integers(0, 3000),
)
def test_any_body_gets_202_400_or_503_and_the_valid_items_are_enqueued(
    queue: InProcessQueue, items: list[Any], valid: int, raw: Any, depth: int
) -> None:
    """Mixed POSTs (valid items among hostile ones), arbitrary JSON bodies, and very deep nesting."""
    bodies = [
        json.dumps({"value": [*items, *[good_item()] * valid]}).encode(),
        json.dumps(raw).encode(),
        b'{"value": [' + b"[" * depth + b"]" * depth + b"]}",
    ]
    for body in bodies:
        before = len(queue.pending())
        answer = post(body)
        assert answer.status_code in (202, 400, 503)
        assert all(len(m.message_id) <= MAX_MESSAGE_ID for m in queue.pending())
        if body is bodies[0] and valid:
            assert answer.status_code == 202
            assert len(queue.pending()) > before or any(m.kind == "delta" for m in queue.pending())
