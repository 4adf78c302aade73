"""Every operation of the Druva client against the simulator, without faults."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from provisioning.adapters.druva import DruvaClient, DruvaOptions
from provisioning.bootstrap import open_druva
from provisioning.config import ConfigError
from provisioning.domain.druva import DruvaStatus, DruvaUser, NewDruvaUser
from provisioning.domain.quota import Quota
from provisioning.errors import AuthError, CatalogError, ConflictError, NotFoundError
from provisioning.ports import Druva
from provisioning.settings import Settings
from simulators.druva import DruvaSimulator
from simulators.running import SimulatorThread

from .conftest import CREDENTIALS, client_for, fast_retry

pytestmark = pytest.mark.anyio


def ann(**overrides: object) -> NewDruvaUser:
    fields: dict[str, object] = {"email": "ann@contoso.com", "user_name": "Ann Lee", "profile": "Standard"}
    fields |= {"storage": "US-East"} | overrides
    return NewDruvaUser(**fields)  # type: ignore[arg-type]


async def test_the_client_is_a_druva_port(druva: DruvaClient) -> None:
    port: Druva = druva
    assert port is druva


async def test_users_sweeps_every_page_with_names_not_ids(
    simulator: DruvaSimulator, druva: DruvaClient
) -> None:
    simulator.page_size = 3
    for n in range(7):
        simulator.add_user(f"u{n}@contoso.com", profile="Finance", storage="EU-West", name=f"User {n}")
    simulator.add_user("gone@contoso.com", profile="Standard", storage="US-East", status="preserved")
    users = [user async for user in druva.users()]
    assert [user.email for user in users] == [*(f"u{n}@contoso.com" for n in range(7)), "gone@contoso.com"]
    assert users[0] == DruvaUser(
        user_id=users[0].user_id,
        email="u0@contoso.com",
        user_name="User 0",
        status=DruvaStatus.ACTIVE,
        profile="Finance",
        storage="EU-West",
        quota_bytes=200 * 1024**3,
    )
    assert users[-1].status is DruvaStatus.PRESERVED
    assert simulator.counts["list users"] == 3


async def test_find_user_ignores_case_and_returns_none_when_absent(
    simulator: DruvaSimulator, druva: DruvaClient
) -> None:
    simulator.add_user("Ann.Lee@Contoso.com", profile="Standard", storage="US-East")
    found = await druva.find_user("ann.lee@contoso.COM")
    assert found is not None
    assert found.email == "Ann.Lee@Contoso.com"
    assert await druva.find_user("bob@contoso.com") is None


async def test_get_user_and_unknown_id(simulator: DruvaSimulator, druva: DruvaClient) -> None:
    user_id = simulator.add_user("ann@contoso.com", profile="Mailboxes", storage="EU-West")["userID"]
    user = await druva.get_user(user_id)
    assert user is not None
    assert (user.email, user.profile, user.storage) == ("ann@contoso.com", "Mailboxes", "EU-West")
    assert await druva.get_user(987654) is None  # Druva's 404 with an empty body


async def test_druva_provisioned_users_are_recognised(simulator: DruvaSimulator, druva: DruvaClient) -> None:
    simulator.add_user("ldap@contoso.com", profile="Standard", storage="US-East", ldap_guid="B1C47201C679")
    simulator.add_user("manual@contoso.com", profile="Standard", storage="US-East")
    by_email = {user.email: user async for user in druva.users()}
    assert by_email["ldap@contoso.com"].provisioned_by_druva
    assert by_email["ldap@contoso.com"].ldap_guid == "B1C47201C679"
    assert not by_email["manual@contoso.com"].provisioned_by_druva


async def test_create_sends_ids_quota_and_no_password_mail(
    simulator: DruvaSimulator, druva: DruvaClient
) -> None:
    created = await druva.create_user(ann(profile="Finance", storage="EU-West", quota=Quota.parse("2048 GB")))
    assert (created.email, created.user_name, created.status) == (
        "ann@contoso.com",
        "Ann Lee",
        DruvaStatus.ACTIVE,
    )
    assert (created.profile, created.storage, created.quota_bytes) == ("Finance", "EU-West", 2 * 1024**4)
    stored = simulator.user_by_email("ann@contoso.com")
    assert stored is not None
    assert (stored["profileID"], stored["storageID"], stored["quota"]) == (2, 11, "2 TB")
    assert stored["passwordMailed"] is False
    assert simulator.counts["create user"] == 1


async def test_create_without_quota_leaves_the_profile_default(
    simulator: DruvaSimulator, druva: DruvaClient
) -> None:
    created = await druva.create_user(ann(profile="Finance"))
    assert created.quota_bytes == 200 * 1024**3  # Finance's default: the client sent no quota


async def test_create_unlimited_sends_zero(druva: DruvaClient) -> None:
    created = await druva.create_user(ann(profile="Finance", quota=Quota.unlimited()))
    assert created.quota_bytes == 0


async def test_password_mail_can_be_switched_on(simulator: DruvaSimulator, server: SimulatorThread) -> None:
    async with client_for(server, send_password_by_email=True) as druva:
        await druva.create_user(ann())
    assert simulator.user_by_email("ann@contoso.com")["passwordMailed"] is True  # type: ignore[index]


@pytest.mark.parametrize("existing", ["ann@contoso.com", "ANN@CONTOSO.COM"])
async def test_create_of_a_taken_email_is_a_conflict(
    simulator: DruvaSimulator, druva: DruvaClient, existing: str
) -> None:
    simulator.add_user(existing, profile="Standard", storage="US-East")
    with pytest.raises(ConflictError, match="already has a user with e-mail"):
        await druva.create_user(ann())
    assert len(simulator.users()) == 1
    assert simulator.counts["create user"] == 1


async def test_unknown_profile_or_storage_lists_the_known_names(
    simulator: DruvaSimulator, druva: DruvaClient
) -> None:
    with pytest.raises(CatalogError) as profile_error:
        await druva.create_user(ann(profile="Gold"))
    assert profile_error.value.known == ["Standard", "Finance", "Mailboxes"]
    assert "known: Finance, Mailboxes, Standard" in str(profile_error.value)
    with pytest.raises(CatalogError, match=r"no storage named 'Mars' \(known: EU-West, US-East\)"):
        await druva.create_user(ann(storage="Mars"))
    assert simulator.counts["create user"] == 0


async def test_catalog_names_match_case_insensitively_when_unambiguous(druva: DruvaClient) -> None:
    created = await druva.create_user(ann(profile="finance", storage="eu-west"))
    assert (created.profile, created.storage) == ("Finance", "EU-West")


async def test_catalog_is_read_once_per_client(simulator: DruvaSimulator, druva: DruvaClient) -> None:
    assert await druva.profiles() == ["Standard", "Finance", "Mailboxes"]
    assert await druva.storages() == ["US-East", "EU-West"]
    await druva.create_user(ann())
    _ = [user async for user in druva.users()]
    assert (simulator.counts["list profiles"], simulator.counts["list storages"]) == (1, 1)


async def test_update_changes_name_profile_and_storage(simulator: DruvaSimulator, druva: DruvaClient) -> None:
    user_id = simulator.add_user("ann@contoso.com", profile="Standard", storage="US-East")["userID"]
    updated = await druva.update_user(user_id, user_name="Ann B", profile="Finance", storage="EU-West")
    assert (updated.user_name, updated.profile, updated.storage) == ("Ann B", "Finance", "EU-West")
    only_storage = await druva.update_user(user_id, storage="US-East")
    assert (only_storage.profile, only_storage.storage) == ("Finance", "US-East")
    assert simulator.counts["update user"] == 2


async def test_update_with_nothing_to_change_sends_no_patch(
    simulator: DruvaSimulator, druva: DruvaClient
) -> None:
    user_id = simulator.add_user("ann@contoso.com", profile="Standard", storage="US-East")["userID"]
    assert (await druva.update_user(user_id)).email == "ann@contoso.com"
    assert simulator.counts["update user"] == 0
    with pytest.raises(NotFoundError):
        await druva.update_user(987654)


async def test_update_of_unknown_user_or_storage(simulator: DruvaSimulator, druva: DruvaClient) -> None:
    with pytest.raises(NotFoundError, match="HTTP 404"):
        await druva.update_user(987654, user_name="X")
    user_id = simulator.add_user("ann@contoso.com", profile="Standard", storage="US-East")["userID"]
    with pytest.raises(CatalogError, match="known: EU-West, US-East"):
        await druva.update_user(user_id, storage="Mars")


async def test_preserve_and_activate(simulator: DruvaSimulator, druva: DruvaClient) -> None:
    user_id = simulator.add_user("ann@contoso.com", profile="Standard", storage="US-East")["userID"]
    await druva.preserve_user(user_id)
    assert (await druva.get_user(user_id)).status is DruvaStatus.PRESERVED  # type: ignore[union-attr]
    await druva.activate_user(user_id)
    assert (await druva.get_user(user_id)).status is DruvaStatus.ACTIVE  # type: ignore[union-attr]
    with pytest.raises(NotFoundError):
        await druva.preserve_user(987654)
    with pytest.raises(NotFoundError):
        await druva.activate_user(987654)


async def test_check_access_reports_every_probe(simulator: DruvaSimulator, druva: DruvaClient) -> None:
    simulator.add_user("ann@contoso.com", profile="Standard", storage="US-East")
    probes = await druva.check_access()
    assert [(p.check, p.ok) for p in probes] == [
        ("Druva token", True),
        ("Druva users listable", True),
        ("Druva profiles", True),
        ("Druva storages", True),
    ]
    assert probes[1].detail == "1 users"
    assert probes[2].detail == "3 profiles: Standard, Finance, Mailboxes"


async def test_check_access_never_raises_on_bad_credentials(server: SimulatorThread) -> None:
    async with DruvaClient(server.url, "sim-client", "wrong-secret") as druva:
        probes = await druva.check_access()
    assert [p.ok for p in probes] == [False, False, False, False]
    assert "refused: HTTP 401 InsyncCappmaster-1002" in probes[0].detail
    assert probes[1].detail == "skipped: no Druva token"


async def test_check_access_reports_an_empty_catalog() -> None:
    with DruvaSimulator().serve() as empty:
        async with client_for(empty) as druva:
            probes = await druva.check_access()
    assert [p.ok for p in probes] == [True, True, False, False]
    assert probes[2].detail.startswith("no profiles visible")


async def test_check_access_never_raises_when_druva_is_unreachable() -> None:
    with DruvaSimulator().serve() as stopped:
        url = stopped.url  # nothing listens there any more once the block ends
    async with DruvaClient(url, *CREDENTIALS, DruvaOptions(retry=fast_retry(attempts=2))) as druva:
        probes = await druva.check_access()
    assert not probes[0].ok
    assert probes[0].detail == "Druva token: request failed (ConnectError)"


async def test_wrong_credentials_are_an_auth_error_tried_once(
    simulator: DruvaSimulator, server: SimulatorThread
) -> None:
    async with DruvaClient(server.url, "sim-client", "wrong-secret") as druva:
        with pytest.raises(AuthError, match="client 'sim-client' refused"):
            await druva.find_user("ann@contoso.com")
    assert simulator.counts["token"] == 1


async def test_built_from_settings(simulator: DruvaSimulator, server: SimulatorThread) -> None:
    settings = Settings(
        DRUVA_API_URL=server.url + "/", DRUVA_CLIENT_ID="sim-client", DRUVA_CLIENT_SECRET="sim-secret"
    )
    async with open_druva(settings) as druva:
        assert await druva.profiles() == ["Standard", "Finance", "Mailboxes"]
    with pytest.raises(ConfigError, match="DRUVA_CLIENT_ID and DRUVA_CLIENT_SECRET"):
        open_druva(Settings(DRUVA_CLIENT_ID="sim-client"))
    with pytest.raises(ValidationError, match="DRUVA_CLIENT_SECRET"):  # blank: refused, never taken as unset
        Settings(DRUVA_CLIENT_ID="sim-client", DRUVA_CLIENT_SECRET=" ")


@pytest.mark.parametrize("options", [{"max_concurrency": 0}, {"retry": fast_retry(attempts=0)}])
def test_options_that_could_never_send_are_refused(options: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        DruvaOptions(**options)  # type: ignore[arg-type]


async def test_a_policy_is_checked_against_the_catalog_as_it_is_now(
    server: SimulatorThread, simulator: DruvaSimulator
) -> None:
    """A profile created for a new mappings file is found at once, not after the client's catalog TTL."""
    from provisioning.config import parse_config
    from provisioning.service.policy import catalog_problems

    config = parse_config(
        "mappings:\n  - name: Contractors\n    match: {all: true}\n"
        "    target: {profile: Contractors, storage: US-East}\n"
    )
    options = DruvaOptions(retry=fast_retry(), catalog_ttl_seconds=600)
    async with DruvaClient(server.url, *CREDENTIALS, options, clock=lambda: 0.0) as druva:
        (problem,) = await catalog_problems(config, druva)
        assert "no profile named 'Contractors'" in problem
        simulator.add_profile("Contractors")
        assert "Contractors" not in await druva.profiles()  # the catalog read for it is still kept...
        assert await catalog_problems(config, druva) == []  # ...but a policy is checked against Druva now
        assert "Contractors" in await druva.profiles()  # and the writes use what it read


async def test_a_client_kept_open_reads_the_catalog_again_after_its_ttl(
    server: SimulatorThread, simulator: DruvaSimulator
) -> None:
    now = [0.0]
    options = DruvaOptions(retry=fast_retry(), catalog_ttl_seconds=600)
    async with DruvaClient(server.url, *CREDENTIALS, options, clock=lambda: now[0]) as druva:
        assert "Contractors" not in await druva.profiles()
        simulator.add_profile("Contractors")
        now[0] = 599
        assert "Contractors" not in await druva.profiles()  # the catalog read once is kept...
        now[0] = 600
        assert "Contractors" in await druva.profiles()  # ...for its TTL, then read again
