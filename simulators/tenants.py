"""Entra tenants for the Graph simulator: the product brief's seed use case and synthetic ones at scale.

A tenant is plain Graph JSON: users as Graph returns them (plus ``mailboxSettings``, None when the user
has no mailbox) and groups with their ``members`` and ``owners`` as lists of object ids. Everything is
deterministic: the same arguments give the same ids, names and memberships, so tests and benchmarks can
compare runs.

``without_user_types`` makes a tenant as old as real ones: a fraction of its members (the production
profile's ``untyped_users``) without any ``userType``.

``python -m simulators.tenants use-case --out tenant.json`` writes the seed use case;
``... synthetic --users 50000 --groups 20 --out big.json`` a synthetic tenant. Either file seeds
``python -m simulators.graph --seed FILE``.
"""

from __future__ import annotations

import argparse
import json
import random
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simulators.realism import GraphRealism

DOMAIN = "contoso.com"
TENANT_ID = "72f988bf-0000-4000-8000-00000000c0de"
_NAMESPACE = uuid.UUID("6f1c9a52-5d0e-4c7b-9a51-2f1e0a9b7c44")

# groupTypes / mailEnabled / securityEnabled of the four kinds (Graph's groups-overview table)
GroupKindSpec = tuple[tuple[str, ...], bool, bool]
SECURITY: GroupKindSpec = ((), False, True)
MICROSOFT_365: GroupKindSpec = (("Unified",), True, False)
DISTRIBUTION: GroupKindSpec = ((), True, False)
MAIL_ENABLED_SECURITY: GroupKindSpec = ((), True, True)
GROUP_KINDS = (SECURITY, MICROSOFT_365, DISTRIBUTION, MAIL_ENABLED_SECURITY)

OFFICES = (
    ("New York", "New York", "US"),
    ("Chicago", "Chicago", "US"),
    ("Boston", "Boston", "US"),
    ("London", "London", "GB"),
    ("Paris", "Paris", "FR"),
    ("Bangalore", "Bangalore", "IN"),
    ("Remote", None, "US"),
)
DEPARTMENTS = ("Finance", "Sales", "HR", "Engineering", "Support", "Marketing", "Legal", "Operations")


@dataclass
class Tenant:
    users: list[dict[str, Any]] = field(default_factory=list)
    groups: list[dict[str, Any]] = field(default_factory=list)

    def user(self, name: str) -> dict[str, Any]:
        """The user with this UPN, or with this short name (``alice``; a guest's ``gus``)."""
        for user in self.users:
            upn = str(user["userPrincipalName"]).lower()
            if name.lower() in (upn, short_name(upn)):
                return user
        raise KeyError(name)

    def user_id(self, name: str) -> str:
        return str(self.user(name)["id"])

    def group(self, display_name: str) -> dict[str, Any]:
        for group in self.groups:
            if group["displayName"] == display_name:
                return group
        raise KeyError(display_name)

    def group_id(self, display_name: str) -> str:
        return str(self.group(display_name)["id"])

    def to_json(self) -> dict[str, Any]:
        return {"users": self.users, "groups": self.groups}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Tenant:
        return cls(users=list(data.get("users", [])), groups=list(data.get("groups", [])))

    def dump(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json()))

    @classmethod
    def load(cls, path: Path) -> Tenant:
        """A seed file; only a regular one (``NotRegularFile`` at once for a FIFO, which would block)."""
        from provisioning.config_reading import read_regular

        return cls.from_json(json.loads(read_regular(path)))


def short_name(upn: str) -> str:
    """``alice@contoso.com`` → ``alice``; a guest's ``gus_fabrikam.com#EXT#@contoso.com`` → ``gus``."""
    local = upn.split("@", 1)[0]
    return local.split("_", 1)[0] if "#EXT#" in local.upper() else local


def stable_id(name: str) -> str:
    """A GUID derived from a name, so seeded objects keep their ids across runs."""
    return str(uuid.uuid5(_NAMESPACE, name))


def make_user(
    name: str,
    *,
    display_name: str | None = None,
    department: str | None = None,
    office: str | None = None,
    city: str | None = None,
    country: str | None = None,
    user_type: str = "Member",
    enabled: bool = True,
    purpose: str | None = "user",
    user_id: str | None = None,
    job_title: str | None = None,
    extension_attributes: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One Graph user. ``purpose`` None means the account has no mailbox (GET mailboxSettings → 404)."""
    guest = user_type == "Guest"
    upn = f"{name}_fabrikam.com#EXT#@{DOMAIN}" if guest else f"{name}@{DOMAIN}"
    attributes: dict[str, str | None] = {f"extensionAttribute{n}": None for n in range(1, 16)}
    attributes.update(extension_attributes or {})
    return {
        "id": user_id or stable_id(f"user:{name}"),
        "userPrincipalName": upn,
        "displayName": display_name or name.replace(".", " ").title(),
        "givenName": name.split(".", maxsplit=1)[0].title(),
        "surname": name.rsplit(".", maxsplit=1)[-1].title(),
        "mail": f"{name}@fabrikam.com" if guest else (f"{name}@{DOMAIN}" if purpose else None),
        "mailNickname": name.replace(".", ""),
        "userType": user_type,
        "accountEnabled": enabled,
        "department": department,
        "officeLocation": office,
        "city": city,
        "country": country,
        "usageLocation": country,
        "jobTitle": job_title,
        "employeeId": None if guest else str(100000 + int(uuid.UUID(stable_id(name)).int % 900000)),
        "creationType": "Invitation" if guest else None,
        "externalUserState": "Accepted" if guest else None,
        "businessPhones": [],
        "mobilePhone": None,
        "preferredLanguage": "en-US",
        "onPremisesExtensionAttributes": attributes,
        "mailboxSettings": None if guest or purpose is None else {"userPurpose": purpose},
    }


def make_group(
    display_name: str,
    kind: GroupKindSpec,
    *,
    members: Sequence[str] = (),
    owners: Sequence[str] = (),
    group_id: str | None = None,
) -> dict[str, Any]:
    group_types, mail_enabled, security_enabled = kind
    nickname = "".join(ch for ch in display_name.lower() if ch.isalnum())
    return {
        "id": group_id or stable_id(f"group:{display_name}"),
        "displayName": display_name,
        "description": None,
        "groupTypes": list(group_types),
        "mailEnabled": mail_enabled,
        "securityEnabled": security_enabled,
        "mailNickname": nickname,
        "mail": f"{nickname}@{DOMAIN}" if mail_enabled else None,
        "members": list(members),
        "owners": list(owners),
    }


def seed_use_case() -> Tenant:
    """The product brief's example tenant.

    US Finance (Security) holds alice and bob (New York, Chicago), the disabled dan and the shared mailbox
    finance-shared, and the nested group US Finance Auditors (ivan); olivia owns US Finance without being
    a member. US Sales (Microsoft 365) holds carol (Chicago), grace (Paris) and the guest gus. US HR
    (mail-enabled security) holds erin (Boston) and heidi (New York). frank (London) and the guest gina
    are in no group.
    """
    us = "US"
    users = [
        make_user("alice", department="Finance", office="New York", city="New York", country=us),
        make_user("bob", department="Finance", office="Chicago", city="Chicago", country=us),
        make_user("carol", department="Sales", office="Chicago", city="Chicago", country=us),
        make_user("dan", department="Finance", office="New York", country=us, enabled=False),
        make_user("erin", department="HR", office="Boston", city="Boston", country=us),
        make_user("frank", department="Engineering", office="London", city="London", country="GB"),
        make_user("grace", department="Sales", office="Paris", city="Paris", country="FR"),
        make_user("heidi", department="HR", office="New York", city="New York", country=us),
        make_user("ivan", department="Finance", office="Chicago", job_title="Auditor", country=us),
        make_user("olivia", department="Finance", office="New York", job_title="Controller", country=us),
        make_user("finance-shared", display_name="Finance Shared Mailbox", enabled=False, purpose="shared"),
        make_user("gus", department="Sales", user_type="Guest"),
        make_user("gina", user_type="Guest"),
    ]
    ids = {short_name(u["userPrincipalName"]): u["id"] for u in users}
    auditors = make_group("US Finance Auditors", SECURITY, members=[ids["ivan"]], owners=[ids["olivia"]])
    groups = [
        make_group(
            "US Finance",
            SECURITY,
            members=[ids["alice"], ids["bob"], ids["dan"], ids["finance-shared"], auditors["id"]],
            owners=[ids["olivia"]],
        ),
        make_group(
            "US Sales", MICROSOFT_365, members=[ids["carol"], ids["grace"], ids["gus"]], owners=[ids["carol"]]
        ),
        make_group("US HR", MAIL_ENABLED_SECURITY, members=[ids["erin"], ids["heidi"]], owners=[ids["erin"]]),
        auditors,
    ]
    return Tenant(users, groups)


def synthetic_tenant(
    users: int,
    groups: int = 20,
    *,
    seed: int = 1,
    guest_fraction: float = 0.02,
    disabled_fraction: float = 0.02,
    shared_fraction: float = 0.01,
    without_mailbox_fraction: float = 0.03,
    nested_groups: int = 2,
) -> Tenant:
    """``users`` accounts and ``groups`` groups of every kind, sized unevenly (group i holds about
    25%/(i+1) of the users, so the largest spans many delta pages). The last ``nested_groups`` groups are
    also members of group 0; every group has an owner, and some owners are not members."""
    rng = random.Random(seed)
    accounts = list(
        _synthetic_users(
            rng,
            users,
            guest_fraction=guest_fraction,
            disabled_fraction=disabled_fraction,
            shared_fraction=shared_fraction,
            without_mailbox_fraction=without_mailbox_fraction,
        )
    )
    member_ids = [u["id"] for u in accounts if u["userType"] == "Member"]
    built = []
    for index in range(groups):
        size = min(len(member_ids), max(1, int(users * 0.25 / (index + 1))))
        members = rng.sample(member_ids, size)
        outsider = rng.choice(member_ids)
        owners = [members[0]] + ([outsider] if outsider not in set(members) else [])
        department = DEPARTMENTS[index % len(DEPARTMENTS)]
        built.append(
            make_group(
                f"{department} {index:02d}",
                GROUP_KINDS[index % len(GROUP_KINDS)],
                members=members,
                owners=owners,
                group_id=_random_guid(rng),
            )
        )
    for child in built[max(1, groups - nested_groups) :]:
        built[0]["members"].append(child["id"])
    return Tenant(accounts, built)


def _synthetic_users(
    rng: random.Random,
    count: int,
    *,
    guest_fraction: float,
    disabled_fraction: float,
    shared_fraction: float,
    without_mailbox_fraction: float,
) -> Iterator[dict[str, Any]]:
    for index in range(count):
        office, city, country = rng.choice(OFFICES)
        department = rng.choice(DEPARTMENTS)
        draw = rng.random()
        name = f"user{index:06d}"
        common: dict[str, Any] = {"user_id": _random_guid(rng), "country": country}
        if draw < guest_fraction:
            yield make_user(f"guest{index:06d}", user_type="Guest", **common)
            continue
        draw -= guest_fraction
        if draw < shared_fraction:
            yield make_user(
                f"shared{index:06d}",
                display_name=f"Shared mailbox {index}",
                enabled=False,
                purpose="shared",
                **common,
            )
            continue
        draw -= shared_fraction
        enabled = not draw < disabled_fraction
        purpose = None if rng.random() < without_mailbox_fraction else "user"
        yield make_user(
            name,
            department=department,
            office=office,
            city=city,
            enabled=enabled,
            purpose=purpose,
            job_title=rng.choice(("Analyst", "Manager", "Engineer", "Associate", None)),
            extension_attributes={"extensionAttribute1": f"CC-{rng.randint(100, 999)}"},
            **common,
        )


def without_user_types(tenant: Tenant, realism: GraphRealism, seed: int = 1) -> Tenant:
    """The tenant with a fraction ``realism.untyped_users`` of its members carrying no ``userType`` key
    at all, as accounts created before 2014 that nobody has edited since do. Guests keep theirs (their
    ``#EXT#`` UPN gives them away anyway). The same seed strips the same members."""
    draws = random.Random(seed)
    users = [
        {k: v for k, v in user.items() if k != "userType"}
        if user.get("userType") == "Member" and draws.random() < realism.untyped_users
        else user
        for user in tenant.users
    ]
    return Tenant(users, tenant.groups)


def _random_guid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m simulators.tenants")
    parser.add_argument("kind", choices=("use-case", "synthetic"))
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--groups", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    tenant = (
        seed_use_case()
        if args.kind == "use-case"
        else synthetic_tenant(args.users, args.groups, seed=args.seed)
    )
    tenant.dump(args.out)


if __name__ == "__main__":
    main()
