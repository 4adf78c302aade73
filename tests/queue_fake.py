"""A test-only in-process work queue with Service Bus's duplicate detection and scheduled delivery."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

from provisioning.domain.work import WorkMessage


class InProcessQueue:
    def __init__(self) -> None:
        self._pending: list[WorkMessage] = []
        self._seen: set[str] = set()

    async def send(self, messages: Sequence[WorkMessage]) -> None:
        for message in messages:
            if message.message_id and message.message_id in self._seen:
                continue  # duplicate detection, as Service Bus does on MessageId
            self._seen.add(message.message_id)
            self._pending.append(message)

    def pending(self) -> list[WorkMessage]:
        return list(self._pending)

    async def drain(
        self, handle: Callable[[WorkMessage], Awaitable[None]], now: datetime | None = None
    ) -> int:
        """Deliver every message that is due, including those sent while draining; returns how many."""
        delivered = 0
        while True:
            due = [m for m in self._pending if now is None or m.not_before is None or m.not_before <= now]
            if not due:
                return delivered
            for message in due:
                self._pending.remove(message)
                await handle(message)
                delivered += 1
