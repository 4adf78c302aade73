"""Users delta: full reads over several pages, incremental reads after a cursor, expiry."""

from __future__ import annotations

import pytest

from provisioning.adapters.graph import GraphDirectory
from provisioning.adapters.graph.delta import user_select
from provisioning.domain.accounts import EntraAccount
from provisioning.domain.directory import UserPage, UserRemoved, UserUnreadable
from provisioning.errors import CursorExpired
from simulators.graph import GraphSimulator
from simulators.http import Request, Response
from simulators.tenants import Tenant, make_user

pytestmark = pytest.mark.anyio
SELECT = ["department", "officeLocation", "onPremisesExtensionAttributes.extensionAttribute1"]


async def read(directory: GraphDirectory, cursor: str | None, select: list[str] = SELECT) -> list[UserPage]:
    return [page async for page in directory.read_users(cursor, select)]


def accounts(pages: list[UserPage]) -> dict[str, EntraAccount]:
    return {c.id: c for page in pages for c in page.changes if isinstance(c, EntraAccount)}


async def test_a_full_read_pages_through_every_user_and_only_the_last_page_has_the_cursor(
    directory: GraphDirectory, simulator: GraphSimulator, tenant: Tenant
) -> None:
    pages = await read(directory, None)

    assert len(pages) == 4  # 13 users, 4 per page
    assert [p.cursor is not None for p in pages] == [False, False, False, True]
    found = accounts(pages)
    assert set(found) == {u["id"] for u in tenant.users}
    alice = found[tenant.user_id("alice")]
    assert alice.user_principal_name == "alice@contoso.com" and alice.mail == "alice@contoso.com"
    assert alice.attribute("officeLocation") == "New York" and alice.attribute("department") == "Finance"
    assert alice.attribute("onPremisesExtensionAttributes.extensionAttribute1") is None
    assert "jobTitle" not in alice.attributes  # not selected, not sent
    assert found[tenant.user_id("gus")].user_type == "Guest"
    assert not found[tenant.user_id("finance-shared")].account_enabled
    assert simulator.counts == {"users delta": 4}


async def test_after_a_cursor_only_changes_to_selected_properties_come_back(
    directory: GraphDirectory, simulator: GraphSimulator, tenant: Tenant
) -> None:
    cursor = (await read(directory, None))[-1].cursor
    simulator.update_user("alice@contoso.com", officeLocation="Chicago")
    simulator.update_user("bob@contoso.com", jobTitle="CFO")  # not selected: not a change for us
    simulator.update_user("heidi@contoso.com", accountEnabled=False)
    new_id = simulator.add_user(make_user("nina", department="Finance", office="New York"))
    simulator.delete_user("carol@contoso.com")
    simulator.delete_user("erin@contoso.com", permanent=True)
    simulator.reset_counts()

    pages = await read(directory, cursor)

    changes = [c for page in pages for c in page.changes]
    found = accounts(pages)
    assert set(found) == {tenant.user_id("alice"), tenant.user_id("heidi"), new_id}
    assert found[tenant.user_id("alice")].attribute("officeLocation") == "Chicago"
    assert not found[tenant.user_id("heidi")].account_enabled
    assert found[new_id].user_principal_name == "nina@contoso.com"
    removed = {c.id: c.permanent for c in changes if isinstance(c, UserRemoved)}
    assert removed == {tenant.user_id("carol"): False, tenant.user_id("erin"): True}
    assert len(changes) == 5
    assert simulator.counts == {"users delta": 2}  # 5 changes, 4 per page

    again = await read(directory, pages[-1].cursor)
    assert [p.changes for p in again] == [()] and again[-1].cursor


async def test_a_restored_user_comes_back_as_an_account(
    directory: GraphDirectory, simulator: GraphSimulator, tenant: Tenant
) -> None:
    carol = tenant.user_id("carol")
    simulator.delete_user(carol)
    cursor = (await read(directory, None))[-1].cursor
    simulator.restore_user(carol)

    found = accounts(await read(directory, cursor))

    assert set(found) == {carol} and found[carol].account_enabled


async def test_an_expired_cursor_asks_for_a_full_read(
    directory: GraphDirectory, simulator: GraphSimulator
) -> None:
    cursor = (await read(directory, None))[-1].cursor
    simulator.expire_cursors()

    with pytest.raises(CursorExpired, match="syncStateNotFound"):
        await read(directory, cursor)


async def test_a_cursor_expiring_in_the_middle_of_a_round_asks_for_a_full_read(
    directory: GraphDirectory, simulator: GraphSimulator
) -> None:
    pages = directory.read_users(None, SELECT)
    first = await anext(pages)
    assert first.cursor is None
    simulator.expire_cursors()

    with pytest.raises(CursorExpired):
        await anext(pages)


async def test_a_cursor_taken_for_fewer_properties_is_not_used(
    directory: GraphDirectory, simulator: GraphSimulator
) -> None:
    cursor = (await read(directory, None, ["department"]))[-1].cursor
    simulator.reset_counts()

    with pytest.raises(CursorExpired, match="officeLocation"):
        await read(directory, cursor, ["department", "officeLocation"])
    assert simulator.counts == {}


async def test_several_users_are_read_together_by_id(
    directory: GraphDirectory, simulator: GraphSimulator, tenant: Tenant
) -> None:
    ids = [tenant.user_id(name) for name in ("alice", "bob", "gus")]
    simulator.delete_user("bob@contoso.com")
    simulator.reset_counts()
    directory.filter_limit = 2  # two requests for three ids

    changes = await directory.get_users([*ids, ids[0]], SELECT)

    by_id = {c.id: c for c in changes}
    assert set(by_id) == set(ids)
    alice = by_id[tenant.user_id("alice")]
    assert isinstance(alice, EntraAccount) and alice.attribute("officeLocation") == "New York"
    # A read by id that misses a user proves nothing (a user created a moment ago may not be replicated
    # yet): it is unreadable, to be read again, never "removed" (deletions come from delta).
    missed = by_id[tenant.user_id("bob")]
    assert isinstance(missed, UserUnreadable) and missed.unreadable.what == "the account"
    assert simulator.counts == {"users delta": 2}


async def test_users_read_by_id_ask_graph_for_the_select_and_the_filter_as_the_sdk_would(
    directory: GraphDirectory, simulator: GraphSimulator, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[Request] = []
    dispatch = simulator.router.dispatch

    def recording(request: Request) -> Response:
        seen.append(request)
        return dispatch(request)

    monkeypatch.setattr(simulator.router, "dispatch", recording)
    ids = sorted(tenant.user_id(name) for name in ("alice", "gus"))

    await directory.get_users(ids, ["department", "onPremisesExtensionAttributes.extensionAttribute1"])

    [request] = [r for r in seen if r.path.endswith("/users/delta")]
    assert request.query == {
        "$select": ",".join(user_select(["department", "onPremisesExtensionAttributes"])),
        "$filter": f"id eq '{ids[0]}' or id eq '{ids[1]}'",
    }
    assert " " not in request.raw_path and "'" not in request.raw_path  # percent-encoded on the wire
