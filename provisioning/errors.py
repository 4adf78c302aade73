"""A small error taxonomy that drives control flow, mapped once in each adapter.

transient → retry later (the queue redelivers, the next pass picks it up); invalid request → skip this
account and report; auth → stop the run, nothing else will work; not found / conflict → the service
decides (re-create, look up and link); cursor expired → full resynchronisation.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum


class ProvisioningError(Exception):
    """Base of every error this product raises on purpose."""


class NeedsHuman(ProvisioningError):
    """Stop: only a human can fix this, and retrying changes nothing (a mappings file, a setting or a
    state file that cannot be used, work no handler can carry out, a state of other tenants). The
    command line exits 2; the worker does not retry it."""


class TransientError(ProvisioningError):
    """Worth retrying later: throttling, 5xx, timeouts, network faults (after our own retries)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class AuthError(ProvisioningError):
    """Credentials rejected or permissions missing: stop the run, nothing else will succeed."""


class NotFoundError(ProvisioningError):
    """The object does not exist (any more)."""


class ConflictError(ProvisioningError):
    """The object already exists (e.g. a Druva user with the same e-mail)."""


class InvalidRequestError(ProvisioningError):
    """The remote side refused the request as invalid (400/422): skip this object and report it."""

    def __init__(self, message: str, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


class RefusalKind(StrEnum):
    """Why Druva refused a write in a way that will not change by itself: a human must act first."""

    LICENCE = "licence"  # no active licence is free (an activation leaves the user preserved)
    PRIVACY = "privacy"  # the new profile's privacy settings conflict with the old one's
    PERMISSION = "permission"  # the API credential may read but not write
    AMBIGUOUS = "ambiguous"  # Druva holds several users whose e-mails differ only in case
    KEY_MANAGEMENT = "key_management"  # automatic import needs KMS or BYOK enabled in the console
    OTHER = "other"  # any other refusal Druva marks as not worth retrying


REFUSAL_ADVICE: dict[RefusalKind, str] = {
    RefusalKind.LICENCE: "free or buy an inSync licence; the account is tried again within a day",
    RefusalKind.PRIVACY: (
        "ask the user to allow admin access in the inSync client (or keep the old profile); "
        "the account is tried again within a day"
    ),
    RefusalKind.PERMISSION: (
        "give the Druva API credential full Cloud Admin rights (not a read-only role), or use one that "
        "has them (then run `python -m provisioning rebind`: the state is bound to its credential); writes "
        "are tried again within a day, or at once with a new credential"
    ),
    RefusalKind.AMBIGUOUS: (
        "remove or rename the duplicate Druva user in the inSync console so one e-mail is left"
    ),
    RefusalKind.KEY_MANAGEMENT: (
        "enable KMS or BYOK in the inSync Admin Console (Cloud Settings, key management): Druva refuses "
        "automatic user import without it; the account is tried again within a day"
    ),
    RefusalKind.OTHER: "read Druva's message; the account is tried again within a day",
}


class DruvaRefused(InvalidRequestError):
    """Druva refused a write and retrying will not help until a human acts (free a licence, allow admin
    access, grant write rights, remove a duplicate): report once, with what to do, and back off."""

    def __init__(
        self,
        message: str,
        kind: RefusalKind,
        *,
        code: str | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message, code=code, status=status)
        self.kind = kind

    @property
    def advice(self) -> str:
        return REFUSAL_ADVICE[self.kind]


class DryRunRejected(ProvisioningError):
    """A write was attempted in dry-run mode; adapters refuse it so business code cannot forget."""

    def __init__(self, method: str, url: str, body: object = None) -> None:
        super().__init__(f"dry run: refused {method} {url}")
        self.method, self.url, self.body = method, url, body


class CatalogError(ProvisioningError):
    """A profile or storage name that Druva does not know; lists the names it does know."""

    def __init__(self, kind: str, name: str, known: Sequence[str]) -> None:
        listed = ", ".join(sorted(known)) or "none"
        super().__init__(f"Druva has no {kind} named {name!r} (known: {listed})")
        self.kind, self.name, self.known = kind, name, list(known)


class GroupNotFound(ProvisioningError):
    def __init__(self, ref: str, suggestions: Sequence[str] = ()) -> None:
        hint = f" (close matches: {', '.join(suggestions)})" if suggestions else ""
        super().__init__(f"no Entra group named or with id {ref!r}{hint}")
        self.ref, self.suggestions = ref, list(suggestions)


class AmbiguousGroup(ProvisioningError):
    def __init__(self, ref: str, candidates: Sequence[str]) -> None:
        super().__init__(
            f"{len(candidates)} Entra groups are named {ref!r} ({', '.join(candidates)}): "
            "name the group by its object id instead"
        )
        self.ref, self.candidates = ref, list(candidates)


class CursorExpired(ProvisioningError):
    """The delta cursor is no longer valid (HTTP 410 / syncStateNotFound): read everything again."""


class CursorBusy(ProvisioningError):
    """Another pass holds the cursor's lease; this one should fold into it, not run beside it."""


class LeaseLost(CursorBusy):
    """This pass's cursor lease lapsed or was taken over: it stops before its next write, and the pass
    that holds the lease now carries on (a kind of "another pass is running")."""


class ConcurrencyConflict(ProvisioningError):
    """An optimistic-concurrency write lost the race: someone else changed the record first."""


class PagingStopped(TransientError):
    """A paged read was stopped before its end because its paging could not be trusted: a page token
    or link came back that this read had already followed (A→B→A, or the same one again), a link
    pointed away from the service's own origin, or the read outgrew its bound on pages or on time.
    Nothing the read would have stored (a delta cursor) is stored. Transient, because the next pass
    reads again from the cursor it had: the worker reschedules the work rather than dead-lettering it,
    and the command line exits 1 with this reason."""


# The state store's errors: raised by its adapters, told by the command line (exit codes in one table).
class StateFileError(NeedsHuman):
    """The state file cannot be used as it is, and trying again will not change that: it is not a SQLite
    file (or is damaged), was written by a newer release, cannot be written where writing is needed, or
    is not a regular file. The message names the file and what to do; the command line exits 2."""


class StateFileBusy(TransientError):
    """Another process held the state file's lock past the busy timeout: worth trying again."""


class NoState(ProvisioningError):
    """Nothing has been recorded here yet (no state file, no table): said plainly, never created."""


class UnreadableRecord(NeedsHuman):
    """A stored record this release cannot decode (edited by hand, written by another program, damaged).
    Raised by the record decoders of every state store; the command line names the state it is in and
    exits 2, since only a human can repair or move the state aside."""

    def __init__(self, kind: str, cause: Exception) -> None:
        super().__init__(f"a {kind} record cannot be read ({type(cause).__name__}: {cause})")
        self.kind, self.cause = kind, cause


DAMAGED_ADVICE = (
    "restore it from a backup, or move it aside (keep it for support) and run `sync --full` to build a "
    "new one"
)


def unreadable_record(where: str, error: Exception) -> StateFileError:
    """A record this release cannot decode (edited by hand or by another program): the one wording, for
    every reader of a state store."""
    return StateFileError(
        f"{where}: a record cannot be read ({type(error).__name__}: {error}); {DAMAGED_ADVICE}"
    )
