"""The Clock port's one real implementation: the system's time, timezone-aware UTC."""

from __future__ import annotations

from datetime import UTC, datetime


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)
