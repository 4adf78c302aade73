"""The state store in Azure: one Table Storage table, by connection string or managed identity.

Key design. One table (default ``provisioning``), created if missing; each kind of record is a
PartitionKey prefix, chosen so that every read the service makes is a point read or a scan of one
partition (a key range for the two whole-set reads, which only a full reconciliation makes):

==================  =====================  ==================================  ==============================
record              PartitionKey           RowKey                              serves
==================  =====================  ==================================  ==============================
account link        ``links``              ``account:{entra id}``              get_link, get_links (14 ids a
                                                                               query), links, count_managed
link owner          ``links``              ``druva:{Druva user id}``           owner_of (point read)
delta cursor        ``cursors``            ``{name}``                          get/claim/save by name
subscription        ``subscriptions``      ``{resource}``                      by resource
membership          ``members:{group}``    ``{member}``                        load_memberships, per group
reverse membership  ``memberof:{member}``  ``{group}``                         memberships_of, per member
audit entry         ``audit:{entra id}``   ``{inverted µs}-{inverted seq}-…``  audit_for: first rows = newest
run summary         ``runs``               ``{inverted µs of start}-{run id}`` recent_runs: first rows
hold                ``holds``              ``{entra id}``                      holds (a few ids a query, or
                                                                               the partition), per pass
followed object     ``promises``           ``{object id}``                     notice, sighted: the partition
==================  =====================  ==================================  ==============================

Every id in a key goes through ``encoding.key``: Entra ids (GUIDs) pass unchanged, anything else has
``/ \\ # ? %`` and control characters percent-encoded; e-mails and UPNs are never part of a key.

Why links and owners share one partition: an entity group transaction is atomic only within one
partition, and writing the link together with its owner row keeps ``owner_of`` exactly in step and makes
"one Druva user, one account" a constraint (creating a taken owner row fails with 409). The price is one
partition's throughput target (about 2,000 entities/s), far above what a tenant's provisioning writes.

Optimistic concurrency: a cursor's ``version`` is the entity's ETag, a link's is ``{Druva user id}:{ETag}``
(so a link write needs no read first: one transaction, one request). A write that expects a version is an
update with ``etag`` and ``IfNotModified`` (412 when someone wrote first); one that expects no record is a
create (409 when it exists). Both become ``ConcurrencyConflict``; a lease held by another owner is
``CursorBusy`` before any write is tried. Writes always REPLACE, never MERGE, so a value that shrinks
leaves no stale parts behind.

The membership index is two partitions per edge, so it cannot be one transaction. Writes are idempotent
(upsert, delete of a missing row tolerated) and a delta pass saves its cursor only after
``apply_memberships`` returns, so a crash half-way is repaired by replaying the same pages. When groups are
forgotten, the side that is scanned to find the rows (the forward partition of a group) is deleted last.

Limits (``encoding``): transactions hold ≤ 100 operations, ≤ 4 MiB and one partition each, enforced here
before the SDK sees them; a string property holds ≤ 32,768 characters, so a long text (a cursor value,
an audit reason or detail) is split over ``name``, ``name_1``, … with ``name_parts`` saying how many, up
to 15 parts; anything longer is refused with ``InvalidRequestError`` (code ``RecordTooLarge``).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from azure.core import MatchConditions
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.data.tables import EdmType, EntityProperty, TableTransactionError, UpdateMode
from azure.data.tables.aio import TableClient, TableServiceClient

from provisioning.adapters.clock import SystemClock
from provisioning.adapters.state.base import StateRules
from provisioning.adapters.state.encoding import (
    MAX_BATCH,
    MAX_BATCH_BYTES,
    check_audit,
    check_subscription,
    chunks,
    decodes,
    entity_size,
    key,
    newest_first,
    parse_failures,
    split_text,
    to_json,
    utc,
)
from provisioning.domain.directory import MembershipChange, Subscription
from provisioning.domain.followups import Hold, HoldReason, PromiseRecord
from provisioning.domain.groups import MembershipIndex, MembershipPlan
from provisioning.domain.links import AccountLink, LinkStatus
from provisioning.domain.state import AuditEntry, AuditOutcome, CursorState, RunKind, RunSummary
from provisioning.errors import (
    AuthError,
    ConcurrencyConflict,
    InvalidRequestError,
    NoState,
    TransientError,
)
from provisioning.ports import Clock

if TYPE_CHECKING:
    from azure.core.credentials import AzureNamedKeyCredential
    from azure.core.credentials_async import AsyncTokenCredential

    Credential = AsyncTokenCredential | AzureNamedKeyCredential

DEFAULT_TABLE = "provisioning"
LINKS, CURSORS, SUBSCRIPTIONS, RUNS = "links", "cursors", "subscriptions", "runs"
HOLDS, PROMISES = "holds", "promises"
MEMBERS, MEMBER_OF, AUDIT = "members:", "memberof:", "audit:"
ACCOUNT_ROW, DRUVA_ROW = "account:", "druva:"
IDS_PER_QUERY = 14  # Table Storage allows 15 comparisons in a filter: the PartitionKey and 14 RowKeys
CONCURRENCY = 16  # requests in flight when one call touches many partitions
_BATCH_BUDGET = MAX_BATCH_BYTES * 3 // 4  # entity sizes are estimates; the wire format adds framing
_TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_CONFLICT_STATUS = frozenset({404, 409, 412})

Entity = dict[str, Any]
Operation = tuple[Any, ...]  # ("create" | "upsert" | "delete" | "update", entity[, options])
T = TypeVar("T")
X = TypeVar("X")


def _upsert(entity: Entity) -> Operation:
    return ("upsert", entity, {"mode": UpdateMode.REPLACE})


def _delete(partition: str, row: str) -> Operation:
    return ("delete", {"PartitionKey": partition, "RowKey": row})


class TableStateStore(StateRules):
    def __init__(
        self,
        service: TableServiceClient,
        table: TableClient,
        *,
        clock: Clock,
        credential: AsyncTokenCredential | None = None,
    ) -> None:
        self._service = service
        self._table = table
        self._clock = clock
        self._credential = credential  # owned: closed with the store

    @classmethod
    async def open(
        cls,
        *,
        connection_string: str | None = None,
        endpoint: str | None = None,
        credential: Credential | None = None,
        owns_credential: bool = False,
        table_name: str = DEFAULT_TABLE,
        clock: Clock | None = None,
        create_table: bool = True,
    ) -> TableStateStore:
        """Connect and create the table if it is missing. A connection string wins over an endpoint; an
        endpoint needs a token credential, closed with the store when ``owns_credential``.
        ``create_table`` False (``status``) creates nothing: a missing table raises ``NoState``."""
        owned: AsyncTokenCredential | None = None
        if connection_string:
            service = TableServiceClient.from_connection_string(connection_string)
        elif endpoint:
            if credential is None:
                raise ValueError("Table Storage at an endpoint needs a credential (the app's Azure identity)")
            if owns_credential:
                owned = credential  # type: ignore[assignment]
            service = TableServiceClient(endpoint, credential=credential)
        else:
            raise ValueError("Table Storage needs a connection string or the account's table endpoint")
        try:
            if create_table:
                with _service_errors(f"creating table {table_name!r}"):
                    table = await service.create_table_if_not_exists(table_name)
            else:
                table = await _existing_table(service, table_name)
        except BaseException:
            await service.close()
            if owned is not None:
                await owned.close()
            raise
        return cls(service, table, clock=clock or SystemClock(), credential=owned)

    async def aclose(self) -> None:
        await self._table.close()
        await self._service.close()
        if self._credential is not None:
            await self._credential.close()

    # links

    async def get_link(self, entra_id: str) -> AccountLink | None:
        with _service_errors("reading a link"):
            entity = await self._get(LINKS, _account_row(entra_id))
        return _link(entity) if entity else None

    async def get_links(self, entra_ids: Collection[str]) -> dict[str, AccountLink]:
        groups = list(chunks(sorted(set(entra_ids)), IDS_PER_QUERY))
        with _service_errors("reading links"):
            pages = await _for_each(groups, self._links_among)
        return {link.entra_id: link for page in pages for link in page}

    async def _links_among(self, entra_ids: Sequence[str]) -> list[AccountLink]:
        names = [f"r{i}" for i in range(len(entra_ids))]
        # The SDK substitutes "@name" tokens split on spaces, hence the spaced parentheses.
        wanted = " or ".join(f"RowKey eq @{name}" for name in names)
        parameters = {"pk": LINKS} | {name: _account_row(i) for name, i in zip(names, entra_ids, strict=True)}
        found = self._table.query_entities(f"PartitionKey eq @pk and ( {wanted} )", parameters=parameters)
        return [_link(entity) async for entity in found]

    async def links(self) -> AsyncIterator[AccountLink]:
        with _service_errors("listing links"):
            async for entity in self._account_rows():
                yield _link(entity)

    def _account_rows(self, *, only_active: bool = False) -> AsyncIterator[Any]:
        """Link rows only (not owner rows): a RowKey range within the one links partition."""
        query = "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi"
        parameters = {"pk": LINKS, "lo": ACCOUNT_ROW, "hi": _after(ACCOUNT_ROW)}
        if only_active:
            query += " and status eq @status"
            parameters["status"] = LinkStatus.ACTIVE.value
        return self._table.query_entities(
            query, parameters=parameters, select=["RowKey"] if only_active else None
        )

    async def owner_of(self, druva_user_id: int) -> str | None:
        with _service_errors("reading a link owner"):
            entity = await self._get(LINKS, _druva_row(druva_user_id))
        return entity["entra_id"] if entity else None

    async def _write_link(self, link: AccountLink) -> AccountLink:
        operations = _link_writes(link)
        with _service_errors("writing a link"):
            try:
                results = await self._transact(operations)
            except TableTransactionError as error:
                if error.status_code not in _CONFLICT_STATUS:
                    raise
                raise await self._link_conflict(link, operations, error) from error
        return replace(link, version=_link_version(link.druva_user_id, results[0]["etag"]))

    async def _link_conflict(
        self, link: AccountLink, operations: Sequence[Operation], error: TableTransactionError
    ) -> ConcurrencyConflict:
        failed = operations[error.index] if 0 <= error.index < len(operations) else operations[0]
        if failed[1]["RowKey"] == _druva_row(link.druva_user_id):
            owner = await self.owner_of(link.druva_user_id)
            return ConcurrencyConflict(
                f"Druva user {link.druva_user_id} is already linked to Entra account {owner}"
            )
        if link.version is None:
            return ConcurrencyConflict(f"account {link.entra_id} is already linked (expected no link yet)")
        return ConcurrencyConflict(f"the link of account {link.entra_id} changed since it was read")

    async def count_managed(self) -> int:
        with _service_errors("counting managed links"):
            rows = self._account_rows(only_active=True)
            return sum([1 async for _ in rows])

    # delta cursors

    async def get_cursor(self, name: str) -> CursorState:
        with _service_errors(f"reading cursor {name!r}"):
            entity = await self._get(CURSORS, key(name))
        return _cursor(entity) if entity else CursorState(name=name)

    async def _write_cursor(self, state: CursorState, expected: str | None) -> CursorState:
        entity = _cursor_entity(state)
        with _service_errors(f"writing cursor {state.name!r}"):
            try:
                if expected is None:
                    result = await self._table.create_entity(entity)
                else:
                    result = await self._table.update_entity(
                        entity,
                        mode=UpdateMode.REPLACE,
                        etag=expected,
                        match_condition=MatchConditions.IfNotModified,
                    )
            except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError) as error:
                raise ConcurrencyConflict(f"cursor {state.name!r} moved since it was read") from error
        return replace(state, version=result["etag"])

    # change-notification subscriptions

    async def get_subscription(self, resource: str) -> Subscription | None:
        with _service_errors(f"reading the {resource} subscription"):
            entity = await self._get(SUBSCRIPTIONS, key(resource))
        if entity is None:
            return None
        return Subscription(
            id=entity["id"],
            resource=entity["resource"],
            expires_at=_datetime(entity["expires_at"]),
            notification_url=entity["notification_url"],
            lifecycle_url=entity.get("lifecycle_url"),
            client_state_fingerprint=entity.get("client_state_fingerprint"),
        )

    async def put_subscription(self, subscription: Subscription) -> None:
        check_subscription(subscription)
        entity = _present(
            {
                "PartitionKey": SUBSCRIPTIONS,
                "RowKey": key(subscription.resource),
                "resource": subscription.resource,
                "id": subscription.id,
                "expires_at": utc(subscription.expires_at),
                "notification_url": subscription.notification_url,
                "lifecycle_url": subscription.lifecycle_url,
                "client_state_fingerprint": subscription.client_state_fingerprint,
            }
        )
        with _service_errors(f"writing the {subscription.resource} subscription"):
            await self._table.upsert_entity(entity, mode=UpdateMode.REPLACE)

    async def delete_subscription(self, resource: str) -> None:
        with _service_errors(f"deleting the {resource} subscription"):
            await self._table.delete_entity(SUBSCRIPTIONS, key(resource))  # a missing one is fine

    # membership index

    async def load_memberships(self, group_ids: Collection[str] | None = None) -> MembershipIndex:
        with _service_errors("reading the membership index"):
            if group_ids is None:
                rows = [row async for row in self._every_membership()]
            else:
                pages = await _for_each(sorted(set(group_ids)), self._members_of)
                rows = [row for page in pages for row in page]
        return MembershipIndex.from_edges(
            (row["group_id"], row["member_id"], bool(row.get("member_is_group"))) for row in rows
        )

    def _every_membership(self) -> AsyncIterator[Any]:
        return self._table.query_entities(
            "PartitionKey ge @lo and PartitionKey lt @hi",
            parameters={"lo": MEMBERS, "hi": _after(MEMBERS)},
            select=["group_id", "member_id", "member_is_group"],
        )

    async def _members_of(self, group_id: str) -> list[Any]:
        return await self._partition(_members(group_id), ["group_id", "member_id", "member_is_group"])

    async def memberships_of(self, member_id: str) -> frozenset[str]:
        with _service_errors("reading memberships"):
            rows = await self._partition(_member_of(member_id), ["group_id"])
        return frozenset(row["group_id"] for row in rows)

    async def _write_memberships(self, plan: MembershipPlan) -> None:
        with _service_errors("writing the membership index"):
            await _for_each(sorted(plan.forget), self._forget_members)
            await _for_each(sorted(plan.vanished), self._forget_parents)
            forward = _by_partition(_edge_operation(edge, reverse=False) for edge in plan.edges)
            await _for_each(forward, self._write_tolerantly)
            reverse = _by_partition(_edge_operation(edge, reverse=True) for edge in plan.edges)
            await _for_each(reverse, self._write_tolerantly)

    async def _forget_members(self, group_id: str) -> None:
        rows = await self._partition(_members(group_id), ["RowKey", "member_id"])
        reverse = [[_delete(_member_of(row["member_id"]), key(group_id))] for row in rows]
        await _for_each(reverse, self._write_tolerantly)
        await self._write_tolerantly([_delete(_members(group_id), row["RowKey"]) for row in rows])

    async def _forget_parents(self, group_id: str) -> None:
        """A group that no longer exists is no longer a member of any other group either."""
        rows = await self._partition(_member_of(group_id), ["RowKey", "group_id"])
        forward = [[_delete(_members(row["group_id"]), key(group_id))] for row in rows]
        await _for_each(forward, self._write_tolerantly)
        await self._write_tolerantly([_delete(_member_of(group_id), row["RowKey"]) for row in rows])

    # audit trail and run history

    async def append_audit(self, entries: Sequence[AuditEntry]) -> None:
        # Entries with the same time keep their order: the later one gets the smaller inverted sequence.
        sequence = time.time_ns()
        entities = [_audit_entity(entry, sequence + i) for i, entry in enumerate(entries)]
        with _service_errors("writing the audit trail"):
            await _for_each(_by_partition(("create", e) for e in entities), self._write_in_batches)

    async def audit_for(self, entra_id: str, limit: int = 50) -> list[AuditEntry]:
        with _service_errors("reading the audit trail"):
            rows = await self._partition(AUDIT + key(entra_id), None, limit)
        return [_audit(row) for row in rows]

    async def _write_run(self, summary: RunSummary, counts: str, failures: str | None) -> None:
        entity = _present(
            {
                "PartitionKey": RUNS,
                "RowKey": f"{newest_first(summary.started_at)}-{key(summary.run_id)}",
                "run_id": summary.run_id,
                "kind": summary.kind,
                "started_at": utc(summary.started_at),
                "finished_at": utc(summary.finished_at),
                "counts": counts,
                "dry_run": summary.dry_run,
                "stopped": summary.stopped,
                "failures": failures,
            }
        )
        with _service_errors("recording a run"):
            await self._table.upsert_entity(entity, mode=UpdateMode.REPLACE)

    # follow-ups

    async def holds(self, entra_ids: Collection[str] | None = None) -> dict[str, Hold]:
        with _service_errors("reading holds"):
            if entra_ids is None:
                rows = await self._partition(HOLDS, None)
            else:
                chunked = list(chunks(sorted(set(entra_ids)), IDS_PER_QUERY))
                pages = await _for_each(chunked, lambda ids: self._rows_among(HOLDS, ids))
                rows = [row for page in pages for row in page]
        return {hold.entra_id: hold for hold in map(_hold, rows)}

    async def _rows_among(self, partition: str, ids: Sequence[str]) -> list[Any]:
        """The rows of ``partition`` whose RowKeys are these ids (at most ``IDS_PER_QUERY``)."""
        wanted = " or ".join(f"RowKey eq @r{n}" for n in range(len(ids)))
        parameters = {"pk": partition, **{f"r{n}": key(i) for n, i in enumerate(ids)}}
        found = self._table.query_entities(f"PartitionKey eq @pk and ( {wanted} )", parameters=parameters)
        return [row async for row in found]

    async def _write_holds(self, holds: Sequence[Hold]) -> None:
        with _service_errors("writing holds"):
            await self._write_in_batches([_upsert(_hold_entity(hold)) for hold in holds])

    async def clear_holds(self, entra_ids: Collection[str]) -> None:
        with _service_errors("clearing holds"):
            await self._write_tolerantly([_delete(HOLDS, key(i)) for i in sorted(set(entra_ids))])

    async def _promise_records(self, object_ids: Collection[str] | None = None) -> dict[str, PromiseRecord]:
        with _service_errors("reading followed changes"):
            if object_ids is None:
                rows = await self._partition(PROMISES, None)
            else:
                chunked = list(chunks(sorted(set(object_ids)), IDS_PER_QUERY))
                pages = await _for_each(chunked, lambda ids: self._rows_among(PROMISES, ids))
                rows = [row for page in pages for row in page]
        return {record.object_id: record for record in map(_promise_record, rows)}

    async def _write_promise_records(
        self, writes: Sequence[PromiseRecord], forget: Sequence[PromiseRecord]
    ) -> None:
        """Conditional on each record's ETag (a create for one that must not exist yet), in transactions
        of the one partition: a batch that meets a changed record writes nothing of itself."""
        operations = [_promise_delete(record) for record in forget]
        operations += [_promise_write(record) for record in writes]
        with _service_errors("writing followed changes"):
            for batch in transaction_batches(operations):
                try:
                    await self._transact(batch)
                except TableTransactionError as error:
                    if error.status_code in _CONFLICT_STATUS:
                        raise ConcurrencyConflict("a followed change changed since it was read") from error
                    raise

    async def recent_runs(self, limit: int = 20) -> list[RunSummary]:
        with _service_errors("reading recent runs"):
            rows = await self._partition(RUNS, None, limit)
        return [_run(row) for row in rows]

    # Table Storage mechanics

    async def _get(self, partition: str, row: str) -> Any:
        try:
            return await self._table.get_entity(partition, row)
        except ResourceNotFoundError:
            return None

    async def _partition(
        self, partition: str, select: list[str] | None, limit: int | None = None
    ) -> list[Any]:
        """Rows of one partition in key order; with ``limit``, only the first ones are fetched."""
        if limit is not None and limit <= 0:
            return []
        rows = self._table.query_entities(
            "PartitionKey eq @pk",
            parameters={"pk": partition},
            select=select,
            results_per_page=min(limit, 1000) if limit else None,
        )
        found = []
        async for row in rows:
            found.append(row)
            if limit is not None and len(found) >= limit:
                break
        return found

    async def _transact(self, operations: Sequence[Operation]) -> list[Any]:
        """One entity group transaction. The SDK does not bound its size and Azurite answers a 101st
        operation with a broken response, so the limits are checked here, before anything is sent."""
        partitions = {operation[1]["PartitionKey"] for operation in operations}
        if len(partitions) != 1 or not 0 < len(operations) <= MAX_BATCH:
            raise ValueError(
                f"a transaction needs 1..{MAX_BATCH} operations on one partition, "
                f"got {len(operations)} on {len(partitions)}"
            )
        return list(await self._table.submit_transaction(operations))

    async def _write_in_batches(self, operations: Sequence[Operation]) -> None:
        for batch in transaction_batches(operations):
            await self._transact(batch)

    async def _write_tolerantly(self, operations: Sequence[Operation]) -> None:
        """Upserts and deletes where a row already gone is fine; a batch that fails on one missing row
        is replayed operation by operation (deleting a missing entity alone is not an error)."""
        for batch in transaction_batches(operations):
            if len(batch) == 1:
                await self._single(batch[0])
                continue
            try:
                await self._transact(batch)
            except TableTransactionError as error:
                if error.status_code != 404:
                    raise
                for operation in batch:
                    await self._single(operation)

    async def _single(self, operation: Operation) -> None:
        verb, entity = operation[0], operation[1]
        if verb == "delete":
            await self._table.delete_entity(entity["PartitionKey"], entity["RowKey"])
        else:
            await self._table.upsert_entity(entity, mode=UpdateMode.REPLACE)


# keys


def _account_row(entra_id: str) -> str:
    return ACCOUNT_ROW + key(entra_id)


def _druva_row(druva_user_id: int) -> str:
    return f"{DRUVA_ROW}{druva_user_id}"


def _members(group_id: str) -> str:
    return MEMBERS + key(group_id)


def _member_of(member_id: str) -> str:
    return MEMBER_OF + key(member_id)


def _after(prefix: str) -> str:
    """The smallest key above every key that starts with ``prefix`` (prefixes end in ':')."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


# batches


def _by_partition(operations: Iterable[Operation]) -> list[list[Operation]]:
    grouped: dict[str, list[Operation]] = {}
    for operation in operations:
        grouped.setdefault(operation[1]["PartitionKey"], []).append(operation)
    return list(grouped.values())


def transaction_batches(operations: Sequence[Operation]) -> Iterator[list[Operation]]:
    """≤ 100 operations and well under 4 MiB per transaction."""
    batch: list[Operation] = []
    size = 0
    for operation in operations:
        weight = entity_size(operation[1])
        if batch and (len(batch) == MAX_BATCH or size + weight > _BATCH_BUDGET):
            yield batch
            batch, size = [], 0
        batch.append(operation)
        size += weight
    if batch:
        yield batch


async def _for_each(items: Iterable[X], action: Callable[[X], Awaitable[T]]) -> list[T]:
    """``action`` on every item, at most ``CONCURRENCY`` at a time; the first failure is raised as is
    (not as an ExceptionGroup), so callers see the same error types as from a single call."""
    semaphore = asyncio.Semaphore(CONCURRENCY)

    async def bounded(item: X) -> T:
        async with semaphore:
            return await action(item)

    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(bounded(item)) for item in items]
    except ExceptionGroup as failed:
        raise failed.exceptions[0] from None
    return [task.result() for task in tasks]


# errors


async def _existing_table(service: TableServiceClient, table_name: str) -> TableClient:
    with _service_errors(f"looking for table {table_name!r}"):
        found = [t async for t in service.query_tables("TableName eq @name", parameters={"name": table_name})]
    if not found:
        raise NoState(f"Table Storage has no table {table_name!r} yet: nothing has run against it")
    return service.get_table_client(table_name)


@contextmanager
def _service_errors(doing: str) -> Iterator[None]:
    """Map the SDK's errors once, to the product's taxonomy. Messages carry status and code only: the
    SDK's own messages can echo request URLs, and those never belong in logs."""
    try:
        yield
    except ClientAuthenticationError as error:
        raise AuthError(f"Table Storage refused {doing}: {error.status_code} {error.reason}") from error
    except (ServiceRequestError, ServiceResponseError) as error:
        raise TransientError(f"Table Storage unreachable while {doing}: {type(error).__name__}") from error
    except HttpResponseError as error:
        status, code = error.status_code, getattr(error, "error_code", None)
        if status in (401, 403):
            raise AuthError(f"Table Storage refused {doing}: {status} {code}") from error
        if status in _TRANSIENT_STATUS:
            raise TransientError(f"Table Storage failed {doing}: {status} {code}") from error
        raise InvalidRequestError(f"Table Storage refused {doing}: {status} {code}", code, status) from error


def _link_version(druva_user_id: int, etag: str) -> str:
    """A link's version: its ETag, prefixed with the Druva user id it was written with. The id tells the
    next write which owner row to move without reading the link first, and the ETag condition proves it
    is still right: one request per link write."""
    return f"{druva_user_id}:{etag}"


def _read_link_version(link: AccountLink) -> tuple[int, str]:
    assert link.version is not None
    druva_user_id, _, etag = link.version.partition(":")
    try:
        return int(druva_user_id), etag
    except ValueError:
        raise ConcurrencyConflict(f"version {link.version!r} was not issued by this state store") from None


# entities ↔ domain


def _present(entity: Entity) -> Entity:
    """None means "no property": Table Storage has no nulls, and REPLACE drops what is not sent."""
    return {name: value for name, value in entity.items() if value is not None}


def _link_writes(link: AccountLink) -> list[Operation]:
    """The link and its owner row in one transaction. A new link is created (409 if the account is
    linked already); a known one is replaced if its ETag still matches (412 otherwise). The owner row
    follows the Druva user: created for a new one (409 if another account holds it), deleted for the
    one left behind."""
    entity = _present(
        {
            "PartitionKey": LINKS,
            "RowKey": _account_row(link.entra_id),
            "entra_id": link.entra_id,
            "druva_user_id": EntityProperty(link.druva_user_id, EdmType.INT64),
            "email": link.email,
            "mapping": link.mapping,
            "profile": link.profile,
            "storage": link.storage,
            "quota": link.quota,
            "status": link.status.value,
            "decided_at": utc(link.decided_at),
        }
    )
    owner = {"PartitionKey": LINKS, "RowKey": _druva_row(link.druva_user_id), "entra_id": link.entra_id}
    if link.version is None:
        return [("create", entity), ("create", owner)]
    previous, etag = _read_link_version(link)
    condition = {"mode": UpdateMode.REPLACE, "etag": etag, "match_condition": MatchConditions.IfNotModified}
    operations: list[Operation] = [("update", entity, condition)]
    if previous != link.druva_user_id:
        operations += [("create", owner), _delete(LINKS, _druva_row(previous))]
    return operations


@decodes("link")
def _link(entity: Any) -> AccountLink:
    return AccountLink(
        entra_id=entity["entra_id"],
        druva_user_id=_int(entity["druva_user_id"]),
        email=entity["email"],
        mapping=entity.get("mapping"),
        profile=entity.get("profile"),
        storage=entity.get("storage"),
        quota=entity.get("quota"),
        status=LinkStatus(entity["status"]),
        decided_at=_datetime(entity["decided_at"]),
        version=_link_version(_int(entity["druva_user_id"]), entity.metadata["etag"]),
    )


def _cursor_entity(state: CursorState) -> Entity:
    return _present(
        {
            "PartitionKey": CURSORS,
            "RowKey": key(state.name),
            "name": state.name,
            **_text_properties("value", state.value),
            "lease_owner": state.lease_owner,
            "lease_until": utc(state.lease_until) if state.lease_until else None,
            "updated_at": utc(state.updated_at) if state.updated_at else None,
        }
    )


@decodes("cursor")
def _cursor(entity: Any) -> CursorState:
    return CursorState(
        name=entity["name"],
        value=_text(entity, "value"),
        lease_owner=entity.get("lease_owner"),
        lease_until=_datetime(entity["lease_until"]) if entity.get("lease_until") else None,
        updated_at=_datetime(entity["updated_at"]) if entity.get("updated_at") else None,
        version=entity.metadata["etag"],
    )


def _edge_operation(edge: MembershipChange, *, reverse: bool) -> Operation:
    partition = _member_of(edge.member_id) if reverse else _members(edge.group_id)
    row = key(edge.group_id) if reverse else key(edge.member_id)
    if edge.removed:
        return _delete(partition, row)
    entity = {
        "PartitionKey": partition,
        "RowKey": row,
        "group_id": edge.group_id,
        "member_id": edge.member_id,
        "member_is_group": edge.member_is_group,
    }
    return _upsert(entity)


def _audit_entity(entry: AuditEntry, sequence: int) -> Entity:
    detail = to_json(entry.detail)
    check_audit(entry, detail)
    tiebreak = 10**20 - sequence
    return {
        "PartitionKey": AUDIT + key(entry.entra_id),
        # The random tail keeps two writers at the same instant from colliding on one key.
        "RowKey": f"{newest_first(entry.at)}-{tiebreak:020d}-{secrets.token_hex(4)}",
        "entra_id": entry.entra_id,
        "at": utc(entry.at),
        "principal": entry.principal,
        "action": entry.action,
        "outcome": entry.outcome,
        "run_id": entry.run_id,
        **_text_properties("reason", entry.reason),
        **_text_properties("detail", detail),
    }


@decodes("audit")
def _audit(entity: Any) -> AuditEntry:
    return AuditEntry(
        at=_datetime(entity["at"]),
        entra_id=entity["entra_id"],
        principal=entity["principal"],
        action=entity["action"],
        outcome=AuditOutcome(entity["outcome"]),
        reason=_text(entity, "reason") or "",
        run_id=entity["run_id"],
        detail=json.loads(_text(entity, "detail") or "{}"),
    )


@decodes("run")
def _run(entity: Any) -> RunSummary:
    return RunSummary(
        run_id=entity["run_id"],
        kind=RunKind(entity["kind"]),
        started_at=_datetime(entity["started_at"]),
        finished_at=_datetime(entity["finished_at"]),
        counts=json.loads(entity["counts"]),
        dry_run=bool(entity["dry_run"]),
        stopped=entity.get("stopped"),
        failures=parse_failures(entity.get("failures")),  # absent on rows recorded before failures were kept
    )


def _hold_entity(hold: Hold) -> Entity:
    return _present(
        {
            "PartitionKey": HOLDS,
            "RowKey": key(hold.entra_id),
            "entra_id": hold.entra_id,
            "reason": hold.reason.value,
            "detail": hold.detail,
            "since": utc(hold.since),
            "recheck_at": utc(hold.recheck_at),
            "principal": hold.principal,
            "attempts": hold.attempts,
            "advice": hold.advice,
            "kind": hold.kind,
            "signature": hold.signature,
        }
    )


@decodes("hold")
def _hold(entity: Any) -> Hold:
    return Hold(
        entra_id=str(entity["entra_id"]),
        reason=HoldReason(entity["reason"]),
        detail=str(entity["detail"]),
        since=_datetime(entity["since"]),
        recheck_at=_datetime(entity["recheck_at"]),
        principal=str(entity.get("principal") or ""),
        attempts=_int(entity.get("attempts", 1)),
        advice=entity.get("advice"),
        kind=entity.get("kind"),
        signature=entity.get("signature"),
    )


def _promise_entity(record: PromiseRecord) -> Entity:
    return _present(
        {
            "PartitionKey": PROMISES,
            "RowKey": key(record.object_id),
            "object_id": record.object_id,
            "resource": record.resource,
            "notified_at": utc(record.notified_at) if record.notified_at else None,
            "seen_at": utc(record.seen_at) if record.seen_at else None,
        }
    )


@decodes("promise")
def _promise_record(entity: Any) -> PromiseRecord:
    notified, seen = entity.get("notified_at"), entity.get("seen_at")
    return PromiseRecord(
        str(entity["object_id"]),
        str(entity.get("resource") or ""),
        _datetime(notified) if notified else None,
        _datetime(seen) if seen else None,
        entity.metadata["etag"],
    )


def _promise_write(record: PromiseRecord) -> Operation:
    entity = _promise_entity(record)
    if record.version is None:
        return ("create", entity)
    return ("update", entity, _unchanged(record.version))


def _promise_delete(record: PromiseRecord) -> Operation:
    row = {"PartitionKey": PROMISES, "RowKey": key(record.object_id)}
    condition = {"etag": record.version, "match_condition": MatchConditions.IfNotModified}
    return ("delete", row, condition) if record.version else ("delete", row)


def _unchanged(etag: str) -> dict[str, Any]:
    return {"mode": UpdateMode.REPLACE, "etag": etag, "match_condition": MatchConditions.IfNotModified}


def _text_properties(name: str, text: str | None) -> Entity:
    """A long text over several string properties: ``name``, ``name_1``, … and ``name_parts``."""
    if text is None:
        return {}
    parts = split_text(text)
    properties: Entity = {f"{name}_parts": len(parts), name: parts[0]}
    properties.update({f"{name}_{i}": part for i, part in enumerate(parts[1:], start=1)})
    return properties


def _text(entity: Any, name: str) -> str | None:
    count = entity.get(f"{name}_parts")
    if count is None:
        return None
    return str(entity[name]) + "".join(entity[f"{name}_{i}"] for i in range(1, _int(count)))


def _int(value: Any) -> int:
    return int(getattr(value, "value", value))  # Int64 comes back as a typed EntityProperty


def _datetime(value: datetime) -> datetime:
    """A plain UTC datetime (the SDK returns its own subclass)."""
    return datetime(
        value.year,
        value.month,
        value.day,
        value.hour,
        value.minute,
        value.second,
        value.microsecond,
        tzinfo=UTC,
    )
