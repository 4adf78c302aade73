"""The Druva client against the simulator on the production profile (and in GovCloud): it finds users
whatever case Druva stored their e-mail in, never picks one of two silently, and turns each refusal
that only a human can lift into a ``DruvaRefused`` of its kind."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from provisioning.adapters.druva import DruvaClient, DruvaOptions
from provisioning.domain.druva import DruvaStatus, NewDruvaUser
from provisioning.errors import AuthError, ConflictError, DruvaRefused, RefusalKind
from simulators.druva import DruvaSimulator
from simulators.http import Request, Response, Router, SimulatorServer
from simulators.realism import PRODUCTION
from simulators.running import SimulatorThread

from .conftest import SEED, client_for, client_for_url, fast_retry

pytestmark = pytest.mark.anyio


def ann(email: str = "ann@contoso.com", profile: str = "Standard") -> NewDruvaUser:
    return NewDruvaUser(email, "Ann Lee", profile, "US-East")


@pytest.fixture
def simulator() -> DruvaSimulator:
    """Overrides conftest's: the production profile, and a profile with privacy settings enabled."""
    profiles = [*SEED["profiles"], {"id": 4, "name": "Private", "privacy": True}]
    return DruvaSimulator(SEED | {"profiles": profiles}, realism=PRODUCTION.druva)


async def lookups(simulator: DruvaSimulator, druva: DruvaClient, email: str) -> int:
    """How many list requests finding ``email`` took (the catalog is read first, not counted)."""
    await druva.profiles()
    before = simulator.counts["list users"]
    await druva.find_user(email)
    return simulator.counts["list users"] - before


# ---- e-mail lookups ------------------------------------------------------------------------------------


async def test_a_user_stored_in_another_case_is_found_by_a_prefix_search(
    simulator: DruvaSimulator, druva: DruvaClient
) -> None:
    simulator.add_user("Ann.Lee@Contoso.com", profile="Standard", storage="US-East")
    found = await druva.find_user(" ann.lee@contoso.COM ")
    assert found is not None
    assert found.email == "Ann.Lee@Contoso.com"
    assert await lookups(simulator, druva, "ann.lee@contoso.com") == 2  # emailID (nothing), then prefix


async def test_a_user_found_by_email_id_costs_one_request(
    simulator: DruvaSimulator, druva: DruvaClient
) -> None:
    simulator.add_user("ann@contoso.com", profile="Standard", storage="US-East")
    assert await lookups(simulator, druva, "ann@contoso.com") == 1


async def test_a_prefix_search_keeps_only_the_same_address(
    simulator: DruvaSimulator, druva: DruvaClient
) -> None:
    simulator.add_user("ann@contoso.com.au", profile="Standard", storage="US-East")
    simulator.add_user("ann@contoso.community", profile="Standard", storage="US-East")
    assert await druva.find_user("ann@contoso.com") is None


async def test_two_users_differing_only_in_case_are_never_chosen_between(
    simulator: DruvaSimulator, druva: DruvaClient
) -> None:
    simulator.add_user("Ann@Contoso.com", profile="Standard", storage="US-East")
    simulator.add_user("ANN@contoso.com", profile="Standard", storage="US-East", allow_case_duplicate=True)
    with pytest.raises(DruvaRefused) as refused:
        await druva.find_user("ann@contoso.com")
    assert refused.value.kind is RefusalKind.AMBIGUOUS
    assert "Ann@Contoso.com (user" in str(refused.value)
    assert "ANN@contoso.com (user" in str(refused.value)
    # Asked exactly as one of them is stored, Druva's emailID answers with that one alone.
    exact = await druva.find_user("ANN@contoso.com")
    assert exact is not None
    assert exact.email == "ANN@contoso.com"


async def test_a_druva_that_ignores_case_on_email_id_is_no_less_ambiguous(server: SimulatorThread) -> None:
    kind = server.simulator
    assert isinstance(kind, DruvaSimulator)
    kind.realism = DruvaSimulator().realism  # the kind profile: emailID ignores case
    kind.add_user("Ann@Contoso.com", profile="Standard", storage="US-East")
    kind.add_user("ann@contoso.com", profile="Standard", storage="US-East", allow_case_duplicate=True)
    async with client_for(server) as druva:
        with pytest.raises(DruvaRefused) as refused:
            await druva.find_user("ann@contoso.com")
    assert refused.value.kind is RefusalKind.AMBIGUOUS
    assert kind.counts["list users"] == 1


async def test_the_sweep_lists_both_of_a_pair(simulator: DruvaSimulator, druva: DruvaClient) -> None:
    simulator.add_user("Ann@Contoso.com", profile="Standard", storage="US-East")
    simulator.add_user("ann@contoso.com", profile="Standard", storage="US-East", allow_case_duplicate=True)
    assert [user.email async for user in druva.users()] == ["Ann@Contoso.com", "ann@contoso.com"]


async def test_a_create_refused_for_an_email_taken_in_another_case_is_a_conflict(
    simulator: DruvaSimulator, druva: DruvaClient
) -> None:
    simulator.add_user("Ann@Contoso.com", profile="Standard", storage="US-East")
    with pytest.raises(ConflictError, match=r"already has a user with e-mail Ann@Contoso\.com"):
        await druva.create_user(ann())
    # What the service does with the conflict: look the e-mail up and link that user.
    existing = await druva.find_user("ann@contoso.com")
    assert existing is not None
    assert existing.email == "Ann@Contoso.com"
    assert simulator.counts["create user"] == 1
    assert len(simulator.users()) == 1


async def test_a_lost_create_is_found_not_posted_again(
    simulator: DruvaSimulator, server: SimulatorThread
) -> None:
    simulator.set_faults(lost_response_rate=1.0, routes=["create user"])
    async with client_for(server) as druva:
        created = await druva.create_user(ann())
    assert created.email == "ann@contoso.com"
    assert (simulator.counts["create user"], len(simulator.users())) == (1, 1)


# ---- refusals that need a human ------------------------------------------------------------------------


async def test_a_create_without_a_free_licence_is_a_licence_refusal(
    simulator: DruvaSimulator, druva: DruvaClient
) -> None:
    simulator.add_user("bob@contoso.com", profile="Standard", storage="US-East")
    simulator.set_licences(1)
    with pytest.raises(DruvaRefused) as refused:
        await druva.create_user(ann())
    assert refused.value.kind is RefusalKind.LICENCE
    assert (refused.value.status, refused.value.code) == (422, "InsyncUsermanagement-1016")
    assert simulator.user_by_email("ann@contoso.com") is None
    assert simulator.counts["create user"] == 1  # not retried


async def test_an_activation_without_a_free_licence_is_a_licence_refusal(
    simulator: DruvaSimulator, druva: DruvaClient
) -> None:
    gone = simulator.add_user("gone@contoso.com", profile="Standard", storage="US-East", status="preserved")
    simulator.add_user("bob@contoso.com", profile="Standard", storage="US-East")
    simulator.set_licences(1)
    with pytest.raises(DruvaRefused) as refused:
        await druva.activate_user(gone["userID"])
    assert refused.value.kind is RefusalKind.LICENCE
    assert (await druva.get_user(gone["userID"])).status is DruvaStatus.PRESERVED  # type: ignore[union-attr]
    assert simulator.counts["activate user"] == 1


async def test_a_profile_change_across_privacy_settings_is_a_privacy_refusal(
    simulator: DruvaSimulator, druva: DruvaClient
) -> None:
    user_id = simulator.add_user("ann@contoso.com", profile="Standard", storage="US-East", name="Ann")[
        "userID"
    ]
    with pytest.raises(DruvaRefused) as refused:
        await druva.update_user(user_id, user_name="Ann B", profile="Private")
    assert refused.value.kind is RefusalKind.PRIVACY
    unchanged = await druva.get_user(user_id)
    assert unchanged is not None
    assert (unchanged.user_name, unchanged.profile) == ("Ann", "Standard")
    simulator.allow_admin_access("ann@contoso.com")
    assert (await druva.update_user(user_id, profile="Private")).profile == "Private"


@pytest.fixture
async def read_only(simulator: DruvaSimulator, server: SimulatorThread) -> AsyncIterator[DruvaClient]:
    simulator.add_credentials("auditor", "auditor-secret", read_only=True)
    options = DruvaOptions(retry=fast_retry())
    async with DruvaClient(server.url, "auditor", "auditor-secret", options) as client:
        yield client


async def test_a_read_only_credential_reads_and_each_write_is_a_permission_refusal(
    simulator: DruvaSimulator, read_only: DruvaClient
) -> None:
    user_id = simulator.add_user("ann@contoso.com", profile="Standard", storage="US-East")["userID"]
    assert [user.email async for user in read_only.users()] == ["ann@contoso.com"]
    writes = [
        read_only.create_user(ann("bob@contoso.com")),
        read_only.update_user(user_id, user_name="Ann B"),
        read_only.preserve_user(user_id),
        read_only.activate_user(user_id),
    ]
    for write in writes:
        with pytest.raises(DruvaRefused) as refused:
            await write
        assert refused.value.kind is RefusalKind.PERMISSION
        assert (refused.value.status, refused.value.code) == (403, "InsyncAdmanagement-1221")
    assert [user["emailID"] for user in simulator.users()] == ["ann@contoso.com"]


async def test_a_permission_refusal_comes_after_one_new_token(
    simulator: DruvaSimulator, read_only: DruvaClient
) -> None:
    user_id = simulator.add_user("ann@contoso.com", profile="Standard", storage="US-East")["userID"]
    with pytest.raises(DruvaRefused):
        await read_only.preserve_user(user_id)
    assert (simulator.counts["token"], simulator.counts["preserve user"]) == (2, 2)


async def test_a_session_that_stays_expired_is_still_an_auth_error(
    simulator: DruvaSimulator, druva: DruvaClient
) -> None:
    user_id = simulator.add_user("ann@contoso.com", profile="Standard", storage="US-East")["userID"]
    simulator.token_lifetime = 0  # every token Druva hands out has already expired
    with pytest.raises(AuthError, match="InsyncCappmaster-1009"):
        await druva.preserve_user(user_id)
    assert simulator.counts["preserve user"] == 2


# ---- GovCloud ------------------------------------------------------------------------------------------


class Spelling(Router):
    """The simulator's routes, noting the header names of every request as they arrived."""

    def __init__(self, routes: Router) -> None:
        super().__init__()
        self.routes_behind = routes
        self.names: dict[str, tuple[str, ...]] = {}

    def dispatch(self, request: Request) -> Response:
        self.names[f"{request.method} {request.path}"] = request.header_names
        return self.routes_behind.dispatch(request)


async def test_a_full_cycle_against_govcloud() -> None:
    govcloud = DruvaSimulator(SEED, realism=PRODUCTION.druva, govcloud=True)
    with govcloud.serve() as running:
        async with client_for(running) as druva:
            created = await druva.create_user(ann())
            assert await druva.find_user("ann@contoso.com") == created
            assert await druva.get_user(created.user_id) == created
            assert (await druva.update_user(created.user_id, profile="Finance")).profile == "Finance"
            await druva.preserve_user(created.user_id)
            await druva.activate_user(created.user_id)
            assert [user.status async for user in druva.users()] == [DruvaStatus.ACTIVE]


async def test_every_request_spells_its_header_names_canonically() -> None:
    simulator = DruvaSimulator(SEED)
    spelling = Spelling(simulator.router)
    with SimulatorServer(spelling) as server:
        async with client_for_url(server.url) as druva:
            user_id = (await druva.create_user(ann())).user_id
            await druva.update_user(user_id, user_name="Ann B")
            await druva.preserve_user(user_id)
    token = spelling.names["POST /token"]
    create = spelling.names["POST /insync/usermanagement/v1/users"]
    patch = spelling.names[f"PATCH /insync/usermanagement/v1/users/{user_id}"]
    preserve = spelling.names[f"POST /insync/usermanagement/v1/users/{user_id}/preserve"]
    for names in (token, create, patch, preserve):
        assert {"Accept", "Authorization", "Content-Length"} <= set(names)
        assert all(name == canonical(name) for name in names), names
    for names in (token, create, patch):
        assert "Content-Type" in names


def canonical(name: str) -> str:
    return "-".join(part.capitalize() for part in name.split("-"))
