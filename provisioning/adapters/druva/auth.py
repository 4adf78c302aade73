"""Druva API tokens: client credentials, 30 minutes, no refresh token, so fetch again before expiry."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
from pydantic import SecretStr

from provisioning.adapters.druva.envelope import Envelope, Throttled, certificate_refused, retry_after
from provisioning.adapters.druva.payloads import parse_int
from provisioning.errors import AuthError, TransientError

log = logging.getLogger("provisioning.adapters.druva")

DEFAULT_LIFETIME_SECONDS = 1800


@dataclass(frozen=True)
class _Token:
    value: str = field(repr=False)
    refresh_at: float


class TokenSource:
    """One token shared by every request of a client; concurrent callers wait for a single fetch."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        client_id: str,
        client_secret: SecretStr,
        *,
        refresh_margin_seconds: float,
        clock: Callable[[], float],
    ) -> None:
        self._http = http
        self._client_id = client_id
        self._client_secret = client_secret
        self._margin = refresh_margin_seconds
        self._clock = clock
        self._token: _Token | None = None
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"TokenSource(client_id={self._client_id!r})"

    async def token(self) -> str:
        async with self._lock:
            if self._token is None or self._clock() >= self._token.refresh_at:
                self._token = await self._fetch()
            return self._token.value

    async def discard(self, value: str) -> None:
        """Forget ``value`` after Druva refused it; a token already replaced by another caller stays."""
        async with self._lock:
            if self._token is not None and self._token.value == value:
                self._token = None

    async def _fetch(self) -> _Token:
        try:
            response = await self._http.post(
                "/token",
                auth=httpx.BasicAuth(self._client_id, self._client_secret.get_secret_value()),
                data={"grant_type": "client_credentials", "scope": "read"},
            )
        except httpx.TransportError as error:
            refused = certificate_refused("POST /token", error)
            if refused is not None:
                raise refused from error
            # Asking for a token changes nothing at Druva, so any network fault is simply transient.
            raise TransientError(f"Druva token: request failed ({type(error).__name__})") from error
        if response.status_code == 429:
            raise Throttled(self._refusal(response), retry_after=retry_after(response))
        if response.status_code >= 500:
            raise TransientError(self._refusal(response), retry_after=retry_after(response))
        if not response.is_success:
            raise AuthError(self._refusal(response))
        return self._token_from(response)

    def _token_from(self, response: httpx.Response) -> _Token:
        try:
            body = response.json()
        except ValueError:
            body = None
        value = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(value, str) or not value:
            raise AuthError(f"Druva token: the answer for client {self._client_id!r} holds no access_token")
        lifetime = parse_int(body.get("expires_in")) or DEFAULT_LIFETIME_SECONDS
        # Renew well before expiry, but never so early that a short-lived token is renewed at once.
        margin = min(self._margin, lifetime / 2)
        log.info("Druva token obtained for client %r (valid %d s)", self._client_id, lifetime)
        return _Token(value, self._clock() + lifetime - margin)

    def _refusal(self, response: httpx.Response) -> str:
        described = Envelope.of(response).describe(response.status_code)
        return f"Druva token for client {self._client_id!r} refused: {described}"
