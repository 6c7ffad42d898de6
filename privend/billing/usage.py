"""Usage import: JSON lines in, each event accepted, a duplicate, or quarantined with a reason.

The import streams: it holds one batch at a time (the backend's atomic unit,
`Registry.usage_batch_size`), never the file, so a crash loses at most the batch
in flight and leaves no part of it; importing the file again finishes the job,
since accepted ids are ignored the second time.

Checks, in order (the first that fails is the reason):
malformed (not a JSON object or nested too deeply, a bad id/endpoint type or one holding
a lone surrogate (no UTF-8 can store it), a timestamp that is not
ISO 8601 with an offset), missing_field, invalid_count (negative or non-integer),
too_many_tokens (over 1,000,000,000 in one event), unknown_endpoint,
future_timestamp (more than 5 minutes after the import), outside_subscription.
A conflict (an id stored with other content) is decided by the registry.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson

from privend.registry import Registry
from privend.registry.billing import (
    EPOCH,
    QUARANTINE_REASONS,
    BillingSubscription,
    QuarantinedEvent,
    UsageBatch,
    UsageEvent,
    to_us,
)

MAX_TOKENS_PER_EVENT = 1_000_000_000
FUTURE_TOLERANCE = timedelta(minutes=5)
MAX_ID_LENGTH = 256
FIELDS = ("id", "endpoint", "timestamp", "input_tokens", "output_tokens")
_ONE_US = timedelta(microseconds=1)
_OPEN_END = 2**62
_fast_loads = orjson.loads
# UsageEvent(...) runs NamedTuple's __new__, a Python function: a quarter of the per-event
# checks' time. tuple.__new__ makes the same tuple directly (as UsageEvent._make does).
_new_event = tuple.__new__


@dataclass
class ImportSummary:
    accepted: int = 0
    duplicate: int = 0
    quarantined: int = 0
    reasons: Counter[str] = field(default_factory=Counter)

    def to_json(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "duplicate": self.duplicate, "quarantined": self.quarantined,
                "reasons": {reason: self.reasons[reason] for reason in QUARANTINE_REASONS if self.reasons[reason]}}


class SubscriptionIndex:
    """Which endpoints exist and when each one was subscribed, for the per-event checks."""

    def __init__(self, subscriptions: Iterable[BillingSubscription]) -> None:
        self.windows: dict[str, list[tuple[int, int]]] = {}
        for subscription in subscriptions:
            spans = self.windows.setdefault(subscription.endpoint, [])
            for segment in subscription.segments:
                spans.append((to_us(segment.start), to_us(segment.end) if segment.end else _OPEN_END))
        for spans in self.windows.values():
            spans.sort()

    @staticmethod
    def of(registry: Registry, env: str) -> SubscriptionIndex:
        return SubscriptionIndex(registry.list_billing_subscriptions(env))


class Rejected(Exception):
    def __init__(self, reason: str, detail: str, event_id: str | None = None, endpoint: str | None = None):
        super().__init__(detail)
        self.reason, self.detail, self.event_id, self.endpoint = reason, detail, event_id, endpoint


def check_event(data: Any, index: SubscriptionIndex, now_us: int) -> UsageEvent:
    """The event in `data` (a parsed JSON value), or Rejected with the first reason it fails."""
    if type(data) is not dict:
        raise Rejected("malformed", "not a JSON object")
    try:
        event_id, endpoint, stamp = data["id"], data["endpoint"], data["timestamp"]
        input_tokens, output_tokens = data["input_tokens"], data["output_tokens"]
    except KeyError:
        missing = [name for name in FIELDS if name not in data]
        raise Rejected("missing_field", f"missing field(s): {', '.join(missing)}",
                       _text(data.get("id")), _text(data.get("endpoint"))) from None
    if type(event_id) is not str or not event_id or len(event_id) > MAX_ID_LENGTH:
        raise Rejected("malformed", f"id must be a non-empty string of at most {MAX_ID_LENGTH} characters")
    if not (event_id.isascii() or _is_unicode(event_id)):
        raise Rejected("malformed", "id holds a lone surrogate, which cannot be stored")
    if type(endpoint) is not str or not endpoint:
        raise Rejected("malformed", "endpoint must be a non-empty string", event_id)
    if not (endpoint.isascii() or _is_unicode(endpoint)):
        raise Rejected("malformed", "endpoint holds a lone surrogate, which cannot be stored", event_id)
    # type() rather than isinstance(): true and 5.0 are not token counts.
    if type(input_tokens) is not int or type(output_tokens) is not int:
        raise Rejected("invalid_count", "input_tokens and output_tokens must be integers", event_id, endpoint)
    if input_tokens < 0 or output_tokens < 0:
        raise Rejected("invalid_count", "token counts must not be negative", event_id, endpoint)
    if input_tokens + output_tokens > MAX_TOKENS_PER_EVENT:
        raise Rejected("too_many_tokens", f"{input_tokens + output_tokens} tokens in one event "
                       f"(at most {MAX_TOKENS_PER_EVENT:,})", event_id, endpoint)
    try:
        instant = datetime.fromisoformat(stamp) if type(stamp) is str else None
    except ValueError:
        instant = None
    if instant is None or instant.tzinfo is None:
        raise Rejected("malformed", f"timestamp {stamp!r} is not ISO 8601 with a UTC offset", event_id, endpoint)
    timestamp_us = (instant - EPOCH) // _ONE_US
    spans = index.windows.get(endpoint)
    if spans is None:
        raise Rejected("unknown_endpoint", f"endpoint {endpoint!r} is not known in this env", event_id, endpoint)
    if timestamp_us > now_us:
        raise Rejected("future_timestamp", f"timestamp {stamp} is more than 5 minutes in the future",
                       event_id, endpoint)
    for start, end in spans:
        if start <= timestamp_us < end:
            return _new_event(UsageEvent, (event_id, endpoint, timestamp_us, input_tokens, output_tokens))
    raise Rejected("outside_subscription", f"timestamp {stamp} is outside every subscription segment "
                   f"of endpoint {endpoint!r}", event_id, endpoint)


def read_event(line: str, index: SubscriptionIndex, now_us: int) -> UsageEvent | None:
    """The event on one input line, None for a blank line, or Rejected with the first reason it fails.

    The line is read as `json.loads` reads it. orjson reads it first, several times faster;
    where the two could differ, json decides: orjson refuses some text json accepts (NaN,
    1e400, lone surrogates), and reads an integer beyond 64 bits as a float, which the
    checks would call not an integer where json's exact integer is too many tokens. So any
    line orjson refuses or the checks reject is read again by json (rare: bad lines only);
    a line orjson reads and the checks accept, json reads the same.
    """
    try:
        return check_event(_fast_loads(line), index, now_us)
    except (ValueError, Rejected):
        pass
    try:
        data = json.loads(line)
    except ValueError:
        if not line or line.isspace():
            return None
        raise Rejected("malformed", "not valid JSON") from None
    except RecursionError:
        raise Rejected("malformed", "JSON nested too deeply") from None
    return check_event(data, index, now_us)


def _is_unicode(text: str) -> bool:
    """False for text holding a lone surrogate (json reads "\\ud800" as one): no UTF-8 can store it."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and _is_unicode(value) else None


class UsageWriter:
    """Collects events and quarantine records and writes them in the backend's atomic batches.

    Batches are written in order by one background thread while the caller parses the
    next one: SQLite does its part with the GIL released, so parsing and storing overlap.
    At most one batch is in flight; an error in it surfaces at the next call, at the latest
    in `close()`, and no later batch is started after a failed one.
    """

    def __init__(self, registry: Registry, env: str, at: datetime,
                 on_batch: Callable[[ImportSummary], None] | None = None) -> None:
        self.registry, self.env, self.at, self.on_batch = registry, env, at, on_batch
        self.summary = ImportSummary()
        self._events = UsageBatch()
        self._quarantine: list[QuarantinedEvent] = []
        self._limit = registry.usage_batch_size
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="usage-writer")
        self._in_flight: Future[None] | None = None

    def event(self, event: UsageEvent) -> None:
        if self._events.add(event) + len(self._quarantine) >= self._limit:
            self.flush()

    def reject(self, rejected: Rejected, line: str, where: str) -> None:
        self._quarantine.append(QuarantinedEvent.make(
            rejected.reason, f"{where}: {rejected.detail}" if where else rejected.detail, line, self.at,
            rejected.event_id, rejected.endpoint))
        if len(self._events) + len(self._quarantine) >= self._limit:
            self.flush()

    def flush(self) -> None:
        """Hand the collected batch to the writer thread (after the previous one finished)."""
        if not self._events and not self._quarantine:
            return
        self._wait()
        events, quarantine = self._events, self._quarantine
        self._events, self._quarantine = UsageBatch(), []
        self._in_flight = self._pool.submit(self._write, events, quarantine)

    def _write(self, events: UsageBatch, quarantine: list[QuarantinedEvent]) -> None:
        result = self.registry.record_usage(self.env, events, quarantine, at=self.at)
        summary = self.summary
        summary.accepted += result.accepted
        summary.duplicate += result.duplicate
        summary.quarantined += len(quarantine) + result.conflict
        for record in quarantine:
            summary.reasons[record.reason] += 1
        if result.conflict:
            summary.reasons["conflict"] += result.conflict
        if self.on_batch:
            self.on_batch(summary)

    def _wait(self) -> None:
        if self._in_flight is not None:
            in_flight, self._in_flight = self._in_flight, None
            in_flight.result()  # re-raises the batch's error here

    def close(self) -> ImportSummary:
        """Write what is left and wait for it; the summary of everything written."""
        try:
            self.flush()
            self._wait()
        finally:
            self._pool.shutdown(wait=True)
        return self.summary


def import_usage(
    registry: Registry,
    env: str,
    lines: Iterable[str],
    *,
    now: datetime,
    source: str = "",
    on_batch: Callable[[ImportSummary], None] | None = None,
) -> ImportSummary:
    """Import JSON lines into the registry of `env`; blank lines are skipped."""
    index = SubscriptionIndex.of(registry, env)
    now_us = to_us(now + FUTURE_TOLERANCE)
    writer = UsageWriter(registry, env, now, on_batch)
    add = writer.event
    try:
        for number, line in enumerate(lines, start=1):
            try:
                event = read_event(line, index, now_us)
            except Rejected as rejected:
                writer.reject(rejected, line.rstrip("\r\n"), f"{source}:{number}" if source else f"line {number}")
                continue
            if event is not None:
                add(event)
    except BaseException:
        # Stop: the batch in flight finishes (or fails) whole; the one being collected is dropped.
        writer._events, writer._quarantine = UsageBatch(), []
        writer.close()
        raise
    return writer.close()
