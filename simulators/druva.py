"""A local Druva inSync API, faithful to what Druva documents (developer.druva.com, the inSync API).

Run it as a process::

    python -m simulators.druva --port 8082 [--seed seed.json] [--realism kind|production] [--govcloud]

or in-process for tests::

    simulator = DruvaSimulator(seed)   # realism=PRODUCTION.druva, govcloud=True: see below
    with simulator.serve() as server:   # a SimulatorThread on a free 127.0.0.1 port (running.py)
        ... DRUVA_API_URL=server.url ...

What it reproduces: client-credentials tokens on ``POST /token`` (HTTP Basic, form body) that expire
(lifetime configurable); ``/insync/usermanagement/v1/users`` list (filters ``emailID``,
``searchPrefixEmailID`` (case-insensitive, as Druva's M365 spec says), ``status``, ``profileID``,
``storageID``; paging with ``pageToken``/``nextPageToken``, ``""`` on the last page; page size 4097
unless configured), get, create with Druva's validation, patch (``userName``/``profileID``/``storageID``
only), preserve, activate, delete; profiles and storages (``StorageID`` with a capital S); the error envelope
``{"code", "message", "retryable", "data"}``; an expired or unknown token answered 403
``InsyncCappmaster-1009``; 404 for an unknown user with an empty body on GET; a user's
``privacySettingsEnabled`` (as a string) from its profile's privacy settings; credentials restricted to
a read-only role (``add_credentials(..., read_only=True)``), whose tokens read and whose every write
(create, update, preserve, activate, delete) is answered 403 ``InsyncAdmanagement-1221`` "Access
restricted due to insufficient permissions." (Druva's documented answer; it comes after the token check,
so an expired session is still ``-1009``).

How real it is (``realism``, a ``DruvaRealism`` of ``simulators/realism.py``; the kind profile is the
default, ``--realism production`` switches every behaviour below on):

- ``email_case_sensitive``: the ``emailID`` filter matches exactly as stored (Druva's spec does not say
  it ignores case); ``searchPrefixEmailID`` still ignores case. Off: ``emailID`` ignores case too.
- ``enforce_licences``: with a licence count (seed ``settings.licences``, ``set_licences(n | None)``),
  a create or an activation that would make more users active than that is refused and the user stays
  as it was (preserved, or not created); preserving or deleting a user frees a licence, activating an
  active user needs none. A seeded user (``add_user``) is never refused, but holds a licence while active.
- ``enforce_privacy``: a PATCH of ``profileID`` between two profiles whose privacy settings differ
  (seed ``{"name": "Finance", "privacy": true}``, ``add_profile(..., privacy=True)``) is refused, and
  nothing else in that PATCH is applied, unless the user allowed admin access in the inSync client
  (``allow_admin_access(email)``, seed user key ``adminAccessAllowed``).

Whatever the profile, e-mails stay unique ignoring case on create (Druva refuses a duplicate), but a
tenant can hold two users whose e-mails differ only in case (made by hand, or imported): seed them with
``add_user(..., allow_case_duplicate=True)`` or the seed user key ``allowCaseDuplicate``.

GovCloud (``govcloud=True``, ``--govcloud``): Druva's GovCloud asks for the header names ``Accept`` and
``Authorization`` capitalised so; a request (token included) that spells either otherwise is refused.

Choices where Druva's documentation is silent (marked as the simulator's own): duplicate e-mail,
unknown profile and unknown storage are 422 with codes ``InsyncUsermanagement-1012``/``-1010``/``-1011``;
a quota error is 400 ``InsyncUsermanagement-1013``; throttling is 429 ``InsyncCappmaster-1429`` without
``Retry-After``; patching ``emailID`` or ``quota`` is refused with 400; preserve and activate are
idempotent. Faults apply to ``/insync`` routes only, after the token check and the role check. No
free licence is 422 ``InsyncUsermanagement-1016`` "No active license is available for this user." (an
activation adds " The user remains preserved."); a privacy conflict is 422 ``InsyncUsermanagement-1018``
saying inSync does not allow updating the profile because the privacy settings of the new profile
conflict with those of the current one, and that the user must allow admin access in the inSync client;
the privacy rule refuses a change either way between the settings (Druva names the conflict, not its
direction). A GovCloud header spelt otherwise is 403 ``{"Message": "User is not authorized to access
this resource with an explicit deny"}``: Druva documents no answer to a name spelt otherwise, so the
simulator gives the one Druva documents for a token from another cloud, in the spelling of the gateway
that sends it (``Message``, no envelope).

Default credentials: client id ``sim-client``, secret ``sim-secret``.

Seed file (JSON; every key optional; profiles and storages are referenced by name)::

    {
      "credentials": {"client_id": "sim-client", "client_secret": "sim-secret", "read_only": false},
      "settings": {"page_size": 4097, "token_lifetime_seconds": 1800, "random_seed": 0,
                   "expired_token_status": 403, "licences": null},
      "faults": {"throttle_rate": 0.0, "error_rate": 0.0, "latency_seconds": 0.0,
                 "lost_response_rate": 0.0, "retry_after_seconds": null, "routes": null},
      "profiles": [{"id": 1, "name": "Standard", "quota": "200 GB"}, {"name": "Finance", "privacy": true}],
      "storages": [{"id": 10, "name": "US-East"}, "EU-West"],
      "users": [{"email": "ann@contoso.com", "name": "Ann", "profile": "Standard",
                 "storage": "US-East", "status": "active", "quota": "10 GB",
                 "ldapGUID": null, "id": 100, "adminAccessAllowed": false,
                 "allowCaseDuplicate": false}]
    }

``credentials`` as an object replaces the default credential; as a list of such objects it adds
credentials beside it.

``expired_token_status`` 401 answers an expired token as Druva's spec says instead of as its FAQ says
(403). A profile's ``quota`` is what a create without quota assigns (absent: unlimited). Faults:
``throttle_rate`` is the fraction of API requests answered 429, ``error_rate`` the fraction answered 500
with ``retryable: true`` (before anything is applied), ``lost_response_rate`` the fraction of successful
creates whose connection drops after the user was created, ``latency_seconds`` is added to every
non-admin request, ``rate_limit`` caps API requests a second (a token bucket of one second; beyond it
429 with ``Retry-After`` in whole seconds, on every route), ``retry_after_seconds`` (not something Druva
sends) adds ``Retry-After`` to 429s,
``routes`` limits the faults to the named routes (e.g. ``["create user"]``). Draws come from a
``random.Random(random_seed)``, so a sequential run is reproducible.

Admin API (for a simulator in another process; route names start with "admin")::

    GET  /_admin/state            profiles, storages and users (with "passwordMailed")
    POST /_admin/seed             load a seed document (adds to what is there)
    POST /_admin/reset            forget everything, then load the seed in the body if any
    GET  /_admin/faults           the fault settings
    POST /_admin/faults           replace the fault settings (missing keys: off)
    POST /_admin/expire-tokens    every issued token is expired from now on
    GET  /_admin/counts           requests per route name
    POST /_admin/counts/reset     zero the counters
    POST /_admin/outages          an outage of the shared vocabulary (simulators/outages.py) on top
    DELETE /_admin/outages        every fault off

In-process the same through ``apply_outage`` and ``clear_faults``; ``serve()`` gives the running handle
(``simulators/running.py``), which adds the outages only a server can have (refused, hang).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import math
import random
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from provisioning.domain.druva import email_key
from provisioning.domain.quota import MAX_QUOTA_VALUE, Quota, QuotaUnit
from simulators.http import (
    DropConnection,
    Handler,
    Request,
    Response,
    Router,
    serve_from_command_line,
)
from simulators.outages import Outage, OutageKind, add_outage_routes, refuse_server_outage
from simulators.realism import KIND, DruvaRealism, Realism
from simulators.realism import PROFILES as REALISM_PROFILES
from simulators.running import SimulatorThread

DEFAULT_PAGE_SIZE = 4097
DEFAULT_TOKEN_LIFETIME = 1800.0
WRITE_ROUTES = ("create user", "update user", "delete user", "preserve user", "activate user")
DEFAULT_CLIENT_ID = "sim-client"
DEFAULT_CLIENT_SECRET = "sim-secret"

USERS = "/insync/usermanagement/v1/users"
USER = USERS + r"/(?P<user_id>[^/]+)"
PROFILES = "/insync/profilemanagement/v1/profiles"
STORAGES = "/insync/storagemanagement/v1/storages"

# The demo's catalog, served by ``python -m`` when no seed file is given (matches examples/mappings.yaml).
DEFAULT_SEED: dict[str, Any] = {
    "profiles": [{"name": "Standard"}, {"name": "Finance"}, {"name": "Mailboxes"}],
    "storages": [{"name": "US-East"}, {"name": "EU-West"}],
}


@dataclass
class Faults:
    throttle_rate: float = 0.0
    error_rate: float = 0.0
    latency_seconds: float = 0.0
    lost_response_rate: float = 0.0
    retry_after_seconds: float | None = None
    routes: list[str] | None = None  # route names the faults hit (None: every /insync route)
    rate_limit: float | None = None  # API requests a second Druva answers; beyond it, 429 + Retry-After

    def hits(self, route: str) -> bool:
        return self.routes is None or route in self.routes

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Faults:
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown fault settings: {', '.join(sorted(unknown))}")
        return cls(**data)


@dataclass
class _Profile:
    profile_id: int
    name: str
    quota: Quota
    privacy: bool = False  # privacy settings enabled: admins may not see the users' data

    def view(self) -> dict[str, Any]:
        return {"profileID": self.profile_id, "profileName": self.name, "profileDescription": ""}


@dataclass
class _Storage:
    storage_id: int
    name: str

    def view(self) -> dict[str, Any]:
        # Druva's storage list spells the id "StorageID", unlike every other id field.
        return {"StorageID": self.storage_id, "storageName": self.name, "storageUsage": 0}


@dataclass
class _User:
    user_id: int
    email: str
    user_name: str
    profile_id: int
    storage_id: int
    quota: Quota
    status: str = "active"
    ldap_guid: str = ""
    password_mailed: bool = False
    admin_access_allowed: bool = False  # the user allowed admin access in the inSync client
    added_on: str = field(default_factory=lambda: datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))

    def view(self, privacy: bool = False) -> dict[str, Any]:
        """As Druva returns it: quota as text, privacySettingsEnabled as a string (both per the spec);
        ``privacy`` is that of the user's profile."""
        return {
            "userID": self.user_id,
            "userName": self.user_name,
            "emailID": self.email,
            "status": self.status,
            "profileID": self.profile_id,
            "storageID": self.storage_id,
            "cacheID": 0,
            "quota": f"{self.quota.value} {self.quota.unit}",
            "quotaInBytes": self.quota.bytes,
            "addedOn": self.added_on,
            "privacySettingsEnabled": "true" if privacy else "false",
            "ldapGUID": self.ldap_guid,
        }


@dataclass(frozen=True)
class _Credential:
    secret: str = field(repr=False)
    read_only: bool = False  # a Cloud Admin (Read Only) role: reads answer, writes are refused


class _Refused(Exception):
    """A request Druva would refuse; carries the answer."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


def envelope(status: int, code: str, message: str, *, retryable: bool = False) -> Response:
    return Response(status, {"code": code, "message": message, "retryable": retryable, "data": {}})


def _syntax(message: str = "Invalid API syntax.") -> _Refused:
    return _Refused(envelope(400, "InsyncCappmaster-1001", message))


def _semantic(code: str, message: str) -> _Refused:
    return _Refused(envelope(422, code, message))


QUOTA_MESSAGE = "Bad Request. Provide an appropriate value in the range of 0 to 1023 for User quota."
NO_LICENCE_MESSAGE = "No active license is available for this user."
STAYS_PRESERVED = " The user remains preserved."
PRIVACY_MESSAGE = (
    "inSync does not allow updating the profile because the privacy settings of the new profile "
    "conflict with those of the current profile. The user must allow admin access in the inSync client."
)
# Druva's documented answer to a credential whose role may not do what it asks.
READ_ONLY_REFUSAL = ("InsyncAdmanagement-1221", "Access restricted due to insufficient permissions.")
# What Druva's gateway answers a token from another cloud (its authentication guide); the simulator's
# GovCloud gives it to a request that spells Accept or Authorization otherwise than so.
EXPLICIT_DENY = "User is not authorized to access this resource with an explicit deny"
GOVCLOUD_HEADER_NAMES = ("Accept", "Authorization")


class RateLimit:
    """A token bucket holding one second of requests: ``rate`` a second on average, bursts up to
    ``rate``. A request finding it empty is refused with how long until the next token, in whole
    seconds as HTTP's ``Retry-After`` has it (at least 1)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: float | None = None
        self._at = 0.0

    def take(self, rate: float, now: float) -> int:
        with self._lock:
            tokens = rate if self._tokens is None else min(rate, self._tokens + (now - self._at) * rate)
            self._at = now
            if tokens >= 1:
                self._tokens = tokens - 1
                return 0
            self._tokens = tokens
            return max(1, math.ceil((1 - tokens) / rate))


class DruvaSimulator:
    """Druva's state and behaviour; ``router`` serves it over HTTP, the methods drive it from Python."""

    def __init__(
        self,
        seed: Mapping[str, Any] | None = None,
        *,
        page_size: int = DEFAULT_PAGE_SIZE,
        token_lifetime: float = DEFAULT_TOKEN_LIFETIME,
        random_seed: int = 0,
        clock: Callable[[], float] = time.monotonic,
        realism: DruvaRealism = KIND.druva,
        govcloud: bool = False,
    ) -> None:
        self._lock = threading.RLock()
        self._clock = clock
        self.page_size = page_size
        self.token_lifetime = token_lifetime
        self.realism = realism
        self.govcloud = govcloud  # Accept and Authorization must be spelt so (see EXPLICIT_DENY)
        # Druva's FAQ answers an expired token with 403, its spec with 401: both are seen in the wild.
        self.expired_token_status = 403
        # The credential every test uses (full rights); ``add_credentials`` adds others beside it.
        self.client_id = DEFAULT_CLIENT_ID
        self.client_secret = DEFAULT_CLIENT_SECRET
        self.client_read_only = False
        self.router = Router()
        self._random = random.Random(random_seed)
        self._faults = Faults()
        self._rate = RateLimit()
        self._forget()
        self._add_routes()
        if seed:
            self.load_seed(seed)

    @classmethod
    def from_seed_file(
        cls, path: str | Path | None, *, realism: DruvaRealism = KIND.druva, govcloud: bool = False
    ) -> DruvaSimulator:
        seed = json.loads(Path(path).read_text()) if path else DEFAULT_SEED
        return cls(seed, realism=realism, govcloud=govcloud)

    def serve(self, port: int = 0) -> SimulatorThread:
        """A handle to run it in a thread (``running.py``), not yet started."""
        return SimulatorThread(self, port)

    # ---- state, from Python -------------------------------------------------------------------------

    def _forget(self) -> None:
        self._profiles: dict[int, _Profile] = {}
        self._storages: dict[int, _Storage] = {}
        self._users: dict[int, _User] = {}
        # Druva keeps e-mails unique case-insensitively on create; a tenant can still hold a pair that
        # differs only in case (made by hand or imported), hence a list.
        self._by_email: dict[str, list[int]] = {}
        self._active = 0  # users whose status is active: what the licences limit
        self.licences: int | None = None  # active licences bought (None: as many as wanted)
        self._credentials: dict[str, _Credential] = {}
        self._tokens: dict[str, float] = {}
        self._read_only_tokens: set[str] = set()
        self._issued: list[str] = []
        self._next_id = 1

    def reset(self) -> None:
        with self._lock:
            self._forget()
            self.faults = Faults()
            self.router.reset_counts()

    def _new_id(self, wanted: int | None, taken: Mapping[int, object]) -> int:
        if wanted is not None:
            if wanted in taken:
                raise ValueError(f"id {wanted} is already taken")
            self._next_id = max(self._next_id, wanted + 1)
            return wanted
        while self._next_id in taken:
            self._next_id += 1
        self._next_id += 1
        return self._next_id - 1

    def add_profile(
        self, name: str, *, profile_id: int | None = None, quota: str | None = None, privacy: bool = False
    ) -> int:
        with self._lock:
            new_id = self._new_id(profile_id, self._profiles)
            default = Quota.parse(quota) if quota else Quota.unlimited()
            self._profiles[new_id] = _Profile(new_id, name, default, privacy)
            return new_id

    def add_storage(self, name: str, *, storage_id: int | None = None) -> int:
        with self._lock:
            new_id = self._new_id(storage_id, self._storages)
            self._storages[new_id] = _Storage(new_id, name)
            return new_id

    def add_user(
        self,
        email: str,
        *,
        profile: str,
        storage: str,
        name: str | None = None,
        status: str = "active",
        quota: str | None = None,
        ldap_guid: str | None = None,
        user_id: int | None = None,
        admin_access_allowed: bool = False,
        allow_case_duplicate: bool = False,
    ) -> dict[str, Any]:
        """Put a user in place as if it had been there all along (no validation beyond the catalog; never
        refused a licence, though it holds one while active). ``allow_case_duplicate`` lets it share its
        e-mail with users whose e-mail differs only in case, as a tenant can after a manual creation or
        an import."""
        with self._lock:
            chosen_profile = self._profile_named(profile)
            self._check_seeded_email(email, allow_case_duplicate)
            new_id = self._new_id(user_id, self._users)
            user = _User(
                user_id=new_id,
                email=email,
                user_name=name or email.partition("@")[0],
                profile_id=chosen_profile.profile_id,
                storage_id=self._storage_named(storage).storage_id,
                quota=Quota.parse(quota) if quota else chosen_profile.quota,
                status=status,
                ldap_guid=ldap_guid or "",
                admin_access_allowed=admin_access_allowed,
            )
            self._keep(user)
            return self._view(user)

    def _check_seeded_email(self, email: str, allow_case_duplicate: bool) -> None:
        taken = [self._users[i].email for i in self._by_email.get(email_key(email), ())]
        if taken and (not allow_case_duplicate or email.strip() in taken):
            raise ValueError(f"a user with e-mail {email!r} already exists")

    def add_credentials(self, client_id: str, client_secret: str, *, read_only: bool = False) -> None:
        """Another API credential beside the default one; ``read_only`` as if restricted to the Cloud
        Admin (Read Only) role."""
        with self._lock:
            self._credentials[client_id] = _Credential(client_secret, read_only)

    def set_licences(self, licences: int | None) -> None:
        """How many users may be active at once (None: no limit); enforced with ``enforce_licences``."""
        if licences is not None and licences < 0:
            raise ValueError(f"licences must be at least 0, not {licences}")
        with self._lock:
            self.licences = licences

    def allow_admin_access(self, email: str, allowed: bool = True) -> None:
        """What the user does in the inSync client to let a profile change with other privacy settings
        through (every user with that e-mail, whatever its case)."""
        with self._lock:
            users = [self._users[i] for i in self._by_email.get(email_key(email), ())]
            if not users:
                raise ValueError(f"no user with e-mail {email!r}")
            for user in users:
                user.admin_access_allowed = allowed

    def _profile_named(self, name: str) -> _Profile:
        for candidate in self._profiles.values():
            if candidate.name == name:
                return candidate
        raise ValueError(f"no profile named {name!r}")

    def _storage_named(self, name: str) -> _Storage:
        for candidate in self._storages.values():
            if candidate.name == name:
                return candidate
        raise ValueError(f"no storage named {name!r}")

    def load_seed(self, seed: Mapping[str, Any]) -> None:
        with self._lock:
            self._load_credentials(seed.get("credentials") or {})
            settings = seed.get("settings") or {}
            self.page_size = int(settings.get("page_size", self.page_size))
            self.token_lifetime = float(settings.get("token_lifetime_seconds", self.token_lifetime))
            self.expired_token_status = int(settings.get("expired_token_status", self.expired_token_status))
            if "random_seed" in settings:
                self._random.seed(settings["random_seed"])
            if "licences" in settings:
                self.set_licences(None if settings["licences"] is None else int(settings["licences"]))
            if "faults" in seed:
                self.faults = Faults.from_json(seed["faults"])
            for item in seed.get("profiles", ()):
                entry: Mapping[str, Any] = {"name": item} if isinstance(item, str) else item
                self.add_profile(
                    entry["name"],
                    profile_id=entry.get("id"),
                    quota=entry.get("quota"),
                    privacy=bool(entry.get("privacy", False)),
                )
            for item in seed.get("storages", ()):
                entry = {"name": item} if isinstance(item, str) else item
                self.add_storage(entry["name"], storage_id=entry.get("id"))
            for entry in seed.get("users", ()):
                self.add_user(
                    entry["email"],
                    profile=entry["profile"],
                    storage=entry["storage"],
                    name=entry.get("name"),
                    status=entry.get("status", "active"),
                    quota=entry.get("quota"),
                    ldap_guid=entry.get("ldapGUID"),
                    user_id=entry.get("id"),
                    admin_access_allowed=bool(entry.get("adminAccessAllowed", False)),
                    allow_case_duplicate=bool(entry.get("allowCaseDuplicate", False)),
                )

    def _load_credentials(self, credentials: Mapping[str, Any] | list[Mapping[str, Any]]) -> None:
        """An object replaces the default credential; a list adds credentials beside it."""
        if isinstance(credentials, Mapping):
            self.client_id = credentials.get("client_id", self.client_id)
            self.client_secret = credentials.get("client_secret", self.client_secret)
            self.client_read_only = bool(credentials.get("read_only", self.client_read_only))
            return
        for entry in credentials:
            self.add_credentials(
                entry["client_id"], entry["client_secret"], read_only=bool(entry.get("read_only", False))
            )

    def state(self) -> dict[str, Any]:
        with self._lock:
            return {
                "profiles": [p.view() for p in self._profiles.values()],
                "storages": [s.view() for s in self._storages.values()],
                "users": [
                    self._view(u) | {"passwordMailed": u.password_mailed} for u in self._sorted_users()
                ],
            }

    def users(self) -> list[dict[str, Any]]:
        users: list[dict[str, Any]] = self.state()["users"]
        return users

    def users_by_email(self, emails: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The named users (by e-mail, case-insensitively; the one spelt exactly so first) that exist,
        without viewing everyone."""
        with self._lock:
            found = ((email, self._user_with_email(email)) for email in emails)
            return {email: self._view(user) for email, user in found if user is not None}

    def user_by_email(self, email: str) -> dict[str, Any] | None:
        with self._lock:
            user = self._user_with_email(email)
            return None if user is None else self._view(user) | {"passwordMailed": user.password_mailed}

    def _user_with_email(self, email: str) -> _User | None:
        same = [self._users[i] for i in self._by_email.get(email_key(email), ())]
        return next((u for u in same if u.email == email.strip()), same[0] if same else None)

    @property
    def faults(self) -> Faults:
        return self._faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        self._faults = faults
        self.router.latency_seconds = faults.latency_seconds

    def set_faults(self, **settings: Any) -> None:
        """Replace the fault settings; keys not given are switched off."""
        self.faults = Faults(**settings)

    def apply_outage(self, outage: Outage) -> None:
        """An outage of the shared vocabulary (``outages.py``) as Druva has it: 500 ``retryable`` (no
        Retry-After), 429, or latency on every request but the admin's. Druva's faults share one list of
        routes, so an outage for other routes than the faults already on is refused."""
        refuse_server_outage(outage)
        faults = self.faults
        if outage.kind == OutageKind.SLOW:
            self.faults = replace(faults, latency_seconds=outage.seconds)
            return
        routes = None if outage.routes is None else list(outage.routes)
        if (
            faults.throttle_rate or faults.error_rate or faults.lost_response_rate
        ) and routes != faults.routes:
            raise ValueError("the Druva simulator fails one set of routes at a time: clear its faults first")
        if outage.kind == OutageKind.THROTTLED:
            retry_after = None if outage.retry_after is None else float(outage.retry_after)
            self.faults = replace(
                faults, throttle_rate=outage.fraction, retry_after_seconds=retry_after, routes=routes
            )
        elif outage.retry_after is not None:
            raise ValueError("Druva sends no Retry-After with a 500")
        else:
            self.faults = replace(faults, error_rate=outage.fraction, routes=routes)

    def clear_faults(self) -> None:
        """Every fault and outage off (the rate limit and the latency too)."""
        self.faults = Faults()

    def expire_tokens(self) -> None:
        with self._lock:
            past = self._clock() - 1
            self._tokens = dict.fromkeys(self._tokens, past)

    def issued_tokens(self) -> list[str]:
        """Every token handed out so far, expired ones included (tests check none of them leaks)."""
        with self._lock:
            return list(self._issued)

    @property
    def counts(self) -> Counter[str]:
        return self.router.counts

    def api_requests(self) -> int:
        """Requests that reached Druva's API (token included), admin calls excluded."""
        return sum(n for name, n in self.router.counts.items() if not name.startswith("admin"))

    def writes(self) -> int:
        """Requests that changed (or tried to change) a user: what a re-run must not make."""
        return sum(self.router.counts[name] for name in WRITE_ROUTES)

    def reset_counts(self) -> None:
        self.router.reset_counts()

    def _sorted_users(self) -> list[_User]:
        return [self._users[user_id] for user_id in sorted(self._users)]

    def _keep(self, user: _User) -> None:
        self._users[user.user_id] = user
        self._by_email.setdefault(email_key(user.email), []).append(user.user_id)
        self._active += user.status == "active"

    def _drop(self, user: _User) -> None:
        del self._users[user.user_id]
        same = self._by_email[email_key(user.email)]
        same.remove(user.user_id)
        if not same:
            del self._by_email[email_key(user.email)]
        self._active -= user.status == "active"

    def _set_status(self, user: _User, status: str) -> None:
        self._active += (status == "active") - (user.status == "active")
        user.status = status

    def _view(self, user: _User) -> dict[str, Any]:
        profile = self._profiles.get(user.profile_id)
        return user.view(privacy=profile is not None and profile.privacy)

    # ---- HTTP ---------------------------------------------------------------------------------------

    def _add_routes(self) -> None:
        add = self.router.add
        add("POST", "/token", self._gateway(self._issue_token), "token")
        api: list[tuple[str, str, Handler, str]] = [
            ("GET", USERS, self._list_users, "list users"),
            ("POST", USERS, self._create_user, "create user"),
            ("GET", USER, self._get_user, "get user"),
            ("PATCH", USER, self._update_user, "update user"),
            ("DELETE", USER, self._delete_user, "delete user"),
            ("POST", USER + "/preserve", self._preserve_user, "preserve user"),
            ("POST", USER + "/activate", self._activate_user, "activate user"),
            ("GET", PROFILES, self._list_profiles, "list profiles"),
            ("GET", PROFILES + r"/(?P<item_id>[^/]+)", self._get_profile, "get profile"),
            ("GET", STORAGES, self._list_storages, "list storages"),
            ("GET", STORAGES + r"/(?P<item_id>[^/]+)", self._get_storage, "get storage"),
        ]
        for method, pattern, handler, name in api:
            add(method, pattern, self._api(handler, name), name)
        self._add_admin_routes()

    def _add_admin_routes(self) -> None:
        add = self.router.add
        add("GET", "/_admin/state", lambda _: Response(200, self.state()), "admin state")
        add("POST", "/_admin/seed", self._admin_seed, "admin seed")
        add("POST", "/_admin/reset", self._admin_reset, "admin reset")
        add("GET", "/_admin/faults", lambda _: Response(200, asdict(self.faults)), "admin faults")
        add("POST", "/_admin/faults", self._admin_faults, "admin set faults")
        add("POST", "/_admin/expire-tokens", self._admin_expire_tokens, "admin expire tokens")
        add("GET", "/_admin/counts", lambda _: Response(200, dict(self.counts)), "admin counts")
        add("POST", "/_admin/counts/reset", self._admin_reset_counts, "admin reset counts")
        add_outage_routes(self.router, self)

    def _gateway(self, handler: Handler) -> Handler:
        """What Druva's gateway checks before anything else: in GovCloud, the spelling of header names."""

        def checked(request: Request) -> Response:
            return self._check_header_names(request) or handler(request)

        return checked

    def _api(self, handler: Handler, route: str) -> Handler:
        """Druva's gateway around a handler: header names, token, the token's role, then the faults
        that are switched on."""
        lossy = route == "create user"
        write = route in WRITE_ROUTES

        def guarded(request: Request) -> Response:
            refusal = (
                self._check_header_names(request)
                or self._check_token(request)
                or (self._check_role(request) if write else None)
                or self._injected_fault(route)
            )
            if refusal:
                return refusal
            try:
                with self._lock:  # one request at a time inside Druva: handlers are short and state is shared
                    response = handler(request)
            except _Refused as refused:
                return refused.response
            lost_rate = self.faults.lost_response_rate if self.faults.hits(route) else 0.0
            if lossy and response.status == 200 and self._draw(lost_rate):
                raise DropConnection  # applied, but the answer never reaches the client
            return response

        return guarded

    def _draw(self, rate: float) -> bool:
        if rate <= 0:
            return False
        with self._lock:
            return self._random.random() < rate

    def _injected_fault(self, route: str) -> Response | None:
        faults = self.faults
        if faults.rate_limit:
            wait = self._rate.take(faults.rate_limit, self._clock())
            if wait:
                throttled = envelope(429, "InsyncCappmaster-1429", "Too many requests.", retryable=True)
                throttled.headers["Retry-After"] = f"{wait:g}"
                return throttled
        if not faults.hits(route):
            return None
        if self._draw(faults.throttle_rate):
            throttled = envelope(429, "InsyncCappmaster-1429", "Too many requests.", retryable=True)
            if faults.retry_after_seconds is not None:
                throttled.headers["Retry-After"] = f"{faults.retry_after_seconds:g}"
            return throttled
        if self._draw(faults.error_rate):
            return envelope(500, "InsyncCappmaster-1006", "Internal server error", retryable=True)
        return None

    def _check_header_names(self, request: Request) -> Response | None:
        if not self.govcloud:
            return None
        for name in request.header_names:
            if name.lower() in ("accept", "authorization") and name not in GOVCLOUD_HEADER_NAMES:
                # Spelt as the gateway in front of Druva's API spells its own refusals.
                return Response(403, {"Message": EXPLICIT_DENY})
        return None

    def _check_role(self, request: Request) -> Response | None:
        with self._lock:
            read_only = _bearer_token(request) in self._read_only_tokens
        return envelope(403, *READ_ONLY_REFUSAL) if read_only else None

    def _check_token(self, request: Request) -> Response | None:
        token = _bearer_token(request)
        if not token:
            return envelope(401, "InsyncCappmaster-1002", "Invalid API credentials.")
        with self._lock:
            expires_at = self._tokens.get(token)
        if expires_at is None or expires_at <= self._clock():
            if self.expired_token_status == 401:
                return envelope(401, "InsyncCappmaster-1002", "Invalid API credentials.")
            return envelope(403, "InsyncCappmaster-1009", "Auth session expired")
        return None

    def _issue_token(self, request: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs(request.body.decode(errors="replace")).items()}
        if form.get("grant_type") != "client_credentials":
            return Response(400, {})
        credential = self._credential_of(request.headers.get("authorization", ""))
        if credential is None:
            return envelope(401, "InsyncCappmaster-1002", "Invalid API credentials.")
        token = secrets.token_urlsafe(24)
        with self._lock:
            now = self._clock()
            self._tokens = {t: exp for t, exp in self._tokens.items() if exp > now}
            self._read_only_tokens &= self._tokens.keys()
            self._tokens[token] = now + self.token_lifetime
            if credential.read_only:
                self._read_only_tokens.add(token)
            self._issued.append(token)
        lifetime = round(self.token_lifetime)
        return Response(200, {"access_token": token, "token_type": "bearer", "expires_in": lifetime})

    def _credential_of(self, header: str) -> _Credential | None:
        """The credential HTTP Basic names, if its secret is right."""
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            client_id, _, secret = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        with self._lock:
            credentials = {self.client_id: _Credential(self.client_secret, self.client_read_only)}
            credentials |= self._credentials
        known = credentials.get(client_id)
        if known is None or not secrets.compare_digest(secret, known.secret):
            return None
        return known

    # ---- users --------------------------------------------------------------------------------------

    def _list_users(self, request: Request) -> Response:
        query = request.query
        _check_list_query(query)
        if "emailID" in query:  # a lookup by e-mail: answer it from the index, not by sorting everyone
            candidates = [self._users[i] for i in sorted(self._by_email.get(email_key(query["emailID"]), ()))]
        else:
            candidates = self._sorted_users()
        matches = [user for user in candidates if self._user_matches(user, query)]
        return self._page(matches, query.get("pageToken"), "users", self._view)

    def _same_email(self, stored: str, asked: str) -> bool:
        """The ``emailID`` filter: exactly as stored when Druva is case-sensitive, else ignoring case."""
        if self.realism.email_case_sensitive:
            return stored == asked
        return email_key(stored) == email_key(asked)

    def _user_matches(self, user: _User, query: Mapping[str, str]) -> bool:
        checks = (
            ("emailID", lambda v: self._same_email(user.email, v)),
            ("searchPrefixEmailID", lambda v: email_key(user.email).startswith(email_key(v))),
            ("status", lambda v: user.status == v),
            ("profileID", lambda v: user.profile_id == _int_param(v, "profileID")),
            ("storageID", lambda v: user.storage_id == _int_param(v, "storageID")),
        )
        return all(test(query[name]) for name, test in checks if name in query)

    def _page(
        self, items: list[Any], page_token: str | None, key: str, view: Callable[[Any], dict[str, Any]]
    ) -> Response:
        start = _decode_page_token(page_token)
        end = start + self.page_size
        next_token = _encode_page_token(end) if end < len(items) else ""
        body = {
            "totalSize": len(items),
            "nextPageToken": next_token,
            key: [view(i) for i in items[start:end]],
        }
        return Response(200, body)

    def _find(self, request: Request) -> _User:
        raw = request.params["user_id"]
        user = self._users.get(int(raw)) if raw.isdigit() else None
        if user is None:
            raise _Refused(envelope(404, "InsyncUsermanagement-1004", f"User {raw} not found."))
        return user

    def _get_user(self, request: Request) -> Response:
        raw = request.params["user_id"]
        user = self._users.get(int(raw)) if raw.isdigit() else None
        # Druva documents that 404 bodies may be empty.
        return Response(200, user.view()) if user else Response(404, b"")

    def _create_user(self, request: Request) -> Response:
        body = _json_object(request)
        for name in ("userName", "emailID"):
            _required_text(body, name)
        profile_id = _required_int(body, "profileID")
        storage_id = _required_int(body, "storageID")
        if "@" not in body["emailID"]:
            raise _syntax(f"Invalid emailID: {body['emailID']!r}.")
        quota = _quota_of(body)
        mail_password = body.get("sendPasswordByEmail", True)
        if not isinstance(mail_password, bool):
            raise _syntax("sendPasswordByEmail must be true or false.")
        with self._lock:
            profile = self._known_profile(profile_id)
            self._known_storage(storage_id)
            if email_key(body["emailID"]) in self._by_email:
                raise _semantic("InsyncUsermanagement-1012", "User with the same email ID already exists.")
            self._check_licence(NO_LICENCE_MESSAGE)
            user = _User(
                user_id=self._new_id(None, self._users),
                email=body["emailID"].strip(),
                user_name=body["userName"].strip(),
                profile_id=profile_id,
                storage_id=storage_id,
                quota=quota if quota is not None else profile.quota,
                password_mailed=mail_password,
            )
            self._keep(user)
            view = self._view(user)
        del view["cacheID"]  # the create answer is a UserCreate: a User without cacheID
        return Response(200, view)

    def _update_user(self, request: Request) -> Response:
        body = _json_object(request)
        fixed = set(body) - {"userName", "profileID", "storageID"}
        if fixed:
            listed = ", ".join(sorted(fixed))
            raise _syntax(f"Only userName, profileID and storageID can be updated, not {listed}.")
        if not body:
            raise _syntax("Nothing to update.")
        with self._lock:
            user = self._find(request)
            if "userName" in body:
                _required_text(body, "userName")
            if "profileID" in body:
                self._check_privacy(user, self._known_profile(_required_int(body, "profileID")))
            if "storageID" in body:
                self._known_storage(_required_int(body, "storageID"))
            user.user_name = body.get("userName", user.user_name).strip()
            user.profile_id = body.get("profileID", user.profile_id)
            user.storage_id = body.get("storageID", user.storage_id)
            view = self._view(user)
        del view["cacheID"]
        return Response(200, view)

    def _check_privacy(self, user: _User, new: _Profile) -> None:
        """A profile change that would change what admins may see needs the user's consent first."""
        if not self.realism.enforce_privacy or user.admin_access_allowed:
            return
        old = self._profiles.get(user.profile_id)
        if old is not None and old.privacy != new.privacy:
            raise _semantic("InsyncUsermanagement-1018", PRIVACY_MESSAGE)

    def _check_licence(self, message: str) -> None:
        """One more active user must fit in the licences bought."""
        if not self.realism.enforce_licences or self.licences is None:
            return
        if self._active + 1 > self.licences:
            raise _semantic("InsyncUsermanagement-1016", message)

    def _preserve_user(self, request: Request) -> Response:
        with self._lock:
            self._set_status(self._find(request), "preserved")
        return Response(200, {})

    def _activate_user(self, request: Request) -> Response:
        with self._lock:
            user = self._find(request)
            if user.status != "active":
                self._check_licence(NO_LICENCE_MESSAGE + STAYS_PRESERVED)
                self._set_status(user, "active")
        return Response(200, {})

    def _delete_user(self, request: Request) -> Response:
        reason = _json_object(request).get("deletionReason") if request.body else None
        if reason is not None and not (isinstance(reason, str) and 10 <= len(reason) <= 150):
            raise _syntax("deletionReason must be 10 to 150 characters.")
        with self._lock:
            self._drop(self._find(request))
        return Response(200, {})

    def _known_profile(self, profile_id: int) -> _Profile:
        profile = self._profiles.get(profile_id)
        if profile is None:
            raise _semantic("InsyncUsermanagement-1010", f"Profile {profile_id} does not exist.")
        return profile

    def _known_storage(self, storage_id: int) -> _Storage:
        storage = self._storages.get(storage_id)
        if storage is None:
            raise _semantic("InsyncUsermanagement-1011", f"Storage {storage_id} does not exist.")
        return storage

    # ---- catalog ------------------------------------------------------------------------------------

    def _list_profiles(self, request: Request) -> Response:
        items = [self._profiles[i] for i in sorted(self._profiles)]
        return self._page(items, request.query.get("pageToken"), "profiles", _Profile.view)

    def _list_storages(self, request: Request) -> Response:
        items = [self._storages[i] for i in sorted(self._storages)]
        return self._page(items, request.query.get("pageToken"), "storages", _Storage.view)

    def _get_profile(self, request: Request) -> Response:
        found = self._profiles.get(_int_param(request.params["item_id"], "profileID"))
        return Response(200, found.view()) if found else Response(404, b"")

    def _get_storage(self, request: Request) -> Response:
        found = self._storages.get(_int_param(request.params["item_id"], "storageID"))
        return Response(200, found.view()) if found else Response(404, b"")

    # ---- admin --------------------------------------------------------------------------------------

    def _admin_seed(self, request: Request) -> Response:
        try:
            self.load_seed(request.json() or {})
        except (ValueError, KeyError, TypeError) as error:
            return Response(400, {"error": f"bad seed: {error}"})
        return Response(200, self.state())

    def _admin_reset(self, request: Request) -> Response:
        self.reset()
        return self._admin_seed(request)

    def _admin_faults(self, request: Request) -> Response:
        try:
            self.faults = Faults.from_json(request.json() or {})
        except (ValueError, TypeError) as error:
            return Response(400, {"error": f"bad faults: {error}"})
        return Response(200, asdict(self.faults))

    def _admin_expire_tokens(self, request: Request) -> Response:
        self.expire_tokens()
        return Response(200, {})

    def _admin_reset_counts(self, request: Request) -> Response:
        self.reset_counts()
        return Response(200, {})


def _bearer_token(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token if scheme.lower() == "bearer" else ""


def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = request.json()
    except (ValueError, UnicodeDecodeError):
        raise _syntax("Request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise _syntax("Request body must be a JSON object.")
    return body


def _required_text(body: Mapping[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value.strip():
        raise _syntax(f"{name} is required.")
    return value


def _required_int(body: Mapping[str, Any], name: str) -> int:
    value = body.get(name)
    if value is None:
        raise _syntax(f"{name} is required.")
    if isinstance(value, bool) or not isinstance(value, int):
        raise _syntax(f"{name} must be an integer.")
    return value


def _check_list_query(query: Mapping[str, str]) -> None:
    """Refuse a malformed filter even when no user would be tested against it."""
    status = query.get("status")
    if status is not None and status not in ("active", "preserved"):
        raise _syntax(f"Invalid value for status: {status!r}.")
    for name in ("profileID", "storageID"):
        if name in query:
            _int_param(query[name], name)
    _decode_page_token(query.get("pageToken"))


def _int_param(value: str, name: str) -> int:
    if not value.strip().isdigit():
        raise _syntax(f"Invalid value for {name}: {value!r}.")
    return int(value)


def _quota_of(body: Mapping[str, Any]) -> Quota | None:
    """Druva takes a whole number 0..1023 with a unit, or nothing (the profile's default)."""
    if "quota" not in body and "quotaUnit" not in body:
        return None
    value, unit = body.get("quota"), body.get("quotaUnit")
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_QUOTA_VALUE:
        raise _Refused(envelope(400, "InsyncUsermanagement-1013", QUOTA_MESSAGE))
    if unit not in {u.value for u in QuotaUnit}:
        raise _Refused(envelope(400, "InsyncUsermanagement-1013", "quotaUnit must be MB, GB or TB."))
    return Quota.unlimited() if value == 0 else Quota(value, QuotaUnit(unit))


def _encode_page_token(offset: int) -> str:
    return base64.b64encode(str(offset).encode()).decode()


def _decode_page_token(token: str | None) -> int:
    if not token:
        return 0
    try:
        return int(base64.b64decode(token, validate=True).decode())
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise _syntax(f"Invalid pageToken: {token!r}.") from None


def build_router(
    seed_path: str | None,
    faults: Faults | None = None,
    *,
    realism: DruvaRealism = KIND.druva,
    govcloud: bool = False,
) -> Router:
    simulator = DruvaSimulator.from_seed_file(seed_path, realism=realism, govcloud=govcloud)
    if faults is not None:
        simulator.faults = faults
    return simulator.router


def main(argv: list[str] | None = None) -> None:
    """``python -m simulators.druva [--port N] [--seed FILE] [--rate-limit N] [--latency-ms M]
    [--realism kind|production] [--govcloud]``: Druva answering at most N API requests a second (then
    429 with Retry-After), each after M milliseconds, as kindly or as really as the profile says, and
    with GovCloud's header rule when asked."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--rate-limit", type=float, default=None, help="API requests a second, then 429")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added to every API request")
    parser.add_argument("--realism", choices=REALISM_PROFILES, default=KIND.profile.value)
    parser.add_argument("--govcloud", action="store_true", help="refuse Accept/Authorization spelt otherwise")
    known, rest = parser.parse_known_args(argv)
    if (known.rate_limit is not None and known.rate_limit <= 0) or known.latency_ms < 0:
        parser.error("--rate-limit must be positive and --latency-ms at least 0")
    faults = Faults(latency_seconds=known.latency_ms / 1000, rate_limit=known.rate_limit)
    realism = Realism.named(known.realism).druva

    def build(seed: str | None) -> Router:
        return build_router(seed, faults, realism=realism, govcloud=known.govcloud)

    serve_from_command_line("druva", build, rest)


if __name__ == "__main__":
    main()
