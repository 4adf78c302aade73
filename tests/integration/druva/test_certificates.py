"""A Druva whose TLS certificate this machine does not trust fails the run at once, naming the
certificate problem, as Graph does: the same certificate would be refused on every attempt, so it is
not retried as a network outage for the outage budget (30 s by default).

The server is a loopback TLS listener with a self-signed certificate made here (``cryptography``,
already installed with azure-identity): every client handshake fails verification, and each attempt is
counted."""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from provisioning.adapters.druva import DruvaClient, DruvaOptions, DruvaRetryPolicy
from provisioning.adapters.graph import GraphDirectory
from provisioning.adapters.graph.client import connect
from provisioning.errors import TransientError
from provisioning.settings import Settings

from .conftest import CREDENTIALS

pytestmark = pytest.mark.anyio
LOOPBACK = "127.0.0.1"
NAMED = r"TLS certificate is not trusted \(self-signed certificate\), so nothing was sent"
# A short outage budget keeps the old behaviour (the refusal retried as an outage) short to watch.
SHORT_OUTAGE = DruvaRetryPolicy(backoff_seconds=0.05, jitter_seconds=0.0, outage_seconds=2.0)


def self_signed(folder: Path) -> ssl.SSLContext:
    """A server context for 127.0.0.1 with a certificate that signs itself (valid, but trusted by no one)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, LOOPBACK)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(LOOPBACK))]), False)
        .sign(key, hashes.SHA256())
    )
    (folder / "cert.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    return context


class UntrustedServer:
    """Accepts connections and offers its self-signed certificate; counts the handshakes tried."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self._context = context
        self._listener = socket.create_server((LOOPBACK, 0))
        self._listener.settimeout(0.05)  # so that the serving thread sees the test end
        self.url = f"https://{LOOPBACK}:{self._listener.getsockname()[1]}"
        self.handshakes = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> UntrustedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)
        self._listener.close()

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            self.handshakes += 1
            connection.settimeout(5)
            try:
                with self._context.wrap_socket(connection, server_side=True):
                    pass  # never reached: the client refuses the certificate
            except OSError:
                connection.close()


@pytest.fixture
def untrusted(tmp_path: Path) -> Iterator[UntrustedServer]:
    with UntrustedServer(self_signed(tmp_path)) as server:
        yield server


async def test_druva_with_an_untrusted_certificate_fails_at_once_naming_it(
    untrusted: UntrustedServer,
) -> None:
    started = time.monotonic()
    async with DruvaClient(untrusted.url, *CREDENTIALS, DruvaOptions(retry=SHORT_OUTAGE)) as druva:
        with pytest.raises(TransientError, match=f"Druva POST /token: Druva's {NAMED}") as refused:
            await druva.profiles()
    assert time.monotonic() - started < 1.5
    assert untrusted.handshakes == 1
    assert "DRUVA_API_URL" in str(refused.value) and "SSL_CERT_FILE" in str(refused.value)


async def test_druva_names_it_for_any_request_not_only_the_token(
    untrusted: UntrustedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request made with a token already held (the certificate changed mid-run) is named the same
    way, at once."""
    async with DruvaClient(untrusted.url, *CREDENTIALS, DruvaOptions(retry=SHORT_OUTAGE)) as druva:
        monkeypatch.setattr(druva._tokens, "token", _a_token)
        with pytest.raises(
            TransientError, match=f"Druva GET /profilemanagement/v1/profiles: Druva's {NAMED}"
        ):
            await druva.profiles()
    assert untrusted.handshakes == 1


async def _a_token() -> str:
    return "token-from-before"


async def test_graph_with_an_untrusted_certificate_is_named_the_same_way(untrusted: UntrustedServer) -> None:
    settings = Settings(GRAPH_API_URL=f"{untrusted.url}/v1.0", GRAPH_ACCESS_TOKEN="test-token")
    directory = GraphDirectory(connect(settings))
    try:
        with pytest.raises(TransientError, match=f"list subscriptions: Graph's {NAMED}: check GRAPH_API_URL"):
            await directory.list_subscriptions()
    finally:
        await directory.aclose()
    assert untrusted.handshakes == 1
