"""Druva's refusals that only a human can lift, told apart from the rest of its error answers.

Druva documents a code only for a credential without the right (``InsyncAdmanagement-1221``); the
licence and privacy refusals are recognised by the words of the message, whatever the code (the codes
the simulator sends for them are its own).
"""

from __future__ import annotations

import httpx
import pytest

from provisioning.adapters.druva.envelope import AmbiguousOutcome, Throttled, error_for
from provisioning.errors import (
    REFUSAL_ADVICE,
    AuthError,
    ConflictError,
    DruvaRefused,
    InvalidRequestError,
    NotFoundError,
    ProvisioningError,
    RefusalKind,
    TransientError,
)

WRITE = "POST /usermanagement/v1/users/7/activate"
READ = "GET /usermanagement/v1/users"


def envelope(status: int, code: str, message: str, retryable: bool = False) -> httpx.Response:
    return httpx.Response(status, json={"code": code, "message": message, "retryable": retryable, "data": {}})


NO_LICENCE = "No active license is available for this user. The user remains preserved."
PRIVACY = (
    "inSync does not allow updating the profile because the privacy settings of the new profile "
    "conflict with those of the current profile."
)
READ_ONLY = envelope(403, "InsyncAdmanagement-1221", "Access restricted due to insufficient permissions.")
NO_WORKLOAD = envelope(403, "InsyncCappmaster-1221", "You do not have permission to access this workload.")
DENY = "User is not authorized to access this resource with an explicit deny"
TAKEN = envelope(422, "InsyncUsermanagement-1012", "User with the same email ID already exists.")


@pytest.mark.parametrize(
    ("response", "kind"),
    [
        # a credential that may read but not write
        (READ_ONLY, RefusalKind.PERMISSION),
        (NO_WORKLOAD, RefusalKind.PERMISSION),
        (httpx.Response(403), RefusalKind.PERMISSION),
        (httpx.Response(403, json={"Message": DENY}), RefusalKind.PERMISSION),
        # a 403 with another Druva code concerns its account, not every write
        (envelope(403, "InsyncUsermanagement-1099", "The user is on legal hold."), RefusalKind.OTHER),
        # no free licence, in either spelling and any case, under any code and status
        (envelope(422, "InsyncUsermanagement-1016", NO_LICENCE), RefusalKind.LICENCE),
        (envelope(400, "InsyncUsermanagement-1", "No active LICENCE is free"), RefusalKind.LICENCE),
        (envelope(422, "", "licenses exhausted for workload Endpoints"), RefusalKind.LICENCE),
        # a profile change across privacy settings
        (envelope(422, "InsyncUsermanagement-1018", PRIVACY), RefusalKind.PRIVACY),
        (envelope(400, "X-9", "Privacy Settings conflict"), RefusalKind.PRIVACY),
        # automatic import without KMS or BYOK: one typed refusal, its advice the one text doctor shows
        (envelope(400, "X-7", "Enable KMS before importing users"), RefusalKind.KEY_MANAGEMENT),
        (envelope(422, "", "BYOK is not configured for this customer"), RefusalKind.KEY_MANAGEMENT),
        (envelope(400, "", "Key management is disabled"), RefusalKind.KEY_MANAGEMENT),
    ],
)
def test_a_write_refused_until_a_human_acts_is_a_druva_refusal_of_its_kind(
    response: httpx.Response, kind: RefusalKind
) -> None:
    error = error_for(WRITE, response, write=True)
    assert isinstance(error, DruvaRefused)
    assert error.kind is kind
    assert error.status == response.status_code
    assert error.advice == REFUSAL_ADVICE[kind]


@pytest.mark.parametrize(
    ("response", "write", "error_type"),
    [
        # a token Druva will not take is still the run's problem, not this account's
        (envelope(403, "InsyncCappmaster-1009", "Auth session expired"), True, AuthError),
        (envelope(403, "InsyncCappmaster-9999", "Auth session expired"), True, AuthError),
        (envelope(401, "InsyncCappmaster-1002", "Invalid API credentials."), True, AuthError),
        # a read refused: nothing will work, whatever the role
        (READ_ONLY, False, AuthError),
        # words only count on writes
        (envelope(422, "InsyncUsermanagement-1016", NO_LICENCE), False, InvalidRequestError),
        # a code the simulator uses for a licence, without the words: not trusted
        (envelope(422, "InsyncUsermanagement-1016", "Something else went wrong."), True, InvalidRequestError),
        # every other refusal keeps its type
        (TAKEN, True, InvalidRequestError),
        (envelope(400, "InsyncCappmaster-1001", "Invalid API syntax."), True, InvalidRequestError),
        (envelope(404, "InsyncUsermanagement-1004", "User 7 not found."), True, NotFoundError),
        (envelope(409, "X-1", "license conflict"), True, ConflictError),
        (envelope(422, "X-2", "license server busy", retryable=True), True, TransientError),
        (httpx.Response(429), True, Throttled),
        (
            envelope(500, "InsyncEndpoints-1006", "license service down", retryable=True),
            True,
            AmbiguousOutcome,
        ),
    ],
)
def test_other_answers_keep_their_types(
    response: httpx.Response, write: bool, error_type: type[ProvisioningError]
) -> None:
    error = error_for(WRITE if write else READ, response, write=write)
    assert type(error) is error_type


def test_a_refusal_names_the_call_and_keeps_druvas_code_and_words() -> None:
    error = error_for(WRITE, envelope(422, "InsyncUsermanagement-1016", NO_LICENCE), write=True)
    assert str(error) == f"Druva {WRITE}: HTTP 422 InsyncUsermanagement-1016 {NO_LICENCE}"
    assert isinstance(error, DruvaRefused)
    assert (error.code, error.status) == ("InsyncUsermanagement-1016", 422)


def test_the_gateways_own_message_is_read_too() -> None:
    deny = httpx.Response(
        403, json={"Message": "User is not authorized to access this resource with an explicit deny"}
    )
    assert "explicit deny" in str(error_for(READ, deny))


def test_reads_are_the_default() -> None:
    assert type(error_for(READ, READ_ONLY)) is AuthError
