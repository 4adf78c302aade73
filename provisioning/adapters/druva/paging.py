"""Druva's list paging (``nextPageToken`` → ``pageToken``), made to end.

Druva documents a loop "until ``nextPageToken`` is empty". A token that comes back (the same one, or
one sent earlier in the read: A→B→A) would loop for ever, and one that is new every time would never
stop either; each is stopped here with ``PagingStopped``, never silently cut short (a Druva sweep that
ends early looks like a tenant with fewer users).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from provisioning.errors import PagingStopped

TOKEN_SHOWN = 8  # characters of a token an error message may show, at most: enough to tell two apart


@dataclass(frozen=True)
class ReadBounds:
    """How far one list read (users, profiles or storages) may go.

    Pages: Druva answers up to 4,097 records a page. The largest tenant this product can be pointed at
    is bounded by Entra's directory, at most 50,000,000 objects: 12,205 full pages. 25,000 pages allow
    for pages half as full and still stop a token that is new every time; a 1,000,000-user Druva tenant
    needs 245.

    Time: a page of 4,097 users is about a megabyte, answered in about a second; a sweep of a
    1,000,000-user tenant takes a few minutes, and ten times that with every page retried after
    throttling or a 5xx (each request's own retries are bounded by ``DruvaRetryPolicy``). One hour
    ends a read that keeps Druva busy without ever finishing, and no sweep a tenant needs."""

    pages: int = 25_000
    seconds: float = 3600.0

    def __post_init__(self) -> None:
        if self.pages < 1 or self.seconds <= 0:
            raise ValueError(f"a read must be allowed some pages and some time, not {self}")


class PageTokens:
    """The page tokens of one list read: each sent at most once, and the read within ``ReadBounds``.

    Tokens are kept as 16-byte digests, not as their text: about 3 MB at most, at the page bound."""

    def __init__(self, what: str, bounds: ReadBounds, clock: Callable[[], float] = time.monotonic) -> None:
        self._what, self._bounds, self._clock = what, bounds, clock
        self._started = clock()
        self._pages = 0
        self._sent: dict[bytes, int] = {}  # token digest → the page it was sent for

    def follow(self, token: str) -> str:
        """``token`` (the ``nextPageToken`` of the page just read), once it may be sent; else
        ``PagingStopped`` naming what repeated or which bound was reached."""
        self._pages += 1
        digest = hashlib.blake2b(token.encode(), digest_size=16).digest()
        if digest in self._sent:
            raise PagingStopped(
                f"{self._what}: the nextPageToken of page {self._pages:,} ({_shown(token)}) is the token "
                f"page {self._sent[digest]:,} of this read was read with: Druva's paging goes round in a "
                "circle, so the read was stopped"
            )
        self._within_bounds()
        self._sent[digest] = self._pages + 1
        return token

    def _within_bounds(self) -> None:
        if self._pages >= self._bounds.pages:
            raise PagingStopped(
                f"{self._what}: stopped after {self._pages:,} pages, the most one read may take: "
                "Druva's paging is not ending"
            )
        elapsed = self._clock() - self._started
        if elapsed > self._bounds.seconds:
            raise PagingStopped(
                f"{self._what}: stopped after {elapsed:,.1f} s and {self._pages:,} pages, longer than one "
                f"read may take ({self._bounds.seconds:,g} s)"
            )


def _shown(token: str) -> str:
    """The start of a token, never all of it: at most half, and at most ``TOKEN_SHOWN`` characters."""
    return f"{token[: min(TOKEN_SHOWN, len(token) // 2)]}…"
