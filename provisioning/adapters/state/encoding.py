"""What both state stores share: size limits, key encoding and the codecs of times, texts and failures.

Keeping these in one place is what makes the SQLite file and Table Storage one contract: a value that
Table Storage would refuse is refused by SQLite too, with the same message, so a laptop run never
accepts what Azure would not.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from functools import wraps
from typing import Any, TypeVar

from provisioning.domain.directory import Subscription
from provisioning.domain.links import AccountLink
from provisioning.domain.state import AuditEntry, RunFailure, RunSummary
from provisioning.errors import InvalidRequestError, UnreadableRecord

# Table Storage limits (learn.microsoft.com, "Understanding the Table service data model").
MAX_BATCH = 100  # operations per entity group transaction; Azurite fails oddly beyond it
MAX_BATCH_BYTES = 4 * 1024 * 1024  # payload of one transaction
MAX_ENTITY_BYTES = 1024 * 1024
MAX_STRING_CHARS = 32_768  # one string property: 64 KiB of UTF-16
MAX_KEY_CHARS = 512  # PartitionKey / RowKey: 1 KiB of UTF-16
# A long text is split over this many properties. 15 full parts are 960 KiB of UTF-16, which leaves
# room in a 1 MiB entity for the record's other properties.
MAX_TEXT_PARTS = 15
MAX_TEXT_CHARS = MAX_TEXT_PARTS * MAX_STRING_CHARS

# Characters Table Storage refuses in keys, plus "%" which is our escape character.
_KEY_UNSAFE = frozenset("/\\#?%") | {chr(c) for c in range(0x20)} | {chr(c) for c in range(0x7F, 0xA0)}
T = TypeVar("T")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_INVERT_FROM = 10**17 - 1  # microseconds: the year 5138, so inverted keys keep 17 digits


def record_too_large(what: str, size: int, limit: int, unit: str = "characters") -> InvalidRequestError:
    return InvalidRequestError(
        f"{what} is {size:,} {unit}; the state store keeps at most {limit:,} (Table Storage limits)",
        code="RecordTooLarge",
    )


def check_text(what: str, *texts: str | None) -> None:
    """Refuse a record whose long texts together would not fit in one Table Storage entity."""
    size = sum(len(text) for text in texts if text)
    if size > MAX_TEXT_CHARS:
        raise record_too_large(what, size, MAX_TEXT_CHARS)


def check_short(what: str, text: str | None) -> None:
    """Refuse a value that must fit in one string property (names, e-mails, ids)."""
    if text is not None and len(text) > MAX_STRING_CHARS:
        raise record_too_large(what, len(text), MAX_STRING_CHARS)


def key(text: str) -> str:
    """A PartitionKey/RowKey component: unsafe characters percent-encoded (UTF-8), never raw.

    Entra ids are GUIDs and pass unchanged; anything else (a Graph resource path, a cursor name) is
    escaped, so an id can never forge another key or hit a character Table Storage refuses.
    """
    if _KEY_UNSAFE.isdisjoint(text):  # an Entra id: nothing to escape (one set test, not one per char)
        escaped = text
    else:
        escaped = "".join(_escape(char) if char in _KEY_UNSAFE else char for char in text)
    if not escaped or len(escaped) > MAX_KEY_CHARS:
        raise InvalidRequestError(
            f"cannot use {text[:40]!r} in a state key: it must be 1..{MAX_KEY_CHARS} characters once escaped",
            code="RecordTooLarge",
        )
    return escaped


def _escape(char: str) -> str:
    return "".join(f"%{byte:02X}" for byte in char.encode())


def utc(moment: datetime) -> datetime:
    """Times cross the port timezone-aware (the Clock's contract); a naive one is a bug upstream."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"state times must be timezone-aware UTC, got naive {moment.isoformat()}")
    return moment.astimezone(UTC)


def micros(moment: datetime) -> int:
    """Microseconds since the epoch: an exact integer, so ordering never depends on float rounding."""
    delta = utc(moment) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def newest_first(moment: datetime) -> str:
    """A fixed-width key that sorts later times first (Table Storage returns rows in key order)."""
    since_epoch = micros(moment)
    if not 0 <= since_epoch <= _INVERT_FROM:
        raise ValueError(f"{moment.isoformat()} is outside the times the state store can order")
    return f"{_INVERT_FROM - since_epoch:017d}"


def time_text(moment: datetime | None) -> str | None:
    return utc(moment).isoformat() if moment is not None else None


def parse_time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text).astimezone(UTC) if text else None


def to_json(value: Mapping[str, Any]) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def split_text(text: str) -> list[str]:
    """Cut a long text into parts that each fit one string property."""
    return [text[i : i + MAX_STRING_CHARS] for i in range(0, len(text), MAX_STRING_CHARS)] or [""]


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def check_link(link: AccountLink) -> None:
    key(link.entra_id)
    for what, text in (
        ("e-mail", link.email),
        ("mapping", link.mapping),
        ("profile", link.profile),
        ("storage", link.storage),
        ("quota", link.quota),
    ):
        check_short(f"the {what} of account {link.entra_id}'s link", text)


def check_subscription(subscription: Subscription) -> None:
    key(subscription.resource)
    for what, text in (
        ("id", subscription.id),
        ("notification URL", subscription.notification_url),
        ("lifecycle URL", subscription.lifecycle_url),
    ):
        check_short(f"the {what} of the {subscription.resource} subscription", text)


def check_audit(entry: AuditEntry, detail: str) -> None:
    """``detail`` is the entry's detail as stored (``to_json``), computed once by the caller."""
    key(entry.entra_id)
    for what, text in (("principal", entry.principal), ("action", entry.action), ("outcome", entry.outcome)):
        check_short(f"the {what} of an audit entry for {entry.entra_id}", text)
    check_short(f"the run id of an audit entry for {entry.entra_id}", entry.run_id)
    check_text(f"the reason and detail of an audit entry for {entry.entra_id}", entry.reason, detail)


def check_run(summary: RunSummary, counts: str, failures: str | None) -> None:
    key(summary.run_id)
    check_short(f"run {summary.run_id}'s kind", summary.kind)
    check_short(f"run {summary.run_id}'s counts", counts)
    check_short(f"why run {summary.run_id} stopped", summary.stopped)
    check_short(f"run {summary.run_id}'s failures", failures)


def failures_text(failures: Sequence[RunFailure]) -> str | None:
    """A run's failures as stored: JSON, or None when there are none (so old and new rows read alike)."""
    if not failures:
        return None
    return json.dumps(
        [{"entra_id": f.entra_id, "principal": f.principal, "reason": f.reason} for f in failures],
        separators=(",", ":"),
        ensure_ascii=False,
    )


def parse_failures(text: str | None) -> tuple[RunFailure, ...]:
    """Stored failures back; a row written before failures were kept has none."""
    if not text:
        return ()
    return tuple(
        RunFailure(str(f["entra_id"]), str(f["principal"]), str(f["reason"])) for f in json.loads(text)
    )


def entity_size(entity: Mapping[str, Any]) -> int:
    """Bytes one entity takes, by Azure's documented formula:
    4 + 2·len(PartitionKey + RowKey) + Σ over properties (8 + 2·len(name) + size of the value),
    where a string is 2·len + 4, Int32 4, Int64/Double/DateTime 8, Boolean 1, binary len + 4."""
    size = 4 + 2 * (len(entity["PartitionKey"]) + len(entity["RowKey"]))
    for name, value in entity.items():
        if name not in ("PartitionKey", "RowKey") and value is not None:
            size += 8 + 2 * len(name) + _value_size(value)
    return size


def _value_size(value: object) -> int:
    if getattr(value, "edm_type", None) == "Edm.Int64":
        return 8
    value = getattr(value, "value", value)  # a typed EntityProperty
    if isinstance(value, bool):
        return 1
    if isinstance(value, str):
        return 2 * len(value) + 4
    if isinstance(value, bytes):
        return len(value) + 4
    if isinstance(value, int):
        return 4 if -(2**31) <= value < 2**31 else 8
    return 8  # float, datetime


Decoded = TypeVar("Decoded")


def decodes(kind: str) -> Callable[[Callable[[Any], Decoded]], Callable[[Any], Decoded]]:
    """Mark a function that decodes one stored record: what it cannot decode is ``UnreadableRecord``."""

    def wrap(decoder: Callable[[Any], Decoded]) -> Callable[[Any], Decoded]:
        @wraps(decoder)
        def decoded(row: Any) -> Decoded:
            try:
                return decoder(row)
            except (ValueError, TypeError, KeyError, AttributeError, IndexError) as error:
                raise UnreadableRecord(kind, error) from error

        return decoded

    return wrap
