"""One TLS context per process for every HTTP client the adapters open.

Loading the CA bundle costs tens of milliseconds, and each invocation of a function opens its Graph and
Druva clients afresh: sharing the (read-only once built) context keeps that cost to the first
invocation of a warm instance.
"""

from __future__ import annotations

import functools
import ssl

import httpx


@functools.cache
def tls_context() -> ssl.SSLContext:
    return httpx.create_ssl_context()
