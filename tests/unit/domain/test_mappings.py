from pathlib import Path
from typing import Any

import pytest

from provisioning.domain.accounts import AccountKind
from provisioning.domain.mappings import AllMatch, AttributeMatch, GroupMatch, attribute_texts, evaluate
from tests.builders import FINANCE, HR, account, mapping, seed_policy

ROOT = Path(__file__).parents[3]


def winner_of(acct: Any) -> str | None:
    winner, _ = evaluate(acct, seed_policy().mappings)
    return winner.name if winner else None


@pytest.mark.parametrize(
    ("acct", "expected"),
    [
        (
            account(groups=frozenset({FINANCE.id}), officeLocation="Chicago"),
            "US Finance",
        ),  # group outranks office
        (account(officeLocation="Chicago"), "US offices"),
        (account(officeLocation="New York"), "US offices"),
        (account(officeLocation="chicago"), "Everyone else"),  # exact, case-sensitive
        (account(officeLocation="Paris"), "Everyone else"),
        (account(), "Everyone else"),
        (account(enabled=False, purpose="shared"), "Shared mailboxes"),
        (account(enabled=False, purpose="shared", groups=frozenset({FINANCE.id})), "Shared mailboxes"),
    ],
)
def test_seed_use_case_priorities(acct: Any, expected: str) -> None:
    assert winner_of(acct) == expected


def test_explanation_lists_every_higher_mapping_and_why_it_did_not_match() -> None:
    winner, checks = evaluate(account(officeLocation="Paris"), seed_policy().mappings)
    assert winner is not None
    assert [c.describe() for c in checks] == [
        "#1 US Finance: no match: not a direct member of US Finance",
        "#2 US offices: no match: officeLocation is 'Paris', not one of 'New York', 'Chicago'",
        "#3 Shared mailboxes: no match: account is a user; this mapping takes shared_mailbox",
        "#4 Everyone else: matched: takes every user",
    ]


def test_no_mapping_matches_without_catch_all() -> None:
    only_finance = (mapping("Finance", GroupMatch((FINANCE,))),)
    winner, checks = evaluate(account(), only_finance)
    assert winner is None
    assert len(checks) == 1 and not checks[0].matched


@pytest.mark.parametrize(
    ("match", "acct", "matched", "reason"),
    [
        (GroupMatch((FINANCE, HR)), account(groups=frozenset({HR.id})), True, "direct member of US HR"),
        # a member only through a nested group is not a direct member
        (
            GroupMatch((FINANCE,)),
            account(nested_groups=frozenset({FINANCE.id})),
            False,
            "not a direct member",
        ),
        (
            GroupMatch((FINANCE,), nested=True),
            account(nested_groups=frozenset({FINANCE.id})),
            True,
            "member (direct or nested) of US Finance",
        ),
        (
            AttributeMatch("department", ("Sales",)),
            account(department="Sales"),
            True,
            "department is 'Sales'",
        ),
        (AttributeMatch("department", ("Sales",)), account(department="sales"), False, "not one of 'Sales'"),
        (
            AttributeMatch("department", ("Sales",), ignore_case=True),
            account(department="SALES"),
            True,
            "(ignoring case)",
        ),
        (AttributeMatch("department", ("Sales",)), account(), False, "department is empty"),
        (AttributeMatch("department", ("Sales",)), account(department=""), False, "department is empty"),
        (
            AttributeMatch("proxyAddresses", ("smtp:a@contoso.com",)),
            account(proxyAddresses=["SMTP:alice@contoso.com", "smtp:a@contoso.com"]),
            True,
            "proxyAddresses is",
        ),
        (
            AttributeMatch("onPremisesExtensionAttributes.extensionAttribute3", ("Tier1",)),
            account(onPremisesExtensionAttributes={"extensionAttribute3": "Tier1"}),
            True,
            "extensionAttribute3",
        ),
        (
            AttributeMatch("onPremisesExtensionAttributes.extensionAttribute3", ("Tier1",)),
            account(onPremisesExtensionAttributes=None),
            False,
            "is empty",
        ),
        (
            AttributeMatch("showInAddressList", ("false",)),
            account(showInAddressList=False),
            True,
            "showInAddressList is 'false'",
        ),
        (AttributeMatch("userPrincipalName", ("alice@contoso.com",)), account(), True, "userPrincipalName"),
        (AllMatch(), account(), True, "takes every user"),
    ],
)
def test_match_rules(match: Any, acct: Any, matched: bool, reason: str) -> None:
    winner, checks = evaluate(acct, (mapping("m", match),))
    assert (winner is not None) is matched
    assert reason in checks[0].reason


def test_kinds_gate_every_match_type() -> None:
    mailbox = account(enabled=False, purpose="shared", groups=frozenset({FINANCE.id}), department="Sales")
    for match in (GroupMatch((FINANCE,)), AttributeMatch("department", ("Sales",)), AllMatch()):
        users_only = mapping("users", match)
        both = mapping("both", match, kinds=frozenset(AccountKind))
        assert evaluate(mailbox, (users_only,))[0] is None
        assert evaluate(mailbox, (both,))[0] is both


def test_attribute_texts() -> None:
    assert attribute_texts(None) == ()
    assert attribute_texts(True) == ("true",)
    assert attribute_texts(7) == ("7",)
    assert attribute_texts(["a", None, ["b"]]) == ("a", "b")
    assert attribute_texts({"nested": "object"}) == ()


def test_policy_names_what_graph_must_return() -> None:
    policy = seed_policy()
    assert policy.attributes == {"officeLocation"}
    assert policy.group_ids == {FINANCE.id}
    assert policy.nested_group_ids == frozenset()


def test_policy_fingerprint_follows_what_decides_and_nothing_else() -> None:
    import dataclasses

    policy = seed_policy()
    assert policy.fingerprint() == seed_policy().fingerprint()
    reordered = dataclasses.replace(
        policy, mappings=(policy.mappings[1], policy.mappings[0], *policy.mappings[2:])
    )
    assert reordered.fingerprint() != policy.fingerprint()
    assert dataclasses.replace(policy, max_preserve_fraction=0.5).fingerprint() == policy.fingerprint()
    assert dataclasses.replace(policy, adopt_existing=False).fingerprint() != policy.fingerprint()


def test_policy_fingerprint_is_the_same_in_every_process() -> None:
    import os
    import subprocess
    import sys

    code = "from tests.builders import seed_policy; print(seed_policy().fingerprint())"
    prints = {
        subprocess.run(  # noqa: S603 - our own interpreter
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert len(prints) == 1


@pytest.mark.parametrize(
    ("acct", "expected"),
    [
        (account(enabled=False, mail="m@contoso.com"), True),
        (account(enabled=False), False),  # no mailbox: cannot be a shared one
        (account(enabled=False, mail="m@contoso.com", purpose="shared"), False),  # already known
        (account(mail="m@contoso.com"), False),  # enabled: a user whatever its mailbox
        (account(enabled=False, mail="m@contoso.com", user_type="Guest"), False),
    ],
)
def test_which_accounts_need_their_mailbox_purpose_read(acct: Any, expected: bool) -> None:
    assert acct.may_be_shared_mailbox is expected
