"""Per-user storage quota, in the only shape Druva's API accepts: a whole number 0..1023 and a unit.

Druva takes ``quota`` (0..1023) plus ``quotaUnit`` (MB, GB, TB) at creation only; ``0`` means unlimited.
Admins write quotas the way they think of them ("2048 GB"), so a number above 1023 moves to the next
unit when it divides exactly, and is refused with the reason when it does not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

MAX_QUOTA_VALUE = 1023


class QuotaUnit(StrEnum):
    MB = "MB"
    GB = "GB"
    TB = "TB"

    @property
    def bytes(self) -> int:
        return _UNIT_BYTES[self]

    @property
    def larger(self) -> QuotaUnit | None:
        order = list(QuotaUnit)
        index = order.index(self)
        return order[index + 1] if index + 1 < len(order) else None


_UNIT_BYTES = {QuotaUnit.MB: 1024**2, QuotaUnit.GB: 1024**3, QuotaUnit.TB: 1024**4}
_QUOTA_TEXT = re.compile(r"^\s*([0-9]{1,12})\s*([A-Za-z]+)\s*$", re.ASCII)  # "١٠٠ GB" is not 100 GB


class QuotaError(ValueError):
    """A quota that Druva cannot represent; the message says why and what would work."""


@dataclass(frozen=True, order=True)
class Quota:
    """A Druva quota. ``Quota.unlimited()`` is Druva's ``0``."""

    value: int
    unit: QuotaUnit

    @classmethod
    def unlimited(cls) -> Quota:
        return cls(0, QuotaUnit.GB)

    @classmethod
    def of(cls, value: int, unit: QuotaUnit) -> Quota:
        """Normalise ``value unit`` into Druva's range, moving up a unit only when exact."""
        if value < 0:
            raise QuotaError(f"quota cannot be negative ({value} {unit})")
        if value == 0:
            return cls.unlimited()
        original = f"{value} {unit}"
        while value > MAX_QUOTA_VALUE:
            larger = unit.larger
            if larger is None:
                raise QuotaError(f"{original} is more than Druva's largest quota, {MAX_QUOTA_VALUE} TB")
            if value % 1024:
                lower, upper = value // 1024, value // 1024 + 1
                raise QuotaError(
                    f"{original} is not a whole number of {larger} and Druva takes whole numbers "
                    f"0..{MAX_QUOTA_VALUE} per unit: use {lower} {larger} or {upper} {larger}"
                )
            value, unit = value // 1024, larger
        return cls(value, unit)

    @classmethod
    def parse(cls, text: str) -> Quota:
        """Read ``"<n> MB|GB|TB"`` or ``"unlimited"`` (units are case-insensitive)."""
        if text.strip().lower() == "unlimited":
            return cls.unlimited()
        found = _QUOTA_TEXT.match(text)
        shown = repr(text) if len(text) <= 40 else repr(text[:39]) + "…"
        if not found:
            raise QuotaError(f"quota {shown} is not '<n> MB', '<n> GB', '<n> TB' or 'unlimited'")
        number, unit_text = found.groups()
        if int(number) == 0:  # Druva's 0 means unlimited: a typo must not lift the limit
            raise QuotaError(f"quota {shown} would mean unlimited to Druva; write 'unlimited'")
        try:
            unit = QuotaUnit(unit_text.upper())
        except ValueError:
            raise QuotaError(f"quota {shown} has unit {unit_text[:10]!r}; Druva takes MB, GB or TB") from None
        return cls.of(int(number), unit)

    @property
    def is_unlimited(self) -> bool:
        return self.value == 0

    @property
    def bytes(self) -> int:
        """Size in bytes as Druva reports ``quotaInBytes``; 0 for unlimited."""
        return self.value * self.unit.bytes

    def __str__(self) -> str:
        return "unlimited" if self.is_unlimited else f"{self.value} {self.unit}"


def describe_bytes(size: int) -> str:
    """Human form of a Druva ``quotaInBytes`` for notes ("200 GB", "1.5 TB", "unlimited")."""
    if size == 0:
        return "unlimited"
    for unit in reversed(QuotaUnit):
        if size >= unit.bytes:
            amount = size / unit.bytes
            return f"{amount:g} {unit}" if amount == int(amount) else f"{amount:.2f} {unit}"
    return f"{size} bytes"
