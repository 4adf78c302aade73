"""Building the msgraph-sdk client: credentials, base URL, HTTP pipeline and the retry policy."""

from __future__ import annotations

import base64
import json
import logging
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
from kiota_abstractions.authentication import (
    AccessTokenProvider,
    AllowedHostsValidator,
    BaseBearerTokenAuthenticationProvider,
)
from kiota_authentication_azure.azure_identity_authentication_provider import (
    AzureIdentityAuthenticationProvider,
)
from kiota_http.middleware import (
    BaseMiddleware,
    ParametersNameDecodingHandler,
    RedirectHandler,
    RetryHandler,
    UserAgentHandler,
)
from kiota_http.middleware.middleware import REQUEST_OPTIONS_KEY
from kiota_http.middleware.options import RetryHandlerOption
from kiota_http.middleware.retry_handler import RETRY_ATTEMPT
from msgraph import GraphRequestAdapter, GraphServiceClient
from msgraph_core import GraphClientFactory
from msgraph_core.middleware import GraphTelemetryHandler
from pydantic import SecretStr

from provisioning.adapters.graph.errors import retry_after_seconds
from provisioning.adapters.identity import azure_credential
from provisioning.adapters.tls import tls_context
from provisioning.settings import Settings

log = logging.getLogger(__name__)
_CLAIMS = re.compile(r'claims="([^"]+)"')  # as the SDK's adapter reads a claims challenge


@dataclass(frozen=True)
class GraphRetryPolicy:
    """How much throttling one Graph request sits out in-process before giving up.

    Graph's guidance is to wait exactly ``Retry-After`` and retry. We do, but bounded: the worker runs
    under a Service Bus lock (60 s by default, renewed by the Functions host up to
    ``maxAutoLockRenewalDuration``, 5 minutes by default), and the timer shares its budget with
    subscription renewal. So at most ``max_retries`` waits of at most ``longest_wait`` seconds each
    (60 s in all by default). A longer ``Retry-After`` is not waited out here: the 429 surfaces as
    ``TransientError(retry_after=…)`` and the caller reschedules the work (a scheduled Service Bus
    message) instead of holding a lock while sleeping. ``time_scale`` shrinks every wait in tests.
    """

    max_retries: int = 3
    longest_wait: float = 20.0
    backoff: float = 1.0  # first wait when Graph names none; doubles per attempt, up to longest_wait
    time_scale: float = 1.0


class ThrottleRetryHandler(RetryHandler):  # type: ignore[misc]
    """msgraph-sdk's RetryHandler (429/503/504, every method, ``Retry-After`` honoured) with our delays.

    The stock handler waits any ``Retry-After`` up to 180 s and adds a 3 s base delay and jitter to every
    backoff; we keep its loop and bookkeeping (``Retry-Attempt`` header, attempt count) and replace the
    decision and the delay: ``Retry-After`` exactly, or a doubling backoff when Graph names none, and no
    retry at all when the wait would exceed ``longest_wait``. ``waits`` records every wait sat out
    (unscaled seconds), for tests and diagnostics.
    """

    def __init__(self, policy: GraphRetryPolicy) -> None:
        super().__init__(RetryHandlerOption(delay=0, max_retries=policy.max_retries))
        self.policy = policy
        self.waits: list[float] = []

    def planned_wait(self, retry_count: int, response: httpx.Response) -> float:
        named = retry_after_seconds(response.headers)
        return named if named else min(self.policy.backoff * 2**retry_count, self.policy.longest_wait)

    def should_retry(
        self, request: httpx.Request, options: RetryHandlerOption, response: httpx.Response
    ) -> bool:
        if not super().should_retry(request, options, response):
            return False
        retry_count = int(response.request.headers.get(RETRY_ATTEMPT, 0))
        wait = self.planned_wait(retry_count, response)
        if retry_count >= options.max_retry or wait > self.policy.longest_wait:
            return False  # surfaces as TransientError(retry_after=…): the caller reschedules
        log.warning("Graph answered %s; retrying in %.1f s", response.status_code, wait)
        self.waits.append(wait)
        return True

    def get_delay_time(
        self, retry_count: int, response: httpx.Response | None = None, delay: float = 0.0
    ) -> float:
        if response is None:
            return 0.0
        return self.planned_wait(retry_count, response) * self.policy.time_scale


class StaticTokenProvider(AccessTokenProvider):  # type: ignore[misc]
    """``GRAPH_ACCESS_TOKEN``: one bearer token, sent only to the Graph host itself."""

    def __init__(self, token: SecretStr, host: str) -> None:
        self._token = token
        self._hosts = AllowedHostsValidator([host])

    async def get_authorization_token(self, uri: str, additional_authentication_context: Any = None) -> str:
        return self._token.get_secret_value() if self._hosts.is_url_host_valid(uri) else ""

    def get_allowed_hosts_validator(self) -> AllowedHostsValidator:
        return self._hosts


@dataclass
class GraphConnection:
    """The SDK client and what must be closed with it."""

    client: GraphServiceClient
    http: httpx.AsyncClient
    retry: ThrottleRetryHandler
    tokens: AccessTokenProvider  # the SDK's own: it gives a token to the Graph host only
    credential: Any = None  # an azure.identity.aio credential, when one is used
    base_url: str = ""
    static_token: SecretStr | None = None

    async def send(
        self, method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        """One request to a URL that needs no building: a link Graph sent (``@odata.nextLink``,
        ``@odata.deltaLink``), or one the adapter built itself. It goes through the SDK's HTTP client and
        middleware (redirects, retries on 429/503/504, telemetry headers) with a token from the SDK's
        provider, but not through the request adapter, whose per-request work (URL templates, tracing
        spans, header collections) was about a quarter of the client's CPU for such a request, for
        nothing it needed. What the adapter did that matters is done here too: a claims challenge
        (continuous access evaluation revoked the token) is answered once with a token carrying them."""
        response = await self._exchange(method, url, body, headers or {})
        claims = claims_challenge(response)
        if claims is None:
            return response
        await response.aclose()
        return await self._exchange(method, url, body, headers or {}, claims)

    async def _exchange(
        self, method: str, url: str, body: bytes | None, extra: dict[str, str], claims: str = ""
    ) -> httpx.Response:
        token = await self.tokens.get_authorization_token(url, {"claims": claims} if claims else {})
        headers = {"Accept": "application/json", **extra}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if body is not None:
            headers["Content-Type"] = "application/json"
        # The middleware runs only for requests that carry kiota's options; none: each handler's own.
        options: dict[str, Any] = {}
        return await self.http.request(
            method, url, headers=headers, content=body, extensions={REQUEST_OPTIONS_KEY: options}
        )

    async def access_token(self) -> str:
        """The bearer token Graph gets: the static one, or a fresh one from the credential."""
        if self.static_token is not None:
            return self.static_token.get_secret_value()
        token = await self.credential.get_token(graph_scope(self.base_url))
        return str(token.token)

    async def aclose(self) -> None:
        await self.http.aclose()
        if self.credential is not None:
            await self.credential.close()


def claims_challenge(response: httpx.Response) -> str | None:
    """The claims of a ``401`` whose ``WWW-Authenticate`` is a Bearer challenge naming them, else None."""
    challenge = response.headers.get("WWW-Authenticate", "")
    if response.status_code != 401 or not challenge.casefold().startswith("bearer"):
        return None
    found = _CLAIMS.search(challenge)
    return found.group(1) if found else None


def graph_scope(base_url: str) -> str:
    """``https://graph.microsoft.com/v1.0`` → ``https://graph.microsoft.com/.default`` (any cloud)."""
    parts = urlsplit(base_url)
    return f"{parts.scheme}://{parts.netloc}/.default"


def authentication_for(settings: Settings) -> tuple[BaseBearerTokenAuthenticationProvider, Any]:
    """The kiota authentication provider, and the credential to close (None for a static token)."""
    host = urlsplit(settings.graph_api_url).hostname or ""
    if settings.graph_access_token is not None:
        return BaseBearerTokenAuthenticationProvider(
            StaticTokenProvider(settings.graph_access_token, host)
        ), None
    credential = azure_credential(settings)
    provider = AzureIdentityAuthenticationProvider(
        credential, scopes=[graph_scope(settings.graph_api_url)], allowed_hosts=[host]
    )
    return provider, credential


def connect(
    settings: Settings,
    retry: GraphRetryPolicy | None = None,
    timeout: float = 30.0,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> GraphConnection:
    """``transport`` replaces the network under the SDK's middleware (the soak's in-process simulators)."""
    auth, credential = authentication_for(settings)
    retry_handler = ThrottleRetryHandler(retry or GraphRetryPolicy())
    middleware = pipeline(retry_handler)
    # Our own httpx client: HTTP/1.1 (the SDK default wants the h2 package), explicit timeouts, a
    # connection pool sized for the few requests a pass keeps in flight.
    http = httpx.AsyncClient(
        timeout=httpx.Timeout(timeout, connect=10.0),
        limits=httpx.Limits(max_connections=16, max_keepalive_connections=8),
        verify=tls_context(),
        transport=transport,
    )
    http = GraphClientFactory.create_with_custom_middleware(middleware, client=http)
    adapter = GraphRequestAdapter(auth, http)
    # Set explicitly and without a trailing slash: taken from httpx's base_url it would gain one and
    # every request would go to ".../v1.0//users/delta()".
    base_url = settings.graph_api_url.rstrip("/")
    adapter.base_url = base_url
    return GraphConnection(
        GraphServiceClient(request_adapter=adapter),
        http,
        retry_handler,
        auth.access_token_provider,
        credential,
        base_url,
        settings.graph_access_token,
    )


def pipeline(retry_handler: ThrottleRetryHandler) -> list[BaseMiddleware]:
    """The SDK's default middleware, in its order, less three that do nothing for this app but cost on
    every request: ``UrlReplaceHandler`` (rewrites ``/users/me-token-to-replace`` to ``/me``, which an
    app-only client never calls, by parsing the URL again), ``HeadersInspectionHandler`` (copies every
    request and answer header into a collection no one reads) and ``BodyInspectionHandler`` (off unless
    asked, yet a tracing span per request). A test compares this list with the SDK's defaults."""
    return [
        RedirectHandler(),
        retry_handler,  # 429/503/504 with Retry-After, on our delays
        ParametersNameDecodingHandler(),  # %24select -> $select: kiota encodes the OData names
        UserAgentHandler(),
        GraphTelemetryHandler(),  # SdkVersion and client-request-id, which Microsoft support asks for
    ]


def token_claims(token: str) -> dict[str, object]:
    """The claims of a Graph token (a JWT), or {} when it is not one. The signature is not checked: what
    is read here only describes the token to an admin or the state, it never authorises anything."""
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        return {}
    return claims if isinstance(claims, dict) else {}


def roles_claim(token: str) -> frozenset[str] | None:
    """The ``roles`` claim of an app-only Graph token, or None when it has none."""
    roles = token_claims(token).get("roles")
    if not isinstance(roles, list):
        return None
    return frozenset(str(r) for r in roles)


def tenant_claim(token: str) -> str | None:
    """The ``tid`` claim (the Entra tenant the token was issued in), lower-cased, or None."""
    tenant = token_claims(token).get("tid")
    return tenant.lower() if isinstance(tenant, str) and tenant.strip() else None
