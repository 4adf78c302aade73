"""Small builders for domain objects, so tests state only what matters to them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from provisioning.domain.accounts import AccountKind, EntraAccount
from provisioning.domain.druva import DruvaStatus, DruvaUser
from provisioning.domain.links import AccountLink, LinkStatus
from provisioning.domain.mappings import (
    AllMatch,
    AttributeMatch,
    GroupMatch,
    GroupRef,
    Lifecycle,
    Mapping,
    Policy,
    Target,
)
from provisioning.domain.quota import Quota

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
FINANCE = GroupRef("11111111-1111-1111-1111-111111111111", "US Finance")
HR = GroupRef("22222222-2222-2222-2222-222222222222", "US HR")


def account(
    name: str = "alice",
    *,
    enabled: bool = True,
    user_type: str | None = "Member",
    purpose: str | None = None,
    groups: frozenset[str] = frozenset(),
    nested_groups: frozenset[str] | None = None,
    display_name: str | None = None,
    mail: str | None = None,
    **attributes: Any,
) -> EntraAccount:
    return EntraAccount(
        id=f"id-{name}",
        user_principal_name=f"{name}@contoso.com",
        display_name=display_name if display_name is not None else name.title(),
        mail=mail,
        user_type=user_type,
        account_enabled=enabled,
        user_purpose=purpose,
        attributes=attributes,
        member_of=groups,
        transitive_member_of=groups if nested_groups is None else nested_groups,
    )


def mapping(
    name: str,
    match: GroupMatch | AttributeMatch | AllMatch | None = None,
    *,
    profile: str = "Standard",
    storage: str = "US-East",
    quota: str | None = None,
    kinds: frozenset[AccountKind] = frozenset({AccountKind.USER}),
    adopt_existing: bool | None = None,
) -> Mapping:
    target = Target(profile, storage, Quota.parse(quota) if quota else None)
    return Mapping(name, match or AllMatch(), target, kinds, adopt_existing)


def seed_policy(**overrides: Any) -> Policy:
    """The product brief's use case, as the foundation issue's example config."""
    mappings = (
        mapping("US Finance", GroupMatch((FINANCE,)), profile="Finance", quota="200 GB"),
        mapping("US offices", AttributeMatch("officeLocation", ("New York", "Chicago"))),
        mapping(
            "Shared mailboxes", AllMatch(), profile="Mailboxes", kinds=frozenset({AccountKind.SHARED_MAILBOX})
        ),
        mapping("Everyone else", AllMatch(), storage="EU-West", quota="unlimited"),
    )
    fields: dict[str, Any] = {"mappings": mappings, "lifecycle": Lifecycle()}
    fields.update(overrides)
    return Policy(**fields)


def druva_user(
    name: str = "alice",
    *,
    user_id: int = 1001,
    status: DruvaStatus = DruvaStatus.ACTIVE,
    profile: str = "Standard",
    storage: str = "US-East",
    quota_bytes: int | None = None,
    user_name: str | None = None,
    email: str | None = None,
    ldap_guid: str | None = None,
) -> DruvaUser:
    return DruvaUser(
        user_id=user_id,
        email=email or f"{name}@contoso.com",
        user_name=user_name if user_name is not None else name.title(),
        status=status,
        profile=profile,
        storage=storage,
        quota_bytes=quota_bytes,
        ldap_guid=ldap_guid,
    )


def link(
    name: str = "alice",
    *,
    user_id: int = 1001,
    status: LinkStatus = LinkStatus.ACTIVE,
    mapping_name: str | None = "US offices",
) -> AccountLink:
    return AccountLink(
        entra_id=f"id-{name}",
        druva_user_id=user_id,
        email=f"{name}@contoso.com",
        mapping=mapping_name,
        profile="Standard",
        storage="US-East",
        quota=None,
        status=status,
        decided_at=NOW,
    )
