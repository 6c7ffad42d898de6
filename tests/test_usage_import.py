"""Usage import: accepted, duplicate, conflict and every quarantine reason, on both backends;
batches that are all or nothing; and any split, order or duplication of files giving the same invoices."""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from privend.billing.reconcile import dumps, reconcile
from privend.billing.usage import import_usage
from privend.registry import Registry
from privend.registry.billing import to_us
from privend.registry.sqlite import SqliteRegistry
from tests.billing_support import ENV, PLANS_YAML, add_endpoint, add_tenant, event, utc

NOW = utc(2025, 3, 20, 12)


@pytest.fixture
def chat(registry: Registry) -> Registry:
    add_tenant(registry)
    add_endpoint(registry, "chat", [("basic", utc(2025, 3, 1), utc(2025, 3, 15))])
    return registry


def load(registry: Registry, lines: list[str], now=NOW):
    return import_usage(registry, ENV, lines, now=now, source="usage.jsonl")


def test_new_events_are_accepted_and_summed(chat: Registry) -> None:
    summary = load(chat, [event("e1", "chat", "2025-03-02T00:00:00Z", 10, 5),
                          event("e2", "chat", "2025-03-03T00:00:00+02:00", 7, 0)])

    assert summary.to_json() == {"accepted": 2, "duplicate": 0, "quarantined": 0, "reasons": {}}
    assert chat.usage_totals(ENV, [("chat", to_us(utc(2025, 3, 1)), to_us(utc(2025, 4, 1)))]) == [22]


def test_importing_the_same_file_twice_changes_nothing(chat: Registry) -> None:
    lines = [event("e1", "chat", "2025-03-02T00:00:00Z", 10, 5), "not json",
             event("e2", "chat", "2025-03-02T01:00:00Z", 1, 1)]
    load(chat, lines)
    quarantine_before = chat.list_quarantine(ENV)

    again = load(chat, lines)

    assert again.to_json() == {"accepted": 0, "duplicate": 2, "quarantined": 1, "reasons": {"malformed": 1}}
    assert chat.count_usage_events(ENV) == 2
    assert chat.list_quarantine(ENV) == quarantine_before


def test_same_instant_written_with_another_offset_is_a_duplicate(chat: Registry) -> None:
    load(chat, [event("e1", "chat", "2025-03-02T00:00:00Z", 10, 5)])

    summary = load(chat, [event("e1", "chat", "2025-03-02T01:00:00+01:00", 10, 5)])

    assert (summary.accepted, summary.duplicate, summary.quarantined) == (0, 1, 0)


def test_conflicting_event_is_quarantined_and_the_first_stands(chat: Registry) -> None:
    load(chat, [event("e1", "chat", "2025-03-02T00:00:00Z", 10, 5)])

    summary = load(chat, [event("e1", "chat", "2025-03-02T00:00:00Z", 999, 5)])

    assert summary.to_json() == {"accepted": 0, "duplicate": 0, "quarantined": 1, "reasons": {"conflict": 1}}
    window = [("chat", to_us(utc(2025, 3, 1)), to_us(utc(2025, 4, 1)))]
    assert chat.usage_totals(ENV, window) == [15]
    [record] = chat.list_quarantine(ENV)
    assert (record.reason, record.event_id, record.endpoint) == ("conflict", "e1", "chat")
    assert json.loads(record.line)["input_tokens"] == 999
    assert "first accepted with endpoint 'chat'" in record.detail
    assert "10 input and 5 output" in record.detail


def test_duplicate_and_conflict_inside_one_file_keep_the_first(chat: Registry) -> None:
    summary = load(chat, [event("e1", "chat", "2025-03-02T00:00:00Z", 10),
                          event("e1", "chat", "2025-03-02T00:00:00Z", 10),
                          event("e1", "chat", "2025-03-02T00:00:00Z", 11)])

    assert summary.to_json() == {"accepted": 1, "duplicate": 1, "quarantined": 1, "reasons": {"conflict": 1}}
    assert chat.usage_totals(ENV, [("chat", 0, to_us(NOW))]) == [10]


def _line(**overrides: Any) -> str:
    data: dict[str, Any] = {"id": "x", "endpoint": "chat", "timestamp": "2025-03-02T00:00:00Z",
                            "input_tokens": 1, "output_tokens": 1}
    for key, value in overrides.items():
        if value is ...:
            del data[key]
        else:
            data[key] = value
    return json.dumps(data)


@pytest.mark.parametrize(
    ("line", "reason", "detail"),
    [
        ("{not json", "malformed", "not valid JSON"),
        ("[1, 2]", "malformed", "not a JSON object"),
        (_line(id=7), "malformed", "id must be a non-empty string of at most 256 characters"),
        (_line(timestamp="2025-03-02 noon"), "malformed", "timestamp '2025-03-02 noon' is not ISO 8601 with a UTC offset"),
        (_line(timestamp="2025-03-02T00:00:00"), "malformed", "timestamp '2025-03-02T00:00:00' is not ISO 8601 with a UTC offset"),
        (_line(output_tokens=..., timestamp=...), "missing_field", "missing field(s): timestamp, output_tokens"),
        (_line(input_tokens=-1), "invalid_count", "token counts must not be negative"),
        (_line(input_tokens=1.5), "invalid_count", "input_tokens and output_tokens must be integers"),
        (_line(output_tokens="3"), "invalid_count", "input_tokens and output_tokens must be integers"),
        (_line(output_tokens=True), "invalid_count", "input_tokens and output_tokens must be integers"),
        (_line(input_tokens=600_000_000, output_tokens=400_000_001), "too_many_tokens",
         "1000000001 tokens in one event (at most 1,000,000,000)"),
        (_line(endpoint="ghost"), "unknown_endpoint", "endpoint 'ghost' is not known in this env"),
        (_line(timestamp="2025-03-20T12:05:01Z"), "future_timestamp",
         "timestamp 2025-03-20T12:05:01Z is more than 5 minutes in the future"),
        (_line(timestamp="2025-02-28T23:59:59Z"), "outside_subscription",
         "timestamp 2025-02-28T23:59:59Z is outside every subscription segment of endpoint 'chat'"),
        (_line(timestamp="2025-03-15T00:00:00Z"), "outside_subscription",  # the end is exclusive
         "timestamp 2025-03-15T00:00:00Z is outside every subscription segment of endpoint 'chat'"),
    ],
)
def test_each_quarantine_reason_is_recorded_with_its_line(chat: Registry, line: str, reason: str, detail: str) -> None:
    summary = load(chat, ["", line])

    assert summary.to_json() == {"accepted": 0, "duplicate": 0, "quarantined": 1, "reasons": {reason: 1}}
    [record] = chat.list_quarantine(ENV)
    assert (record.reason, record.detail, record.line) == (reason, f"usage.jsonl:2: {detail}", line)
    assert chat.count_usage_events(ENV) == 0


def test_event_exactly_five_minutes_ahead_and_exactly_a_billion_tokens_are_accepted(chat: Registry) -> None:
    registry = chat
    add_endpoint(registry, "live", [("basic", utc(2025, 3, 1), None)])
    summary = load(registry, [_line(endpoint="live", timestamp="2025-03-20T12:05:00Z"),
                              _line(id="y", input_tokens=1_000_000_000, output_tokens=0)])

    assert (summary.accepted, summary.quarantined) == (2, 0)


def test_batches_are_written_in_the_backends_atomic_unit(chat: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    sizes: list[int] = []
    record = chat.record_usage

    def spy(env, events, quarantine=(), *, at):
        sizes.append(len(events) + len(quarantine))
        return record(env, events, quarantine, at=at)

    monkeypatch.setattr(chat, "record_usage", spy)
    monkeypatch.setattr(chat, "usage_batch_size", 4)

    summary = load(chat, [event(f"e{n}", "chat", "2025-03-02T00:00:00Z", 1) for n in range(9)] + ["bad"])

    assert sizes == [4, 4, 2]
    assert (summary.accepted, summary.quarantined) == (9, 1)


# -- a crash mid-import leaves no partial batch --


class Crash(Exception):
    pass


def test_sqlite_crash_inside_a_batch_stores_none_of_it_and_reimport_completes(tmp_path: Path) -> None:
    registry = SqliteRegistry(tmp_path / "registry.db")
    add_tenant(registry)
    add_endpoint(registry, "chat", [("basic", utc(2025, 3, 1), None)])
    registry.usage_batch_size = 3
    lines = [event(f"e{n}", "chat", "2025-03-02T00:00:00Z", 1) for n in range(5)] + ["bad line"]
    execute = registry._execute
    calls = {"inserts": 0}

    def crash_on_second_batch(sql: str, params: Any = ()) -> Any:
        cursor = execute(sql, params)
        if 'INSERT INTO "usage_week_' in sql:  # the batch's last write
            calls["inserts"] += 1
            if calls["inserts"] == 2:
                raise Crash(sql)
        return cursor

    registry._execute = crash_on_second_batch  # type: ignore[method-assign]
    with pytest.raises(Crash):
        load(registry, lines)
    del registry._execute

    assert registry.count_usage_events(ENV) == 3  # the first batch, whole; nothing of the second
    march = (to_us(utc(2025, 3, 1)), to_us(utc(2025, 4, 1)))
    assert registry.usage_totals(ENV, [("chat", *march)]) == [3]
    assert registry.list_quarantine(ENV) == []
    summary = load(registry, lines)
    assert (summary.accepted, summary.duplicate, summary.quarantined) == (2, 3, 1)
    assert registry.count_usage_events(ENV) == 5
    assert registry.usage_totals(ENV, [("chat", *march)]) == [5]
    registry.close()


def test_dynamodb_batch_is_one_transaction_and_a_failed_one_stores_nothing(aws: None) -> None:
    from botocore.exceptions import EndpointConnectionError

    from privend.registry.dynamodb import DynamoRegistry
    from tests.dynamodb_support import REGION, TABLE, dynamodb_client

    client = dynamodb_client()
    registry = DynamoRegistry(TABLE, REGION, client=client)
    add_tenant(registry)
    add_endpoint(registry, "chat", [("basic", utc(2025, 3, 1), None)])
    lines = [event(f"e{n}", "chat", "2025-03-02T00:00:00Z", 1) for n in range(5)] + ["bad line"]
    calls: list[str] = []
    client.meta.events.register("before-call.dynamodb", lambda model, **_: calls.append(model.name))

    def lost(**_: Any) -> None:
        raise EndpointConnectionError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com")

    client.meta.events.register("before-call.dynamodb.TransactWriteItems", lost)
    with pytest.raises(EndpointConnectionError):
        load(registry, lines)
    client.meta.events.unregister("before-call.dynamodb.TransactWriteItems", lost)
    assert registry.count_usage_events(ENV) == 0
    assert registry.list_quarantine(ENV) == []

    calls.clear()
    summary = load(registry, lines)
    assert calls.count("TransactWriteItems") == 1
    assert (summary.accepted, summary.quarantined) == (5, 1)


# -- the property: any split, order and duplication of import files gives the same invoices --

EVENTS = [
    event(f"ev{n}", endpoint, stamp, tokens, tokens // 3)
    for n, (endpoint, stamp, tokens) in enumerate([
        ("chat", "2025-03-01T00:00:00Z", 1_700_000),
        ("chat", "2025-03-10T23:59:59Z", 900_000),
        ("chat", "2025-03-11T00:00:00Z", 2_000_000),
        ("chat", "2025-03-31T23:00:00Z", 3_100_000),
        ("code", "2025-03-05T12:00:00+05:00", 40_000_000),
        ("code", "2025-03-15T00:00:00Z", 30_000_000),
        ("code", "2025-03-20T00:00:00Z", 1),
        ("chat", "2025-04-01T00:00:00Z", 5),  # the next period
    ])
] + ["garbage", event("late", "ghost", "2025-03-02T00:00:00Z", 1)]


def _fresh_registry(path: Path) -> Registry:
    registry = SqliteRegistry(path)
    add_tenant(registry)
    change = utc(2025, 3, 11)
    add_endpoint(registry, "chat", [("basic", utc(2025, 2, 1), change), ("pro", change, None)])
    add_endpoint(registry, "code", [("capped", utc(2025, 3, 4), None)])
    return registry


def _invoices(registry: Registry, plans) -> str:
    return dumps(reconcile(registry, ENV, "2025-03", now=utc(2025, 4, 2), plans=plans).to_json())


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> str:
    from privend.billing.plans import load_plans

    path = tmp_path_factory.mktemp("plans") / "plans.yaml"
    path.write_text(PLANS_YAML)
    registry = _fresh_registry(tmp_path_factory.mktemp("reference") / "registry.db")
    import_usage(registry, ENV, EVENTS, now=utc(2025, 4, 2))
    text = _invoices(registry, load_plans(path))
    registry.close()
    return text


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    order=st.permutations(range(len(EVENTS))),
    extra=st.lists(st.integers(0, len(EVENTS) - 1), max_size=8),
    cuts=st.lists(st.integers(0, len(EVENTS) + 8), max_size=5),
)
def test_any_split_order_and_duplication_of_files_gives_the_same_invoices(
    tmp_path_factory: pytest.TempPathFactory, plans, reference: str, order, extra, cuts
) -> None:
    stream = [EVENTS[i] for i in [*order, *extra]]
    bounds = sorted({0, len(stream), *[min(c, len(stream)) for c in cuts]})
    files = [stream[a:b] for a, b in pairwise(bounds)]
    registry = _fresh_registry(tmp_path_factory.mktemp("prop") / "registry.db")

    for lines in files:
        import_usage(registry, ENV, lines, now=utc(2025, 4, 2))

    assert _invoices(registry, plans) == reference
    assert registry.count_usage_events(ENV) == 8
    registry.close()


def test_reference_invoice_is_what_the_rules_give(reference: str) -> None:
    (invoice,) = json.loads(reference)["invoices"]
    # Each event is t input + t // 3 output tokens.
    # chat, basic until 11 March (10/31): 100.00, 1,000,000 included; ev0 2,266,666 + ev1 1,200,000
    #   = 3,466,666 -> 2,466,666 over at 2.00/M = 4.933.. -> 4.93 (protection 32.26 not reached).
    # chat, pro from 11 March (21/31): 420.00, 4,200,000 included; ev2 2,666,666 + ev3 4,133,333
    #   = 6,799,999 -> 2,599,999 over at 1.00/M = 2.599.. -> 2.60. ev7 is April's.
    # code: capped plan from 4 March, 28/31: 90.32, floor(1,000,000 × 28/31) = 903,225 included;
    #   53,333,333 + 40,000,000 + 1 = 93,333,334 -> 92,430,109 over; protection 50 × 28/31 = 45.16 is reached.
    assert [(l["endpoint"], l["plan"], l["kind"], l["quantity"], l["amount"]) for l in invoice["lines"]] == [
        ("chat", "basic", "base_fee", "0.322581", "100.00"), ("chat", "basic", "overage", 2_466_666, "4.93"),
        ("chat", "pro", "base_fee", "0.677419", "420.00"), ("chat", "pro", "overage", 2_599_999, "2.60"),
        ("code", "capped", "base_fee", "0.903226", "90.32"), ("code", "capped", "overage", 92_430_109, "45.16"),
    ]
    assert invoice["total"] == "663.01"
