"""The Druva simulator on the production profile, over raw HTTP: what it refuses, it refuses as Druva
does (a stand-in is only as good as what it refuses). The kind profile, the default, refuses none of it.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from simulators.druva import EXPLICIT_DENY, DruvaSimulator, main
from simulators.realism import KIND, PRODUCTION, DruvaRealism
from simulators.running import SimulatorProcess, SimulatorThread

from .conftest import CREDENTIALS, SEED, bearer

USERS = "/insync/usermanagement/v1/users"
NO_LICENCE = {
    "code": "InsyncUsermanagement-1016",
    "message": "No active license is available for this user.",
    "retryable": False,
    "data": {},
}
READ_ONLY_REFUSAL = {
    "code": "InsyncAdmanagement-1221",
    "message": "Access restricted due to insufficient permissions.",
    "retryable": False,
    "data": {},
}


def new_user(email: str) -> dict[str, Any]:
    return {"userName": email.partition("@")[0], "emailID": email, "profileID": 1, "storageID": 10}


def emails(answer: httpx.Response) -> list[str]:
    assert answer.status_code == 200, answer.text
    return [user["emailID"] for user in answer.json()["users"]]


# The conftest catalog and a profile with privacy settings enabled.
PRIVATE = {"profiles": [*SEED["profiles"], {"id": 4, "name": "Private", "privacy": True}]}


@pytest.fixture
def production() -> DruvaSimulator:
    return DruvaSimulator(SEED | PRIVATE, realism=PRODUCTION.druva)


@contextmanager
def speaking_to(simulator: DruvaSimulator) -> Iterator[httpx.Client]:
    """Raw HTTP to the simulator, already holding a token of the default credential."""
    with simulator.serve() as running, httpx.Client(base_url=running.url) as client:
        client.headers.update(bearer(client))
        yield client


@pytest.fixture
def live(production: DruvaSimulator) -> Iterator[httpx.Client]:
    with speaking_to(production) as client:
        yield client


# ---- licences ------------------------------------------------------------------------------------------


def test_a_create_beyond_the_seeded_licences_is_refused_and_creates_nobody() -> None:
    simulator = DruvaSimulator(SEED | {"settings": {"licences": 2}}, realism=PRODUCTION.druva)
    with speaking_to(simulator) as live:
        assert live.post(USERS, json=new_user("ann@contoso.com")).status_code == 200
        assert live.post(USERS, json=new_user("bob@contoso.com")).status_code == 200
        refused = live.post(USERS, json=new_user("cy@contoso.com"))
        assert (refused.status_code, refused.json()) == (422, NO_LICENCE)
        assert simulator.user_by_email("cy@contoso.com") is None
        # Preserving a user frees their active licence.
        ann_id = simulator.user_by_email("ann@contoso.com")["userID"]  # type: ignore[index]
        assert live.post(f"{USERS}/{ann_id}/preserve").status_code == 200
        assert live.post(USERS, json=new_user("cy@contoso.com")).status_code == 200


def test_an_activation_beyond_the_licences_leaves_the_user_preserved(
    production: DruvaSimulator, live: httpx.Client
) -> None:
    gone = production.add_user("gone@contoso.com", profile="Standard", storage="US-East", status="preserved")
    production.add_user("ann@contoso.com", profile="Standard", storage="US-East")
    production.set_licences(1)  # Ann holds the only one
    refused = live.post(f"{USERS}/{gone['userID']}/activate")
    assert refused.status_code == 422
    assert refused.json() == NO_LICENCE | {
        "message": "No active license is available for this user. The user remains preserved."
    }
    assert live.get(f"{USERS}/{gone['userID']}").json()["status"] == "preserved"
    production.set_licences(None)
    assert live.post(f"{USERS}/{gone['userID']}/activate").status_code == 200
    assert live.get(f"{USERS}/{gone['userID']}").json()["status"] == "active"


def test_activating_an_active_user_needs_no_licence(production: DruvaSimulator, live: httpx.Client) -> None:
    ann = production.add_user("ann@contoso.com", profile="Standard", storage="US-East")
    production.set_licences(1)
    assert live.post(f"{USERS}/{ann['userID']}/activate").status_code == 200


def test_the_kind_profile_counts_no_licences() -> None:
    simulator = DruvaSimulator(SEED | {"settings": {"licences": 0}})
    assert simulator.realism == KIND.druva
    with speaking_to(simulator) as client:
        assert client.post(USERS, json=new_user("ann@contoso.com")).status_code == 200


def test_licences_cannot_be_negative(production: DruvaSimulator) -> None:
    with pytest.raises(ValueError, match="at least 0"):
        production.set_licences(-1)


# ---- privacy settings ----------------------------------------------------------------------------------


def test_the_user_view_shows_the_privacy_of_the_users_profile(
    production: DruvaSimulator, live: httpx.Client
) -> None:
    production.add_user("ann@contoso.com", profile="Private", storage="US-East")
    production.add_user("bob@contoso.com", profile="Standard", storage="US-East")
    users = live.get(USERS).json()["users"]
    assert [(u["emailID"], u["privacySettingsEnabled"]) for u in users] == [
        ("ann@contoso.com", "true"),
        ("bob@contoso.com", "false"),
    ]


@pytest.mark.parametrize(("start", "to"), [("Standard", 4), ("Private", 1)])
def test_a_profile_change_across_privacy_settings_is_refused_and_changes_nothing(
    production: DruvaSimulator, live: httpx.Client, start: str, to: int
) -> None:
    ann = production.add_user("ann@contoso.com", profile=start, storage="US-East", name="Ann")
    refused = live.patch(
        f"{USERS}/{ann['userID']}", json={"profileID": to, "userName": "Ann B", "storageID": 11}
    )
    assert refused.status_code == 422
    error = refused.json()
    assert (error["code"], error["retryable"], error["data"]) == ("InsyncUsermanagement-1018", False, {})
    assert "does not allow updating the profile" in error["message"]
    assert "privacy settings" in error["message"]
    assert "allow admin access in the inSync client" in error["message"]
    after = live.get(f"{USERS}/{ann['userID']}").json()
    assert (after["userName"], after["profileID"], after["storageID"]) == ("Ann", ann["profileID"], 10)


def test_a_user_who_allowed_admin_access_can_change_profile(
    production: DruvaSimulator, live: httpx.Client
) -> None:
    ann = production.add_user("ann@contoso.com", profile="Standard", storage="US-East")
    production.allow_admin_access("ANN@contoso.com")
    answer = live.patch(f"{USERS}/{ann['userID']}", json={"profileID": 4})
    assert (answer.status_code, answer.json()["privacySettingsEnabled"]) == (200, "true")


def test_admin_access_can_be_seeded(live: httpx.Client) -> None:
    ann = {"email": "ann@contoso.com", "profile": "Standard", "storage": "US-East", "id": 50}
    assert live.post("/_admin/seed", json={"users": [ann | {"adminAccessAllowed": True}]}).is_success
    assert live.patch(f"{USERS}/50", json={"profileID": 4}).status_code == 200


def test_a_change_between_profiles_of_the_same_privacy_goes_through(
    production: DruvaSimulator, live: httpx.Client
) -> None:
    ann = production.add_user("ann@contoso.com", profile="Standard", storage="US-East")
    assert live.patch(f"{USERS}/{ann['userID']}", json={"profileID": 2}).status_code == 200


def test_the_kind_profile_lets_any_profile_change_through() -> None:
    simulator = DruvaSimulator(SEED | PRIVATE)
    ann = simulator.add_user("ann@contoso.com", profile="Standard", storage="US-East")
    with speaking_to(simulator) as client:
        assert client.patch(f"{USERS}/{ann['userID']}", json={"profileID": 4}).status_code == 200


# ---- read-only credentials -----------------------------------------------------------------------------


def token_for(client: httpx.Client, client_id: str, secret: str) -> dict[str, str]:
    answer = client.post("/token", auth=(client_id, secret), data={"grant_type": "client_credentials"})
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def every_write(client: httpx.Client, user_id: int, headers: dict[str, str]) -> list[httpx.Response]:
    return [
        client.post(USERS, json=new_user("new@contoso.com"), headers=headers),
        client.patch(f"{USERS}/{user_id}", json={"userName": "Changed"}, headers=headers),
        client.post(f"{USERS}/{user_id}/preserve", headers=headers),
        client.post(f"{USERS}/{user_id}/activate", headers=headers),
        client.request("DELETE", f"{USERS}/{user_id}", headers=headers),
    ]


def test_a_read_only_credential_reads_but_every_write_is_403(production: DruvaSimulator) -> None:
    production.add_credentials("auditor", "auditor-secret", read_only=True)
    ann = production.add_user("ann@contoso.com", profile="Standard", storage="US-East", name="Ann")
    with production.serve() as running, httpx.Client(base_url=running.url) as client:
        reader = token_for(client, "auditor", "auditor-secret")
        assert emails(client.get(USERS, headers=reader)) == ["ann@contoso.com"]
        assert client.get(f"{USERS}/{ann['userID']}", headers=reader).status_code == 200
        for refused in every_write(client, ann["userID"], reader):
            assert (refused.status_code, refused.json()) == (403, READ_ONLY_REFUSAL)
        # The default credential still writes: the role belongs to the credential, not the tenant.
        writer = token_for(client, *CREDENTIALS)
        assert client.patch(f"{USERS}/{ann['userID']}", json={"userName": "Ann B"}, headers=writer).is_success
    assert [u["emailID"] for u in production.users()] == ["ann@contoso.com"]


def test_read_only_is_not_the_expired_session(production: DruvaSimulator) -> None:
    production.add_credentials("auditor", "auditor-secret", read_only=True)
    with production.serve() as running, httpx.Client(base_url=running.url) as client:
        reader = token_for(client, "auditor", "auditor-secret")
        production.expire_tokens()
        expired = client.post(USERS, json=new_user("new@contoso.com"), headers=reader)
    assert expired.status_code == 403
    assert expired.json()["code"] == "InsyncCappmaster-1009"  # the token first, then its role


@pytest.mark.parametrize(
    "credentials",
    [
        [{"client_id": "auditor", "client_secret": "auditor-secret", "read_only": True}],
        {"client_id": "auditor", "client_secret": "auditor-secret", "read_only": True},
    ],
)
def test_read_only_credentials_can_be_seeded(credentials: object) -> None:
    simulator = DruvaSimulator(SEED | {"credentials": credentials})
    with simulator.serve() as running, httpx.Client(base_url=running.url) as client:
        reader = token_for(client, "auditor", "auditor-secret")
        assert client.get(USERS, headers=reader).status_code == 200
        refused = client.post(USERS, json=new_user("new@contoso.com"), headers=reader)
    assert (refused.status_code, refused.json()) == (403, READ_ONLY_REFUSAL)


# ---- e-mail matching -----------------------------------------------------------------------------------


def test_email_id_matches_exactly_as_stored_and_prefix_search_ignores_case(
    production: DruvaSimulator, live: httpx.Client
) -> None:
    production.add_user("Ann.Lee@Contoso.com", profile="Standard", storage="US-East")
    production.add_user("ann.lee@contoso.com.au", profile="Standard", storage="US-East")
    assert emails(live.get(USERS, params={"emailID": "ann.lee@contoso.com"})) == []
    assert emails(live.get(USERS, params={"emailID": "Ann.Lee@Contoso.com"})) == ["Ann.Lee@Contoso.com"]
    assert emails(live.get(USERS, params={"searchPrefixEmailID": "ANN.LEE@contoso.com"})) == [
        "Ann.Lee@Contoso.com",
        "ann.lee@contoso.com.au",
    ]


def test_a_create_is_still_refused_for_an_email_taken_in_another_case(
    production: DruvaSimulator, live: httpx.Client
) -> None:
    production.add_user("Ann@Contoso.com", profile="Standard", storage="US-East")
    refused = live.post(USERS, json=new_user("ann@contoso.com"))
    assert (refused.status_code, refused.json()["code"]) == (422, "InsyncUsermanagement-1012")


def test_a_pair_differing_only_in_case_can_be_seeded_and_each_is_found_as_stored(
    production: DruvaSimulator, live: httpx.Client
) -> None:
    production.add_user("ann@contoso.com", profile="Standard", storage="US-East")
    production.add_user("Ann@Contoso.com", profile="Standard", storage="US-East", allow_case_duplicate=True)
    assert emails(live.get(USERS, params={"emailID": "ann@contoso.com"})) == ["ann@contoso.com"]
    assert emails(live.get(USERS, params={"emailID": "Ann@Contoso.com"})) == ["Ann@Contoso.com"]
    assert emails(live.get(USERS, params={"searchPrefixEmailID": "ann@"})) == [
        "ann@contoso.com",
        "Ann@Contoso.com",
    ]
    with pytest.raises(ValueError, match="already exists"):  # the same spelling twice, never
        production.add_user(
            "ann@contoso.com", profile="Standard", storage="US-East", allow_case_duplicate=True
        )
    with pytest.raises(ValueError, match="already exists"):  # nor a case pair unless asked for
        production.add_user("ANN@contoso.com", profile="Standard", storage="US-East")


def test_the_kind_profile_matches_email_id_ignoring_case_pair_included(api: httpx.Client) -> None:
    # ``api`` is the kind simulator of conftest; its users are added over the admin seed.
    api.post(
        "/_admin/seed",
        json={
            "users": [
                {"email": "ann@contoso.com", "profile": "Standard", "storage": "US-East"},
                {
                    "email": "ANN@contoso.com",
                    "profile": "Standard",
                    "storage": "US-East",
                    "allowCaseDuplicate": True,
                },
            ]
        },
    )
    assert emails(api.get(USERS, params={"emailID": "Ann@Contoso.COM"})) == [
        "ann@contoso.com",
        "ANN@contoso.com",
    ]


def test_deleting_one_of_a_case_pair_keeps_the_other(production: DruvaSimulator, live: httpx.Client) -> None:
    first = production.add_user("ann@contoso.com", profile="Standard", storage="US-East")
    production.add_user("Ann@Contoso.com", profile="Standard", storage="US-East", allow_case_duplicate=True)
    assert live.request("DELETE", f"{USERS}/{first['userID']}").status_code == 200
    assert emails(live.get(USERS, params={"searchPrefixEmailID": "ann@contoso.com"})) == ["Ann@Contoso.com"]


# ---- GovCloud header names -----------------------------------------------------------------------------


def raw_request(
    url: str, method: str, path: str, headers: list[tuple[str, str]], body: bytes = b""
) -> tuple[int, bytes]:
    """A request whose header names go out exactly as written (http.client does not touch them)."""
    split = urlsplit(url)
    connection = http.client.HTTPConnection(split.hostname or "", split.port)
    try:
        connection.putrequest(method, path)
        for name, value in [*headers, ("Content-Length", str(len(body)))]:
            connection.putheader(name, value)
        connection.endheaders(body)
        answer = connection.getresponse()
        return answer.status, answer.read()
    finally:
        connection.close()


BASIC = "Basic c2ltLWNsaWVudDpzaW0tc2VjcmV0"  # sim-client:sim-secret
FORM = [("Content-Type", "application/x-www-form-urlencoded")]
GRANT = b"grant_type=client_credentials"


@pytest.fixture
def govcloud() -> Iterator[SimulatorThread]:
    with DruvaSimulator(SEED, govcloud=True).serve() as running:
        yield running


@pytest.mark.parametrize(
    "names",
    [
        ("accept", "Authorization"),
        ("Accept", "authorization"),
        ("ACCEPT", "Authorization"),
        ("Accept", "AUTHORIZATION"),
    ],
)
def test_govcloud_refuses_accept_or_authorization_spelt_otherwise(
    govcloud: SimulatorThread, names: tuple[str, str]
) -> None:
    accept, authorization = names
    headers = [(accept, "application/json"), (authorization, BASIC), *FORM]
    status, body = raw_request(govcloud.url, "POST", "/token", headers, GRANT)
    assert (status, httpx.Response(status, content=body).json()) == (403, {"Message": EXPLICIT_DENY})
    headers = [(accept, "application/json"), (authorization, "Bearer whatever")]
    status, body = raw_request(govcloud.url, "GET", USERS, headers)
    assert (status, httpx.Response(status, content=body).json()) == (403, {"Message": EXPLICIT_DENY})


def test_govcloud_answers_names_spelt_as_it_asks(govcloud: SimulatorThread) -> None:
    headers = [("Accept", "application/json"), ("Authorization", BASIC), ("content-type", FORM[0][1])]
    status, body = raw_request(govcloud.url, "POST", "/token", headers, GRANT)
    assert status == 200  # only Accept and Authorization are checked
    token = httpx.Response(status, content=body).json()["access_token"]
    headers = [("Accept", "application/json"), ("Authorization", f"Bearer {token}")]
    assert raw_request(govcloud.url, "GET", USERS, headers)[0] == 200


def test_outside_govcloud_header_names_are_case_insensitive(server: SimulatorThread) -> None:
    headers = [("accept", "application/json"), ("authorization", BASIC), ("content-type", FORM[0][1])]
    assert raw_request(server.url, "POST", "/token", headers, GRANT)[0] == 200


def test_the_profiles_switch_the_behaviours_together() -> None:
    assert PRODUCTION.druva == DruvaRealism(
        email_case_sensitive=True, enforce_licences=True, enforce_privacy=True
    )
    assert DruvaSimulator().realism == DruvaRealism()


# ---- from the command line -----------------------------------------------------------------------------


def test_the_command_line_serves_the_production_profile_in_govcloud(tmp_path: Path) -> None:
    seed_file = tmp_path / "seed.json"
    seed_file.write_text(json.dumps(SEED | {"settings": {"licences": 0}}))
    process = SimulatorProcess.start(
        "druva", "--seed", str(seed_file), "--realism", "production", "--govcloud"
    )
    try:
        lower = [("accept", "application/json"), ("Authorization", BASIC), *FORM]
        assert raw_request(process.url, "POST", "/token", lower, GRANT)[0] == 403
        with httpx.Client(base_url=process.url, headers={"Accept": "application/json"}) as client:
            client.headers.update(bearer(client))
            refused = client.post(USERS, json=new_user("ann@contoso.com"))
    finally:
        assert process.stop() == 0
    assert (refused.status_code, refused.json()) == (422, NO_LICENCE)


def test_the_command_line_refuses_an_unknown_profile(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--realism", "harsh"])
    assert "invalid choice: 'harsh'" in capsys.readouterr().err
