"""The Druva simulator spoken to over raw HTTP: every other Druva test trusts that it behaves like Druva."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from simulators.druva import QUOTA_MESSAGE, DruvaSimulator
from simulators.running import SimulatorThread

from .conftest import SEED, bearer

USERS = "/insync/usermanagement/v1/users"


def new_user(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "userName": "Ann Lee",
        "emailID": "ann@contoso.com",
        "profileID": 1,
        "storageID": 10,
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# ---- token ---------------------------------------------------------------------------------------------


def test_token_is_issued_for_basic_client_credentials(server: SimulatorThread) -> None:
    with httpx.Client(base_url=server.url) as client:
        answer = client.post(
            "/token",
            auth=("sim-client", "sim-secret"),
            data={"grant_type": "client_credentials", "scope": "read"},
        )
    assert answer.status_code == 200
    body = answer.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 1800
    assert body["access_token"]


@pytest.mark.parametrize(
    ("auth", "form", "status"),
    [
        (("sim-client", "wrong"), {"grant_type": "client_credentials"}, 401),
        (("someone", "sim-secret"), {"grant_type": "client_credentials"}, 401),
        (None, {"grant_type": "client_credentials"}, 401),
        (("sim-client", "sim-secret"), {"grant_type": "password"}, 400),
        (("sim-client", "sim-secret"), {}, 400),
    ],
)
def test_token_refuses_bad_credentials_and_grants(
    server: SimulatorThread, auth: Any, form: dict[str, str], status: int
) -> None:
    with httpx.Client(base_url=server.url) as client:
        answer = client.post("/token", auth=auth, data=form)
    assert answer.status_code == status
    assert "access_token" not in answer.json()


def test_api_without_token_is_401_and_unknown_token_is_session_expired(server: SimulatorThread) -> None:
    with httpx.Client(base_url=server.url) as client:
        assert client.get(USERS).status_code == 401
        answer = client.get(USERS, headers={"Authorization": "Bearer made-up"})
    assert answer.status_code == 403
    assert answer.json() == {
        "code": "InsyncCappmaster-1009",
        "message": "Auth session expired",
        "retryable": False,
        "data": {},
    }


def test_token_expires_after_its_lifetime() -> None:
    clock = FakeClock()
    simulator = DruvaSimulator(SEED, token_lifetime=60, clock=clock)
    with simulator.serve() as server, httpx.Client(base_url=server.url) as client:
        headers = bearer(client)
        clock.now += 59
        assert client.get(USERS, headers=headers).status_code == 200
        clock.now += 1
        expired = client.get(USERS, headers=headers)
    assert expired.status_code == 403
    assert expired.json()["code"] == "InsyncCappmaster-1009"


def test_expire_tokens_ends_every_session(simulator: DruvaSimulator, api: httpx.Client) -> None:
    assert api.get(USERS).status_code == 200
    simulator.expire_tokens()
    assert api.get(USERS).status_code == 403


# ---- create --------------------------------------------------------------------------------------------


def test_create_returns_the_user_with_quota_as_text_and_bytes(
    simulator: DruvaSimulator, api: httpx.Client
) -> None:
    answer = api.post(USERS, json=new_user(quota=10, quotaUnit="GB"))
    assert answer.status_code == 200
    user = answer.json()
    assert user["emailID"] == "ann@contoso.com"
    assert (user["profileID"], user["storageID"], user["status"]) == (1, 10, "active")
    assert (user["quota"], user["quotaInBytes"]) == ("10 GB", 10 * 1024**3)
    assert "cacheID" not in user  # a UserCreate, not a User
    assert simulator.user_by_email("ANN@contoso.com")["passwordMailed"] is True  # type: ignore[index]


def test_create_without_quota_takes_the_profile_default(api: httpx.Client) -> None:
    user = api.post(USERS, json=new_user(profileID=2)).json()
    assert (user["quota"], user["quotaInBytes"]) == ("200 GB", 200 * 1024**3)


def test_quota_zero_is_unlimited_and_password_mail_can_be_off(
    simulator: DruvaSimulator, api: httpx.Client
) -> None:
    user = api.post(USERS, json=new_user(quota=0, quotaUnit="TB", sendPasswordByEmail=False)).json()
    assert user["quotaInBytes"] == 0
    assert simulator.user_by_email("ann@contoso.com")["passwordMailed"] is False  # type: ignore[index]


@pytest.mark.parametrize(
    ("body", "status", "message_part"),
    [
        (new_user(userName=None), 400, "userName"),
        (new_user(userName="  "), 400, "userName"),
        (new_user(emailID=None), 400, "emailID"),
        (new_user(emailID="not-an-address"), 400, "emailID"),
        (new_user(profileID=None), 400, "profileID"),
        (new_user(storageID=None), 400, "storageID"),
        (new_user(profileID="1"), 400, "profileID"),
        (new_user(quota=1024, quotaUnit="GB"), 400, QUOTA_MESSAGE),
        (new_user(quota=-1, quotaUnit="GB"), 400, QUOTA_MESSAGE),
        (new_user(quota="10", quotaUnit="GB"), 400, QUOTA_MESSAGE),
        (new_user(quota=10), 400, "quotaUnit"),
        (new_user(quota=10, quotaUnit="PB"), 400, "quotaUnit"),
        (new_user(quotaUnit="GB"), 400, QUOTA_MESSAGE),
        (new_user(sendPasswordByEmail="no"), 400, "sendPasswordByEmail"),
        (new_user(profileID=99), 422, "Profile 99"),
        (new_user(storageID=99), 422, "Storage 99"),
    ],
)
def test_create_validates_like_druva(
    simulator: DruvaSimulator, api: httpx.Client, body: dict[str, Any], status: int, message_part: str
) -> None:
    answer = api.post(USERS, json=body)
    assert answer.status_code == status
    error = answer.json()
    assert message_part in error["message"]
    assert error["retryable"] is False
    assert set(error) == {"code", "message", "retryable", "data"}
    assert simulator.users() == []


def test_create_refuses_a_body_that_is_not_a_json_object(api: httpx.Client) -> None:
    assert api.post(USERS, content=b"{nope", headers={"Content-Type": "application/json"}).status_code == 400
    assert api.post(USERS, json=["a list"]).status_code == 400


@pytest.mark.parametrize("second", ["ann@contoso.com", "ANN@Contoso.com", " Ann@contoso.COM"])
def test_duplicate_email_in_any_case_is_422_with_the_envelope(
    simulator: DruvaSimulator, api: httpx.Client, second: str
) -> None:
    assert api.post(USERS, json=new_user()).status_code == 200
    answer = api.post(USERS, json=new_user(emailID=second, userName="Other"))
    assert answer.status_code == 422
    assert answer.json() == {
        "code": "InsyncUsermanagement-1012",
        "message": "User with the same email ID already exists.",
        "retryable": False,
        "data": {},
    }
    assert len(simulator.users()) == 1


# ---- list, get ----------------------------------------------------------------------------------------


def seed_users(simulator: DruvaSimulator, count: int) -> None:
    for n in range(count):
        simulator.add_user(f"user{n}@contoso.com", profile="Standard", storage="US-East")


def test_list_pages_with_next_page_token_until_it_is_empty(
    simulator: DruvaSimulator, api: httpx.Client
) -> None:
    simulator.page_size = 2
    seed_users(simulator, 5)
    seen: list[str] = []
    params: dict[str, str] = {}
    pages = 0
    while True:
        page = api.get(USERS, params=params).json()
        pages += 1
        assert page["totalSize"] == 5
        seen += [user["emailID"] for user in page["users"]]
        if not page["nextPageToken"]:
            break
        params["pageToken"] = page["nextPageToken"]
    assert pages == 3
    assert seen == [f"user{n}@contoso.com" for n in range(5)]


def test_default_page_size_is_4097(simulator: DruvaSimulator, api: httpx.Client) -> None:
    seed_users(simulator, 4098)
    first = api.get(USERS).json()
    assert len(first["users"]) == 4097
    second = api.get(USERS, params={"pageToken": first["nextPageToken"]}).json()
    assert len(second["users"]) == 1
    assert second["nextPageToken"] == ""


def test_list_filters_by_email_in_any_case_and_by_status(
    simulator: DruvaSimulator, api: httpx.Client
) -> None:
    seed_users(simulator, 3)
    simulator.add_user("gone@contoso.com", profile="Standard", storage="US-East", status="preserved")
    by_email = api.get(USERS, params={"emailID": "USER1@contoso.com"}).json()
    assert [u["emailID"] for u in by_email["users"]] == ["user1@contoso.com"]
    preserved = api.get(USERS, params={"status": "preserved"}).json()
    assert [u["emailID"] for u in preserved["users"]] == ["gone@contoso.com"]
    assert api.get(USERS, params={"status": "active"}).json()["totalSize"] == 3
    assert api.get(USERS, params={"emailID": "nobody@contoso.com"}).json()["users"] == []


@pytest.mark.parametrize("params", [{"status": "deleted"}, {"pageToken": "not-a-token"}, {"profileID": "x"}])
def test_list_refuses_bad_parameters(api: httpx.Client, params: dict[str, str]) -> None:
    answer = api.get(USERS, params=params)
    assert answer.status_code == 400
    assert answer.json()["code"] == "InsyncCappmaster-1001"


def test_get_user_and_empty_404(simulator: DruvaSimulator, api: httpx.Client) -> None:
    created = simulator.add_user("ann@contoso.com", profile="Finance", storage="EU-West", name="Ann")
    user = api.get(f"{USERS}/{created['userID']}").json()
    assert (user["userName"], user["profileID"], user["storageID"], user["cacheID"]) == ("Ann", 2, 11, 0)
    assert user["privacySettingsEnabled"] == "false"
    missing = api.get(f"{USERS}/999999")
    assert missing.status_code == 404
    assert missing.content == b""


# ---- patch, preserve, activate, delete -----------------------------------------------------------------


def test_patch_changes_name_profile_and_storage(simulator: DruvaSimulator, api: httpx.Client) -> None:
    user_id = simulator.add_user("ann@contoso.com", profile="Standard", storage="US-East")["userID"]
    answer = api.patch(f"{USERS}/{user_id}", json={"userName": "Ann B", "profileID": 2, "storageID": 11})
    assert answer.status_code == 200
    assert (answer.json()["userName"], answer.json()["profileID"], answer.json()["storageID"]) == (
        "Ann B",
        2,
        11,
    )
    assert simulator.user_by_email("ann@contoso.com")["profileID"] == 2  # type: ignore[index]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"emailID": "new@contoso.com"}, 400),
        ({"quota": 5, "quotaUnit": "GB"}, 400),
        ({}, 400),
        ({"userName": ""}, 400),
        ({"profileID": 99}, 422),
        ({"storageID": 99}, 422),
    ],
)
def test_patch_refuses_what_druva_refuses(
    simulator: DruvaSimulator, api: httpx.Client, body: dict[str, Any], status: int
) -> None:
    user_id = simulator.add_user("ann@contoso.com", profile="Standard", storage="US-East")["userID"]
    assert api.patch(f"{USERS}/{user_id}", json=body).status_code == status
    unchanged = simulator.user_by_email("ann@contoso.com")
    assert unchanged is not None
    assert (unchanged["emailID"], unchanged["profileID"], unchanged["storageID"]) == (
        "ann@contoso.com",
        1,
        10,
    )


def test_unknown_user_is_404_with_the_envelope_on_writes(api: httpx.Client) -> None:
    for answer in (
        api.patch(f"{USERS}/424242", json={"userName": "X"}),
        api.post(f"{USERS}/424242/preserve"),
        api.post(f"{USERS}/424242/activate"),
        api.delete(f"{USERS}/424242"),
    ):
        assert answer.status_code == 404
        assert answer.json()["code"] == "InsyncUsermanagement-1004"


def test_preserve_then_activate(simulator: DruvaSimulator, api: httpx.Client) -> None:
    user_id = simulator.add_user("ann@contoso.com", profile="Standard", storage="US-East")["userID"]
    assert api.post(f"{USERS}/{user_id}/preserve").json() == {}
    assert api.post(f"{USERS}/{user_id}/preserve").status_code == 200
    assert api.get(f"{USERS}/{user_id}").json()["status"] == "preserved"
    assert api.post(f"{USERS}/{user_id}/activate").status_code == 200
    assert api.get(f"{USERS}/{user_id}").json()["status"] == "active"


def test_delete_checks_the_reason_length(simulator: DruvaSimulator, api: httpx.Client) -> None:
    user_id = simulator.add_user("ann@contoso.com", profile="Standard", storage="US-East")["userID"]
    assert api.request("DELETE", f"{USERS}/{user_id}", json={"deletionReason": "short"}).status_code == 400
    assert (
        api.request("DELETE", f"{USERS}/{user_id}", json={"deletionReason": "left the company"}).json() == {}
    )
    assert api.get(f"{USERS}/{user_id}").status_code == 404
    assert simulator.users() == []


# ---- catalog -------------------------------------------------------------------------------------------


def test_profiles_and_storages_spelled_as_druva_spells_them(api: httpx.Client) -> None:
    profiles = api.get("/insync/profilemanagement/v1/profiles").json()
    assert [(p["profileID"], p["profileName"]) for p in profiles["profiles"]] == [
        (1, "Standard"),
        (2, "Finance"),
        (3, "Mailboxes"),
    ]
    storages = api.get("/insync/storagemanagement/v1/storages").json()
    assert [(s["StorageID"], s["storageName"]) for s in storages["storages"]] == [
        (10, "US-East"),
        (11, "EU-West"),
    ]
    assert storages["nextPageToken"] == ""
    assert api.get("/insync/storagemanagement/v1/storages/11").json()["storageName"] == "EU-West"
    assert api.get("/insync/profilemanagement/v1/profiles/2").json()["profileName"] == "Finance"
    assert api.get("/insync/profilemanagement/v1/profiles/9").status_code == 404


def test_catalog_lists_page_too(simulator: DruvaSimulator, api: httpx.Client) -> None:
    simulator.page_size = 2
    first = api.get("/insync/profilemanagement/v1/profiles").json()
    assert len(first["profiles"]) == 2
    rest = api.get(
        "/insync/profilemanagement/v1/profiles", params={"pageToken": first["nextPageToken"]}
    ).json()
    assert [p["profileName"] for p in rest["profiles"]] == ["Mailboxes"]


# ---- faults --------------------------------------------------------------------------------------------


def test_throttling_is_429_without_retry_after(simulator: DruvaSimulator, api: httpx.Client) -> None:
    simulator.set_faults(throttle_rate=1.0)
    answer = api.get(USERS)
    assert answer.status_code == 429
    assert "retry-after" not in answer.headers
    assert answer.json()["code"] == "InsyncCappmaster-1429"
    simulator.set_faults(throttle_rate=1.0, retry_after_seconds=3)
    assert api.get(USERS).headers["retry-after"] == "3"


def test_server_errors_are_retryable_and_apply_nothing(simulator: DruvaSimulator, api: httpx.Client) -> None:
    simulator.set_faults(error_rate=1.0)
    answer = api.post(USERS, json=new_user())
    assert answer.status_code == 500
    assert answer.json()["retryable"] is True
    assert simulator.users() == []


def test_lost_response_creates_the_user_but_answers_nothing(
    simulator: DruvaSimulator, api: httpx.Client
) -> None:
    simulator.set_faults(lost_response_rate=1.0)
    with pytest.raises(httpx.TransportError):
        api.post(USERS, json=new_user())
    assert [u["emailID"] for u in simulator.users()] == ["ann@contoso.com"]
    refused = api.post(USERS, json=new_user())  # a refused create answers normally
    assert refused.status_code == 422


def test_latency_is_added_to_api_calls(simulator: DruvaSimulator, api: httpx.Client) -> None:
    simulator.set_faults(latency_seconds=0.05)
    assert api.get(USERS).elapsed.total_seconds() >= 0.05


def test_fault_draws_are_reproducible_from_the_random_seed() -> None:
    def statuses() -> list[int]:
        simulator = DruvaSimulator(SEED, random_seed=7)
        simulator.set_faults(throttle_rate=0.3, error_rate=0.3)
        with simulator.serve() as server, httpx.Client(base_url=server.url) as client:
            client.headers.update(bearer(client))
            return [client.get(USERS).status_code for _ in range(30)]

    first = statuses()
    assert first == statuses()
    assert {200, 429, 500} <= set(first)


def test_requests_are_counted_per_endpoint(simulator: DruvaSimulator, api: httpx.Client) -> None:
    user_id = api.post(USERS, json=new_user()).json()["userID"]
    api.get(USERS)
    api.get(f"{USERS}/{user_id}")
    api.post(f"{USERS}/{user_id}/preserve")
    assert simulator.counts == {
        "token": 1,
        "create user": 1,
        "list users": 1,
        "get user": 1,
        "preserve user": 1,
    }
    assert simulator.api_requests() == 5


# ---- seed and admin API --------------------------------------------------------------------------------


def test_seed_users_reference_the_catalog_by_name() -> None:
    seed = SEED | {
        "users": [
            {
                "email": "ann@contoso.com",
                "name": "Ann",
                "profile": "Finance",
                "storage": "EU-West",
                "id": 500,
            },
            {"email": "bob@contoso.com", "profile": "Standard", "storage": "US-East", "status": "preserved"},
        ]
    }
    simulator = DruvaSimulator(seed)
    ann, bob = simulator.users()
    assert (ann["userID"], ann["profileID"], ann["storageID"], ann["quota"]) == (500, 2, 11, "200 GB")
    assert (bob["userID"], bob["status"], bob["userName"]) == (501, "preserved", "bob")


def test_admin_api_drives_a_simulator_from_outside(
    simulator: DruvaSimulator, server: SimulatorThread
) -> None:
    with httpx.Client(base_url=server.url) as admin:
        seeded = admin.post(
            "/_admin/seed",
            json={
                "settings": {"page_size": 1},
                "users": [{"email": "ann@contoso.com", "profile": "Standard", "storage": "US-East"}],
            },
        )
        assert [u["emailID"] for u in seeded.json()["users"]] == ["ann@contoso.com"]
        assert simulator.page_size == 1
        assert admin.post("/_admin/faults", json={"throttle_rate": 1.0}).json()["throttle_rate"] == 1.0
        assert admin.get("/_admin/faults").json()["throttle_rate"] == 1.0
        assert admin.post("/_admin/faults", json={"nonsense": 1}).status_code == 400
        headers = bearer(admin)
        assert admin.get(USERS, headers=headers).status_code == 429
        admin.post("/_admin/faults", json={})
        assert admin.get(USERS, headers=headers).status_code == 200
        admin.post("/_admin/expire-tokens")
        assert admin.get(USERS, headers=headers).status_code == 403
        counts = admin.get("/_admin/counts").json()
        assert (counts["list users"], counts["token"]) == (3, 1)
        admin.post("/_admin/counts/reset")
        assert admin.get("/_admin/counts").json() == {"admin counts": 1}
        state = admin.post("/_admin/reset", json={"profiles": ["Only"]}).json()
        assert state == {
            "profiles": [{"profileID": 1, "profileName": "Only", "profileDescription": ""}],
            "storages": [],
            "users": [],
        }
        assert admin.post("/_admin/seed", json={"users": [{"email": "x@y.z"}]}).status_code == 400


def test_a_deleted_users_email_can_be_used_again(simulator: DruvaSimulator, api: httpx.Client) -> None:
    user_id = api.post(USERS, json=new_user()).json()["userID"]
    assert api.delete(f"{USERS}/{user_id}").status_code == 200
    assert api.get(USERS, params={"emailID": "ann@contoso.com"}).json()["users"] == []
    again = api.post(USERS, json=new_user(emailID="ANN@contoso.com"))
    assert again.status_code == 200
    assert api.get(USERS, params={"emailID": "ann@contoso.com"}).json()["users"] == [
        again.json() | {"cacheID": 0}
    ]


def test_seeding_the_same_email_twice_is_refused(simulator: DruvaSimulator) -> None:
    simulator.add_user("ann@contoso.com", profile="Standard", storage="US-East")
    with pytest.raises(ValueError, match="already exists"):
        simulator.add_user("Ann@Contoso.com", profile="Standard", storage="US-East")
