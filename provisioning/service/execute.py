"""Carrying out decisions: Druva writes in order, then the link and the audit trail.

Every step is idempotent against a re-run: a decision is computed from what Druva and the store hold
now, so a second run after success finds nothing to do and writes nothing. A link is rewritten only
when its facts change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Mapping
from datetime import datetime

from provisioning.domain.accounts import storable
from provisioning.domain.decisions import Activate, Adopt, Create, Decision, Patch, Preserve
from provisioning.domain.druva import DruvaStatus, NewDruvaUser
from provisioning.domain.links import AccountLink, LinkStatus
from provisioning.domain.state import AuditEntry, AuditOutcome
from provisioning.errors import (
    AuthError,
    CatalogError,
    ConcurrencyConflict,
    ConflictError,
    DruvaRefused,
    InvalidRequestError,
    NotFoundError,
    RefusalKind,
    TransientError,
)
from provisioning.service import telemetry
from provisioning.service.context import Run
from provisioning.service.followups import held_with, refusal_hold
from provisioning.service.report import RunReport

log = logging.getLogger("provisioning")

PERMANENT = (InvalidRequestError, NotFoundError, ConflictError, CatalogError)


class _Partial(Exception):
    """A decision failed after some of its actions were done; ``user_id``/``status`` say how far."""

    def __init__(self, cause: Exception, user_id: int | None, status: DruvaStatus | None) -> None:
        super().__init__(str(cause))
        self.cause, self.user_id, self.status = cause, user_id, status


async def carry_out_all(
    run: Run,
    decisions: Iterable[Decision],
    links: Mapping[str, AccountLink],
    report: RunReport,
    *,
    done_before: int = 0,
    total: int | None = None,
) -> None:
    """Carry out decisions concurrently (bounded); one account's failure never stops the others.
    ``done_before``/``total`` place this batch within a longer pass, for the progress display."""
    gate = asyncio.Semaphore(run.concurrency)
    todo = list(decisions)
    done = done_before
    total = total if total is not None else done_before + len(todo)

    async def one(decision: Decision) -> None:
        nonlocal done
        async with gate:
            await carry_out(run, decision, links.get(decision.entra_id), report)
        done += 1
        run.progress("provisioning", done, total)

    for start in range(0, len(todo), 1000):  # bounded fan-out keeps memory flat on big imports
        # Let every account of the slice finish before an auth failure stops the run: no write is left
        # half-awaited when the run ends.
        outcomes = await asyncio.gather(*(one(d) for d in todo[start : start + 1000]), return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome


async def carry_out(run: Run, decision: Decision, link: AccountLink | None, report: RunReport) -> None:
    run.fence()
    if report.writes_refused is not None:  # Druva refused this credential's writes earlier in the run
        report.fail(decision, f"not written: {report.writes_refused.detail}", transient=False)
        report.refusals.append(held_with(report.writes_refused, decision))
        return
    try:
        user_id, status = await _write_druva(run, decision)
    except AuthError:
        raise
    except (TransientError, ConcurrencyConflict, *PERMANENT, _Partial) as error:
        await _record_failure(run, decision, link, error, report)
        return
    # The Druva write is done: counted as done whatever happens to its link (a run that stops at the
    # link write still did it), and its link is written even if the lease ran out meanwhile (a link is
    # conditional on its own version, and without it the next pass would have to adopt the user back).
    report.carried_out(decision)
    try:
        await _write_link(run, decision, link, user_id, status)
    except (ConcurrencyConflict, InvalidRequestError) as error:
        # This account's record alone: another account holds that Druva user, or the state refuses the
        # record. The write stands in Druva; the account is counted failed, the pass goes on.
        await _record_failure(run, decision, link, error, report)
        return
    await _audit(run, decision, AuditOutcome.DONE)


async def _write_druva(run: Run, decision: Decision) -> tuple[int | None, DruvaStatus | None]:
    druva = run.services.druva
    user_id, status = decision.druva_user_id, decision.desired.status if decision.desired else None
    known_status: DruvaStatus | None = None
    for action in decision.actions:
        try:
            match action:
                case Create():
                    user_id = await _create(run, action)
                    known_status = DruvaStatus.ACTIVE
                case Adopt():
                    user_id = action.user_id
                    known_status = DruvaStatus.PRESERVED if _activates(decision) else DruvaStatus.ACTIVE
                case Activate():
                    await druva.activate_user(action.user_id)
                    known_status = DruvaStatus.ACTIVE
                case Patch():
                    await druva.update_user(
                        action.user_id,
                        user_name=action.value("user_name"),
                        profile=action.value("profile"),
                        storage=action.value("storage"),
                    )
                case Preserve():
                    await druva.preserve_user(action.user_id)
        except AuthError:
            raise
        except Exception as error:
            if known_status is not None:  # the user exists and is ours now: keep the binding
                raise _Partial(error, user_id, known_status) from error
            raise
    return user_id, status


def _activates(decision: Decision) -> bool:
    return any(isinstance(a, Activate) for a in decision.actions)


async def _create(run: Run, action: Create) -> int:
    new = NewDruvaUser(
        action.email, action.user_name, action.target.profile, action.target.storage, action.target.quota
    )
    try:
        return (await run.services.druva.create_user(new)).user_id
    except ConflictError:
        # Someone created it since we looked: link the existing user rather than fail or duplicate;
        # the next pass brings its profile and storage in step.
        existing = await run.services.druva.find_user(action.email)
        if existing is None:
            raise
        return existing.user_id


def needs_carrying_out(decision: Decision, link: AccountLink | None, now: datetime) -> bool:
    """Druva writes to make, or a link whose facts would change (e.g. a preserve someone else made). A
    held account is left exactly as it is, its link included: what it would become is not known yet."""
    if decision.hold is not None:
        return False
    if decision.actions:
        return True
    if decision.desired is None or decision.druva_user_id is None:
        return False
    wanted = _link_from(decision, link, decision.druva_user_id, decision.desired.status, now)
    return link is None or not link.same_facts(wanted)


def _link_from(
    decision: Decision, old: AccountLink | None, user_id: int, status: DruvaStatus, now: datetime
) -> AccountLink:
    # Only decisions that keep a Druva user get here, and those always say what they want (desired);
    # a retirement names no target, so the link keeps what it had.
    desired = decision.desired
    target = desired.target if desired else None
    return AccountLink(
        entra_id=decision.entra_id,
        druva_user_id=user_id,
        # The Druva user's own e-mail (a created user has the one it was created with): what tells this
        # user from another with the same id in another Druva tenant (``links.belongs_to``).
        email=storable(decision.druva_email or decision.email or (old.email if old else "")),
        mapping=desired.mapping if desired else (old.mapping if old else None),
        profile=target.profile if target else (old.profile if old else None),
        storage=target.storage if target else (old.storage if old else None),
        quota=(str(target.quota) if target.quota else None) if target else (old.quota if old else None),
        status=LinkStatus(status.value),
        decided_at=now,
        version=old.version if old else None,
    )


async def _write_link(
    run: Run, decision: Decision, old: AccountLink | None, user_id: int | None, status: DruvaStatus | None
) -> None:
    if user_id is None or status is None:
        return
    new = _link_from(decision, old, user_id, status, run.now())
    if old is not None and old.same_facts(new):
        return
    await run.services.state.put_link(new)


async def _record_failure(
    run: Run, decision: Decision, link: AccountLink | None, error: Exception, report: RunReport
) -> None:
    cause = error.cause if isinstance(error, _Partial) else error
    transient = isinstance(cause, (TransientError, ConcurrencyConflict))
    message = f"{type(cause).__name__}: {cause}"
    if isinstance(cause, DruvaRefused):  # what to do, in the words every report of it uses
        message += f" — to do: {cause.advice}"
    report.fail(decision, message, transient=transient)
    if isinstance(cause, InvalidRequestError):
        # Retrying would be refused the same way until a human acts: held, reported once, with what to do.
        hold = refusal_hold(cause, decision, run.services.druva.credential, run.now())
        report.refusals.append(hold)
        if isinstance(cause, DruvaRefused) and cause.kind is RefusalKind.PERMISSION:
            report.writes_refused = hold
            report.refusals.append(held_with(hold, decision))
        telemetry.emit(telemetry.refusal_record(hold, run.run_id))
    log.warning(
        "provisioning failed", extra={"run_id": run.run_id, "entra_id": decision.entra_id, "error": message}
    )
    if isinstance(error, _Partial) and error.user_id is not None and error.status is not None:
        # Another worker recorded it, or the state refuses it: the next pass reconciles by e-mail.
        with contextlib.suppress(ConcurrencyConflict, InvalidRequestError):
            await _write_link(run, decision, link, error.user_id, error.status)
    await _audit(run, decision, AuditOutcome.FAILED, error=message)


def _bounded(text: str) -> str:
    return text if len(text) <= AUDIT_TEXT else f"{text[: AUDIT_TEXT - 1]}…"


AUDIT_TEXT = 2000  # characters of a reason or an error kept in the audit trail (an attribute may be huge)


async def _audit(run: Run, decision: Decision, outcome: AuditOutcome, error: str | None = None) -> None:
    """One entry per action of the decision, with the reason the planner gave."""
    reason = decision.winner.describe() if decision.winner else "; ".join(decision.notes)
    reason, error = _bounded(reason), _bounded(error) if error else None
    entries = [
        AuditEntry(
            at=run.now(),
            entra_id=decision.entra_id,
            principal=decision.principal,
            action=action.name,
            outcome=outcome,
            reason=reason,
            run_id=run.run_id,
            detail={"describe": _bounded(action.describe()), **({"error": error} if error else {})},
        )
        for action in decision.actions
    ]
    if entries:
        await run.services.state.append_audit(entries)
        for entry in entries:
            telemetry.emit(telemetry.account_record(entry))
