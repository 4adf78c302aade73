import json
from typing import Any

import pytest

from provisioning.adapters.graph.delta import (
    GroupsLink,
    account,
    groups_page,
    membership_cursor,
    membership_links,
    user_change,
    user_select,
    users_cursor,
    users_delta_link,
)
from provisioning.domain.accounts import AccountKind
from provisioning.domain.directory import MembershipChange, UserRemoved
from provisioning.errors import CursorExpired


def test_select_puts_identity_first_and_selects_nested_objects_whole() -> None:
    names = user_select(["department", "onPremisesExtensionAttributes.extensionAttribute1", "mail"])
    assert names == [
        "id",
        "userPrincipalName",
        "mail",
        "displayName",
        "userType",
        "accountEnabled",
        "creationType",
        "createdDateTime",
        "department",
        "onPremisesExtensionAttributes",
    ]


def test_a_user_object_keeps_its_graph_properties_by_name() -> None:
    item = {
        "id": "u1",
        "userPrincipalName": "ann@contoso.com",
        "displayName": "Ann",
        "mail": None,
        "userType": "Member",
        "accountEnabled": False,
        "officeLocation": "Chicago",
        "onPremisesExtensionAttributes": {"extensionAttribute1": "CC-7"},
    }
    ann = account(item)
    assert (ann.id, ann.user_principal_name, ann.display_name, ann.mail) == (
        "u1",
        "ann@contoso.com",
        "Ann",
        None,
    )
    assert not ann.account_enabled and ann.is_member
    assert ann.attribute("officeLocation") == "Chicago"
    assert ann.attribute("onPremisesExtensionAttributes.extensionAttribute1") == "CC-7"
    assert ann.kind is AccountKind.USER


def test_a_missing_account_enabled_is_unknown_never_enabled() -> None:
    """Delta leaves out what was never set, and a skeleton user has no accountEnabled yet: taking it as
    enabled would create a disabled user, or re-activate a preserved one."""
    sparse = account({"id": "u2", "userPrincipalName": "bo@contoso.com"})
    assert sparse.account_enabled is None
    assert not sparse.is_disabled_user and not sparse.may_be_shared_mailbox


@pytest.mark.parametrize(
    ("item", "member"),
    [
        ({"userPrincipalName": "old@contoso.com"}, True),  # created before 2014: no userType at all
        ({"userPrincipalName": "gus_fabrikam.com#EXT#@contoso.com"}, False),
        ({"userPrincipalName": "gus_fabrikam.com#ext#@contoso.com"}, False),
        ({"userPrincipalName": "inv@contoso.com", "creationType": "Invitation"}, False),
        ({"userPrincipalName": "m@contoso.com", "userType": "Member"}, True),
        ({"userPrincipalName": "g@contoso.com", "userType": "Guest"}, False),
        ({"userPrincipalName": "x@contoso.com", "userType": "Other"}, False),
    ],
)
def test_an_account_without_user_type_is_a_member_unless_plainly_a_guest(
    item: dict[str, Any], member: bool
) -> None:
    assert account({"id": "u", **item}).is_member is member


def test_created_date_time_is_read_with_graphs_seven_digits() -> None:
    created = account(
        {"id": "u", "userPrincipalName": "a@b", "createdDateTime": "2026-01-05T10:00:00.1234567Z"}
    )
    assert created.created_at is not None
    assert created.created_at.isoformat() == "2026-01-05T10:00:00.123456+00:00"
    assert account({"id": "u", "userPrincipalName": "a@b.c"}).created_at is None


@pytest.mark.parametrize(
    ("marker", "permanent"),
    [({"reason": "deleted"}, True), ({"reason": "changed"}, False), ("deleted", True)],
)
def test_removed_users_tell_soft_from_permanent(marker: object, permanent: bool) -> None:
    assert user_change({"id": "u3", "@removed": marker}) == UserRemoved("u3", permanent=permanent)


def test_users_cursor_refuses_a_wider_select_than_it_was_taken_with() -> None:
    cursor = users_cursor("https://graph/v1.0/users/delta()?$deltatoken=abc", user_select(["department"]))
    assert users_delta_link(cursor, user_select([])) == "https://graph/v1.0/users/delta()?$deltatoken=abc"
    with pytest.raises(CursorExpired, match="officeLocation"):
        users_delta_link(cursor, user_select(["department", "officeLocation"]))
    with pytest.raises(CursorExpired, match="unreadable"):
        users_delta_link("not json", [])


def test_membership_cursor_round_trips_and_rejects_garbage() -> None:
    links = [GroupsLink(frozenset({"g1", "g2"}), "https://a"), GroupsLink(frozenset({"g3"}), "https://b")]
    cursor = membership_cursor(links)
    assert json.loads(cursor)["links"][0] == {"groups": ["g1", "g2"], "deltaLink": "https://a"}
    assert membership_links(cursor) == links
    assert membership_links(None) == []
    with pytest.raises(CursorExpired):
        membership_links('{"links": [{"groups": ["g1"]}]}')


def test_group_pages_yield_typed_member_changes_for_wanted_groups_only() -> None:
    items: list[dict[str, Any]] = [
        {
            "id": "g1",
            "members@delta": [
                {"@odata.type": "#microsoft.graph.user", "id": "u1"},
                {"@odata.type": "#microsoft.graph.group", "id": "g9"},
                {"@odata.type": "#microsoft.graph.user", "id": "u2", "@removed": {"reason": "deleted"}},
            ],
        },
        {"id": "g1", "members@delta": [{"@odata.type": "#microsoft.graph.user", "id": "u3"}]},
        {"id": "g2", "@removed": {"reason": "changed"}},
        {"id": "other", "members@delta": [{"id": "u4"}]},
    ]
    page = groups_page(items, frozenset({"g1", "g2"}))
    assert page.changes == [
        MembershipChange("g1", "u1"),
        MembershipChange("g1", "g9", member_is_group=True),
        MembershipChange("g1", "u2", removed=True),
        MembershipChange("g1", "u3"),
    ]
    assert page.removed_groups == {"g2"} and page.seen_groups == {"g1"}
