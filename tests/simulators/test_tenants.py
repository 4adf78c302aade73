from pathlib import Path

from provisioning.domain.groups import GroupKind, classify_group
from simulators.tenants import Tenant, seed_use_case, synthetic_tenant


def kinds(tenant: Tenant) -> set[GroupKind | None]:
    return {classify_group(g["groupTypes"], g["mailEnabled"], g["securityEnabled"]) for g in tenant.groups}


def test_synthetic_tenants_are_deterministic_and_varied() -> None:
    tenant = synthetic_tenant(2000, 8, seed=7)

    assert tenant.to_json() == synthetic_tenant(2000, 8, seed=7).to_json()
    assert tenant.to_json() != synthetic_tenant(2000, 8, seed=8).to_json()
    assert len(tenant.users) == 2000 and len({u["id"] for u in tenant.users}) == 2000
    guests = [u for u in tenant.users if u["userType"] == "Guest"]
    shared = [u for u in tenant.users if (u["mailboxSettings"] or {}).get("userPurpose") == "shared"]
    disabled = [u for u in tenant.users if not u["accountEnabled"] and u not in shared]
    assert guests and shared and disabled and all(not u["accountEnabled"] for u in shared)
    assert kinds(tenant) == set(GroupKind)
    biggest = tenant.groups[0]
    assert len(biggest["members"]) >= 500
    assert {g["id"] for g in tenant.groups[-2:]} <= set(biggest["members"])  # nested groups
    assert any(o not in g["members"] for g in tenant.groups for o in g["owners"])  # owner, not member


def test_the_seed_use_case_has_the_briefs_cast(tmp_path: Path) -> None:
    tenant = seed_use_case()
    finance = tenant.group("US Finance")

    assert classify_group(finance["groupTypes"], finance["mailEnabled"], finance["securityEnabled"]) is (
        GroupKind.SECURITY
    )
    assert {tenant.user("alice")["officeLocation"], tenant.user("bob")["officeLocation"]} == {
        "New York",
        "Chicago",
    }
    assert (
        tenant.user_id("olivia") in finance["owners"] and tenant.user_id("olivia") not in finance["members"]
    )
    assert tenant.user("finance-shared")["mailboxSettings"] == {"userPurpose": "shared"}
    assert not tenant.user("dan")["accountEnabled"] and tenant.user("gus")["userType"] == "Guest"
    path = tmp_path / "t.json"
    tenant.dump(path)
    assert Tenant.load(path) == tenant
