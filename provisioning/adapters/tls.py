"""One TLS context per process for every HTTP client the adapters open, and what a refused certificate
is called when it happens.

Loading the CA bundle costs tens of milliseconds, and each invocation of a function opens its Graph and
Druva clients afresh: sharing the (read-only once built) context keeps that cost to the first
invocation of a warm instance. The bundle is certifi's, or the one ``SSL_CERT_FILE`` (``SSL_CERT_DIR``)
names: httpx's context honours both, which is how a proxy that inspects TLS is trusted.
"""

from __future__ import annotations

import functools
import ssl

import httpx


@functools.cache
def tls_context() -> ssl.SSLContext:
    return httpx.create_ssl_context()


def untrusted_certificate(error: BaseException) -> str | None:
    """Why the server's certificate was not trusted ("self-signed certificate", "certificate has
    expired", "Hostname mismatch, …"), when that is what ``error`` comes down to; None otherwise.

    httpx (over httpcore) and aiohttp each wrap the ``ssl.SSLCertVerificationError`` in connection
    errors of their own, which read like any network fault. Such a failure is no outage: the same
    certificate is refused on every attempt, so it is named at once instead of being retried."""
    refused = False
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, ssl.SSLCertVerificationError):  # aiohttp's own error is one too, bare
            refused = True
            why = getattr(cause, "verify_message", None)
            if why:
                return str(why)
        cause = cause.__cause__ or cause.__context__
    return "certificate verify failed" if refused else None


def certificate_refusal(service: str, setting: str, why: str) -> str:
    """The sentence for a refused certificate, the same for every service."""
    return (
        f"{service}'s TLS certificate is not trusted ({why}), so nothing was sent: check {setting}, "
        "or, behind a proxy that inspects TLS, point SSL_CERT_FILE at a CA bundle that holds its certificate"
    )
