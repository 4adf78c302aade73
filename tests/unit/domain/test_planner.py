"""One table test per planner rule (see the module docstring of provisioning.domain.planner)."""

from dataclasses import replace

import pytest

from provisioning.domain.accounts import UserIdAttribute
from provisioning.domain.decisions import (
    Activate,
    Adopt,
    Create,
    Decision,
    FieldChange,
    Outcome,
    Patch,
    Preserve,
    RetireReason,
)
from provisioning.domain.druva import DruvaStatus
from provisioning.domain.links import LinkStatus
from provisioning.domain.mappings import GroupMatch, Lifecycle, Remap, Retire, Target
from provisioning.domain.planner import Situation, check_safety, decide
from provisioning.domain.quota import Quota
from tests.builders import FINANCE, account, druva_user, link, mapping, seed_policy

POLICY = seed_policy()
CHICAGO = account(officeLocation="Chicago")
FINANCE_HIRE = account(groups=frozenset({FINANCE.id}), officeLocation="Chicago")
SHARED = account("mailbox", enabled=False, purpose="shared")


def plan(situation: Situation, **kwargs: object) -> Decision:
    return decide(situation, kwargs.pop("policy", POLICY), **kwargs)  # type: ignore[arg-type]


def kinds(decision: Decision) -> list[type]:
    return [type(a) for a in decision.actions]


# --- guests: never any action -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("user_type", "upn", "creation"),
    [
        ("Guest", "chris@contoso.com", None),
        ("member", "chris@contoso.com", None),  # userType is case-sensitive: "member" is not Member
        (None, "chris_fabrikam.com#EXT#@contoso.com", None),  # never-set userType, plainly a guest
        (None, "chris@contoso.com", "Invitation"),
    ],
)
@pytest.mark.parametrize(
    ("linked", "druva"),
    [
        (False, None),
        (True, druva_user()),
        (False, druva_user()),
        (True, druva_user(status=DruvaStatus.PRESERVED)),
    ],
)
def test_only_members_ever_get_an_action(
    user_type: str | None, upn: str, creation: str | None, linked: bool, druva: object
) -> None:
    attributes = {**CHICAGO.attributes, "creationType": creation}
    guest = replace(CHICAGO, user_type=user_type, user_principal_name=upn, attributes=attributes)
    decision = plan(Situation(guest.id, guest, link() if linked else None, druva))  # type: ignore[arg-type]
    assert decision.actions == ()
    assert decision.outcome is Outcome.SKIPPED
    assert "only Member accounts are provisioned" in decision.notes[0]


def test_an_account_whose_user_type_was_never_set_is_provisioned_as_a_member() -> None:
    """Users created before 2014 have no userType, and delta leaves out what was never set: such an
    account is a member unless plainly a guest (before, it was never provisioned)."""
    old = replace(CHICAGO, user_type=None)
    decision = plan(Situation(old.id, old))
    assert decision.outcome is Outcome.CREATED


# --- creation through the first matching mapping --------------------------------------------------------


def test_new_member_is_created_through_the_winning_mapping() -> None:
    decision = plan(Situation(FINANCE_HIRE.id, FINANCE_HIRE))
    assert decision.outcome is Outcome.CREATED
    assert decision.actions == (
        Create("alice@contoso.com", "Alice", Target("Finance", "US-East", Quota.parse("200 GB"))),
    )
    assert decision.winner is not None and decision.winner.mapping == "US Finance"
    assert decision.desired is not None and decision.desired.mapping == "US Finance"


def test_e_mail_comes_from_the_configured_attribute() -> None:
    with_mail = replace(CHICAGO, mail="alice.smith@contoso.com")
    decision = plan(
        Situation(with_mail.id, with_mail), policy=seed_policy(user_id_attribute=UserIdAttribute.MAIL)
    )
    assert decision.actions[0] == Create("alice.smith@contoso.com", "Alice", Target("Standard", "US-East"))


def test_missing_e_mail_attribute_skips_with_reason() -> None:
    decision = plan(
        Situation(CHICAGO.id, CHICAGO), policy=seed_policy(user_id_attribute=UserIdAttribute.MAIL)
    )
    assert decision.outcome is Outcome.SKIPPED
    assert "has no mail" in decision.notes[0]


def test_display_name_falls_back_to_upn() -> None:
    nameless = account(display_name="")
    assert plan(Situation(nameless.id, nameless)).actions[0] == Create(
        "alice@contoso.com", "alice@contoso.com", Target("Standard", "EU-West", Quota.unlimited())
    )


def test_unmapped_account_is_not_created_and_catch_all_is_advised() -> None:
    policy = seed_policy(mappings=(mapping("Finance", GroupMatch((FINANCE,))),))
    decision = plan(Situation(CHICAGO.id, CHICAGO), policy=policy)
    assert decision.actions == ()
    assert decision.outcome is Outcome.SKIPPED
    assert any("catch-all" in n or "match {all: true}" in n for n in decision.notes)


# --- disabled accounts and shared mailboxes ---------------------------------------------------------------


def test_disabled_account_is_not_created() -> None:
    disabled = replace(CHICAGO, account_enabled=False)
    decision = plan(Situation(disabled.id, disabled))
    assert decision.actions == () and decision.outcome is Outcome.SKIPPED


@pytest.mark.parametrize("purpose", [None, "user", "room", "equipment"])
def test_disabled_non_shared_mailbox_is_a_disabled_user(purpose: str | None) -> None:
    disabled = replace(CHICAGO, account_enabled=False, user_purpose=purpose)
    decision = plan(Situation(disabled.id, disabled, link(), druva_user()))
    assert decision.actions == (Preserve(1001, RetireReason.DISABLED),)


def test_shared_mailbox_is_created_only_through_a_mapping_that_takes_mailboxes() -> None:
    decision = plan(Situation(SHARED.id, SHARED))
    assert decision.winner is not None and decision.winner.mapping == "Shared mailboxes"
    assert decision.actions == (Create("mailbox@contoso.com", "Mailbox", Target("Mailboxes", "US-East")),)

    users_only = seed_policy(mappings=tuple(m for m in POLICY.mappings if m.name != "Shared mailboxes"))
    refused = plan(Situation(SHARED.id, SHARED), policy=users_only)
    assert refused.actions == () and refused.outcome is Outcome.SKIPPED


def test_shared_mailbox_is_never_preserved_for_being_disabled() -> None:
    current = druva_user("mailbox", profile="Mailboxes")
    decision = plan(Situation(SHARED.id, SHARED, link("mailbox", mapping_name="Shared mailboxes"), current))
    assert decision.actions == ()
    assert decision.outcome is Outcome.UNCHANGED


# --- lifecycle: disabled / deleted / unmapped ---------------------------------------------------------


def _unmapped_policy(rule: Retire):  # type: ignore[no-untyped-def]
    return seed_policy(
        mappings=(mapping("Finance", GroupMatch((FINANCE,))),), lifecycle=Lifecycle(unmapped=rule)
    )


@pytest.mark.parametrize(
    ("case", "acct", "policy_for", "reason"),
    [
        (
            "disabled",
            replace(CHICAGO, account_enabled=False),
            lambda r: seed_policy(lifecycle=Lifecycle(disabled=r)),
            RetireReason.DISABLED,
        ),
        ("deleted", None, lambda r: seed_policy(lifecycle=Lifecycle(deleted=r)), RetireReason.DELETED),
        ("unmapped", CHICAGO, _unmapped_policy, RetireReason.UNMAPPED),
    ],
)
@pytest.mark.parametrize("rule", list(Retire))
def test_lifecycle_rules(
    case: str, acct: object, policy_for: object, reason: RetireReason, rule: Retire
) -> None:
    policy = policy_for(rule)  # type: ignore[operator]
    decision = plan(Situation("id-alice", acct, link(), druva_user()), policy=policy)  # type: ignore[arg-type]
    if rule is Retire.PRESERVE:
        assert decision.actions == (Preserve(1001, reason),)
        assert decision.outcome is Outcome.PRESERVED
        assert decision.desired is not None and decision.desired.status is DruvaStatus.PRESERVED
    else:
        assert decision.actions == ()
        assert decision.outcome is Outcome.UNCHANGED
        assert any("is ignore" in n for n in decision.notes)


@pytest.mark.parametrize("acct", [None, replace(CHICAGO, account_enabled=False)])
def test_retiring_an_account_we_never_provisioned_does_nothing(acct: object) -> None:
    decision = plan(Situation("id-alice", acct, None, druva_user()))  # type: ignore[arg-type]
    assert decision.actions == () and decision.outcome is Outcome.SKIPPED
    assert "not provisioned by this product" in decision.notes[0]


def test_already_preserved_user_is_recorded_not_preserved_again() -> None:
    decision = plan(Situation("id-alice", None, link(), druva_user(status=DruvaStatus.PRESERVED)))
    assert decision.actions == ()
    assert decision.desired is not None and decision.desired.status is DruvaStatus.PRESERVED


def test_deleted_account_is_explained_by_its_link() -> None:
    decision = plan(Situation("id-alice", None, link(), druva_user()))
    assert decision.principal == "alice@contoso.com"
    assert decision.notes[0] == "deleted from Entra"


# --- re-activation ------------------------------------------------------------------------------------


def test_returning_user_we_preserved_is_reactivated() -> None:
    situation = Situation(
        CHICAGO.id, CHICAGO, link(status=LinkStatus.PRESERVED), druva_user(status=DruvaStatus.PRESERVED)
    )
    decision = plan(situation)
    assert decision.actions == (Activate(1001),)
    assert decision.outcome is Outcome.REACTIVATED


def test_user_preserved_by_someone_else_is_left_alone_unless_imported_by_hand() -> None:
    situation = Situation(
        CHICAGO.id, CHICAGO, link(), druva_user(status=DruvaStatus.PRESERVED, profile="Old")
    )
    automatic = plan(situation)
    assert automatic.actions == () and automatic.outcome is Outcome.UNCHANGED
    assert "preserved in Druva by someone else" in automatic.notes[0]
    manual = plan(situation, manual=True)
    assert kinds(manual) == [Activate, Patch]


# --- remap ------------------------------------------------------------------------------------------


def test_remap_patches_profile_and_storage_when_the_winner_changes() -> None:
    current = druva_user(profile="Standard", storage="US-East")
    decision = plan(Situation(FINANCE_HIRE.id, FINANCE_HIRE, link(), current))
    assert decision.actions == (Patch(1001, (FieldChange("profile", "Standard", "Finance"),)),)
    assert decision.outcome is Outcome.UPDATED


def test_remap_ignore_reports_instead_of_patching() -> None:
    policy = seed_policy(lifecycle=Lifecycle(remap=Remap.IGNORE))
    decision = plan(Situation(FINANCE_HIRE.id, FINANCE_HIRE, link(), druva_user()), policy=policy)
    assert decision.actions == ()
    assert any("lifecycle.remap is ignore" in n for n in decision.notes)


def test_display_name_change_is_patched() -> None:
    renamed = replace(CHICAGO, display_name="Alice Smith")
    decision = plan(Situation(renamed.id, renamed, link(), druva_user()))
    assert decision.actions == (Patch(1001, (FieldChange("user_name", "Alice", "Alice Smith"),)),)


def test_in_step_user_needs_nothing() -> None:
    decision = plan(Situation(CHICAGO.id, CHICAGO, link(), druva_user()))
    assert decision.actions == () and decision.outcome is Outcome.UNCHANGED and decision.notes == ()


# --- drift that the API cannot fix ----------------------------------------------------------------------


def test_quota_drift_is_reported_not_faked() -> None:
    current = druva_user(profile="Finance", quota_bytes=100 * 1024**3)
    decision = plan(Situation(FINANCE_HIRE.id, FINANCE_HIRE, link(), current))
    assert decision.actions == ()
    assert any("quota differs (Druva has 100 GB" in n and "cannot be changed" in n for n in decision.notes)


def test_profile_default_quota_is_never_compared() -> None:
    decision = plan(Situation(CHICAGO.id, CHICAGO, link(), druva_user(quota_bytes=5)))
    assert decision.notes == ()


def test_e_mail_drift_is_reported() -> None:
    renamed = replace(CHICAGO, user_principal_name="alice.smith@contoso.com")
    decision = plan(Situation(renamed.id, renamed, link(), druva_user()))
    assert decision.actions == ()
    assert any("e-mail differs" in n for n in decision.notes)


# --- adoption -----------------------------------------------------------------------------------------


def test_existing_druva_user_with_same_email_is_adopted_not_duplicated() -> None:
    existing = druva_user(email="ALICE@Contoso.com", profile="Standard", storage="US-East")
    decision = plan(Situation(CHICAGO.id, CHICAGO, None, existing))
    assert decision.actions == (Adopt(1001, "ALICE@Contoso.com"),)
    assert decision.outcome is Outcome.UPDATED


def test_adoption_brings_the_user_in_step() -> None:
    existing = druva_user(profile="Legacy")
    decision = plan(Situation(FINANCE_HIRE.id, FINANCE_HIRE, None, existing))
    assert kinds(decision) == [Adopt, Patch]


@pytest.mark.parametrize(
    ("situation", "policy", "why"),
    [
        (Situation(CHICAGO.id, CHICAGO, None, druva_user(), druva_owner="id-bob"), POLICY, "already linked"),
        (Situation(CHICAGO.id, CHICAGO, None, druva_user(ldap_guid="B1C472")), POLICY, "AD/LDAP"),
        (
            Situation(CHICAGO.id, CHICAGO, None, druva_user()),
            seed_policy(adopt_existing=False),
            "adopt_existing is false",
        ),
        (
            Situation(CHICAGO.id, CHICAGO, None, druva_user(status=DruvaStatus.PRESERVED)),
            POLICY,
            "is preserved",
        ),
    ],
)
def test_adoption_refusals(situation: Situation, policy: object, why: str) -> None:
    decision = plan(situation, policy=policy)
    assert decision.actions == () and decision.outcome is Outcome.SKIPPED
    assert why in decision.notes[0]


def test_mapping_level_adopt_overrides_the_default() -> None:
    strict = replace(POLICY.mappings[1], adopt_existing=False)
    policy = seed_policy(mappings=(strict, *POLICY.mappings[2:]))
    decision = plan(Situation(CHICAGO.id, CHICAGO, None, druva_user()), policy=policy)
    assert decision.outcome is Outcome.SKIPPED


def test_manual_import_adopts_and_reactivates_a_preserved_user() -> None:
    situation = Situation(CHICAGO.id, CHICAGO, None, druva_user(status=DruvaStatus.PRESERVED))
    assert kinds(plan(situation, manual=True)) == [Adopt, Activate]


def test_linked_user_gone_from_druva_is_created_again() -> None:
    decision = plan(Situation(CHICAGO.id, CHICAGO, link(), None))
    assert kinds(decision) == [Create]
    assert "no longer exists" in decision.notes[0]


def test_stale_link_to_other_druva_user_relinks_by_email() -> None:
    decision = plan(Situation(CHICAGO.id, CHICAGO, link(user_id=999), druva_user(user_id=1001)))
    assert decision.actions == (Adopt(1001, "alice@contoso.com"),)


# --- batch safety -------------------------------------------------------------------------------------


def _preserving(n: int) -> list[Decision]:
    return [
        plan(Situation(f"id-{i}", None, link(str(i), user_id=i), druva_user(str(i), user_id=i)))
        for i in range(n)
    ]


@pytest.mark.parametrize(
    ("preserves", "managed", "fraction", "allowed"),
    [
        (0, 0, 0.1, True),
        (1, 10, 0.1, True),
        (2, 10, 0.1, False),
        (10, 100, 0.1, True),
        (11, 100, 0.1, False),
        (5, 5, 1.0, True),
        (1, 5, 0.0, False),
        (3, 10, 0.3, True),
    ],
)
def test_mass_preserve_guard(preserves: int, managed: int, fraction: float, allowed: bool) -> None:
    verdict = check_safety(_preserving(preserves), managed, fraction)
    assert verdict.allowed is allowed
    assert verdict.preserves == preserves
    if not allowed:
        message = verdict.message()
        assert f"preserve {preserves} of {managed}" in message
        assert f"max_preserve_fraction {fraction:g}" in message
        assert "nothing was preserved" in message


def test_describe_is_one_line() -> None:
    line = plan(Situation(FINANCE_HIRE.id, FINANCE_HIRE)).describe()
    assert "\n" not in line
    assert line.startswith("alice@contoso.com: created: create alice@contoso.com (profile Finance")
