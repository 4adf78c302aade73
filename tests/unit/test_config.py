"""The mappings file is a public contract: the example loads, and every malformed variant gives one
line that names the file, the line, the mapping and the field."""

from pathlib import Path

import pytest

from provisioning.config import ConfigError, load_config, parse_config, require_resolvable
from provisioning.domain.accounts import AccountKind, UserIdAttribute
from provisioning.domain.groups import EntraGroup, GroupKind
from provisioning.domain.mappings import AllMatch, AttributeMatch, GroupMatch, GroupRef, Remap, Retire
from provisioning.domain.quota import Quota, QuotaUnit

EXAMPLE = Path(__file__).parents[2] / "examples" / "mappings.yaml"
FINANCE = EntraGroup("11111111-1111-1111-1111-111111111111", "US Finance", GroupKind.SECURITY)


def test_the_documented_example_loads_exactly() -> None:
    config = load_config(EXAMPLE)
    assert config.source.user_id_attribute is UserIdAttribute.USER_PRINCIPAL_NAME
    assert [m.name for m in config.mappings] == [
        "US Finance",
        "US offices",
        "Shared mailboxes",
        "Everyone else",
    ]
    assert config.group_refs == ("US Finance",)
    assert config.lifecycle.remap is Remap.UPDATE
    assert config.safety.max_preserve_fraction == 0.1
    assert config.adopt_existing is True

    policy = config.to_policy({"US Finance": FINANCE})
    finance, offices, mailboxes, everyone = policy.mappings
    assert finance.match == GroupMatch((GroupRef(FINANCE.id, "US Finance"),), nested=False)
    assert finance.target.quota == Quota(200, QuotaUnit.GB)
    assert offices.match == AttributeMatch("officeLocation", ("New York", "Chicago"), ignore_case=False)
    assert offices.target.quota is None
    assert mailboxes.kinds == {AccountKind.SHARED_MAILBOX}
    assert isinstance(everyone.match, AllMatch) and everyone.kinds == {AccountKind.USER}
    assert everyone.target.quota == Quota.unlimited()
    assert policy.lifecycle.disabled is Retire.PRESERVE


def test_optional_keys_beyond_druva() -> None:
    config = parse_config(
        """
adopt_existing: false
mappings:
  - name: Nested
    match: {groups: ["US Finance", "0f0f0f0f-0000-0000-0000-000000000000"], nested: true}
    target: {profile: P, storage: S, quota: 2048 GB}
    adopt_existing: true
  - name: Dept
    match: {attribute: onPremisesExtensionAttributes.extensionAttribute7, values: [sales], ignore_case: true,
            kinds: [user, shared_mailbox]}
    target: {profile: P, storage: S}
"""
    )
    nested, dept = config.mappings
    assert config.adopt_existing is False and nested.adopt_existing is True
    assert nested.target.quota == Quota(2, QuotaUnit.TB)
    assert config.group_refs == ("US Finance", "0f0f0f0f-0000-0000-0000-000000000000")
    assert dept.kinds == set(AccountKind)
    assert config.source.user_id_attribute is UserIdAttribute.USER_PRINCIPAL_NAME  # default
    assert config.lifecycle.unmapped is Retire.PRESERVE  # default


BASE = """\
mappings:
  - name: First
    match: {all: true}
    target: {profile: P, storage: S}
"""

MALFORMED = [
    # (yaml, expected fragments of the single error line)
    (
        BASE.replace("{profile: P, storage: S}", "{profile: P, storage: S, quota: 1536 GB}"),
        ['<config>:4: mappings[0] "First": target.quota:', "1536 GB is not a whole number of TB"],
    ),
    (
        BASE.replace("{profile: P, storage: S}", "{profile: P, storage: S, quota: 200}"),
        ["target.quota:", "needs a unit"],
    ),
    (
        BASE.replace("{profile: P, storage: S}", "{profile: P, storage: S, quota: 20 XB}"),
        ["target.quota:", "Druva takes MB, GB or TB"],
    ),
    (
        BASE + "  - name: first\n    match: {all: true}\n    target: {profile: P, storage: S}\n",
        ['<config>:5: mappings[1] "first": name:', "repeats mappings[0]"],
    ),
    (
        BASE.replace("{all: true}", "{attribute: department, values: []}"),
        ['mappings[0] "First": match.values:', "at least one"],
    ),
    (BASE.replace("{all: true}", "{all: true, kinds: [room]}"), ["match.kinds", "unknown kind 'room'"]),
    (BASE.replace("{all: true}", "{all: false}"), ["match.all:", "must be true"]),
    (
        BASE.replace("    target: {profile: P, storage: S}\n", ""),
        ['mappings[0] "First": target:', "is required"],
    ),
    (
        BASE.replace("{all: true}", "{groups: [A], all: true}"),
        ["match:", "exactly one of groups, attribute or all"],
    ),
    (BASE.replace("{all: true}", "{}"), ["match:", "exactly one of groups, attribute or all (found none)"]),
    (BASE.replace("{all: true}", "{groups: []}"), ["match.groups:", "at least one"]),
    (BASE.replace("{all: true}", "{groups: [A, A]}"), ["match.groups:", "lists A more than once"]),
    (
        BASE.replace("{all: true}", "{attribute: officelocation, values: [X]}"),
        ["match.attribute:", "did you mean officeLocation?"],
    ),
    (
        BASE.replace("{all: true}", "{attribute: department, values: [94105]}"),
        ["match.values[0]:", "must be text", "quote it"],
    ),
    (
        BASE.replace("{all: true}", "{attribute: department, value: [X]}"),
        ["mappings[0] \"First\": match: unknown key 'value' (did you mean values?)"],
    ),
    (
        BASE.replace("{all: true}", "{attribute: department, values: [X], case: true}"),
        ["match: unknown key 'case'", "allowed: attribute, values, ignore_case, kinds"],
    ),
    (
        BASE.replace("{profile: P, storage: S}", "{profile: P, storage: S, region: X}"),
        ["mappings[0] \"First\": target: unknown key 'region'", "allowed: profile, storage, quota"],
    ),
    (
        BASE.replace("{profile: P, storage: S}", "{profile: '', storage: S}"),
        ["target.profile:", "must not be empty"],
    ),
    (BASE.replace("name: First", "name: ''"), ["mappings[0]: name:", "must not be empty"]),
    (BASE + "lifecycle: {disabled: delete}\n", ["lifecycle.disabled:", "'delete' is not one of"]),
    (BASE + "lifecycle: {remap: preserve}\n", ["lifecycle.remap:", "'preserve' is not one of"]),
    (
        BASE + "safety: {max_preserve_fraction: 1.5}\n",
        ["safety.max_preserve_fraction:", "less than or equal to 1"],
    ),
    (BASE + "safety: {max_preserve_fraction: ten}\n", ["safety.max_preserve_fraction:", "must be a number"]),
    (
        BASE + "source: {user_id_attribute: objectId}\n",
        ["source.user_id_attribute:", "'objectId' is not one of"],
    ),
    (BASE + "mapings: []\n", ["<config>:5: (top level): unknown key 'mapings'", "allowed: source, mappings"]),
    ("mappings: []\n", ["mappings:", "at least one"]),
    ("source: {}\n", ["mappings:", "is required"]),
    ("", ["the configuration is empty"]),
    ("- a\n- b\n", ["the top level must be a mapping"]),
    (BASE + "mappings: []\n", ["<config>:5: not valid YAML", "appears twice"]),
    ("mappings: [\n", ["not valid YAML"]),
    (BASE.replace("{all: true}", "{all: yes please}"), ["match.all:", "valid boolean"]),
    (BASE.replace("{all: true}", "[all]"), ["match:", "must be a mapping"]),
    (BASE + "adopt_existing: maybe\n", ["adopt_existing:", "valid boolean"]),
]


@pytest.mark.parametrize(("text", "fragments"), MALFORMED)
def test_malformed_config_gives_one_line_pointing_at_the_field(text: str, fragments: list[str]) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(text)
    problems = raised.value.problems
    assert len(problems) == 1, problems
    line = problems[0]
    assert "\n" not in line
    for fragment in fragments:
        assert fragment in line, line


def test_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(BASE.replace("{all: true}", "{all: false}"))
    with pytest.raises(ConfigError, match=r"mine\.yaml:3: mappings\[0\] \"First\": match\.all"):
        load_config(path)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the configuration"):
        load_config(tmp_path / "absent.yaml")


def test_several_problems_are_all_reported() -> None:
    text = BASE.replace("{all: true}", "{all: false}") + "safety: {max_preserve_fraction: 2}\n"
    with pytest.raises(ConfigError) as raised:
        parse_config(text)
    assert len(raised.value.problems) == 2


def test_unresolvable_and_unsupported_groups_are_refused() -> None:
    odd = EntraGroup("g", "Odd", None)
    with pytest.raises(ConfigError) as raised:
        require_resolvable(("US Finance", "Missing", "Odd"), {"US Finance": FINANCE, "Odd": odd})
    assert raised.value.problems == [
        "group 'Missing': not found in Entra",
        "group 'Odd': Odd (unsupported type, g) is not a Microsoft 365, Security, Distribution or "
        "Mail-enabled security group",
    ]
