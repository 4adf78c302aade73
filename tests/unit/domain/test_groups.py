import pytest

from provisioning.domain.groups import EntraGroup, GroupKind, MembershipIndex, classify_group


@pytest.mark.parametrize(
    ("group_types", "mail_enabled", "security_enabled", "kind"),
    [
        (["Unified"], True, False, GroupKind.MICROSOFT_365),
        (["Unified"], True, True, GroupKind.MICROSOFT_365),
        (["Unified", "DynamicMembership"], True, False, GroupKind.MICROSOFT_365),
        ([], False, True, GroupKind.SECURITY),
        (["DynamicMembership"], False, True, GroupKind.SECURITY),
        ([], True, True, GroupKind.MAIL_ENABLED_SECURITY),
        ([], True, False, GroupKind.DISTRIBUTION),
        ([], False, False, None),
    ],
)
def test_classify_group_follows_graph_table(
    group_types: list[str], mail_enabled: bool, security_enabled: bool, kind: GroupKind | None
) -> None:
    assert classify_group(group_types, mail_enabled, security_enabled) is kind


def test_unsupported_group_is_described() -> None:
    group = EntraGroup("g1", "Odd", None)
    assert not group.supported
    assert "unsupported type" in group.describe()
    assert EntraGroup("g2", "Sales", GroupKind.DISTRIBUTION).describe() == "Sales (Distribution, g2)"


def test_index_knows_direct_members_only() -> None:
    # Owners are a separate relation: they are never put into the index, so they never match.
    index = MembershipIndex(members={"finance": frozenset({"alice", "bob"}), "hr": frozenset({"bob"})})
    assert index.direct_groups_of("alice") == {"finance"}
    assert index.direct_groups_of("bob") == {"finance", "hr"}
    assert index.direct_groups_of("owner-only") == frozenset()


def test_transitive_groups_follow_nesting_and_survive_cycles() -> None:
    index = MembershipIndex(
        members={"team": frozenset({"carol"}), "dept": frozenset(), "org": frozenset()},
        subgroups={"dept": frozenset({"team"}), "org": frozenset({"dept"}), "team": frozenset({"org"})},
    )
    assert index.direct_groups_of("carol") == {"team"}
    assert index.transitive_groups_of("carol") == {"team", "dept", "org"}
    assert index.descendant_groups("org") == {"dept", "team"}
    assert index.descendant_groups("missing") == frozenset()
