"""A bad account costs only itself: whatever Graph (or something posing as it) sends for some accounts,
a pass decides and provisions the others, and names each bad one with its reason.

The state is the real SQLite store (in memory): what it cannot hold is what a pass must survive."""

from __future__ import annotations

import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provisioning.domain.accounts import EntraAccount
from provisioning.service.report import RunReport
from tests.unit.service.test_sync import World

GOOD = {"ann", "ben", "cat", "dan", "fay", "help"}  # the World's accounts that must be provisioned

NASTY_TEXT = st.one_of(
    st.text(max_size=30),
    st.text(alphabet=st.characters(codec=None, categories=("Cc", "Cf", "Cs", "Co", "Zs")), max_size=10),
    st.sampled_from(
        [
            "",
            " ",
            "\x00",
            "\ud800",  # a lone surrogate: JSON can carry one, UTF-8 cannot
            "\u202eevil",  # right-to-left override
            'a"b',
            "a b",
            "100%",
            "x" * 1000,
            "é" * 400,
            "../groups",
            "?$select=id",
        ]
    ),
)
OBJECT_IDS = st.one_of(
    st.uuids().map(str),
    st.text(alphabet=string.ascii_letters + string.digits + "-", min_size=1, max_size=64),
    st.just("x" * 700),
    NASTY_TEXT,
)
UPNS = st.one_of(
    st.builds(
        lambda local: f"{local}@contoso.com", st.text(alphabet=string.ascii_lowercase, min_size=1, max_size=8)
    ),
    st.builds(lambda local: f"{local}@contoso.com", NASTY_TEXT),
    NASTY_TEXT,
)


@st.composite
def hostile_account(draw: st.DrawFn) -> EntraAccount:
    return EntraAccount(
        id=draw(OBJECT_IDS),
        user_principal_name=draw(UPNS),
        display_name=draw(st.one_of(st.none(), NASTY_TEXT)),
        mail=draw(st.one_of(st.none(), UPNS)),
        user_type=draw(st.sampled_from(["Member", None, "", "Guest", "member", "\x00"])),
        account_enabled=draw(st.sampled_from([True, False, None])),
        attributes={"officeLocation": draw(st.one_of(st.just("Chicago"), NASTY_TEXT))},
    )


def _accounted_for(report: RunReport) -> set[str]:
    named = {d.entra_id for d in report.decisions} | {f.entra_id for f in report.failures}
    return named | {d.principal for d in report.decisions} | {f.principal for f in report.failures}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(hostile_account(), min_size=1, max_size=6))
def test_hostile_accounts_never_keep_the_others_from_being_provisioned(hostile: list[EntraAccount]) -> None:
    world = World()
    for bad in hostile:
        if bad.id not in {f"id-{name}" for name in GOOD}:
            world.directory.add_user(bad)
    report = world.sync(full=True)  # must not raise: every bad account costs only itself

    for name in GOOD:
        assert world.druva.by_email(f"{name}@contoso.com") is not None, name
    for user in world.druva.accounts.values():  # nothing Druva was given is a name the product refuses
        assert user.email.isprintable() and " " not in user.email and len(user.email) <= 256
    for failure in report.failures:
        assert failure.error  # each one says why

    again = world.sync(full=True)  # and the next pass goes through the same way, writing nothing new
    writes = len(world.druva.writes)
    world.sync()
    assert len(world.druva.writes) == writes
    assert again.totals()["created"] == 0


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(hostile_account(), min_size=1, max_size=4))
def test_a_delta_pass_survives_the_same(hostile: list[EntraAccount]) -> None:
    world = World()
    world.sync()
    world.directory.add_user(
        EntraAccount("id-new", "new@contoso.com", "New", attributes={"officeLocation": "Paris"})
    )
    for bad in hostile:
        if not bad.id.startswith("id-"):
            world.directory.add_user(bad)
    world.sync()
    assert world.druva.by_email("new@contoso.com") is not None


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    field=st.sampled_from(["display_name", "officeLocation", "mail"]),
    text=st.sampled_from(["\x00", "a\x00b", "\ud800", "x\udfffy"]),
)
def test_a_linked_account_whose_data_turns_hostile_is_left_as_it_is(field: str, text: str) -> None:
    """Refused for its data, it is still in Entra: a full pass must not take it for deleted."""
    world = World()
    world.sync()
    if field == "officeLocation":
        world.directory.update_user("id-ann", attributes={"officeLocation": text})
    else:
        world.directory.update_user("id-ann", **{field: text})
    writes = len(world.druva.writes)
    report = world.sync(full=True)
    assert len(world.druva.writes) == writes  # ann is not preserved, nothing else changes
    assert world.druva_user("ann").status.value == "active"
    assert any(f.entra_id == "id-ann" and "not decided" in f.error for f in report.failures)


def test_import_refuses_what_a_pass_refuses() -> None:
    import asyncio

    from provisioning.service.context import Run, Services
    from provisioning.service.import_and_explain import import_accounts

    world = World()
    world.directory.add_user(EntraAccount("id-bad", "bad@contoso.com", "Bad\x00name", attributes={}))
    run = Run(Services(world.directory, world.druva, world.state, world.clock), world.policy)
    report = asyncio.run(import_accounts(run, ["bad@contoso.com"]))
    assert report.exit_code == 1 and world.druva.writes == []
    assert "NUL" in report.failures[0].error
