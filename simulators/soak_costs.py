"""What the soak's months would have cost in Azure: the counts it made, priced at list prices.

The counts are the soak's own: every function execution and the seconds it ran (the local host counts
them per trigger), Service Bus operations (the stand-in's counters), state store calls (each one a
Table Storage transaction or a few: a query page, an upsert, a batch of up to 100), Graph and Druva
requests. They are scaled to 30 days.

The prices are Azure's pay-as-you-go list prices for East US in US dollars as published on
azure.microsoft.com/pricing (Functions, Service Bus, Storage) in 2025; this machine cannot reach the page,
so check it for your region and date. They are written once, here, so a change is one line:

- Functions, Flex Consumption, on demand: $0.000026 per GB-second of memory while executing and $0.40 per
  million executions, after a monthly free grant of 100,000 GB-s and 250,000 executions per subscription.
  The GB-seconds here are the sum of execution times × the instance memory (2,048 MB, infra/main.bicep):
  an upper bound, since executions that overlap on one instance are billed once.
- Service Bus, Standard: $0.0135 an hour for the namespace; 13 million operations a month included, then
  $0.80 per million. An operation is a send, a receive, a completion or an abandon of one message.
- Table Storage (LRS): $0.00036 per 10,000 transactions; the few megabytes kept cost well under a cent.
- Graph and Druva requests cost nothing, but count against their throttling limits.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from provisioning.adapters.state.sqlite import SqliteStateStore

DAYS_A_MONTH = 30
INSTANCE_GB = 2.0  # infra/main.bicep: instanceMemoryMB 2048
FLEX_GB_SECOND = 0.000026
FLEX_EXECUTIONS_PER_MILLION = 0.40
FLEX_FREE_GB_SECONDS = 100_000
FLEX_FREE_EXECUTIONS = 250_000
BUS_HOURLY = 0.0135
BUS_INCLUDED_OPERATIONS = 13_000_000
BUS_OPERATIONS_PER_MILLION = 0.80
TABLE_PER_10K_TRANSACTIONS = 0.00036
HOURS_A_MONTH = 730


@contextlib.contextmanager
def counting_state_calls() -> Iterator[Counter[str]]:
    """Count every call of the state store's port methods while the block runs (the store the product
    opens itself, in whatever instance): what Table Storage would bill as transactions."""
    counts: Counter[str] = Counter()
    originals: dict[str, Any] = {}
    for name, method in inspect.getmembers(SqliteStateStore, inspect.iscoroutinefunction):
        if name.startswith("_") or name == "aclose":
            continue
        originals[name] = method
        setattr(SqliteStateStore, name, _counted(method, name, counts))
    try:
        yield counts
    finally:
        for name, method in originals.items():
            setattr(SqliteStateStore, name, method)


def _counted(method: Any, name: str, counts: Counter[str]) -> Any:
    @functools.wraps(method)
    async def counted(*args: Any, **kwargs: Any) -> Any:
        counts[name] += 1
        return await method(*args, **kwargs)

    return counted


@dataclass(frozen=True)
class Costs:
    """Counts for 30 days, and what they cost."""

    days: int  # how long the soak ran (the counts are scaled from it to 30 days)
    executions: dict[str, float]
    gb_seconds: float
    bus_operations: float
    table_transactions: float
    graph_requests: float
    druva_requests: float

    @classmethod
    def of(
        cls,
        *,
        days: int,
        executions: dict[str, int],
        busy_seconds: dict[str, float],
        bus: dict[str, int],
        graph_requests: int,
        druva_requests: int,
        state_calls: Counter[str],
    ) -> Costs:
        scale = DAYS_A_MONTH / max(days, 1)
        operations = sum(bus.get(k, 0) for k in ("sent", "duplicates", "delivered", "completed", "abandoned"))
        return cls(
            days=days,
            executions={trigger: n * scale for trigger, n in executions.items()},
            gb_seconds=sum(busy_seconds.values()) * INSTANCE_GB * scale,
            bus_operations=operations * scale,
            table_transactions=sum(state_calls.values()) * scale,
            graph_requests=graph_requests * scale,
            druva_requests=druva_requests * scale,
        )

    @property
    def functions_dollars(self) -> float:
        executions = max(sum(self.executions.values()) - FLEX_FREE_EXECUTIONS, 0.0)
        seconds = max(self.gb_seconds - FLEX_FREE_GB_SECONDS, 0.0)
        return seconds * FLEX_GB_SECOND + executions / 1e6 * FLEX_EXECUTIONS_PER_MILLION

    @property
    def functions_without_grant(self) -> float:
        executions = sum(self.executions.values())
        return self.gb_seconds * FLEX_GB_SECOND + executions / 1e6 * FLEX_EXECUTIONS_PER_MILLION

    @property
    def bus_dollars(self) -> float:
        beyond = max(self.bus_operations - BUS_INCLUDED_OPERATIONS, 0.0)
        return BUS_HOURLY * HOURS_A_MONTH + beyond / 1e6 * BUS_OPERATIONS_PER_MILLION

    @property
    def table_dollars(self) -> float:
        return self.table_transactions / 10_000 * TABLE_PER_10K_TRANSACTIONS

    @property
    def total(self) -> float:
        return self.functions_dollars + self.bus_dollars + self.table_dollars

    def render(self) -> list[str]:
        by_trigger = ", ".join(
            f"{t.removesuffix('Trigger')} {n:,.0f}" for t, n in sorted(self.executions.items())
        )
        executions = sum(self.executions.values())
        return [
            "what 30 days of this tenant would cost in Azure (pay-as-you-go list prices, East US, USD; "
            "simulators/soak_costs.py):",
            f"  Functions (Flex Consumption): {executions:,.0f} executions ({by_trigger}), at most "
            f"{self.gb_seconds:,.0f} GB-s: ${self.functions_dollars:.2f} after the monthly free grant "
            f"(${self.functions_without_grant:.2f} without it)",
            f"  Service Bus (Standard): {self.bus_operations:,.0f} operations: ${self.bus_dollars:.2f} "
            "(the namespace's hourly charge; operations are within the 13 million included)",
            f"  Table Storage: {self.table_transactions:,.0f} transactions: ${self.table_dollars:.2f}",
            f"  Graph {self.graph_requests:,.0f} requests, Druva {self.druva_requests:,.0f}: no charge",
            f"  in all about ${self.total:.2f} a month, ${self.total * self.days / DAYS_A_MONTH:.2f} for the "
            f"{self.days} days of this run (Application Insights ingestion not included)",
        ]
