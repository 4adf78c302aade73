"""A refused TLS certificate recognised through the errors httpx and aiohttp wrap it in, and the
Druva client's retry policy giving up on it at once."""

from __future__ import annotations

import ssl

import aiohttp
import httpcore
import httpx
import pytest
from aiohttp.client_reqrep import ConnectionKey

from provisioning.adapters.druva.envelope import CertificateRefused
from provisioning.adapters.druva.retry import DruvaRetryPolicy, worth_retrying
from provisioning.adapters.tls import certificate_refusal, untrusted_certificate
from provisioning.errors import TransientError

pytestmark = pytest.mark.anyio


def verification_failure(why: str) -> ssl.SSLCertVerificationError:
    error = ssl.SSLCertVerificationError(
        1, f"[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: {why}"
    )
    error.verify_message = why
    return error


def wrapped(inner: BaseException, outer: BaseException) -> BaseException:
    outer.__cause__ = inner
    return outer


def test_httpx_wraps_it_twice() -> None:
    """httpx.ConnectError ← httpcore.ConnectError ← ssl.SSLCertVerificationError."""
    cause = wrapped(verification_failure("self-signed certificate"), httpcore.ConnectError("tls"))
    assert untrusted_certificate(wrapped(cause, httpx.ConnectError("tls"))) == "self-signed certificate"


def test_aiohttp_wraps_it_in_an_error_that_is_one_itself_but_says_less() -> None:
    key = ConnectionKey("druva.example", 443, True, True, None, None, None)
    inner = verification_failure("certificate has expired")
    outer = aiohttp.ClientConnectorCertificateError(key, inner)
    outer.__cause__ = inner
    assert untrusted_certificate(wrapped(outer, httpx.ConnectError("tls"))) == "certificate has expired"
    bare = aiohttp.ClientConnectorCertificateError(key, inner)
    assert untrusted_certificate(bare) == "certificate verify failed"


@pytest.mark.parametrize(
    "error",
    [
        httpx.ConnectError("connection refused"),
        wrapped(ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"), httpx.ConnectError("x")),
        wrapped(ConnectionResetError(), httpx.ReadError("reset")),
    ],
)
def test_other_failures_are_not_a_certificate(error: BaseException) -> None:
    assert untrusted_certificate(error) is None


def test_a_loop_of_causes_ends() -> None:
    first, second = httpx.ConnectError("a"), httpx.ConnectError("b")
    first.__cause__, second.__cause__ = second, first
    assert untrusted_certificate(first) is None


def test_the_sentence_names_the_problem_the_setting_and_the_way_to_trust_a_proxy() -> None:
    said = certificate_refusal("Druva", "DRUVA_API_URL", "self-signed certificate")
    assert said.startswith("Druva's TLS certificate is not trusted (self-signed certificate)")
    assert "DRUVA_API_URL" in said and "SSL_CERT_FILE" in said


async def test_the_druva_retry_policy_gives_up_on_a_refused_certificate_at_once() -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    attempts = 0

    async def refused() -> None:
        nonlocal attempts
        attempts += 1
        raise CertificateRefused("Druva POST /token: refused")

    with pytest.raises(CertificateRefused):
        await DruvaRetryPolicy(sleep=sleep).call(None, refused)
    assert attempts == 1 and waits == []
    assert not worth_retrying(CertificateRefused("x")) and worth_retrying(TransientError("x"))
