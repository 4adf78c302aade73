"""How kind the stand-ins are: ``kind`` (every change readable the moment it is made, notified at once,
nothing refused) or ``production`` (Graph and Druva as they really behave).

The kind profile is the default: unit and integration tests that need exact counts and timings use it.
The production profile is what ``--realism production`` gives the simulators, ``make local``, ``make
soak`` and ``make bench-events``; a run on it proves the product, a run on the kind one proves the logic.

Where the numbers come from:
- Graph's delta documentation ("Processing delays"): a change may not yet show in the next nextLink or
  deltaLink; retry after some time. Graph documents the latency of user and group notifications as
  "Unknown"; one practitioner measured about a minute. Entra creates a skeleton user and fills it in
  over seconds; dynamic groups are evaluated over minutes (to hours in large tenants).
- Exchange answers ``mailboxSettings`` 404 ``MailboxNotEnabledForRESTAPI`` while a new mailbox is
  provisioned (minutes to hours) and 403 ``ErrorAccessDenied`` for a mailbox an application access
  policy (or RBAC for Applications) scopes away from the app.
- Druva's inSync API: activation "fails (the user stays preserved) if an active license is not
  available"; a profile change is refused while the privacy settings of the two profiles conflict until
  the user allows admin access; a credential restricted to a read-only role is refused writes (403
  "insufficient permissions"); GovCloud wants the header names ``Accept`` and ``Authorization``
  capitalised. Druva's spec does not say that ``emailID`` matches case-insensitively, so the production
  profile matches it exactly as stored.
The distributions below are choices inside those documented ranges, not measurements of a tenant.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from enum import StrEnum


class Profile(StrEnum):
    KIND = "kind"
    PRODUCTION = "production"


@dataclass(frozen=True)
class Delay:
    """Seconds drawn from weighted bands: a band is chosen by weight, then a value uniformly inside it.
    No bands: always 0 (the kind profile)."""

    bands: tuple[tuple[float, float, float], ...] = ()  # (low, high, weight)

    def draw(self, draws: random.Random) -> float:
        if not self.bands:
            return 0.0
        low, high, _ = draws.choices(self.bands, weights=[b[2] for b in self.bands])[0]
        return draws.uniform(low, high)

    @property
    def maximum(self) -> float:
        return max((b[1] for b in self.bands), default=0.0)


@dataclass(frozen=True)
class GraphRealism:
    # a change → readable everywhere (delta, reads, $batch, mailboxSettings); per object, in order
    replication: Delay = Delay()
    # a change → its notification posted (independent of replication: it may come before or after)
    notification: Delay = Delay()
    notification_duplicate: float = 0.0  # fraction of notifications posted twice
    notification_lost: float = 0.0  # fraction never posted
    # a new user is a skeleton (id, userPrincipalName, displayName, createdDateTime); each of its other
    # properties arrives as a further update this long after the creation
    skeleton_fill: Delay = Delay()
    # the group memberships of a hire (``hire``): added this long after the creation (dynamic groups)
    dynamic_membership: Delay = Delay()
    delta_repeat: float = 0.0  # fraction of the objects of a delta round sent twice in that round
    omit_unset: bool = False  # never-set properties are left out of delta objects, not sent as null
    untyped_users: float = 0.0  # fraction of a generated tenant's members with no userType (pre-2014)
    mailbox_provisioning: Delay = Delay()  # a new mailbox answers 404 MailboxNotEnabledForRESTAPI so long
    restored_hidden: bool = False  # a user restored from the recycle bin is not in a $select users delta
    created_stamp: bool = False  # users carry createdDateTime (the kind profile leaves it out)


@dataclass(frozen=True)
class DruvaRealism:
    email_case_sensitive: bool = False  # the emailID filter matches exactly as stored
    enforce_licences: bool = False  # a seed's licence count limits active users (create, activate)
    enforce_privacy: bool = False  # a profile change between conflicting privacy settings is refused


@dataclass(frozen=True)
class Realism:
    profile: Profile = Profile.KIND
    graph: GraphRealism = field(default_factory=GraphRealism)
    druva: DruvaRealism = field(default_factory=DruvaRealism)

    @classmethod
    def named(cls, name: str) -> Realism:
        """The profile a ``--realism`` option names."""
        try:
            profile = Profile(name)
        except ValueError:
            known = ", ".join(p.value for p in Profile)
            raise ValueError(f"unknown realism profile {name!r} (known: {known})") from None
        return PRODUCTION if profile is Profile.PRODUCTION else KIND


KIND = Realism()
PRODUCTION = Realism(
    Profile.PRODUCTION,
    GraphRealism(
        # Most changes are readable within seconds; a third take up to two minutes; a tail of 1 % takes
        # up to ten minutes (the range the product's follow-up targets cover).
        replication=Delay(((0.0, 5.0, 0.6), (5.0, 60.0, 0.29), (60.0, 120.0, 0.1), (120.0, 600.0, 0.01))),
        notification=Delay(((0.0, 3.0, 0.7), (3.0, 20.0, 0.25), (20.0, 60.0, 0.05))),
        notification_duplicate=0.05,
        notification_lost=0.01,
        skeleton_fill=Delay(((1.0, 20.0, 1.0),)),
        dynamic_membership=Delay(((30.0, 240.0, 1.0),)),
        delta_repeat=0.05,
        omit_unset=True,
        untyped_users=0.02,
        mailbox_provisioning=Delay(((30.0, 600.0, 1.0),)),
        restored_hidden=True,
        created_stamp=True,
    ),
    DruvaRealism(email_case_sensitive=True, enforce_licences=True, enforce_privacy=True),
)
PROFILES = tuple(p.value for p in Profile)
