"""A local Microsoft Graph (v1.0) for tests, the demo and benchmarks: the parts this product reads.

    python -m simulators.graph --port 8401 [--seed tenant.json]   # default: the seed use case

In-process: ``GraphSimulator(tenant).start()``, then point the adapter at ``simulator.graph_url``; mutate
the directory with its methods (or, out of process, through ``/_admin/...``) between reads.

Behaviour copied from Graph (as learn.microsoft.com documents it for delta queries, $batch and subscriptions):
- ``Authorization: Bearer <anything>`` required (401 otherwise); errors in Graph's ``{"error": {code,
  message}}`` envelope.
- ``/users/delta`` and ``/groups/delta`` (``delta`` or ``delta()``): rounds paged with
  ``@odata.nextLink`` (``$skiptoken``) ending in ``@odata.deltaLink`` (``$deltatoken``); links point at the
  host the client used. Query parameters live in the tokens. ``$select`` limits both the properties and
  which changes surface. Removed objects come as ``@removed`` (``changed`` soft, ``deleted`` hard).
  Groups carry ``members@delta`` (direct members, typed; removals with ``@removed``); a large group's
  members are split over pages, the group repeated on each. ``$filter=id eq '…' or …`` takes at most 50
  ids. ``$deltatoken=latest`` starts from now. After ``expire_cursors()`` every older token gets 410 Gone,
  code ``syncStateNotFound``, with a ``Location`` to restart from; so does a delta link left unused for
  more than 7 days of the simulator's ``clock`` (Graph's documented limit for directory objects).
- Page sizes (server-chosen, ``$top`` ignored on delta): 200 users per users-delta page (the figure Graph's
  docs maintainers give), 100 groups and at most 1,000 ``members@delta`` entries per groups-delta page
  (our assumption), lists 100 by default and up to 999 with ``$top``. All configurable.
- ``/users``: ``$filter``, ``$search``, ``$count``, ``$orderby`` and ``$top`` as Graph supports them for
  users, refusals and the ``ConsistencyLevel: eventual`` rule included (``query.py``).
- ``/$batch``: at most 20 requests, relative URLs only (an absolute one fails that step with 400), answers
  in any order, each step throttled on its own.
- ``/subscriptions``: create (with the validation handshake), list, get, renew, delete, reauthorize; change
  notifications delivered to the subscriber (see ``webhooks.py``).
- Application permissions per endpoint (``permissions.py``): the app holds ``roles`` (constructor,
  ``--roles`` on the command line, ``PUT /_admin/roles``; by default what the Bicep grants); a call the
  roles do not allow answers 403 ``Authorization_RequestDenied`` naming the permission, and changes nothing.
- Fault injection by route name: a status (429 with ``Retry-After``, 503, ...) for the next N requests or a
  fraction of them.
- ``realism`` (``--realism kind|production``; ``simulators/realism.py``): the kind profile, the default,
  makes every change readable and notified the moment it is made. The production profile behaves as
  Graph does in production: a change becomes readable only some time after it is made (per object in
  order: a ``GET /users/{id}`` of a user just created answers 404), its notification is posted on a
  timeline of its own (late, out of order, sometimes twice, sometimes never), a new user is a skeleton
  filled in property by property over seconds, its mailbox answers 404 until provisioned, a hire's
  dynamic groups take it in minutes later (``hire``), delta rounds repeat objects and leave out
  never-set properties, a restored user is missing from ``$select`` users deltas, users carry
  ``createdDateTime`` (``timeline.py``, ``replica.py``). ``next_due()`` is where a driver that jumps its
  clock must stop; ``change_log()`` when each change was made, readable and notified.
- A mailbox scoped away from the app (``scope_mailbox_away``) answers 403 ``ErrorAccessDenied``.

Admin API, for a simulator in another process (no auth; counted under names starting with "admin"):
``GET|DELETE /_admin/counts``; ``PUT /_admin/tenant`` (a tenant JSON); ``POST /_admin/users``;
``PATCH|DELETE /_admin/users/{id|upn}`` (``?permanent=true``); ``POST /_admin/users/{id}/restore``;
``PUT /_admin/users/{ref}/mailboxSettings`` (``{"userPurpose": …}`` or null: no mailbox);
``POST|DELETE /_admin/users/{ref}/mailboxScopedAway``; ``POST /_admin/hires`` (``{"user": {…}, "groups":
[ids]}`` → ``{"id": …}``); ``GET /_admin/changes?since=N`` (``{"changes": [...]}``, see ``changes.py``);
``GET /_admin/due`` (``{"nextDue": ISO or null}``);
``POST /_admin/groups``; ``PATCH|DELETE /_admin/groups/{id}``; ``POST /_admin/groups/{id}/members|owners``
(``{"id": …}``); ``DELETE /_admin/groups/{id}/members|owners/{ref}``; ``POST /_admin/cursors/expire``;
``POST|DELETE /_admin/faults`` (``{"status", "count"|"fraction", "retryAfter", "routes"}``);
``PUT /_admin/deliveries`` (``{"mode": "deliver"|"hold"|"drop"}``), ``GET /_admin/deliveries``,
``POST /_admin/deliveries/flush``; ``POST /_admin/subscriptions/{id}/expire|reauthorization``;
``GET|PUT /_admin/roles`` (``{"roles": ["User.Read.All", …]}``); ``POST|DELETE /_admin/outages`` (the
outages both simulators share, ``simulators/outages.py``). In process: ``apply_outage`` and
``clear_faults``; ``simulator.running`` is the handle (``simulators/running.py``) that adds refused and hang.

The package, one module per concern: ``simulator.py`` (the simulator put together, and the gate every
Graph request passes), ``delta.py``, ``reads.py`` (users and groups), ``batch.py``, ``subscriptions.py``
(with ``webhooks.py``, the handshake and delivery), ``admin.py`` (``/_admin``), ``faults.py``,
``permissions.py``, ``query.py`` (``/users`` query rules), ``store.py`` (the directory, its replica and
their change logs), ``timeline.py`` (when changes are made, readable and notified), ``replica.py``
(replication), ``changes.py`` (what happened to each change, for benchmarks), ``pages.py`` and ``wire.py``
(rendering, paging, the error envelope, tokens); ``__main__.py`` the command line.
"""

from simulators.graph.faults import Fault
from simulators.graph.pages import PageSizes
from simulators.graph.simulator import GraphSimulator
from simulators.realism import KIND, PRODUCTION, Delay, GraphRealism, Realism

__all__ = ["KIND", "PRODUCTION", "Delay", "Fault", "GraphRealism", "GraphSimulator", "PageSizes", "Realism"]
