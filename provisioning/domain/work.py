"""Work items carried by the queue between the webhook, the timer and the worker."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class WorkMessage:
    """``kind`` names the handler; ``message_id`` is deterministic so the queue can drop duplicates;
    ``not_before`` delays delivery (a scheduled message)."""

    kind: str
    body: Mapping[str, Any] = field(default_factory=dict)
    message_id: str = ""
    not_before: datetime | None = None
