"""Follow-ups around a pass: notified objects looked for until a delta read returns them, and accounts
held as they are until they can be decided (the rules are in ``provisioning.domain.followups``).

A pass reads what is due at its start (``PassFollowUps.load``): holds whose recheck time has come and
notified users whose promise expired unseen are read directly, by id, with the changed accounts (a user
restored from the recycle bin may never show in a ``$select`` users delta). At its end it records what
it learnt (``PassFollowUps.record``): the holds its decisions asked for, the promises its reads kept,
and when the next look is due, which the worker turns into one scheduled pass that every pending promise
and due hold shares.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from provisioning.domain.decisions import Decision, Outcome
from provisioning.domain.followups import (
    TENANT_WIDE,
    Hold,
    HoldReason,
    HoldRequest,
    Promise,
    Sighting,
    hold_for,
    next_look,
    past_horizon,
    refused,
    signature_of,
    still_refused,
)
from provisioning.domain.mappings import Policy
from provisioning.domain.work import Watch
from provisioning.errors import DruvaRefused, InvalidRequestError, RefusalKind
from provisioning.ports import StateStore
from provisioning.service.memberships import tracked_groups

# Looks are scheduled messages; one due further away than Service Bus's duplicate detection (10
# minutes) could be enqueued again by every pass meanwhile. Every pass reads what is due anyway, so the
# 15-minute safety-net pass picks up rechecks further away.
LOOK_AHEAD = timedelta(minutes=10)


async def promises_of(work: Watch, policy: Policy, state: StateStore) -> list[Promise]:
    """What a Watch asks to follow: every user, and the groups the passes read (a change to any other
    group cannot change a decision): the mappings' groups, and with nested mappings the groups nested in
    them as the stored membership index knows them."""
    when = work.received
    tracked = policy.group_ids
    if policy.nested_group_ids:
        tracked = tracked_groups(policy, await state.load_memberships(policy.nested_group_ids))
    groups = [g for g in work.group_ids if g.partition(":")[0] in tracked]
    return [Promise(i, "users", when) for i in work.user_ids] + [Promise(g, "groups", when) for g in groups]


def first_look(notified_at: datetime, now: datetime) -> datetime:
    """When a newly noticed object is first looked for again (the hint passes look at once)."""
    return next_look([Promise("", "", notified_at)], now) or now


def refusal_hold(error: InvalidRequestError, decision: Decision, credential: str, now: datetime) -> Hold:
    """The hold a refused write leaves: against the account, or (a credential that may not write) against
    every write made with that credential."""
    kind = error.kind if isinstance(error, DruvaRefused) else RefusalKind.OTHER
    advice = error.advice if isinstance(error, DruvaRefused) else DruvaRefused("", kind).advice
    detail = f"Druva refused {', '.join(a.describe() for a in decision.actions)}: {error}"
    if kind is RefusalKind.PERMISSION:
        return refused(
            TENANT_WIDE,
            "every account",
            detail=detail,
            advice=advice,
            kind=kind,
            signature=credential,
            now=now,
        )
    signature = signature_of(a.describe() for a in decision.actions)
    return refused(
        decision.entra_id,
        decision.principal,
        detail=detail,
        advice=advice,
        kind=kind,
        signature=signature,
        now=now,
    )


def held_with(everyone: Hold, decision: Decision) -> Hold:
    """An account whose writes a refusal of the credential (``everyone``) held back: held with it, so
    it is read again when the hold ends or the credential changes, not forgotten once the cursor moves."""
    return dataclasses.replace(everyone, entra_id=decision.entra_id, principal=decision.principal)


@dataclass
class PassFollowUps:
    """What a pass knows of follow-ups: the stored holds, and the promises past the horizon unseen."""

    holds: dict[str, Hold] = field(default_factory=dict)
    unseen: list[Promise] = field(default_factory=list)
    credential: str = ""
    groups_pending: bool = False  # a group notification waits to be seen: a look reads the groups delta

    @classmethod
    async def load(
        cls, state: StateStore, now: datetime, credential: str, *, promises: bool
    ) -> PassFollowUps:
        """``promises``: whether the pass reads the promises too (an incremental pass does; a full one
        reads everyone anyway)."""
        followed = await state.promises() if promises else []
        gone = [p for p in followed if past_horizon(p, now)]
        groups = any(p.resource == "groups" for p in followed if p not in gone)
        return cls(await state.holds(), gone, credential, groups)

    def rechecks(self, now: datetime) -> set[str]:
        """Accounts to read directly in this pass: due holds, notified users never seen, and once the
        credential may write again (a new one, or the day is over), every account its refusal held."""
        due = {i for i, hold in self.holds.items() if i != TENANT_WIDE and hold.due(now)}
        if self.writes_refused(now) is None:
            due |= {i for i, h in self.holds.items() if i != TENANT_WIDE and h.kind == RefusalKind.PERMISSION}
        return due | self.unseen_users

    def groups_needed(self, now: datetime) -> bool:
        """Whether a look must read the groups delta too: a group notification waits to be seen, or a
        new account's settle window ends (it is created through the groups it is in by then)."""
        settled = any(h.reason is HoldReason.SETTLING and h.due(now) for h in self.holds.values())
        return self.groups_pending or settled

    @property
    def unseen_users(self) -> set[str]:
        """Users read only because their promise passed the horizon: if the read misses them, there is
        nothing to decide (no delta ever reported them), so they are not held."""
        return {p.object_id for p in self.unseen if p.resource == "users"}

    def writes_refused(self, now: datetime) -> Hold | None:
        """Druva refused every write with this credential, and neither the back-off nor the credential
        has changed since."""
        hold = self.holds.get(TENANT_WIDE)
        return hold if still_refused(hold, self.credential, now) else None

    def held_back(self, decision: Decision, now: datetime) -> Decision:
        """The decision, or the same account held as it is while a refusal of these writes stands."""
        if not decision.actions:
            return decision
        hold = self.writes_refused(now)
        if hold is None:
            stored = self.holds.get(decision.entra_id)
            signature = signature_of(a.describe() for a in decision.actions)
            hold = stored if still_refused(stored, signature, now) else None
        if hold is None:
            return decision
        note = f"held: {hold.describe()}; tried again after {hold.recheck_at:%Y-%m-%d %H:%M} UTC"
        request = HoldRequest(HoldReason.REFUSED, hold.detail, until=hold.recheck_at, advice=hold.advice)
        return dataclasses.replace(
            decision, outcome=Outcome.SKIPPED, actions=(), hold=request, notes=(note, *decision.notes)
        )

    async def record(
        self,
        state: StateStore,
        decided: Mapping[str, Decision],
        refusals: Iterable[Hold],
        sighting: Sighting,
        now: datetime,
        *,
        mark: bool,
        complete: bool,
    ) -> datetime | None:
        """Write what the pass learnt; returns when the next look is due (None: nothing to look for
        within ``LOOK_AHEAD``). ``refusals``: writes Druva refused in this pass. ``complete``: the pass
        decided every account in Entra (a full pass), so holds of accounts it did not decide go too."""
        refused_now = {h.entra_id: h for h in refusals}
        new = [h for h in self._new_holds(decided, now) if h.entra_id not in refused_now]
        new += refused_now.values()
        await state.put_holds(new)
        cleared = [i for i in self._cleared(decided, complete, now) if i not in refused_now]
        await state.clear_holds(cleared)
        pending = await state.sighted(sighting, mark=mark)
        await state.forget_promises(self.unseen)
        kept = [
            h for i, h in self.holds.items() if i not in decided and i not in cleared and i != TENANT_WIDE
        ]
        due = [next_look(pending, now), *(h.recheck_at for h in (*new, *kept))]
        soonest = min((d for d in due if d is not None), default=None)
        if soonest is None or soonest - now > LOOK_AHEAD:
            return None
        return max(soonest, now)

    def _new_holds(self, decided: Mapping[str, Decision], now: datetime) -> Iterable[Hold]:
        for entra_id, decision in decided.items():
            request, before = decision.hold, self.holds.get(entra_id)
            if request is None:
                continue
            stands = before is not None and before.reason is request.reason and not before.due(now)
            if request.reason in (HoldReason.REFUSED, HoldReason.MISMATCHED) and stands:
                continue  # a refusal stands as recorded until its day is over, then another day
            yield hold_for(entra_id, decision.principal, request, before, now)

    def _cleared(self, decided: Mapping[str, Decision], complete: bool, now: datetime) -> list[str]:
        """Holds of accounts decided without one (and, after a full pass, of accounts no longer in
        Entra), unreadable holds past their day (the nightly reconciliation reads everyone), and the
        refusal of the credential once its day is over or the credential changed."""
        return [
            i
            for i, hold in self.holds.items()
            if (i in decided and decided[i].hold is None)
            or (complete and i not in decided and i != TENANT_WIDE)
            or hold.given_up(now)
            or (i == TENANT_WIDE and self.writes_refused(now) is None)
        ]
