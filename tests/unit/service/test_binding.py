"""A state knows whose it is: the tenants it was built against, and links that never vouch for a user of
another tenant (``provisioning.service.binding``, ``provisioning.domain.links.belongs_to``)."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json

import pytest

from provisioning.config import ConfigError
from provisioning.domain.decisions import Outcome
from provisioning.domain.followups import HoldReason
from provisioning.domain.health import LINKS_MISMATCHED, STATE_BOUND_ELSEWHERE
from provisioning.domain.links import AccountLink, belongs_to
from provisioning.service.binding import BINDING, StateBoundElsewhere, evidence, parse, rebind
from provisioning.service.context import Run, Services
from provisioning.service.import_and_explain import explain, import_accounts
from provisioning.service.status import read_status
from tests.builders import druva_user
from tests.fakes import FakeDruva
from tests.unit.service.test_sync import World

OTHER = "fake-druva-two/client"


def services(world: World) -> Services:
    return Services(world.directory, world.druva, world.state, world.clock)


def run_of(world: World, *, dry_run: bool = False) -> Run:
    return Run(services(world), world.policy, dry_run=dry_run)


def recorded(world: World) -> dict[str, object]:
    value = asyncio.run(world.state.get_cursor(BINDING)).value
    return json.loads(value) if value else {}


def another_druva_with_the_same_ids(world: World) -> FakeDruva:
    """A second Druva tenant whose user ids overlap the first's: other people behind the same numbers."""
    other = FakeDruva()
    other.credential = OTHER
    other._ids = itertools.count(5001)  # its creates must not reuse the copied ids
    for user in world.druva.accounts.values():
        other.add(
            druva_user(
                f"other{user.user_id}", user_id=user.user_id, email=f"other{user.user_id}@fabrikam.com"
            )
        )
    return other


def test_the_first_run_that_writes_binds_the_state_and_says_so() -> None:
    world = World()
    world.directory.tenant_id = "tenant-a"
    report = world.sync()
    assert recorded(world) == {"druva": "fake-druva/client", "entra": "tenant-a"}
    assert any(note.startswith("state bound to Entra tenant tenant-a") for note in report.notes)
    assert not any("bound" in note for note in world.sync().notes)


def test_a_dry_run_binds_nothing_and_is_refused_like_any_other() -> None:
    world = World()
    world.sync(dry_run=True)
    assert recorded(world) == {} and world.state.writes == 0
    world.sync()
    world.druva.credential = OTHER
    writes = world.state.writes
    with pytest.raises(StateBoundElsewhere):
        world.sync(dry_run=True)
    assert world.state.writes == writes


def test_a_run_against_another_druva_is_refused_before_it_reads_or_writes() -> None:
    world = World()
    world.sync()
    links = {link.entra_id: link for link in asyncio.run(_links(world))}
    world.druva = another_druva_with_the_same_ids(world)
    for full in (False, True):
        with pytest.raises(StateBoundElsewhere) as refused:
            world.sync(full=full)
        assert isinstance(refused.value, ConfigError)  # exit 2 on the command line
        message = str(refused.value)
        assert (
            "fake-druva/client" in message and OTHER in message and "python -m provisioning rebind" in message
        )
    assert world.druva.writes == []
    assert {link.entra_id: link for link in asyncio.run(_links(world))} == links
    with pytest.raises(StateBoundElsewhere):
        asyncio.run(import_accounts(run_of(world), ["ann@contoso.com"]))
    assert world.druva.writes == []


def test_status_names_the_refusal_until_a_run_with_the_right_settings_passes() -> None:
    world = World()
    world.sync()
    first = world.druva
    world.druva = another_druva_with_the_same_ids(world)
    with pytest.raises(StateBoundElsewhere):
        world.sync()
    status = asyncio.run(read_status(world.state, world.clock.now()))
    assert [p.code for p in status.problems][:1] == [STATE_BOUND_ELSEWHERE]
    assert OTHER in status.problems[0].detail and "runs are refused" in status.problems[0].detail
    assert status.to_json(1)["bound_to"] == {"entra_tenant": None, "druva_credential": "fake-druva/client"}
    world.druva = first
    world.sync()
    status = asyncio.run(read_status(world.state, world.clock.now()))
    assert STATE_BOUND_ELSEWHERE not in [p.code for p in status.problems]


def test_another_entra_tenant_is_refused_and_an_unknown_one_is_not_compared() -> None:
    world = World()
    world.sync()  # the token did not tell: the Entra half is unknown
    world.directory.tenant_id = "tenant-a"
    world.sync()  # now it does: filled in, not refused
    assert recorded(world)["entra"] == "tenant-a"
    world.directory.tenant_id = None
    world.sync()  # a token that does not tell is not compared, and forgets nothing
    assert recorded(world)["entra"] == "tenant-a"
    world.directory.tenant_id = "tenant-b"
    writes = len(world.druva.writes)
    with pytest.raises(StateBoundElsewhere, match=r"Entra tenant tenant-a .* Entra tenant tenant-b"):
        world.sync(full=True)
    assert len(world.druva.writes) == writes


def test_a_record_that_cannot_be_read_is_refused_and_rebind_mends_it() -> None:
    world = World()
    world.sync()
    asyncio.run(_write_binding(world, "{not json"))
    with pytest.raises(ConfigError, match="record of its tenants cannot be read"):
        world.sync()
    before, after, _ = asyncio.run(rebind(services(world)))
    assert before is None and after.druva == "fake-druva/client"
    world.sync()


def test_rebind_refuses_when_the_links_say_the_druva_is_another_one() -> None:
    world = World()
    world.sync()
    world.druva = another_druva_with_the_same_ids(world)
    found = asyncio.run(evidence(services(world)))
    assert found.checked == 6 and found.agreeing == 0 and len(found.disagreeing) == 6
    with pytest.raises(ConfigError, match="not re-bound: of 6 linked Druva users sampled, 0 have"):
        asyncio.run(rebind(services(world)))
    assert recorded(world)["druva"] == "fake-druva/client"


def test_rebind_accepts_the_same_druva_under_a_new_credential() -> None:
    world = World()
    world.sync()
    world.druva.credential = OTHER
    _, after, found = asyncio.run(rebind(services(world)))
    assert after.druva == OTHER and found.agreeing == 6 and found.convincing
    report = world.sync(full=True)
    assert report.totals()["failed"] == 0 and world.druva.writes[-1][0] == "create"  # nothing new written


def test_links_of_another_druva_are_never_patched_preserved_or_activated() -> None:
    """The probe's case: the state forced onto another Druva whose ids overlap. Nothing of the other
    tenant's users changes; every linked account is reported and left alone; status says so."""
    world = World()
    world.sync()
    world.druva = another_druva_with_the_same_ids(world)
    asyncio.run(rebind(services(world), force=True))
    world.directory.update_user("id-ann", account_enabled=False)  # would preserve Druva user "ann"
    world.directory.update_user("id-ben", display_name="Benjamin")  # would rename it
    report = world.sync(full=True)
    assert world.druva.writes == []
    held = asyncio.run(world.state.holds())
    assert {h.reason for h in held.values()} == {HoldReason.MISMATCHED}
    assert {"id-ann", "id-ben", "id-cat", "id-dan", "id-fay", "id-help"} <= set(held)
    assert all(d.outcome is Outcome.SKIPPED for d in report.decisions if d.entra_id in held)
    status = asyncio.run(read_status(world.state, world.clock.now()))
    assert LINKS_MISMATCHED in [p.code for p in status.problems]
    again = world.sync(full=True)
    assert world.druva.writes == [] and again.totals()["failed"] == 0
    writes = world.state.writes
    world.sync(full=True)
    assert world.state.writes - writes <= 6  # the holds stand: not rewritten every pass


def test_explain_shows_the_mismatch_and_import_rebinds_the_account_by_email() -> None:
    world = World()
    world.sync()
    world.druva = another_druva_with_the_same_ids(world)
    asyncio.run(rebind(services(world), force=True))
    world.sync()
    explained = asyncio.run(explain(run_of(world), "ann@contoso.com"))
    assert explained.decision.hold is not None and explained.decision.hold.reason is HoldReason.MISMATCHED
    assert "whose e-mail is other1001@fabrikam.com, not ann@contoso.com" in explained.decision.notes[0]
    report = asyncio.run(import_accounts(run_of(world), ["ann@contoso.com"]))
    assert report.totals()["created"] == 1
    ann = world.druva.by_email("ann@contoso.com")
    link = asyncio.run(world.state.get_link("id-ann"))
    assert ann is not None and link is not None and link.druva_user_id == ann.user_id
    other = world.druva.accounts[1001]
    assert other.email == "other1001@fabrikam.com" and other.user_name == "Other1001"  # untouched


def test_a_rename_in_entra_keeps_the_link_without_a_hold() -> None:
    world = World()
    world.sync()
    world.directory.update_user(
        "id-ann", user_principal_name="ann.lee@contoso.com", mail="ann.lee@contoso.com"
    )
    for _ in range(3):
        world.sync(full=True)
    link = asyncio.run(world.state.get_link("id-ann"))
    assert link is not None and link.email == "ann@contoso.com"  # Druva's e-mail, which the API cannot change
    assert "id-ann" not in asyncio.run(world.state.holds())


def test_a_link_written_before_links_kept_druvas_email_is_recognised_from_the_audit_trail() -> None:
    """Earlier versions recorded the account's e-mail in the link, so after a rename it no longer named
    the Druva user; the audit trail of its creation still does."""
    world = World()
    world.sync()
    link = asyncio.run(world.state.get_link("id-ann"))
    assert link is not None
    world.directory.update_user(
        "id-ann", user_principal_name="ann.lee@contoso.com", mail="ann.lee@contoso.com"
    )
    asyncio.run(world.state.put_link(dataclasses.replace(link, email="ann.lee@contoso.com")))
    world.sync(full=True)
    assert "id-ann" not in asyncio.run(world.state.holds())
    mended = asyncio.run(world.state.get_link("id-ann"))
    assert mended is not None and mended.email == "ann@contoso.com"


@pytest.mark.parametrize(
    ("link_email", "druva_email", "account_email", "recorded", "belongs"),
    [
        ("ann@contoso.com", "ann@contoso.com", "ann@contoso.com", (), True),
        ("ann@contoso.com", "ANN@Contoso.com", None, (), True),  # Druva compares without case
        ("ann@contoso.com", "ann@contoso.com", "ann.lee@contoso.com", (), True),  # renamed in Entra
        ("ann.lee@contoso.com", "ann.lee@contoso.com", "ann.lee@contoso.com", (), True),
        ("ann@contoso.com", "ann.lee@contoso.com", "ann.lee@contoso.com", (), True),  # aligned in the console
        ("ann.lee@contoso.com", "ann@contoso.com", "ann.lee@contoso.com", ("ann@contoso.com",), True),
        ("ann@contoso.com", "other0@fabrikam.com", "ann@contoso.com", (), False),
        ("ann@contoso.com", "other0@fabrikam.com", None, (), False),  # deleted from Entra
        ("ann@contoso.com", "ann@contoso.com.evil", "ann@contoso.com", (), False),
    ],
)
def test_which_druva_user_a_link_means(
    link_email: str, druva_email: str, account_email: str | None, recorded: tuple[str, ...], belongs: bool
) -> None:
    link = AccountLink("id", 1, link_email, None, None, None, None, "active", None)  # type: ignore[arg-type]
    assert belongs_to(link, druva_email, account_email, recorded) is belongs


def test_the_binding_record_round_trips() -> None:
    assert parse(None).binding is None
    assert parse('{"druva": "x/y", "entra": null}').binding is not None
    with pytest.raises(ConfigError):
        parse('["a list"]')


async def _links(world: World) -> list[AccountLink]:
    return [link async for link in world.state.links()]


async def _write_binding(world: World, value: str) -> None:
    claim = await world.state.claim_cursor(BINDING, "test", world.clock.now(), 30)
    await world.state.save_cursor(claim, value)


def test_a_druva_email_no_store_can_hold_costs_only_its_account() -> None:
    world = World()
    world.sync()
    ann = world.druva.by_email("ann@contoso.com")
    assert ann is not None
    world.druva.add(dataclasses.replace(ann, email="ann\ud800@contoso.com"))  # a lone surrogate from Druva
    report = world.sync(full=True)  # must not fail: the hold that names it is kept escaped
    held = asyncio.run(world.state.holds())
    assert held["id-ann"].reason is HoldReason.MISMATCHED and "\\ud800" in held["id-ann"].detail
    assert report.totals()["failed"] == 0


def test_rebind_refuses_another_entra_tenant_and_keeps_a_known_one() -> None:
    world = World()
    world.directory.tenant_id = "tenant-a"
    world.sync()
    world.directory.users = {}  # another Entra tenant: none of the linked accounts is in it
    world.directory.tenant_id = "tenant-b"
    with pytest.raises(ConfigError, match="the Entra tenant holds 0 of their accounts"):
        asyncio.run(rebind(services(world)))
    assert recorded(world)["entra"] == "tenant-a"


def test_rebind_with_a_token_that_does_not_tell_keeps_the_known_entra_tenant() -> None:
    world = World()
    world.directory.tenant_id = "tenant-a"
    world.sync()
    world.directory.tenant_id = None
    world.druva.credential = OTHER
    asyncio.run(rebind(services(world)))
    assert recorded(world) == {"druva": OTHER, "entra": "tenant-a"}


def test_two_first_runs_under_different_credentials_never_both_bind() -> None:
    """The second writer finds the record changed since it read it: it stops instead of overwriting."""
    from provisioning.errors import CursorBusy
    from provisioning.service.binding import ensure_bound

    world = World()
    other = services(world)
    first_read = asyncio.run(world.state.get_cursor(BINDING)).value
    assert first_read is None
    asyncio.run(ensure_bound(services(world), "first"))
    other.druva = another_druva_with_the_same_ids(world)
    with pytest.raises(StateBoundElsewhere):
        asyncio.run(ensure_bound(other, "second"))
    assert recorded(world)["druva"] == "fake-druva/client"
    # and a write whose comparison no longer stands is refused outright
    from provisioning.service.binding import Binding, Recorded, _write

    with pytest.raises(CursorBusy, match="changed while this run read it"):
        asyncio.run(_write(other, "third", None, Recorded(Binding(None, OTHER))))


def test_the_worker_refuses_work_for_a_state_of_other_tenants_without_redelivering_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from provisioning.domain.work import DeltaPass, WorkMessage
    from provisioning.service.dispatch import handle_work
    from provisioning.service.subscriptions import Endpoint, keep_subscriptions
    from tests.queue_fake import InProcessQueue

    world = World()
    world.sync()
    world.druva = another_druva_with_the_same_ids(world)
    queue = InProcessQueue()
    run = Run(Services(world.directory, world.druva, world.state, world.clock, queue), world.policy)
    said = asyncio.run(handle_work(WorkMessage(DeltaPass("timer")), run, None))
    assert "refused" in said and queue.pending() == [] and world.druva.writes == []
    endpoint = Endpoint("https://example.test/api/graph/notifications", None, "secret")
    with pytest.raises(StateBoundElsewhere):  # no subscription created or recorded for it either
        asyncio.run(keep_subscriptions(run.services, endpoint, world.clock.now()))
    assert world.directory.subscriptions == {}


@pytest.mark.parametrize(
    ("one", "other", "same"),
    [
        ("https://apis.druva.com/c1", "HTTPS://Apis.Druva.COM:443/c1", True),
        ("https://apis.druva.com/c1", "https://apis.druva.com//c1", True),
        ("https://apis.druva.com/c1", "https://apis.druva.com/./c1", True),
        ("http://127.0.0.1:8402/c1", "http://127.0.0.1:08402/c1", True),
        ("https://apis.druva.com/c1", "https://apis.druva.com/c2", False),
        ("https://apis.druva.com/c1", "https://govcloudapis.druva.com/c1", False),
        ("https://apis.druva.com/c1", "https://apis.druva.com:8443/c1", False),
    ],
)
def test_a_druva_url_is_compared_as_it_means(one: str, other: str, same: bool) -> None:
    from provisioning.service.binding import Binding, differs

    assert differs(Binding(None, one), Binding(None, other)) is not same


def test_explain_refuses_a_state_of_other_tenants_and_writes_nothing() -> None:
    world = World()
    world.sync()
    world.druva = another_druva_with_the_same_ids(world)
    writes = world.state.writes
    with pytest.raises(StateBoundElsewhere):
        asyncio.run(explain(Run(services(world), world.policy, dry_run=True), "ann@contoso.com"))
    assert world.state.writes == writes


def test_a_rebind_where_linked_users_are_missing_is_refused() -> None:
    """Missing linked users are as suspect as strangers: re-created, they could take ids other links hold."""
    world = World()
    world.sync()
    druva = FakeDruva()
    druva.credential = OTHER
    ann = world.druva.by_email("ann@contoso.com")
    assert ann is not None
    druva.add(ann)  # one of six is there, five are missing
    world.druva = druva
    with pytest.raises(ConfigError, match="1 have the e-mail recorded, 5 do not exist"):
        asyncio.run(rebind(services(world)))
