"""Whose state this is: the Entra tenant and the Druva credential a state was built against.

A link says "Entra account X is Druva user N". Against another Druva tenant (a sandbox's state pointed at
production, a restored tenant, a changed ``DRUVA_API_URL``) user N is somebody else, and against another
Entra tenant every linked account looks deleted. So the first run that writes records both; every later
run compares, and a run against different ones refuses before it reads or writes anything: exit 2 on the
command line, a ``state_bound_elsewhere`` problem in ``status``. Nothing re-binds silently: starting afresh
(a new state) or ``rebind`` (the same tenants under a new credential or URL) is an admin's decision.

The Entra tenant comes from the Graph token's ``tid`` claim; a token that does not tell (the local
simulators') leaves that half unknown, and an unknown half is filled in, never compared. The Druva half
is the API URL and client id (``Druva.credential``): Druva's API names no customer id of its own.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from provisioning.config import ConfigError
from provisioning.domain.accounts import EntraAccount
from provisioning.domain.links import belongs_to
from provisioning.errors import ConcurrencyConflict, CursorBusy
from provisioning.service.context import Run, Services
from provisioning.service.druva_lookup import HISTORY_READ, recorded_emails

log = logging.getLogger("provisioning")

BINDING = "binding"  # the cursor record that holds it: a record every state store already keeps
REBIND_COMMAND = "python -m provisioning rebind"
REBIND_SAMPLE = 20  # linked users asked of Druva before re-binding: enough to tell another tenant
AGREEING_SHARE = 0.9  # of them, at least this many must be who the links say (users deleted meanwhile)
LEASE_SECONDS = 30.0


@dataclass(frozen=True)
class Binding:
    entra: str | None  # the Entra tenant id, lower case; None: the token did not tell
    druva: str  # the Druva API URL and client id

    def describe(self) -> str:
        return f"Entra tenant {self.entra or '(unknown)'} and Druva credential {self.druva}"


@dataclass(frozen=True)
class Recorded:
    """What the state holds: its binding, and the last run refused for not matching it (for status)."""

    binding: Binding | None
    refused: Binding | None = None
    refused_at: datetime | None = None


class StateBoundElsewhere(ConfigError):
    """The state belongs to other tenants than this run's settings name."""

    def __init__(self, recorded: Binding, current: Binding) -> None:
        super().__init__([mismatch_text(recorded, current, "nothing was read or written")])
        self.recorded, self.current = recorded, current


def mismatch_text(recorded: Binding, current: Binding, consequence: str) -> str:
    return (
        f"this state was built against {recorded.describe()}, but the settings name {current.describe()}: "
        f"{consequence}. If these are other tenants, point PROVISIONING_STATE (or the Table account) at a "
        "new state to start afresh. If the app now uses a new credential or URL for the same tenants, run "
        f"`{REBIND_COMMAND}` to re-bind this state; if this is only a second credential of yours (a dry "
        "run with your own), use the app's instead: a re-bind would bind the state to yours and stop the app"
    )


def differs(recorded: Binding, current: Binding) -> bool:
    """Whether a run under ``current`` may not use a state bound to ``recorded``. A half either side does
    not know (the Entra tenant of a token that is not a JWT) is not compared; the Druva credential is
    compared as its URL means it (``HTTPS://Apis.Druva.com:443/`` is ``https://apis.druva.com``)."""
    entra = recorded.entra is not None and current.entra is not None and recorded.entra != current.entra
    return entra or canonical_credential(recorded.druva) != canonical_credential(current.druva)


def canonical_credential(credential: str) -> str:
    """A Druva credential (``{api url}/{client id}``) with its URL in one spelling: scheme and host in
    lower case, the scheme's own port dropped, no trailing ``/`` or ``/.``."""
    url, _, client = credential.rpartition("/")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return credential
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    shown_port = "" if port is None or port == {"https": 443, "http": 80}.get(scheme) else f":{port}"
    path = parts.path
    while path.endswith(("/", "/.")):
        path = path.removesuffix("/").removesuffix("/.")
    return f"{scheme}://{host}{shown_port}{path}/{client}"


async def current_binding(services: Services) -> Binding:
    return Binding(await services.directory.tenant(), services.druva.credential)


async def recorded_binding(services: Services) -> Recorded:
    cursor = await services.state.get_cursor(BINDING)
    return parse(cursor.value)


async def check_binding(run: Run) -> str | None:
    """Refuse (``StateBoundElsewhere``) a run whose tenants are not the state's; bind a state that has
    none yet. Returns a note for the run's report when it bound, else None. A dry run writes nothing."""
    return await ensure_bound(run.services, run.run_id, dry_run=run.dry_run)


async def ensure_bound(services: Services, owner: str, *, dry_run: bool = False) -> str | None:
    """``check_binding`` for work that holds no ``Run`` (the subscription upkeep). Every write is
    conditional on the record read: a run that finds it changed meanwhile (another first run binding it
    to other tenants, an admin's ``rebind``) stops with ``CursorBusy`` and compares again next time."""
    current, raw = await current_binding(services), (await services.state.get_cursor(BINDING)).value
    recorded = parse(raw)
    if recorded.binding is not None and differs(recorded.binding, current):
        if not dry_run and recorded.refused != current:  # for status; once per new pair of tenants
            refused = Recorded(recorded.binding, current, services.clock.now())
            await _write(services, owner, raw, refused)
        raise StateBoundElsewhere(recorded.binding, current)
    wanted = Recorded(_merged(recorded.binding, current))
    if dry_run or wanted == recorded:
        return None
    await _write(services, owner, raw, wanted)
    if recorded.binding is None:
        return f"state bound to {current.describe()}"
    return None


@dataclass(frozen=True)
class Evidence:
    """What a sample of the state's links says about the Druva tenant the settings name now."""

    checked: int
    agreeing: int  # the linked user exists and has the e-mail the link recorded
    missing: int  # no Druva user has the linked id
    disagreeing: tuple[str, ...]  # one line each: the linked user is somebody else
    in_entra: int = 0  # linked accounts the Entra tenant the settings name holds

    @property
    def convincing(self) -> bool:
        """No linked user is somebody else, nearly all are who the links say (a missing one is as
        suspect as a stranger: its account would be created again, under an id another link may hold),
        and the Entra tenant holds some of the linked accounts. A state that links nobody is convincing."""
        if self.checked == 0:
            return True
        nearly_all = self.agreeing >= max(1, math.ceil(AGREEING_SHARE * self.checked))
        return not self.disagreeing and nearly_all and self.in_entra > 0

    def describe(self) -> str:
        if self.checked == 0:
            return "the state links no accounts yet"
        text = f"of {self.checked} linked Druva users sampled, {self.agreeing} have the e-mail recorded"
        if self.missing:
            text += f", {self.missing} do not exist"
        if self.disagreeing:
            text += f", {len(self.disagreeing)} are somebody else (e.g. {self.disagreeing[0]})"
        return text + f"; the Entra tenant holds {self.in_entra} of their accounts"


async def evidence(services: Services, sample: int = REBIND_SAMPLE) -> Evidence:
    """Ask the Druva and the Entra tenant the settings name for the first ``sample`` linked users and
    their accounts."""
    checked = agreeing = missing = 0
    disagreeing: list[str] = []
    linked: list[str] = []
    async for link in services.state.links():
        if checked >= sample:
            break
        checked += 1
        linked.append(link.entra_id)
        user = await services.druva.get_user(link.druva_user_id)
        if user is None:
            missing += 1
            continue
        recorded = recorded_emails(await services.state.audit_for(link.entra_id, HISTORY_READ), user.email)
        if belongs_to(link, user.email, None, recorded):
            agreeing += 1
        else:
            disagreeing.append(
                f"Druva user {link.druva_user_id} is {user.email}, the state says {link.email}"
            )
    found = await services.directory.get_users(linked, ["id"]) if linked else []
    in_entra = sum(1 for change in found if isinstance(change, EntraAccount))
    return Evidence(checked, agreeing, missing, tuple(disagreeing), in_entra)


async def rebind(
    services: Services, *, force: bool = False, dry_run: bool = False
) -> tuple[Binding | None, Binding, Evidence]:
    """Bind the state to the tenants the settings name: an admin's deliberate act. Refuses
    (``ConfigError``) when a sample of the links says the Druva tenant is another one, unless ``force``.
    Returns the old binding, the new one and the evidence."""
    current, cursor = await current_binding(services), await services.state.get_cursor(BINDING)
    try:
        before = parse(cursor.value).binding
    except ConfigError:
        before = None  # an unreadable record is what a re-bind is for
    found = await evidence(services)
    if not found.convincing and not force:
        raise ConfigError(
            [
                f"not re-bound: {found.describe()}, so the Druva or Entra tenant the settings name looks "
                "like another one. Point the settings at this state's tenants, or start afresh with a new "
                "state; re-bind anyway with --force only if the links are known to be wrong"
            ]
        )
    if not dry_run:
        await _write(services, "rebind", cursor.value, Recorded(_merged(before, current)))
        log.warning(
            "state re-bound from %s to %s (%s)",
            before.describe() if before else "nothing",
            current.describe(),
            found.describe(),
        )
    return before, current, found


def _merged(recorded: Binding | None, current: Binding) -> Binding:
    """The current binding, keeping a known Entra tenant the current token does not tell."""
    if recorded is not None and current.entra is None:
        return Binding(recorded.entra, current.druva)
    return current


async def _write(services: Services, owner: str, expected: str | None, record: Recorded) -> None:
    """Write the record if it still holds ``expected`` (what the caller compared with); else, or when
    another run is writing it, raise ``CursorBusy``: the caller's comparison no longer stands."""
    state, now = services.state, services.clock.now()
    try:
        claim = await state.claim_cursor(BINDING, owner, now, LEASE_SECONDS)
    except ConcurrencyConflict as lost:
        raise CursorBusy("the state's record of its tenants is being written by another run") from lost
    if claim.value != expected:
        await state.release_cursor(claim)
        raise CursorBusy("the state's record of its tenants changed while this run read it; run again")
    await state.save_cursor(claim, render(record))


def render(record: Recorded) -> str:
    out: dict[str, object] = {}
    if record.binding is not None:
        out |= {"entra": record.binding.entra, "druva": record.binding.druva}
    if record.refused is not None:
        out["refused"] = {"entra": record.refused.entra, "druva": record.refused.druva}
        out["refused_at"] = record.refused_at.isoformat() if record.refused_at else None
    return json.dumps(out, sort_keys=True)


def parse(value: str | None) -> Recorded:
    """The stored record. Raises ``ConfigError`` for one that cannot be read: guessing whose state it is
    would be the silent re-binding this record exists to prevent."""
    if not value:
        return Recorded(None)
    try:
        data = json.loads(value)
        binding = _binding(data)
        refused = _binding(data.get("refused") or {})
        at = data.get("refused_at")
        return Recorded(binding, refused, datetime.fromisoformat(at) if isinstance(at, str) else None)
    except (ValueError, TypeError, AttributeError) as error:
        raise ConfigError(
            [
                f"the state's record of its tenants cannot be read ({type(error).__name__}); if this state "
                f"belongs to the tenants the settings name, run `{REBIND_COMMAND}`"
            ]
        ) from None


def _binding(data: dict[str, object]) -> Binding | None:
    druva, entra = data.get("druva"), data.get("entra")
    if not isinstance(druva, str) or not druva:
        return None
    return Binding(entra if isinstance(entra, str) and entra else None, druva)
