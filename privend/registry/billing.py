"""The billing records the registry keeps besides tenants and endpoints.

Usage events (idempotent by id), quarantined input, the subscription history of
retired endpoints and tenants (billing outlives a destroyed endpoint), billing
periods with their invoices, and the alert outbox. Both backends store and
return exactly these values.

Times inside usage events are integers: microseconds since the Unix epoch, UTC.
Integers make the SQL range sums exact and fast, and a usage event never needs
more than a comparison and a sum.
"""

from __future__ import annotations

import hashlib
import json
import itertools
import operator
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from privend.registry.models import SubscriptionSegment

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Reasons an input line or event is quarantined; the keys of `usage import --format json`'s "reasons".
QUARANTINE_REASONS = (
    "malformed",
    "missing_field",
    "invalid_count",
    "too_many_tokens",
    "unknown_endpoint",
    "future_timestamp",
    "outside_subscription",
    "conflict",
)

ALERT_KINDS = ("usage_80", "usage_100", "overage_cap")


def to_us(value: datetime) -> int:
    """Microseconds since the epoch of an aware datetime, exactly."""
    delta = value - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(value: int) -> datetime:

    return EPOCH + timedelta(microseconds=value)


class UsageEvent(NamedTuple):
    """One accepted usage record: tokens an endpoint served, stamped with an instant."""

    id: str
    endpoint: str
    timestamp_us: int
    input_tokens: int
    output_tokens: int


class UsageBatchResult(NamedTuple):
    accepted: int
    duplicate: int
    conflict: int


@dataclass(frozen=True)
class QuarantinedEvent:
    """Input that was not accepted, kept so an operator can see and fix it.

    `key` identifies the record: the same bad line quarantined twice is stored once.
    """

    key: str
    reason: str
    detail: str
    line: str
    quarantined_at: datetime
    event_id: str | None = None
    endpoint: str | None = None

    @staticmethod
    def make(reason: str, detail: str, line: str, at: datetime, event_id: str | None = None,
             endpoint: str | None = None) -> QuarantinedEvent:
        key = hashlib.sha256(f"{reason}\n{line}".encode()).hexdigest()
        return QuarantinedEvent(key, reason, detail, line[:4000], at, event_id, endpoint)


def conflict_line(event: UsageEvent) -> str:
    """The conflicting event as canonical JSON, for the quarantine."""

    return json.dumps(
        {"id": event.id, "endpoint": event.endpoint, "timestamp": from_us(event.timestamp_us).isoformat(),
         "input_tokens": event.input_tokens, "output_tokens": event.output_tokens},
        sort_keys=True, separators=(",", ":"),
    )


def conflict_record(event: UsageEvent, first: Sequence[Any], at: datetime) -> QuarantinedEvent:
    endpoint, ts, inp, out = first
    detail = (f"event id {event.id!r} was first accepted with endpoint {endpoint!r}, "
              f"timestamp {from_us(ts).isoformat()}, {inp} input and {out} output tokens; the first stands")
    return QuarantinedEvent.make("conflict", detail, conflict_line(event), at, event.id, event.endpoint)


@dataclass(frozen=True)
class BillingSubscription:
    """What billing needs of one endpoint: whose it is, the tenant's time zone and its segments.

    `retired_at` is set for an endpoint whose record was deleted after its stack was destroyed.
    """

    endpoint: str
    tenant: str
    billing_timezone: str
    segments: tuple[SubscriptionSegment, ...]
    retired_at: datetime | None = None


@dataclass(frozen=True)
class BillingPeriod:
    period: str
    finalized: bool
    reconciled_at: datetime
    finalized_at: datetime | None = None


@dataclass(frozen=True)
class InvoiceRecord:
    """One tenant's invoice for one period, as a JSON document (lines, total, and the rating basis)."""

    period: str
    tenant: str
    document: dict[str, Any]


@dataclass(frozen=True)
class Alert:
    """One outbox entry: at most one per (period, endpoint, kind), ever."""

    period: str
    endpoint: str
    kind: str
    tenant: str
    message: str
    created_at: datetime
    details: dict[str, Any] = field(default_factory=dict)
    published_at: datetime | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.period, self.endpoint, self.kind)


@dataclass(frozen=True)
class StatusChange:
    """A billing-driven status change of an endpoint (suspend, or lift a suspension)."""

    endpoint: str
    expected_version: int
    status: str
    status_message: str


@dataclass(frozen=True)
class ReconcileCommit:
    """Everything one reconcile run writes, applied all at once or not at all."""

    env: str
    period: str
    at: datetime
    finalize: bool
    invoices: tuple[InvoiceRecord, ...]
    alerts: tuple[Alert, ...] = ()
    status_changes: tuple[StatusChange, ...] = ()


class UsageBatch(Sequence[UsageEvent]):
    """The events of one `record_usage` call, collected with note of the ids that repeat.

    `dedupe_batch` then visits the repeats alone, not every event: the collector (the
    importer's parsing thread, which has time to spare) pays one dict operation per event,
    and the thread that stores the batch, the import's bottleneck, saves passes over the
    whole batch that hold the GIL. Append only; any other sequence of events works too.
    """

    __slots__ = ("_events", "_first", "_repeats")

    def __init__(self) -> None:
        self._events: list[UsageEvent] = []
        self._first: dict[str, int] = {}  # id -> position of its first event
        self._repeats: list[int] = []  # positions of events whose id came before

    def add(self, event: UsageEvent) -> int:
        """Append `event`; the number of events now in the batch."""
        position = len(self._events)
        self._events.append(event)
        if self._first.setdefault(event[0], position) != position:
            self._repeats.append(position)
        return position + 1

    def __len__(self) -> int:
        return len(self._events)

    def __getitem__(self, index: Any) -> Any:
        return self._events[index]

    def __iter__(self) -> Iterator[UsageEvent]:
        return iter(self._events)


def dedupe_batch(
    events: Sequence[UsageEvent], at: datetime
) -> tuple[list[UsageEvent], int, list[QuarantinedEvent]]:
    """Unique events of one batch, duplicates counted, conflicts quarantined: the earlier one stands.

    The unique events keep their order; duplicates and conflicts are taken in batch order.
    """
    if isinstance(events, UsageBatch):
        first, repeats, events = events._first, events._repeats, events._events
    else:
        ids = [event[0] for event in events]
        # Where each id first occurs: built backwards, so an id's first position is written last and stays.
        first = dict(zip(reversed(ids), range(len(ids) - 1, -1, -1), strict=True))
        if len(first) == len(ids):
            return list(events), 0, []
        # The positions whose id came before, found in C (map, compress): a batch is up to 100,000 events.
        repeats = list(itertools.compress(itertools.count(),
                                          map(operator.ne, map(first.__getitem__, ids), itertools.count())))
    if not repeats:
        return list(events), 0, []
    duplicate = 0
    conflicts: list[QuarantinedEvent] = []
    unique: list[UsageEvent] = []
    start = 0
    for position in repeats:
        event = events[position]
        kept = events[first[event[0]]]
        if event == kept:
            duplicate += 1
        else:
            conflicts.append(conflict_record(event, kept[1:], at))
        unique += events[start:position]
        start = position + 1
    unique += events[start:]
    return unique, duplicate, conflicts
