"""Credentials, scope, base URL and the retry decisions, without any network."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from azure.identity.aio import ClientSecretCredential, ManagedIdentityCredential
from kiota_abstractions.authentication import BaseBearerTokenAuthenticationProvider
from kiota_authentication_azure.azure_identity_authentication_provider import (
    AzureIdentityAuthenticationProvider,
)
from kiota_http.middleware.options import RetryHandlerOption

from provisioning.adapters.graph.client import (
    GraphRetryPolicy,
    ThrottleRetryHandler,
    authentication_for,
    connect,
    graph_scope,
    pipeline,
)
from provisioning.adapters.graph.errors import error_for, retry_after_seconds
from provisioning.errors import (
    AuthError,
    CursorExpired,
    InvalidRequestError,
    NotFoundError,
    TransientError,
)
from provisioning.settings import Settings

pytestmark = pytest.mark.anyio
GRAPH = "https://graph.microsoft.com/v1.0"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def settings(**values: Any) -> Settings:
    return Settings(GRAPH_API_URL=values.pop("GRAPH_API_URL", GRAPH), **values)


async def test_a_static_token_goes_to_the_graph_host_only() -> None:
    provider, credential = authentication_for(settings(GRAPH_ACCESS_TOKEN="secret-token"))

    assert isinstance(provider, BaseBearerTokenAuthenticationProvider) and credential is None
    tokens = provider.access_token_provider
    assert await tokens.get_authorization_token(f"{GRAPH}/users/delta()") == "secret-token"
    assert await tokens.get_authorization_token("https://elsewhere.example.com/v1.0/users") == ""


async def test_app_credentials_when_all_three_are_set_else_the_managed_identity() -> None:
    app = settings(AZURE_TENANT_ID="t", AZURE_CLIENT_ID="c", AZURE_CLIENT_SECRET="s")
    user_assigned = settings(AZURE_CLIENT_ID="c")

    for given, expected in ((app, ClientSecretCredential), (user_assigned, ManagedIdentityCredential)):
        provider, credential = authentication_for(given)
        assert isinstance(provider, AzureIdentityAuthenticationProvider)
        assert isinstance(credential, expected)
        await credential.close()


async def test_links_go_through_the_middleware_and_the_token_only_to_the_graph_host() -> None:
    """``send`` skips the SDK's request adapter, not its middleware or its rule for the token."""
    seen: list[tuple[bytes, dict[str, str], bytes]] = []  # as each request left (a retry reuses it)
    statuses = iter([429, 200, 200])

    def graph(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.raw_path, dict(request.headers), request.content))
        status = next(statuses) if request.url.host == "graph.microsoft.com" else 200
        return httpx.Response(status, headers={"Retry-After": "1"}, json={})

    policy = GraphRetryPolicy(time_scale=0.0)
    connection = connect(
        settings(GRAPH_ACCESS_TOKEN="secret-token"), policy, transport=httpx.MockTransport(graph)
    )
    try:
        answer = await connection.send("GET", f"{GRAPH}/users/delta()?$deltatoken=abc")
        await connection.send("POST", f"{GRAPH}/$batch", b'{"requests": []}')
        await connection.send("GET", "https://elsewhere.example.com/v1.0/users?$skiptoken=x")
    finally:
        await connection.aclose()
    assert answer.status_code == 200 and connection.retry.waits == [1.0]  # the 429 was retried
    (path, first, _), (_, retried, _), (_, batch, content), (_, elsewhere, _) = seen
    assert first["authorization"] == "Bearer secret-token" == batch["authorization"]
    assert "retry-attempt" not in first and retried["retry-attempt"] == "1" and "sdkversion" in first
    assert path == b"/v1.0/users/delta()?$deltatoken=abc"  # the link as Graph sent it
    assert batch["content-type"] == "application/json" and content == b'{"requests": []}'
    assert "authorization" not in elsewhere


class RecordingTokens:
    """The SDK's token provider contract: a token per call, fresh when claims are asked for."""

    def __init__(self) -> None:
        self.asked: list[dict[str, Any]] = []

    async def get_authorization_token(self, uri: str, context: dict[str, Any] | None = None) -> str:
        self.asked.append(dict(context or {}))
        return "token-with-claims" if (context or {}).get("claims") else "revoked-token"


CHALLENGE = 'Bearer realm="", error="insufficient_claims", claims="eyJhY2Nlc3NfdG9rZW4iOnt9fQ=="'


@pytest.mark.parametrize(
    ("challenge", "status", "asked"),
    [
        (CHALLENGE, 200, [{}, {"claims": "eyJhY2Nlc3NfdG9rZW4iOnt9fQ=="}]),  # answered once, with them
        ('Bearer realm="", error="invalid_token"', 401, [{}]),  # no claims named: nothing to answer
    ],
)
async def test_a_claims_challenge_is_answered_once_with_a_token_carrying_them(
    challenge: str, status: int, asked: list[dict[str, Any]]
) -> None:
    def graph(request: httpx.Request) -> httpx.Response:
        if request.headers["Authorization"] == "Bearer token-with-claims":
            return httpx.Response(200, json={})
        return httpx.Response(401, headers={"WWW-Authenticate": challenge}, json={})

    connection = connect(settings(GRAPH_ACCESS_TOKEN="unused"), transport=httpx.MockTransport(graph))
    connection.tokens = tokens = RecordingTokens()
    try:
        answer = await connection.send("GET", f"{GRAPH}/users/delta()?$deltatoken=abc")
    finally:
        await connection.aclose()
    assert answer.status_code == status and tokens.asked == asked


def test_the_pipeline_is_the_sdks_default_less_three_handlers_that_do_nothing_here() -> None:
    """A kiota upgrade that adds a default handler fails this test instead of being left out unseen."""
    from kiota_http.kiota_client_factory import KiotaClientFactory
    from kiota_http.middleware import (
        BodyInspectionHandler,
        HeadersInspectionHandler,
        RetryHandler,
        UrlReplaceHandler,
    )
    from msgraph_core.middleware import GraphTelemetryHandler

    left_out = (UrlReplaceHandler, HeadersInspectionHandler, BodyInspectionHandler)
    defaults = [
        type(h) for h in KiotaClientFactory.get_default_middleware(None) if not isinstance(h, left_out)
    ]
    ours = pipeline(ThrottleRetryHandler(GraphRetryPolicy()))
    expected = [ThrottleRetryHandler if kind is RetryHandler else kind for kind in defaults]
    assert [type(h) for h in ours] == [*expected, GraphTelemetryHandler]


def test_the_scope_follows_the_cloud_of_the_base_url() -> None:
    assert graph_scope(GRAPH) == "https://graph.microsoft.com/.default"
    assert graph_scope("https://graph.microsoft.us/v1.0") == "https://graph.microsoft.us/.default"


async def test_the_adapter_base_url_has_no_trailing_slash() -> None:
    connection = connect(settings(GRAPH_API_URL=f"{GRAPH}/", GRAPH_ACCESS_TOKEN="t"))
    try:
        assert connection.client.request_adapter.base_url == GRAPH
    finally:
        await connection.aclose()


def answer(status: int, retry_after: str | None = None, attempt: int = 0) -> httpx.Response:
    request = httpx.Request(
        "GET", f"{GRAPH}/users", headers={"Retry-Attempt": str(attempt)} if attempt else {}
    )
    return httpx.Response(
        status, headers={"Retry-After": retry_after} if retry_after else {}, request=request
    )


def test_the_retry_handler_waits_retry_after_or_a_doubling_backoff() -> None:
    handler = ThrottleRetryHandler(
        GraphRetryPolicy(max_retries=3, longest_wait=20, backoff=1, time_scale=0.5)
    )
    options = RetryHandlerOption(delay=0, max_retries=3)

    assert handler.should_retry(answer(429).request, options, answer(429, "7"))
    assert handler.get_delay_time(0, answer(429, "7")) == 3.5  # scaled
    assert [handler.planned_wait(n, answer(503)) for n in range(6)] == [1, 2, 4, 8, 16, 20]
    assert not handler.should_retry(answer(429).request, options, answer(429, "21"))  # beyond longest_wait
    assert not handler.should_retry(answer(429).request, options, answer(429, "1", attempt=3))  # out of tries
    assert not handler.should_retry(answer(200).request, options, answer(200))
    assert handler.waits == [7.0]


def test_retry_after_in_seconds_or_as_a_date() -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)

    assert retry_after_seconds({"Retry-After": "12"}) == 12
    assert 25 < (retry_after_seconds({"retry-after": later}) or 0) <= 30
    assert retry_after_seconds({"Retry-After": "soon"}) is None
    assert retry_after_seconds(None) is None


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (410, "syncStateNotFound", CursorExpired),
        (400, "resyncRequired", CursorExpired),
        (401, "InvalidAuthenticationToken", AuthError),
        (403, "Authorization_RequestDenied", AuthError),
        (404, "Request_ResourceNotFound", NotFoundError),
        (429, "TooManyRequests", TransientError),
        (503, "serviceNotAvailable", TransientError),
        (400, "Request_BadRequest", InvalidRequestError),
    ],
)
def test_graph_errors_map_to_the_taxonomy(status: int, code: str, expected: type[Exception]) -> None:
    error = error_for(status, code, "message", {"Retry-After": "9"})

    assert isinstance(error, expected) and code in str(error)
    if isinstance(error, TransientError):
        assert error.retry_after == 9
