"""A crash between the Druva write and the state write: the next run adopts, it never duplicates."""

from __future__ import annotations

import pytest

from provisioning.domain.accounts import EntraAccount
from provisioning.domain.decisions import Adopt, Create, Decision
from provisioning.domain.druva import DruvaUser
from provisioning.domain.links import AccountLink, LinkStatus
from provisioning.domain.planner import Situation, decide
from provisioning.ports import StateStore
from tests.builders import NOW, account, druva_user, seed_policy

pytestmark = pytest.mark.anyio


async def situation(store: StateStore, user: EntraAccount, druva_by_email: DruvaUser | None) -> Situation:
    """What a run knows about one account: its link from the store, its Druva user found by e-mail."""
    link = await store.get_link(user.id)
    owner = await store.owner_of(druva_by_email.user_id) if druva_by_email else None
    return Situation(user.id, user, link=link, druva=druva_by_email, druva_owner=owner)


def link_for(decision: Decision, druva: DruvaUser, previous: AccountLink | None) -> AccountLink:
    """The link a run writes once its Druva writes are done."""
    assert decision.desired is not None and decision.desired.target is not None
    target = decision.desired.target
    return AccountLink(
        entra_id=decision.entra_id,
        druva_user_id=druva.user_id,
        email=druva.email,
        mapping=decision.desired.mapping,
        profile=target.profile,
        storage=target.storage,
        quota=str(target.quota) if target.quota else None,
        status=LinkStatus.ACTIVE,
        decided_at=NOW,
        version=previous.version if previous else None,
    )


async def test_a_druva_user_created_before_a_crash_is_adopted_not_duplicated(store: StateStore) -> None:
    policy = seed_policy()
    alice = account("alice")  # matches "Everyone else": Standard / EU-West / unlimited

    # Run 1: nothing in Druva, so the planner creates; the create succeeds, then the process dies
    # before the link is written.
    first = decide(await situation(store, alice, None), policy)
    assert [type(action) for action in first.actions] == [Create]
    created = druva_user("alice", user_id=4242, storage="EU-West")
    assert await store.get_link(alice.id) is None

    # Run 2: no link, but the look-up by e-mail finds the user run 1 created.
    second = decide(await situation(store, alice, created), policy)

    assert not any(isinstance(action, Create) for action in second.actions)
    assert Adopt(4242, "alice@contoso.com") in second.actions
    linked = await store.put_link(link_for(second, created, previous=None))
    assert await store.owner_of(4242) == alice.id

    # Run 3: linked and in step; nothing left to do.
    third = decide(await situation(store, alice, created), policy)
    assert third.actions == ()
    assert await store.get_link(alice.id) == linked


async def test_the_adopted_user_is_not_adopted_again_by_another_account(store: StateStore) -> None:
    policy = seed_policy()
    alice, twin = account("alice"), account("ALICE")  # e-mails equal but for case: one Druva user
    created = druva_user("alice", user_id=4242, storage="EU-West")
    adopted = decide(await situation(store, alice, created), policy)
    await store.put_link(link_for(adopted, created, previous=None))

    other = decide(await situation(store, twin, created), policy)

    assert other.actions == ()
    assert any("already linked to Entra account id-alice" in note for note in other.notes)
