"""Druva's error answers mapped onto the project's error taxonomy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from provisioning.adapters.druva.envelope import AmbiguousOutcome, Envelope, Throttled, error_for, retry_after
from provisioning.errors import (
    AuthError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    ProvisioningError,
    TransientError,
)


def envelope(code: str, message: str, retryable: object = False) -> dict[str, object]:
    return {"code": code, "message": message, "retryable": retryable, "data": {}}


@pytest.mark.parametrize(
    ("response", "kind"),
    [
        (
            httpx.Response(400, json=envelope("InsyncCappmaster-1001", "Invalid API syntax.")),
            InvalidRequestError,
        ),
        (httpx.Response(422, json=envelope("InsyncUsermanagement-1012", "taken")), InvalidRequestError),
        (httpx.Response(401, json=envelope("InsyncCappmaster-1002", "Invalid API credentials.")), AuthError),
        (httpx.Response(403, json=envelope("InsyncAdmanagement-1221", "Access restricted")), AuthError),
        (httpx.Response(404), NotFoundError),
        (httpx.Response(404, content=b"null"), NotFoundError),
        (httpx.Response(409, json=envelope("X-1", "exists")), ConflictError),
        (httpx.Response(429), Throttled),
        (
            httpx.Response(500, json=envelope("InsyncEndpoints-1006", "Internal server error", True)),
            AmbiguousOutcome,
        ),
        (httpx.Response(503, text="<html>gateway</html>"), AmbiguousOutcome),
        (httpx.Response(418, json=envelope("X-2", "try later", "true")), TransientError),
    ],
)
def test_each_answer_has_its_kind(response: httpx.Response, kind: type[ProvisioningError]) -> None:
    error = error_for("GET /usermanagement/v1/users", response)
    assert type(error) is kind


def test_message_names_the_call_status_code_and_druva_message() -> None:
    response = httpx.Response(400, json=envelope("InsyncCappmaster-1001", "Invalid API syntax."))
    error = error_for("POST /usermanagement/v1/users", response)
    assert (
        str(error)
        == "Druva POST /usermanagement/v1/users: HTTP 400 InsyncCappmaster-1001 Invalid API syntax."
    )
    assert isinstance(error, InvalidRequestError)
    assert (error.code, error.status) == ("InsyncCappmaster-1001", 400)


def test_empty_404_still_reads_well() -> None:
    assert str(error_for("GET /usermanagement/v1/users/9", httpx.Response(404))) == (
        "Druva GET /usermanagement/v1/users/9: HTTP 404"
    )


def test_envelope_of_junk_is_empty() -> None:
    assert Envelope.of(httpx.Response(500, text="oops")) == Envelope()
    assert Envelope.of(httpx.Response(500, json=["not", "an", "object"])) == Envelope()


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert retry_after(httpx.Response(429, headers={"Retry-After": "7"})) == 7.0
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    assert 115 <= retry_after(httpx.Response(429, headers={"Retry-After": later})) <= 120  # type: ignore[operator]
    assert retry_after(httpx.Response(429, headers={"Retry-After": "soon"})) is None
    assert retry_after(httpx.Response(429)) is None
    throttled = error_for("GET /x", httpx.Response(429, headers={"Retry-After": "3"}))
    assert isinstance(throttled, TransientError)
    assert throttled.retry_after == 3.0
