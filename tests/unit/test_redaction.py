"""The one redaction step: every known secret, in every form text can carry it, becomes ***."""

from __future__ import annotations

import base64
import io
import json
import logging
from collections.abc import Iterator
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provisioning import redaction
from provisioning.redaction import MASK, RedactingFilter, Redactor

ENVIRONMENT = {
    "GRAPH_ACCESS_TOKEN": "eyJ0eXAi.tok/en+part==",
    "druva_client_id": "client-7",  # settings are read case-insensitively, so is the redactor
    "druva_client_secret": "s3cr&t/with spaces%",
    "AZURE_CLIENT_SECRET": "az~secret.value",
    "GRAPH_CLIENT_STATE": "state-one",
    "PROVISIONING_TABLE_CONNECTION_STRING": "AccountName=acct;AccountKey=S0meKey+/==;TableEndpoint=http://x",
    "DRUVA_API_URL": "https://apis.druva.com",  # not a secret: left alone
}


@pytest.fixture
def redactor() -> Redactor:
    return Redactor.from_environment(ENVIRONMENT)


@pytest.mark.parametrize(
    "leak",
    [
        "Illegal header value b'Bearer eyJ0eXAi.tok/en+part=='",
        "GET https://x/?token=" + quote("eyJ0eXAi.tok/en+part==", safe=""),
        "form: secret=" + quote_plus("s3cr&t/with spaces%"),
        "Authorization: Basic " + base64.b64encode(b"client-7:s3cr&t/with spaces%").decode(),
        json.dumps({"client_secret": "s3cr&t/with spaces%"}),
        repr({"secret": "az~secret.value"}),
        "clientState state-one did not match",
        "AccountKey S0meKey+/== refused",
        "conn AccountName=acct;AccountKey=S0meKey+/==;TableEndpoint=http://x",
    ],
)
def test_every_form_of_a_secret_is_scrubbed(redactor: Redactor, leak: str) -> None:
    scrubbed = redactor.scrub(leak)
    assert MASK in scrubbed
    for secret in (
        "eyJ0eXAi.tok/en+part==",
        "s3cr&t/with spaces%",
        "az~secret.value",
        "state-one",
        "S0meKey+/==",
    ):
        assert secret not in scrubbed
        assert quote(secret, safe="") not in scrubbed


def test_what_is_not_secret_is_left_alone(redactor: Redactor) -> None:
    text = "Druva at https://apis.druva.com refused client client-7"
    assert redactor.scrub(text) == text


def test_a_malformed_secret_is_scrubbed_whole_and_by_line() -> None:
    redactor = Redactor.from_environment({"GRAPH_ACCESS_TOKEN": "tok-abcdef\r\nX-Injected: 1\n"})
    assert redactor.scrub("b'Bearer tok-abcdef\\r\\nX-Injected: 1\\n'") == "b'Bearer ***'"
    assert redactor.scrub("header tok-abcdef") == "header ***"


def test_secrets_too_short_to_mean_anything_are_not_masked_everywhere() -> None:
    assert Redactor.from_environment({"GRAPH_CLIENT_STATE": "ab"}).scrub("abc") == "abc"


@pytest.fixture
def captured(redactor: Redactor) -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    root.addHandler(handler)
    redaction.install(redactor)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        redaction.install(Redactor(()))


def test_log_records_are_scrubbed_with_their_arguments_and_tracebacks(captured: io.StringIO) -> None:
    log = logging.getLogger("provisioning.test")
    log.warning("token %s refused", "eyJ0eXAi.tok/en+part==")
    try:
        raise RuntimeError("secret s3cr&t/with spaces% in an exception")
    except RuntimeError:
        log.exception("failed with %r", {"k": "az~secret.value"})
    log.warning("bad format %s %s", "state-one")  # noqa: PLE1206 - arguments that do not fit still come out scrubbed
    text = captured.getvalue()
    assert "token *** refused" in text and "RuntimeError: secret *** in an exception" in text
    for secret in ("eyJ0eXAi", "s3cr&t", "az~secret", "state-one"):
        assert secret not in text


def test_install_adds_the_filter_once() -> None:
    handler = logging.StreamHandler(io.StringIO())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        redaction.install(Redactor(()))
        redaction.install(Redactor(()))
        assert sum(isinstance(f, RedactingFilter) for f in handler.filters) == 1
    finally:
        root.removeHandler(handler)


SECRET_TEXT = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")), min_size=8, max_size=40
).filter(lambda s: s.strip() == s and len(s) >= 8)


@settings(max_examples=200, deadline=None)
@given(secret=SECRET_TEXT, prefix=st.text(max_size=30), suffix=st.text(max_size=30))
def test_any_secret_in_any_form_in_any_text_is_scrubbed(secret: str, prefix: str, suffix: str) -> None:
    redactor = Redactor.from_environment({"DRUVA_CLIENT_ID": "id", "DRUVA_CLIENT_SECRET": secret})
    encoded = [
        secret,
        quote(secret, safe=""),
        quote_plus(secret, safe=""),
        json.dumps(secret)[1:-1],
        repr(secret)[1:-1],
        base64.b64encode(f"id:{secret}".encode()).decode(),
    ]
    for form in encoded:
        assert form not in redactor.scrub(prefix + form + suffix)
