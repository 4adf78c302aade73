"""The Druva port over Druva inSync's REST API (httpx, async).

Reliability rules, each for a documented sharp edge:
- tokens last 30 minutes and cannot be refreshed: fetch a new one before expiry, and once more when
  Druva answers 401 or 403 (the FAQ says 403, the spec 401);
- 429 (no ``Retry-After``), 5xx and ``retryable: true`` are retried with capped exponential backoff;
- Druva has no idempotency key: a create whose answer was lost or ambiguous is followed by a lookup by
  e-mail, and posted again only if that lookup finds nothing;
- Druva's ``emailID`` filter is not documented to ignore case: a lookup that finds nothing by it asks
  again with ``searchPrefixEmailID`` (case-insensitive, per Druva's M365 spec) and compares itself;
- refusals that only a human can lift (a read-only credential writing, no free licence, a privacy
  conflict, two users whose e-mails differ only in case) are ``DruvaRefused`` of their kind;
- dry run is enforced here, below every caller: any write raises ``DryRunRejected`` before a byte leaves.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from pydantic import SecretStr

from provisioning.adapters.druva.auth import TokenSource
from provisioning.adapters.druva.catalog import Catalog
from provisioning.adapters.druva.envelope import AmbiguousOutcome, certificate_refused, error_for
from provisioning.adapters.druva.limiter import AdaptiveLimit
from provisioning.adapters.druva.paging import PageTokens, ReadBounds
from provisioning.adapters.druva.payloads import (
    CatalogEntry,
    MalformedRecord,
    items,
    next_page_token,
    parse_int,
    parse_profile,
    parse_storage,
    parse_user,
)
from provisioning.adapters.druva.retry import DruvaRetryPolicy, NetworkOutage
from provisioning.adapters.druva.transport import PooledTransport
from provisioning.adapters.tls import tls_context
from provisioning.domain.directory import Probe
from provisioning.domain.druva import DruvaUser, NewDruvaUser, email_key
from provisioning.errors import (
    ConflictError,
    DruvaRefused,
    DryRunRejected,
    InvalidRequestError,
    NotFoundError,
    ProvisioningError,
    RefusalKind,
    TransientError,
)

log = logging.getLogger("provisioning.adapters.druva")

API = "/insync"
USERS = "/usermanagement/v1/users"
PROFILES = "/profilemanagement/v1/profiles"
STORAGES = "/storagemanagement/v1/storages"

# Connection-phase failures: the request never left, so repeating it is safe even for a create.
_NOTHING_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@dataclass(frozen=True)
class DruvaOptions:
    dry_run: bool = False
    # SaaS backup users sign in through SSO or never at all: no password mail unless asked for.
    send_password_by_email: bool = False
    # Druva publishes no rate limit: start with the handful of requests in flight its guidance suggests
    # and adapt (see limiter.py), never above this ceiling (DRUVA_MAX_CONCURRENCY).
    max_concurrency: int = 16
    initial_concurrency: int = 4
    timeout_seconds: float = 30.0  # for an answer; a Druva that accepts and never answers fails in this
    connect_timeout_seconds: float = 10.0
    token_refresh_margin_seconds: float = 300.0
    # Profiles and storages are read once and kept this long: a client kept open across invocations (a
    # warm Functions instance) still sees those added or renamed in Druva. Resolving a policy reads the
    # catalog afresh whatever its age (``refresh_catalog``).
    catalog_ttl_seconds: float = 1800.0
    retry: DruvaRetryPolicy = field(default_factory=DruvaRetryPolicy)
    read_bounds: ReadBounds = field(default_factory=ReadBounds)  # every list read ends (paging.py)

    def __post_init__(self) -> None:
        if self.max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, not {self.max_concurrency}")
        if self.retry.attempts < 1:
            raise ValueError(f"retry attempts must be at least 1, not {self.retry.attempts}")


@dataclass(frozen=True)
class _Call:
    method: str
    path: str  # below /insync
    params: Mapping[str, str] | None = None
    body: Mapping[str, Any] | None = None

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


@dataclass
class _CreateAttempts:
    email: str
    ambiguous: bool = False  # some attempt may have created the user without our knowing


class DruvaClient:
    """``provisioning.ports.Druva`` against a Druva API gateway (``DRUVA_API_URL``)."""

    def __init__(
        self,
        api_url: str,
        client_id: str,
        client_secret: str | SecretStr,
        options: DruvaOptions | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._options = options or DruvaOptions()
        self._api_url = api_url.rstrip("/")
        self._client_id = client_id
        slots = self._options.max_concurrency
        # One connection more than requests in flight: the token is fetched beside them.
        self._transport = transport or PooledTransport(max_connections=slots + 1, ssl_context=tls_context())
        self._http = httpx.AsyncClient(
            base_url=self._api_url,
            headers={"Accept": "application/json"},
            timeout=httpx.Timeout(
                self._options.timeout_seconds, connect=self._options.connect_timeout_seconds
            ),
            transport=self._transport,
        )
        # What the client would add to every API request, worked out once (see ``_send``), with the
        # names spelt as set (``dict(headers)`` would lower-case them, which Druva's GovCloud refuses).
        encoding = self._http.headers.encoding
        self._headers = {k.decode(encoding): v.decode(encoding) for k, v in self._http.headers.raw}
        self._timeouts = self._http.timeout.as_dict()
        # The collections' URLs, parsed once: a create is a POST to the same URL each time.
        self._fixed_urls = {
            path: httpx.URL(f"{self._api_url}{API}{path}") for path in (USERS, PROFILES, STORAGES)
        }
        secret = client_secret if isinstance(client_secret, SecretStr) else SecretStr(client_secret)
        self._tokens = TokenSource(
            self._http,
            client_id,
            secret,
            refresh_margin_seconds=self._options.token_refresh_margin_seconds,
            clock=clock,
        )
        self.limit = AdaptiveLimit(slots, initial=self._options.initial_concurrency, clock=clock)
        self._outage = NetworkOutage(self._options.retry.outage_seconds, clock)
        self._catalog: Catalog | None = None
        self._catalog_read_at = 0.0
        self._clock = clock
        self._catalog_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return (
            f"DruvaClient({self._api_url!r}, client_id={self._client_id!r}, dry_run={self._options.dry_run})"
        )

    @property
    def max_in_flight(self) -> int:
        return self.limit.ceiling

    @property
    def credential(self) -> str:
        return f"{self._api_url}/{self._client_id}"

    async def __aenter__(self) -> DruvaClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # ---- users ----------------------------------------------------------------------------------------

    async def users(self) -> AsyncIterator[DruvaUser]:
        async for user in self.list_users():
            yield user

    async def list_users(self, *, email: str | None = None) -> AsyncGenerator[DruvaUser, None]:
        """Users page by page, filtered by Druva on ``emailID`` when given."""
        async for user in self._users_where({"emailID": email} if email else {}):
            yield user

    async def find_user(self, email: str) -> DruvaUser | None:
        """The user with this e-mail in whatever case Druva stored it, or None; ``DruvaRefused``
        (``AMBIGUOUS``) when Druva holds several whose e-mails differ only in case.

        ``emailID`` first: one request finds the user as Druva stored it (exactly, or ignoring case if
        Druva does). Only when it finds nothing, a prefix search, which Druva's M365 spec says ignores
        case, narrowed here to the same address: Druva is never trusted to fold case, either way."""
        asked = email.strip()
        same = await self._users_with_email(asked, "emailID")
        if not same:
            same = await self._users_with_email(asked, "searchPrefixEmailID")
        if len(same) > 1:
            raise _ambiguous(asked, same)
        return same[0] if same else None

    async def _users_with_email(self, email: str, search: str) -> list[DruvaUser]:
        """What Druva's ``search`` filter finds for ``email``, kept if it is the same address ignoring
        case (a prefix search also finds ann@contoso.com.au for ann@contoso.com)."""
        key = email_key(email)
        return [user async for user in self._users_where({search: email}) if user.email_key == key]

    async def _users_where(self, params: Mapping[str, str]) -> AsyncGenerator[DruvaUser, None]:
        catalog = await self._read_catalog()
        async for page in self._pages(USERS, "users", params):
            for raw in page:
                user = self._user_or_none(raw, catalog)
                if user is not None:
                    yield user

    async def get_user(self, user_id: int) -> DruvaUser | None:
        try:
            raw = await self._request(_Call("GET", f"{USERS}/{user_id}"))
        except NotFoundError:
            return None
        return self._user_or_none(raw, await self._read_catalog())

    async def create_user(self, user: NewDruvaUser) -> DruvaUser:
        call = _Call("POST", USERS, body=await self._create_body(user))
        self._refuse_in_dry_run(call)
        attempts = _CreateAttempts(user.email)
        return await self._options.retry.call(self._outage, self._create_once, call, attempts)

    async def update_user(
        self,
        user_id: int,
        *,
        user_name: str | None = None,
        profile: str | None = None,
        storage: str | None = None,
    ) -> DruvaUser:
        body = await self._update_body(user_name, profile, storage)
        if not body:
            return await self._existing(user_id)
        raw = await self._request(_Call("PATCH", f"{USERS}/{user_id}", body=body))
        updated = self._user_or_none(raw, await self._read_catalog())
        # The answer should be the user; if it is not readable, ask for it rather than guess.
        return updated if updated is not None else await self._existing(user_id)

    async def preserve_user(self, user_id: int) -> None:
        await self._request(_Call("POST", f"{USERS}/{user_id}/preserve"))

    async def activate_user(self, user_id: int) -> None:
        await self._request(_Call("POST", f"{USERS}/{user_id}/activate"))

    # ---- catalog --------------------------------------------------------------------------------------

    async def profiles(self) -> list[str]:
        return (await self._read_catalog()).profiles.names

    async def storages(self) -> list[str]:
        return (await self._read_catalog()).storages.names

    async def refresh_catalog(self) -> None:
        async with self._catalog_lock:
            self._catalog = None

    # ---- pre-flight -----------------------------------------------------------------------------------

    async def check_access(self) -> list[Probe]:
        """Token, users, profiles, storages: each a Probe; a failure is reported, never raised."""
        token = await self._probe("Druva token", self._probe_token)
        if not token.ok:
            skipped = "skipped: no Druva token"
            names = ("Druva users listable", "Druva profiles", "Druva storages")
            return [token, *(Probe(name, False, skipped) for name in names)]
        return [
            token,
            await self._probe("Druva users listable", self._probe_users),
            await self._probe("Druva profiles", self._probe_names("profile", self.profiles)),
            await self._probe("Druva storages", self._probe_names("storage", self.storages)),
        ]

    async def _probe(self, check: str, run: Callable[[], Any]) -> Probe:
        try:
            ok, detail = await run()
        except Exception as error:  # a probe reports whatever went wrong instead of raising it
            reason = (
                str(error) if isinstance(error, ProvisioningError) else f"{type(error).__name__}: {error}"
            )
            return Probe(check, False, reason)
        return Probe(check, ok, detail)

    async def _probe_token(self) -> tuple[bool, str]:
        await self._tokens.token()
        return True, f"client {self._client_id!r} authenticated at {self._api_url}"

    async def _probe_users(self) -> tuple[bool, str]:
        first_page = await self._request(_Call("GET", USERS))
        total = parse_int(first_page.get("totalSize")) if isinstance(first_page, Mapping) else None
        return True, f"{total if total is not None else len(items(first_page, 'users'))} users"

    def _probe_names(self, kind: str, read: Callable[[], Any]) -> Callable[[], Any]:
        async def probe() -> tuple[bool, str]:
            names = await read()
            if not names:
                return False, f"no {kind}s visible to this credential: users cannot be created"
            return True, f"{len(names)} {kind}s: {', '.join(names)}"

        return probe

    # ---- creating, without ever creating twice ------------------------------------------------------

    async def _create_body(self, user: NewDruvaUser) -> dict[str, Any]:
        catalog = await self._read_catalog()
        body: dict[str, Any] = {
            "userName": user.user_name,
            "emailID": user.email,
            "profileID": catalog.profiles.id_of(user.profile),
            "storageID": catalog.storages.id_of(user.storage),
            "sendPasswordByEmail": self._options.send_password_by_email,
        }
        if user.quota is not None:  # absent: the profile's default quota applies
            body |= {"quota": user.quota.value, "quotaUnit": user.quota.unit.value}
        return body

    async def _create_once(self, call: _Call, attempts: _CreateAttempts) -> DruvaUser:
        if attempts.ambiguous:
            existing = await self.find_user(attempts.email)
            if existing is not None:
                log.info("Druva create of %s: found it after an unanswered attempt", attempts.email)
                return existing
        try:
            raw = await self._attempt(call)
        except AmbiguousOutcome:
            attempts.ambiguous = True
            raise
        except InvalidRequestError as refused:
            return await self._after_refused_create(refused, attempts)
        created = self._user_or_none(raw, await self._read_catalog())
        if created is None:
            # Accepted, but no user we can read came back: find it the way we find a lost answer.
            attempts.ambiguous = True
            raise AmbiguousOutcome(f"Druva {call}: accepted {attempts.email} without returning the user")
        return created

    async def _after_refused_create(
        self, refused: InvalidRequestError, attempts: _CreateAttempts
    ) -> DruvaUser:
        # Druva documents no code for "e-mail already taken", so ask whether the e-mail is taken.
        existing = await self.find_user(attempts.email)
        if existing is None:
            raise refused
        if attempts.ambiguous:
            # Our own unanswered attempt created it; the lookup before this one did not see it yet.
            return existing
        raise ConflictError(
            f"Druva already has a user with e-mail {existing.email} (user {existing.user_id})"
        ) from refused

    # ---- updating -------------------------------------------------------------------------------------

    async def _update_body(
        self, user_name: str | None, profile: str | None, storage: str | None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if user_name is not None:
            body["userName"] = user_name
        if profile is not None or storage is not None:
            catalog = await self._read_catalog()
            if profile is not None:
                body["profileID"] = catalog.profiles.id_of(profile)
            if storage is not None:
                body["storageID"] = catalog.storages.id_of(storage)
        return body

    async def _existing(self, user_id: int) -> DruvaUser:
        user = await self.get_user(user_id)
        if user is None:
            raise NotFoundError(f"Druva has no user {user_id}")
        return user

    # ---- reading --------------------------------------------------------------------------------------

    async def _read_catalog(self) -> Catalog:
        async with self._catalog_lock:
            now = self._clock()
            if self._catalog is None or now - self._catalog_read_at >= self._options.catalog_ttl_seconds:
                profiles = await self._catalog_entries(PROFILES, "profiles", parse_profile)
                storages = await self._catalog_entries(STORAGES, "storages", parse_storage)
                self._catalog, self._catalog_read_at = Catalog(profiles, storages), now
            return self._catalog

    async def _catalog_entries(
        self, path: str, key: str, parse: Callable[[Mapping[str, Any]], CatalogEntry]
    ) -> list[CatalogEntry]:
        entries = []
        async for page in self._pages(path, key):
            for raw in page:
                try:
                    entries.append(parse(raw))
                except MalformedRecord as problem:
                    log.warning("Druva %s record skipped: %s", key, problem)
        return entries

    async def _pages(
        self, path: str, key: str, params: Mapping[str, str] | None = None
    ) -> AsyncIterator[list[Mapping[str, Any]]]:
        query = dict(params or {})
        tokens = PageTokens(f"Druva GET {path}", self._options.read_bounds, self._clock)
        while True:
            body = await self._request(_Call("GET", path, params=dict(query)))
            yield items(body, key)
            token = next_page_token(body)
            if token is None:
                return
            query["pageToken"] = tokens.follow(token)

    def _user_or_none(self, raw: Any, catalog: Catalog) -> DruvaUser | None:
        if not isinstance(raw, Mapping):
            return None
        try:
            record = parse_user(raw)
        except MalformedRecord as problem:
            log.warning("Druva user record skipped: %s", problem)
            return None
        return DruvaUser(
            user_id=record.user_id,
            email=record.email,
            user_name=record.user_name,
            status=record.status,
            profile=catalog.profiles.name_of(record.profile_id),
            storage=catalog.storages.name_of(record.storage_id),
            quota_bytes=record.quota_bytes,
            ldap_guid=record.ldap_guid,
        )

    # ---- one request: dry run, retries, token, concurrency ------------------------------------------

    def _refuse_in_dry_run(self, call: _Call) -> None:
        if self._options.dry_run and call.method != "GET":
            raise DryRunRejected(call.method, f"{self._api_url}{API}{call.path}", call.body)

    async def _request(self, call: _Call) -> Any:
        self._refuse_in_dry_run(call)
        return await self._options.retry.call(self._outage, self._attempt, call)

    async def _attempt(self, call: _Call) -> Any:
        response = await self._send_with_fresh_token(call)
        if not response.is_success:
            raise error_for(str(call), response, write=call.method != "GET")
        if not response.content.strip():
            return {}
        try:
            return response.json()
        except ValueError:
            # A 2xx we cannot read: for a write we do not know what happened.
            raise AmbiguousOutcome(f"Druva {call}: unreadable answer (HTTP {response.status_code})") from None

    async def _send_with_fresh_token(self, call: _Call) -> httpx.Response:
        token = await self._tokens.token()
        response = await self._send(call, token)
        if response.status_code in (401, 403):
            # Expired token (403 per Druva's FAQ, 401 per its spec): a refused request was not applied,
            # so sending it once more with a new token is safe even for a create. A 403 that outlives
            # the new token is the credential's role, not its session (``error_for``).
            await self._tokens.discard(token)
            response = await self._send(call, await self._tokens.token())
        return response

    async def _send(self, call: _Call, token: str) -> httpx.Response:
        try:
            async with self.limit.slot() as answered:
                response = await self._exchange(call, token)
                answered(response.status_code)
        except _NOTHING_SENT as error:
            refused = certificate_refused(str(call), error)
            if refused is not None:
                raise refused from error
            raise TransientError(f"Druva {call}: could not connect ({type(error).__name__})") from error
        except httpx.TimeoutException as error:
            waited, kind = self._options.timeout_seconds, type(error).__name__
            raise AmbiguousOutcome(f"Druva {call}: no answer in {waited:g} s ({kind})") from error
        except httpx.TransportError as error:
            raise AmbiguousOutcome(f"Druva {call}: no answer ({type(error).__name__})") from error
        self._outage.reachable()
        return response

    async def _exchange(self, call: _Call, token: str) -> httpx.Response:
        """One request straight to the transport, read in full. The API calls need nothing else of
        httpx's client (no cookies, no redirects, no hooks), whose per-request work (merging the URL
        and headers, a cookie jar pass on every answer) cost more CPU than the request itself."""
        fixed = None if call.params else self._fixed_urls.get(call.path)
        request = httpx.Request(
            call.method,
            fixed or f"{self._api_url}{API}{call.path}",
            params=call.params,
            json=call.body,
            headers={**self._headers, "Authorization": f"Bearer {token}"},
            extensions={"timeout": self._timeouts},
        )
        response = await self._transport.handle_async_request(request)
        try:
            await response.aread()
        finally:
            await response.aclose()
        return response


def _ambiguous(email: str, same: list[DruvaUser]) -> DruvaRefused:
    # Picking one would link the account to whichever user Druva happened to list first.
    listed = ", ".join(f"{user.email} (user {user.user_id})" for user in same)
    return DruvaRefused(
        f"Druva holds {len(same)} users whose e-mail is {email} ignoring case: {listed}",
        RefusalKind.AMBIGUOUS,
    )
