"""Production realism in the service layer: never act on what could not be read, settle new accounts,
hold refusals only a human can lift, and follow notified changes until a delta read returns them.

Each test here fails on the product as it was before these rules (it preserved, created or retried
where it now holds)."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from provisioning.domain.accounts import Unreadable
from provisioning.domain.druva import DruvaStatus
from provisioning.domain.followups import HORIZON, MIN_STEP, TENANT_WIDE, Hold, HoldReason, Promise
from provisioning.domain.links import LinkStatus
from provisioning.domain.work import Watch, WorkMessage
from provisioning.errors import DruvaRefused, RefusalKind
from provisioning.service.binding import StateBoundElsewhere, rebind
from provisioning.service.context import Run, Services
from provisioning.service.dispatch import handle_work
from provisioning.service.report import RunReport
from tests.builders import FINANCE, account, druva_user, seed_policy
from tests.queue_fake import InProcessQueue
from tests.unit.service.test_sync import World

NOW_AT = datetime(2026, 11, 26, 12, 0, 52, tzinfo=UTC)
SCOPED = Unreadable("mailbox settings", "Exchange answered 403: scoped away from this app")


def totals(report: RunReport) -> dict[str, int]:
    return report.totals()


def move(world: World, entra_id: str, **attributes: object) -> None:
    """Change Graph properties of an account (the fake keeps them as its attributes)."""
    current = world.directory.users[entra_id]
    world.directory.update_user(entra_id, attributes={**current.attributes, **attributes})


def hold_of(world: World, entra_id: str) -> Hold | None:
    return asyncio.run(world.state.holds([entra_id])).get(entra_id)


# never act on what could not be read ------------------------------------------------------------------
def test_a_shared_mailbox_scoped_away_from_the_app_is_left_as_it_is() -> None:
    """Before, a 403 on mailboxSettings read as "no mailbox": the linked shared mailbox looked like a
    disabled user and was preserved, which stops its backups."""
    world = World()
    world.sync()
    help_user = world.druva_user("help")
    world.directory.purposes["id-help"] = SCOPED
    world.directory.update_user("id-help", display_name="Help desk")  # any change: the account is decided

    report = world.sync()

    assert world.druva.accounts[help_user.user_id].status is DruvaStatus.ACTIVE
    assert ("preserve", help_user.user_id) not in world.druva.writes
    assert totals(report)["preserved"] == 0
    assert [d.principal for d in report.held] == ["help@contoso.com"]
    hold = hold_of(world, "id-help")
    assert hold is not None and hold.reason is HoldReason.UNREADABLE and "scoped away" in hold.detail


def test_a_full_reconciliation_does_not_preserve_an_unreadable_mailbox_either() -> None:
    world = World()
    world.sync()
    world.directory.purposes["id-help"] = SCOPED
    report = world.sync(full=True)
    assert world.druva_user("help").status is DruvaStatus.ACTIVE and totals(report)["preserved"] == 0


def test_a_404_on_a_new_accounts_mailbox_means_still_provisioning_not_a_leaver() -> None:
    """Exchange answers 404 MailboxNotEnabledForRESTAPI while it provisions a new mailbox (minutes to
    hours): a new shared mailbox must not be taken for a disabled user; an old account's 404 still means
    it has no mailbox."""
    world = World()
    new = dataclasses.replace(
        account("desk", enabled=False, mail="desk@contoso.com"),
        created_at=world.clock.now() - timedelta(hours=1),
    )
    world.directory.add_user(new, purpose=None)
    report = world.sync()
    assert "id-desk" in {d.entra_id for d in report.held}
    world.directory.purposes["id-desk"] = "shared"  # Exchange is done
    world.clock.advance(120)
    world.sync()
    assert world.druva_user("desk").profile == "Mailboxes"


@pytest.mark.parametrize("age", [timedelta(days=400), None])
def test_an_old_account_without_a_mailbox_is_a_leaver_as_before(age: timedelta | None) -> None:
    """Older than a day, or of unknown age (Graph has no createdDateTime for accounts from before
    mid-2018): a 404 means no mailbox, and the disabled account is a leaver."""
    world = World()
    world.sync()
    ann = world.druva_user("ann")
    created = None if age is None else world.clock.now() - age
    world.directory.users["id-ann"] = dataclasses.replace(world.directory.users["id-ann"], created_at=created)
    world.directory.update_user("id-ann", account_enabled=False, mail="ann@contoso.com")
    world.policy = seed_policy(max_preserve_fraction=0.5)
    world.directory.purposes["id-ann"] = None
    world.sync()
    assert world.druva.accounts[ann.user_id].status is DruvaStatus.PRESERVED


def test_an_account_enabled_graph_left_out_is_read_again_and_never_taken_as_enabled() -> None:
    """A skeleton user has no accountEnabled yet: before, it counted as enabled and a disabled account
    was created (or a preserved one re-activated)."""
    world = World()
    world.sync()
    world.directory.add_user(account("skel", officeLocation="Chicago", enabled=None))  # type: ignore[arg-type]
    report = world.sync()
    assert world.druva.by_email("skel@contoso.com") is None
    assert world.directory.calls["get_users"] >= 1  # read once more, explicitly
    assert "accountEnabled" in report.held[0].notes[0]
    world.directory.users["id-skel"] = dataclasses.replace(
        world.directory.users["id-skel"], account_enabled=True
    )
    world.clock.advance(60)  # past the first recheck
    world.sync()
    assert world.druva.by_email("skel@contoso.com") is not None


def test_a_user_a_read_by_id_misses_is_held_not_preserved() -> None:
    """Before, a ``$filter=id eq`` read that missed a user (not replicated yet) reported it removed for
    good, and a linked user whose membership changed was preserved."""
    world = World()
    world.sync()
    fay = world.druva_user("fay")
    world.directory.remove_member(FINANCE.id, "id-fay")  # touched through its membership
    hidden = world.directory.users.pop("id-fay")  # and missed by the read by id that follows
    report = world.sync()
    assert world.druva.accounts[fay.user_id].status is DruvaStatus.ACTIVE
    assert [d.entra_id for d in report.held] == ["id-fay"]
    world.directory.users["id-fay"] = hidden
    world.clock.advance(31)
    world.sync()  # the recheck reads it again: now re-mapped from Finance to the Chicago office
    assert world.druva.accounts[fay.user_id].profile == "Standard"
    assert hold_of(world, "id-fay") is None


# settling -------------------------------------------------------------------------------------------
def test_a_new_hire_is_created_once_it_has_settled_with_its_final_mapping() -> None:
    """Accounts arrive in pieces: created through the catch-all at once, a Finance hire would keep the
    catch-all's quota for good (Druva cannot change it) and move its storage region afterwards."""
    world = World(seed_policy(settle_seconds=300))
    world.sync()
    hire = dataclasses.replace(account("hire", officeLocation="Paris"), created_at=world.clock.now())
    world.directory.add_user(hire)

    report = world.sync()
    assert world.druva.by_email("hire@contoso.com") is None
    assert report.held[0].hold is not None and report.held[0].hold.reason is HoldReason.SETTLING
    assert report.next_look == world.clock.now() + timedelta(seconds=300)

    world.clock.advance(120)
    world.directory.add_member(FINANCE.id, "id-hire")  # a dynamic group, minutes later
    world.sync()
    assert world.druva.by_email("hire@contoso.com") is None

    world.clock.advance(181)
    world.sync()  # nothing changed in Entra: the settled account is read again because it was held
    created = world.druva_user("hire")
    assert (created.profile, created.storage, created.quota_bytes) == ("Finance", "US-East", 200 * 1024**3)
    assert [w for w in world.druva.writes if w == ("create", "hire@contoso.com")] == [
        ("create", "hire@contoso.com")
    ]


def test_settle_zero_creates_at_once_and_old_accounts_never_wait() -> None:
    world = World(seed_policy(settle_seconds=0))
    world.directory.add_user(dataclasses.replace(account("now"), created_at=world.clock.now()))
    world.sync()
    assert world.druva.by_email("now@contoso.com") is not None
    settled = World(seed_policy(settle_seconds=300))  # the seed users carry no createdDateTime
    assert totals(settled.sync())["created"] == 6


# refusals only a human can lift -----------------------------------------------------------------------
def test_an_activation_refused_for_want_of_a_licence_is_reported_once_and_not_retried_every_pass() -> None:
    world = World(seed_policy(max_preserve_fraction=0.5))
    world.sync()
    ann = world.druva_user("ann")
    world.directory.update_user("id-ann", account_enabled=False)
    world.sync()  # preserved
    refusal = DruvaRefused("no active licence is free", RefusalKind.LICENCE)
    world.druva.refusals[("activate", ann.user_id)] = refusal
    world.directory.update_user("id-ann", account_enabled=True)

    first = world.sync()
    assert totals(first)["failed"] == 1
    hold = hold_of(world, "id-ann")
    assert hold is not None and "licence" in (hold.advice or "")

    writes = len(world.druva.writes)
    for _ in range(3):  # later passes, in the same day: not asked again
        world.directory.update_user("id-ann", display_name="Ann")
        later = world.sync()
        assert totals(later)["failed"] == 0 and "id-ann" in {d.entra_id for d in later.held}
    assert len(world.druva.writes) == writes

    del world.druva.refusals[("activate", ann.user_id)]  # a licence was freed
    world.clock.advance(86_401)
    world.directory.update_user("id-ann", display_name="Ann B")
    world.sync()
    assert world.druva.accounts[ann.user_id].status is DruvaStatus.ACTIVE
    assert hold_of(world, "id-ann") is None


def test_a_refused_profile_change_is_tried_again_at_once_when_the_plan_changes() -> None:
    world = World()
    world.sync()
    fay = world.druva_user("fay")
    world.druva.refusals[("update", fay.user_id)] = DruvaRefused(
        "privacy settings conflict", RefusalKind.PRIVACY
    )
    world.directory.remove_member(FINANCE.id, "id-fay")  # Finance → Standard: refused
    world.sync()
    assert hold_of(world, "id-fay") is not None
    del world.druva.refusals[("update", fay.user_id)]
    move(world, "id-fay", officeLocation="Paris")  # another target: another plan
    world.sync()
    assert world.druva.accounts[fay.user_id].storage == "EU-West"


def test_a_credential_that_may_not_write_stops_the_writes_once_and_holds_them_until_it_changes() -> None:
    world = World()
    for name in ("ann", "ben", "cat"):
        world.druva.refusals[("create", f"{name}@contoso.com")] = DruvaRefused(
            "Access restricted due to insufficient permissions.", RefusalKind.PERMISSION
        )
    first = world.sync()
    assert totals(first)["created"] == 0
    assert len([w for w in world.druva.writes if w[0] == "create"]) == 0
    assert hold_of(world, TENANT_WIDE) is not None
    refused_creates = totals(first)["failed"]
    assert refused_creates >= 1

    second = world.sync(full=True)
    assert totals(second)["failed"] == 0 and world.druva.writes == []
    assert any("no Druva writes" in note for note in second.notes)

    world.druva.refusals.clear()
    world.druva.credential = "fake-druva/another-client"
    with pytest.raises(StateBoundElsewhere):  # the state is bound to its credential: re-bound by hand
        world.sync()
    assert world.druva.writes == []
    asyncio.run(rebind(Services(world.directory, world.druva, world.state, world.clock)))
    third = world.sync()  # a delta pass: nothing changed in Entra, the held accounts are read again
    assert totals(third)["created"] == 6
    assert hold_of(world, TENANT_WIDE) is None and asyncio.run(world.state.holds()) == {}


def test_a_credential_given_write_rights_is_tried_again_after_a_day() -> None:
    world = World()
    refusal = DruvaRefused("Access restricted due to insufficient permissions.", RefusalKind.PERMISSION)
    world.druva.refusals[("create", "ann@contoso.com")] = refusal
    world.sync()
    world.druva.refusals.clear()  # the same credential, its role fixed in the Druva console
    world.clock.advance(3600)
    assert totals(world.sync())["created"] == 0  # within the day: still held
    world.clock.advance(86_400)
    assert totals(world.sync())["created"] == 6
    assert asyncio.run(world.state.holds()) == {}


def test_a_403_that_concerns_one_account_holds_only_that_account() -> None:
    world = World()
    world.druva.refusals[("create", "ann@contoso.com")] = DruvaRefused("on legal hold", RefusalKind.OTHER)
    report = world.sync()
    assert totals(report)["created"] == 5 and hold_of(world, TENANT_WIDE) is None


def test_two_druva_users_whose_emails_differ_only_in_case_are_never_adopted_silently() -> None:
    world = World()
    world.druva.add(druva_user("ann", user_id=7, email="Ann@contoso.com"))
    world.druva.add(druva_user("ann", user_id=8, email="ann@contoso.com"))
    report = world.sync(full=True)
    assert asyncio.run(world.state.get_link("id-ann")) is None
    assert "id-ann" in {d.entra_id for d in report.held}
    hold = hold_of(world, "id-ann")
    assert hold is not None and "duplicate" in (hold.advice or "")


# following notified changes -------------------------------------------------------------------------
def _services(world: World, queue: InProcessQueue) -> Services:
    return Services(world.directory, world.druva, world.state, world.clock, queue)


def _handle(world: World, queue: InProcessQueue, work: object) -> str:
    run = Run(_services(world, queue), world.policy)
    return asyncio.run(handle_work(WorkMessage(work), run, None))  # type: ignore[arg-type]


def test_a_notified_change_not_yet_readable_is_looked_for_until_it_is() -> None:
    world, queue = World(), InProcessQueue()
    world.sync()
    notified = world.clock.now()
    _handle(world, queue, Watch(notified.isoformat(), users="id-late"))
    assert [m.not_before for m in queue.pending()] == [notified + MIN_STEP]

    world.clock.advance(10)
    _handle(world, queue, queue.pending()[-1].work)  # the look: nothing readable yet
    look = queue.pending()[-1]
    assert look.not_before is not None and look.not_before > world.clock.now()

    world.directory.add_user(account("late", officeLocation="Chicago"))  # now readable
    world.clock.advance(10)
    _handle(world, queue, look.work)
    assert world.druva.by_email("late@contoso.com") is not None
    assert asyncio.run(world.state.promises()) == []  # kept: no further look
    before = len(queue.pending())
    world.clock.advance(10)
    _handle(world, queue, queue.pending()[-1].work)
    assert len(queue.pending()) == before  # nothing left to look for


def test_a_notification_whose_change_a_pass_already_read_is_not_followed() -> None:
    """The pass the webhook's hint started may read the change before the notification's own follow-up
    is recorded: it is then answered already, and costs no looks."""
    world, queue = World(), InProcessQueue()
    world.sync()
    notified = world.clock.now()
    move(world, "id-ann", officeLocation="Paris")
    world.clock.advance(1)
    world.sync()  # the hint pass reads it
    _handle(world, queue, Watch(notified.isoformat(), users="id-ann"))
    assert asyncio.run(world.state.promises()) == []


def test_followed_objects_are_given_up_after_the_horizon_and_read_directly_once() -> None:
    """A user restored from the recycle bin may never show in a $select users delta: when its promise
    expires unseen, the user is read by id, and re-activated."""
    world, queue = World(seed_policy(max_preserve_fraction=0.5)), InProcessQueue()
    world.sync()
    cat = world.druva_user("cat")
    restored = world.directory.users["id-cat"]
    world.directory.delete_user("id-cat")
    world.sync()
    assert world.druva.accounts[cat.user_id].status is DruvaStatus.PRESERVED
    world.clock.advance(60)
    world.directory.unlisted.add("id-cat")
    world.directory.add_user(restored)  # restored: notified, but absent from the delta
    _handle(world, queue, Watch(world.clock.now().isoformat(), users="id-cat"))
    world.clock.advance(HORIZON.total_seconds() + 1)
    world.sync()
    assert world.druva.accounts[cat.user_id].status is DruvaStatus.ACTIVE
    assert asyncio.run(world.state.promises()) == []
    link = asyncio.run(world.state.get_link("id-cat"))
    assert link is not None and link.status is LinkStatus.ACTIVE


def test_groups_the_mappings_do_not_read_are_not_followed() -> None:
    world, queue = World(), InProcessQueue()
    said = _handle(world, queue, Watch(world.clock.now().isoformat(), groups="not-a-mapped-group"))
    assert "no object" in said and queue.pending() == [] and asyncio.run(world.state.promises()) == []
    _handle(world, queue, Watch(world.clock.now().isoformat(), groups=FINANCE.id))
    assert asyncio.run(world.state.promises()) == [Promise(FINANCE.id, "groups", world.clock.now())]


def test_a_full_round_that_sends_an_account_twice_decides_it_once() -> None:
    world = World()
    world.directory.repeated.add("id-ann")
    report = world.sync(full=True)
    assert totals(report)["created"] == 6
    assert [w for w in world.druva.writes if w == ("create", "ann@contoso.com")] == [
        ("create", "ann@contoso.com")
    ]


def test_a_look_for_users_alone_leaves_the_groups_delta_to_the_next_pass() -> None:
    """A look costs one users-delta request in a quiet tenant; a group change waits in the groups delta
    (its cursor does not move) until a pass that reads it."""
    world, queue = World(), InProcessQueue()
    world.sync()
    _handle(world, queue, Watch(world.clock.now().isoformat(), users="id-ann"))
    world.directory.add_member(FINANCE.id, "id-ben")  # a group change nobody was told about
    before = world.directory.calls["read_memberships"]
    world.clock.advance(10)
    _handle(world, queue, queue.pending()[-1].work)  # the look
    assert world.directory.calls["read_memberships"] == before
    assert world.druva_user("ben").profile == "Standard"
    world.sync()  # any other pass reads the groups delta from where it was
    assert world.druva_user("ben").profile == "Finance"

    _handle(world, queue, Watch(world.clock.now().isoformat(), groups=FINANCE.id))
    world.clock.advance(10)
    _handle(world, queue, queue.pending()[-1].work)
    assert world.directory.calls["read_memberships"] > before


def test_a_look_asked_for_within_the_window_of_the_running_look_is_still_sent() -> None:
    """Looks one window apart are different looks: the queue must not take the second for the first."""
    from provisioning.domain.work import look

    first, second = look(NOW_AT), look(NOW_AT + timedelta(seconds=1.6))
    assert first.message_id != second.message_id
    assert look(NOW_AT).message_id == first.message_id  # the same moment asked twice: one look


def test_a_full_pass_keeps_no_promise() -> None:
    """A full read returns everyone as readable now, which says nothing of a change not readable yet."""
    world, queue = World(), InProcessQueue()
    world.sync()
    world.clock.advance(5)
    _handle(world, queue, Watch(world.clock.now().isoformat(), users="id-ann"))
    world.clock.advance(5)
    world.sync(full=True)
    assert [p.object_id for p in asyncio.run(world.state.promises())] == ["id-ann"]


def test_a_promise_whose_write_failed_for_a_passing_reason_is_not_kept() -> None:
    from provisioning.errors import TransientError

    world, queue = World(), InProcessQueue()
    world.sync()
    world.clock.advance(5)
    world.directory.add_user(account("new", officeLocation="Chicago"))
    _handle(world, queue, Watch(world.clock.now().isoformat(), users="id-new"))
    world.druva.fail_creates["new@contoso.com"] = TransientError("Druva answered 503")
    world.clock.advance(5)
    world.sync()
    assert [p.object_id for p in asyncio.run(world.state.promises())] == ["id-new"]


def test_a_refusal_past_its_day_is_renewed_not_asked_every_pass() -> None:
    world = World()
    world.druva.add(druva_user("ann", user_id=7, email="Ann@contoso.com"))
    world.druva.add(druva_user("ann", user_id=8, email="ann@contoso.com"))
    world.sync(full=True)
    world.clock.advance(86_401)
    world.sync()  # the day is over: read again, still ambiguous, held another day
    hold = hold_of(world, "id-ann")
    assert hold is not None and hold.recheck_at > world.clock.now() and hold.attempts == 2
    reads = world.directory.calls["get_users"]
    world.clock.advance(60)
    world.sync()
    assert world.directory.calls["get_users"] == reads  # not read again every pass


def test_a_notification_already_answered_schedules_no_look() -> None:
    world, queue = World(), InProcessQueue()
    world.sync()
    notified = world.clock.now()
    move(world, "id-ann", officeLocation="Paris")
    world.clock.advance(1)
    world.sync()
    said = _handle(world, queue, Watch(notified.isoformat(), users="id-ann"))
    assert "read already" in said and queue.pending() == []


def test_a_look_at_the_end_of_a_settle_window_reads_the_groups_too() -> None:
    """The hire is created through the groups it is in by then, even if the group's notification is
    late or lost."""
    world, queue = World(seed_policy(settle_seconds=300)), InProcessQueue()
    world.sync()
    world.directory.add_user(
        dataclasses.replace(account("hire", officeLocation="Paris"), created_at=world.clock.now())
    )
    world.sync()
    world.directory.add_member(FINANCE.id, "id-hire")  # no notification reaches the app
    world.clock.advance(301)
    _handle(world, queue, WorkMessage(Watch(world.clock.now().isoformat(), users="id-hire")).work)
    from provisioning.domain.work import look

    _handle(world, queue, look(world.clock.now()).work)
    assert world.druva_user("hire").profile == "Finance"
