"""The fast import path decides every line as the plain one did.

Lines are read by orjson first and by `json.loads` where they could differ; batches note
their repeated ids as they are collected; SQLite stages each batch once. These tests pin
each shortcut to the reading, the rule or the storage it replaces.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from privend.billing.usage import Rejected, SubscriptionIndex, check_event, import_usage, read_event
from privend.registry import Registry, SubscriptionSegment
from privend.registry.billing import (
    BillingSubscription,
    QuarantinedEvent,
    UsageBatch,
    UsageEvent,
    conflict_record,
    dedupe_batch,
    to_us,
)
from privend.registry.sqlite import PAGE_SIZE, SqliteRegistry
from tests.billing_support import ENV, add_endpoint, add_tenant, event, utc

NOW_US = to_us(utc(2025, 3, 20, 12, 5))
INDEX = SubscriptionIndex([
    BillingSubscription("chat", "acme", "UTC", (SubscriptionSegment(plan="basic", start=utc(2025, 3, 1),
                                                                    end=utc(2025, 3, 15)),)),
])


def json_reading(line: str, index: SubscriptionIndex, now_us: int) -> UsageEvent | None:
    """How the import read a line before orjson: json.loads, then the checks."""
    try:
        data = json.loads(line)
    except ValueError:
        if not line or line.isspace():
            return None
        raise Rejected("malformed", "not valid JSON") from None
    return check_event(data, index, now_us)


def outcome(read: Any, line: str, index: SubscriptionIndex = INDEX, now_us: int = NOW_US) -> tuple[Any, ...]:
    try:
        result = read(line, index, now_us)
    except Rejected as rejected:
        return ("rejected", rejected.reason, rejected.detail, rejected.event_id, rejected.endpoint)
    return ("blank",) if result is None else ("event", type(result), tuple(result))


# -- reading lines: orjson where it agrees with json, json where it may not --

NUMBERS = st.one_of(
    st.integers(-2**70, 2**70).map(str),
    st.sampled_from([
        "0", "-0", "1.0", "1e3", "1E400", "-1e400", "NaN", "Infinity", "-Infinity", "true", "null", "[]", "{}",
        "18446744073709551615", "18446744073709551616", "-9223372036854775808", "-9223372036854775809",
        "1000000000", "999999999", "500000000", "1e-400", "01", "- 1", "+1",
    ]),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
)
STRINGS = st.one_of(
    st.text(max_size=10).map(json.dumps),  # \u escapes, lone surrogates among them
    st.text(max_size=10).map(lambda text: json.dumps(text, ensure_ascii=False)),  # raw characters
    st.sampled_from(['"chat"', '"ghost"', '""', '"e1"', '"\\ud800"', '"a\\udc00b"', '"\\ud83d\\ude00"', '"\\u0000"',
                     '"tab\there"', '"\\x41"']),
)
STAMPS = st.sampled_from([
    '"2025-03-02T00:00:00Z"', '"2025-03-02T01:00:00+01:00"', '"2025-03-01T19:00:00-05:00"', '"2025-03-02T00:00:00"',
    '"2025-03-02T00:00:00.5-03:30"', '"2025-02-29T00:00:00Z"', '"2024-02-29T00:00:00Z"', '"2025-03-02 00:00:00Z"',
    '"2025-03-02T00:00:00z"', '"20250302T000000Z"', '"2025-03-02T24:00:00Z"', '"2025-03-20T12:05:00Z"',
    '"2025-03-20T12:05:00.000001Z"', '"2025-03-15T00:00:00Z"', '"bad"', '5', 'null',
])
VALUES = {"id": STRINGS, "endpoint": st.one_of(STRINGS, st.just('"chat"')), "timestamp": st.one_of(STAMPS, STRINGS),
          "input_tokens": NUMBERS, "output_tokens": NUMBERS}
# Lines that get past the reading: every field of the right type, so the checks after it (counts, the
# token limit, the subscription) and acceptance itself are reached. From VALUES alone
# almost no line is (two counts in [0, 10^9] out of NUMBERS are rare): the accepted path went untested.
PLAUSIBLE = {**VALUES, "endpoint": st.just('"chat"'), "timestamp": STAMPS,
             "input_tokens": st.integers(0, 10**9).map(str), "output_tokens": st.integers(0, 10**9).map(str)}


@st.composite
def lines(draw: st.DrawFn) -> str:
    values = draw(st.sampled_from([VALUES, PLAUSIBLE]))
    keys = draw(st.lists(st.sampled_from([*values, "extra"]), max_size=8))
    keys += list(values) if values is PLAUSIBLE else draw(st.sampled_from([[], list(values)]))  # some twice
    draw(st.randoms()).shuffle(keys)
    members = [f"{json.dumps(key)}: {draw(values.get(key, st.one_of(NUMBERS, STRINGS)))}" for key in keys]
    text = draw(st.sampled_from(["", " ", "\t"])) + "{" + ", ".join(members) + "}"
    mutation = draw(st.sampled_from(["none", "none", "newline", "crlf", "truncate", "bom", "array", "tail"]))
    if mutation == "newline":
        text += "\n"
    elif mutation == "crlf":
        text += "\r\n"
    elif mutation == "truncate":
        text = text[:draw(st.integers(0, len(text)))]
    elif mutation == "bom":
        text = "\ufeff" + text
    elif mutation == "array":
        text = f"[{text}]"
    elif mutation == "tail":
        text += draw(st.sampled_from([" x", "{}", "\x0b", " \n "]))
    return text


@settings(max_examples=600, deadline=None)
@given(line=lines())
def test_every_line_is_decided_as_json_loads_decided_it(line: str) -> None:
    assert outcome(read_event, line) == outcome(json_reading, line)


@settings(max_examples=200, deadline=None)
@given(line=st.text(max_size=40))
def test_any_text_is_decided_as_json_loads_decided_it(line: str) -> None:
    assert outcome(read_event, line) == outcome(json_reading, line)


def _event_line(**changes: Any) -> str:
    fields = {"id": "e1", "endpoint": "chat", "timestamp": "2025-03-02T00:00:00Z", "input_tokens": 1,
              "output_tokens": 2}
    return "{" + ", ".join(f'"{key}": {changes.get(key, json.dumps(value))}' for key, value in fields.items()) + "}"


@pytest.mark.parametrize(("line", "reason"), [
    # orjson reads these integers as floats; json's exact integers are too many or negative.
    (_event_line(input_tokens="18446744073709551616"), "too_many_tokens"),
    (_event_line(output_tokens="-9223372036854775809"), "invalid_count"),
    # orjson refuses these; json reads them.
    (_event_line(input_tokens="NaN"), "invalid_count"),
    (_event_line(input_tokens="1e400"), "invalid_count"),
    (_event_line(endpoint='"\\ud800"'), "malformed"),  # a lone surrogate: no UTF-8 can store it
    (_event_line(id='"a\\udc00"'), "malformed"),
    ('{"id": "e1", "id": "e2"}', "missing_field"),
])
def test_lines_where_orjson_and_json_differ_get_jsons_reason(line: str, reason: str) -> None:
    assert outcome(read_event, line)[1] == reason
    assert outcome(read_event, line) == outcome(json_reading, line)


def test_beyond_64_bits_in_a_field_the_checks_ignore_still_accepts_the_event() -> None:
    line = _event_line()[:-1] + ', "note": 18446744073709551616, "big": 1e400}'
    assert outcome(read_event, line) == ("event", UsageEvent, ("e1", "chat", to_us(utc(2025, 3, 2)), 1, 2))


def test_duplicate_keys_keep_the_last_value_as_json_does() -> None:
    line = _event_line()[:-1] + ', "input_tokens": 7}'
    assert outcome(read_event, line)[2][3] == 7


# -- timestamps: exactly what datetime.fromisoformat accepts, to the microsecond --

OPEN = SubscriptionIndex([BillingSubscription("chat", "acme", "UTC", (SubscriptionSegment(
    plan="basic", start=utc(1, 1, 2)),))])


def _stamp_outcome(stamp: str) -> tuple[Any, ...]:
    data = {"id": "e", "endpoint": "chat", "timestamp": stamp, "input_tokens": 1, "output_tokens": 0}
    try:
        return ("ok", check_event(data, OPEN, 2**62).timestamp_us)
    except Rejected as rejected:
        return (rejected.reason,)


def _expected(stamp: str) -> tuple[Any, ...]:
    try:
        instant = datetime.fromisoformat(stamp)
    except ValueError:
        return ("malformed",)
    if instant.tzinfo is None:
        return ("malformed",)
    if instant < utc(1, 1, 2):
        return ("outside_subscription",)
    return ("ok", to_us(instant))


@pytest.mark.parametrize("stamp", [
    "2025-03-02T00:00:00Z", "2025-03-02T00:00:00+00:00", "2025-03-02T00:00:00-00:00", "2025-03-02T00:00:00-05:30",
    "2025-03-02T00:00:00+23:59", "2025-03-02T00:00:00+24:00", "2025-03-02T00:00:00.5Z", "2025-03-02T00:00:00.123456Z",
    "2025-03-02T00:00:00.1234567Z", "2025-03-02T00:00:00,5Z", "2024-02-29T12:00:00Z", "2025-02-29T12:00:00Z",
    "2000-02-29T00:00:00Z", "2100-02-29T00:00:00Z", "2025-03-02T24:00:00Z", "2025-03-02T23:59:60Z",
    "2025-03-02T23:59Z", "2025-03-02T23Z", "2025-03-02Z", "2025-03-02T00:00:00z", "2025-03-02 00:00:00Z",
    "20250302T000000Z", "2025-W09-7T00:00:00Z", "2025-03-02T00:00:00", "2025-13-02T00:00:00Z",
    "2025-03-02T00:00:00+05", "2025-03-02T00:00:00+0530", "2025-03-02T00:00:00+05:30:15", " 2025-03-02T00:00:00Z",
    "9999-12-31T23:59:59.999999-23:59", "0001-01-02T00:00:00+23:59", "", "Z",
])
def test_tricky_timestamps_are_decided_as_fromisoformat_decides(stamp: str) -> None:
    assert _stamp_outcome(stamp) == _expected(stamp)


@st.composite
def stamps(draw: st.DrawFn) -> str:
    naive = draw(st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31)))
    minutes = draw(st.integers(-(24 * 60 - 1), 24 * 60 - 1))
    sign, magnitude = ("-" if minutes < 0 else "+"), abs(minutes)
    offset = draw(st.sampled_from([f"{sign}{magnitude // 60:02d}:{magnitude % 60:02d}", "Z", ""]))
    text = naive.isoformat(sep=draw(st.sampled_from(["T", " "])),
                           timespec=draw(st.sampled_from(["auto", "seconds", "milliseconds", "microseconds"]))) + offset
    if draw(st.booleans()):  # one character changed: an invalid date, time or offset, or still valid
        at = draw(st.integers(0, len(text) - 1))
        text = text[:at] + draw(st.sampled_from("0123456789:-+TZ.9")) + text[at + 1:]
    return text


@settings(max_examples=500, deadline=None)
@given(stamp=stamps())
def test_generated_timestamps_are_decided_as_fromisoformat_decides(stamp: str) -> None:
    assert _stamp_outcome(stamp) == _expected(stamp)


# -- deduplication: a collected batch gives what the rule gives for a list --

def dedupe_as_before(events: list[UsageEvent], at: datetime) -> tuple[list[UsageEvent], int, list[QuarantinedEvent]]:
    """The rule as first written: one pass to find the first of each id, one to classify."""
    first: dict[str, UsageEvent] = {}
    for item in events:
        first.setdefault(item.id, item)
    if len(first) == len(events):
        return list(events), 0, []
    duplicate, conflicts, standing = 0, [], set()
    for item in events:
        kept = first[item.id]
        if item.id not in standing and item == kept:
            standing.add(item.id)
        elif item == kept:
            duplicate += 1
        else:
            conflicts.append(conflict_record(item, kept[1:], at))
    return list(first.values()), duplicate, conflicts


SMALL_EVENTS = st.builds(UsageEvent, st.sampled_from(["a", "b", "c", "d"]), st.sampled_from(["chat", "code"]),
                         st.integers(0, 2), st.integers(0, 1), st.just(1))


@settings(max_examples=500, deadline=None)
@given(events=st.lists(SMALL_EVENTS, max_size=20), repeat=st.lists(st.integers(0, 19), max_size=5))
def test_dedupe_of_a_collected_batch_is_the_rule_for_a_list(events: list[UsageEvent], repeat: list[int]) -> None:
    events = events + [events[n] for n in repeat if n < len(events)]  # the very same objects again, too
    batch = UsageBatch()
    sizes = [batch.add(item) for item in events]
    at = utc(2025, 4, 1)

    assert sizes == list(range(1, len(events) + 1))
    assert list(batch) == events
    assert len(batch) == len(events)
    assert dedupe_batch(batch, at) == dedupe_batch(events, at) == dedupe_as_before(events, at)


def test_both_backends_store_a_collected_batch_as_they_store_a_list(registry: Registry) -> None:  # noqa: F811
    add_tenant(registry)
    add_endpoint(registry, "chat", [("basic", utc(2025, 3, 1), None)])
    t0, t1 = to_us(utc(2025, 3, 2)), to_us(utc(2025, 3, 3))
    a, b, c, d = (UsageEvent(name, "chat", t0, 10, 0) for name in "abcd")
    registry.record_usage(ENV, [a, b], at=utc(2025, 4, 1))
    # a stored duplicate, b a stored conflict, c new, then repeated and in conflict, d new, a again.
    events = [a, b._replace(timestamp_us=t1), c, c, c._replace(timestamp_us=t1), d, a]
    batch = UsageBatch()
    for item in events:
        batch.add(item)

    from_batch = registry.record_usage(ENV, batch, at=utc(2025, 4, 1))
    again = registry.record_usage(ENV, list(events), at=utc(2025, 4, 1))

    assert tuple(from_batch) == (2, 3, 2)
    assert tuple(again) == (0, 5, 2)  # c and d stored now; the same two conflicts, quarantined once
    assert registry.count_usage_events(ENV) == 4
    assert len(registry.list_quarantine(ENV)) == 2


# -- SQLite: page size, and the staging table between batches --

def test_a_new_registry_has_16k_pages_and_an_existing_one_keeps_its_own(tmp_path: Path) -> None:
    assert PAGE_SIZE == 16_384
    SqliteRegistry(tmp_path / "new.db").close()
    old = tmp_path / "old.db"
    connection = sqlite3.connect(old)
    connection.execute("PRAGMA page_size = 4096")
    connection.execute("PRAGMA journal_mode = WAL")
    connection.close()

    registry = SqliteRegistry(old)
    add_tenant(registry)
    add_endpoint(registry, "chat", [("basic", utc(2025, 3, 1), None)])
    summary = import_usage(registry, ENV, [event(f"e{n}", "chat", "2025-03-02T00:00:00Z", 3) for n in range(5)],
                           now=utc(2025, 3, 20))
    registry.close()

    assert summary.accepted == 5
    for path, size in ((tmp_path / "new.db", 16_384), (old, 4096)):
        connection = sqlite3.connect(path)
        assert connection.execute("PRAGMA page_size").fetchone()[0] == size
        connection.close()
    with SqliteRegistry(old) as reopened:
        assert reopened.usage_totals(ENV, [("chat", to_us(utc(2025, 3, 1)), to_us(utc(2025, 4, 1)))]) == [15]


class Crash(Exception):
    pass


def test_the_staging_table_is_empty_after_a_batch_and_after_a_failed_one(tmp_path: Path) -> None:
    registry = SqliteRegistry(tmp_path / "registry.db")
    add_tenant(registry)
    add_endpoint(registry, "chat", [("basic", utc(2025, 3, 1), None)])
    staged = "SELECT COUNT(*) FROM temp.usage_batch"
    events = [UsageEvent(f"e{n}", "chat", to_us(utc(2025, 3, 2)), 1, 0) for n in range(4)]
    execute = registry._execute

    def crash_after_insert(sql: str, params: Any = ()) -> Any:
        cursor = execute(sql, params)
        if 'INSERT INTO "usage_week_' in sql:
            raise Crash(sql)
        return cursor

    registry._execute = crash_after_insert  # type: ignore[method-assign]
    with pytest.raises(Crash):
        registry.record_usage(ENV, events, at=utc(2025, 4, 1))
    del registry._execute

    assert registry._read(staged)[0][0] == 0
    assert registry.count_usage_events(ENV) == 0
    assert tuple(registry.record_usage(ENV, events, at=utc(2025, 4, 1))) == (4, 0, 0)
    assert registry._read(staged)[0][0] == 0
    assert registry.count_usage_events(ENV) == 4
    registry.close()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines_in=st.lists(st.one_of(lines(), st.sampled_from([
    _event_line(), _event_line(input_tokens="5"), _event_line(id='"e2"'), _event_line(id='"e3"', timestamp='"x"'),
])), max_size=12), batch_size=st.integers(1, 5))
def test_an_import_stores_what_the_json_reading_accepts(tmp_path_factory: pytest.TempPathFactory,
                                                        lines_in: list[str], batch_size: int) -> None:
    registry = SqliteRegistry(tmp_path_factory.mktemp("import") / "registry.db")
    registry.usage_batch_size = batch_size
    add_tenant(registry)
    add_endpoint(registry, "chat", [("basic", utc(2025, 3, 1), utc(2025, 3, 15))])

    summary = import_usage(registry, ENV, lines_in, now=utc(2025, 3, 20, 12))

    expected = [outcome(json_reading, line) for line in lines_in]
    accepted = {item[2][0]: item[2] for item in reversed(expected) if item[0] == "event"}  # the first of each id
    assert summary.accepted == len(accepted) == registry.count_usage_events(ENV)
    assert summary.accepted + summary.duplicate + summary.quarantined == sum(item[0] != "blank" for item in expected)
    totals = registry.usage_totals(ENV, [("chat", 0, 2**62)])
    assert totals == [sum(event[3] + event[4] for event in accepted.values())]
    registry.close()


def test_the_writer_hands_the_registry_a_collected_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    registry = SqliteRegistry(tmp_path / "registry.db")
    add_tenant(registry)
    add_endpoint(registry, "chat", [("basic", utc(2025, 3, 1), None)])
    seen: list[type] = []
    record = registry.record_usage

    def spy(env, events, quarantine=(), *, at):  # type: ignore[no-untyped-def]
        seen.append(type(events))
        return record(env, events, quarantine, at=at)

    monkeypatch.setattr(registry, "record_usage", spy)
    lines_in = [event("e1", "chat", "2025-03-02T00:00:00Z", 1), event("e1", "chat", "2025-03-02T00:00:00Z", 1),
                event("e1", "chat", "2025-03-02T00:00:00Z", 2)]
    summary = import_usage(registry, ENV, lines_in, now=utc(2025, 3, 20))

    assert seen == [UsageBatch]
    assert summary.to_json() == {"accepted": 1, "duplicate": 1, "quarantined": 1, "reasons": {"conflict": 1}}
    registry.close()


def test_an_offset_a_minute_short_of_a_day_is_valid() -> None:
    assert _stamp_outcome("2025-03-02T00:00:00+23:59") == ("ok", to_us(utc(2025, 3, 2) - timedelta(hours=23,
                                                                                                    minutes=59)))


def test_usage_stored_under_schema_2_is_keyed_on_upgrade_and_still_deduplicated(tmp_path: Path) -> None:
    from privend.registry.sqlite import _MIGRATIONS, SCHEMA_VERSION

    path = tmp_path / "registry.db"
    connection = sqlite3.connect(path)
    for statement in (*_MIGRATIONS[0], *_MIGRATIONS[1]):
        connection.execute(statement)
    connection.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    connection.execute("INSERT INTO schema_version VALUES (2)")
    march = to_us(utc(2025, 3, 2))
    connection.executemany(
        "INSERT INTO usage_events (env, id, endpoint, ts, input_tokens, output_tokens) VALUES (?, ?, ?, ?, ?, ?)",
        [(ENV, "a1", "chat", march, 10, 1), (ENV, "a2", "chat", march + 1, 20, 2),
         (ENV, "b1", "embed", march, 300, 0), ("other", "a1", "chat", march, 4000, 0)])
    connection.commit()
    connection.close()

    with SqliteRegistry(path) as registry:
        assert registry._read("SELECT version FROM schema_version")[0][0] == SCHEMA_VERSION
        assert (registry.count_usage_events(ENV), registry.count_usage_events("other")) == (3, 1)
        window = (to_us(utc(2025, 3, 1)), to_us(utc(2025, 4, 1)))
        assert registry.usage_totals(ENV, [("chat", *window), ("embed", *window), ("new", *window)]) == [33, 300, 0]
        assert registry.usage_totals("other", [("chat", *window)]) == [4000]

        # A stored id is still found: the same content is a duplicate, other content a conflict
        # naming the endpoint it was stored with; a new endpoint gets a key of its own.
        result = registry.record_usage(ENV, [UsageEvent("a1", "chat", march, 10, 1), UsageEvent("b1", "new", march, 5, 0),
                                             UsageEvent("c1", "new", march, 7, 0)], at=utc(2025, 4, 1))
        assert tuple(result) == (1, 1, 1)
        [conflict] = registry.list_quarantine(ENV)
        assert conflict.reason == "conflict"
        assert "first accepted with endpoint 'embed'" in conflict.detail
        assert registry.usage_totals(ENV, [("new", *window)]) == [7]
        keys = registry._read("SELECT env, endpoint, key FROM usage_endpoints ORDER BY key")
        assert [tuple(row) for row in keys] == [(ENV, "chat", 1), (ENV, "embed", 2), ("other", "chat", 3),
                                                (ENV, "new", 4)]


def test_a_rolled_back_batch_gives_no_endpoint_key(tmp_path: Path) -> None:
    registry = SqliteRegistry(tmp_path / "registry.db")
    execute = registry._execute

    def crash_on_insert(sql: str, params: Any = ()) -> Any:
        if "INSERT INTO usage_ids" in sql:
            raise Crash(sql)
        return execute(sql, params)

    registry._execute = crash_on_insert  # type: ignore[method-assign]
    with pytest.raises(Crash):
        registry.record_usage(ENV, [UsageEvent("e1", "chat", to_us(utc(2025, 3, 2)), 1, 0)], at=utc(2025, 4, 1))
    del registry._execute

    assert registry._read("SELECT COUNT(*) FROM usage_endpoints")[0][0] == 0
    assert registry._usage_keys.get(ENV, {}) == {}
    # Another process gives "embed" key 1 meanwhile; this one must not think "chat" has it.
    other = SqliteRegistry(tmp_path / "registry.db")
    other.record_usage(ENV, [UsageEvent("x1", "embed", to_us(utc(2025, 3, 2)), 9, 0)], at=utc(2025, 4, 1))
    other.close()
    registry.record_usage(ENV, [UsageEvent("e1", "chat", to_us(utc(2025, 3, 2)), 1, 0)], at=utc(2025, 4, 1))
    window = (0, 2**62)
    assert registry.usage_totals(ENV, [("chat", *window), ("embed", *window)]) == [1, 9]
    registry.close()


WEEK_US = 7 * 86_400 * 1_000_000


@settings(max_examples=40, deadline=None)
@given(
    events=st.lists(st.tuples(st.sampled_from(["chat", "embed"]),
                              st.integers(-2 * WEEK_US, 3 * WEEK_US) | st.sampled_from([0, WEEK_US, -1, WEEK_US - 1]),
                              st.integers(0, 1000), st.integers(0, 1000)), max_size=30),
    windows=st.lists(st.tuples(st.sampled_from(["chat", "embed", "ghost"]),
                               st.integers(-3 * WEEK_US, 4 * WEEK_US), st.integers(0, 3 * WEEK_US)), max_size=6),
    batch=st.integers(1, 10),
)
def test_usage_totals_are_the_sums_of_the_events_each_window_holds(tmp_path_factory: pytest.TempPathFactory,
                                                                   events: list[tuple[str, int, int, int]],
                                                                   windows: list[tuple[str, int, int]],
                                                                   batch: int) -> None:
    """Weeks are storage only: any events, in any batches, across week bounds and before 1970, sum exactly."""
    registry = SqliteRegistry(tmp_path_factory.mktemp("totals") / "registry.db")
    stored = [UsageEvent(f"e{n}", endpoint, ts, i, o) for n, (endpoint, ts, i, o) in enumerate(events)]
    for start in range(0, len(stored), batch):
        registry.record_usage(ENV, stored[start:start + batch], at=utc(2025, 4, 1))
    spans = [(endpoint, start, start + length) for endpoint, start, length in windows]

    totals = registry.usage_totals(ENV, spans)

    assert totals == [sum(e.input_tokens + e.output_tokens for e in stored if e.endpoint == endpoint and start <= e.timestamp_us < stop)
                      for endpoint, start, stop in spans]
    assert registry.count_usage_events(ENV) == len(stored)
    registry.close()


def test_a_reimported_batch_adds_nothing_to_the_weeks(tmp_path: Path) -> None:
    registry = SqliteRegistry(tmp_path / "registry.db")
    events = [UsageEvent(f"e{n}", "chat", n * WEEK_US // 3, 10, 1) for n in range(7)]
    registry.record_usage(ENV, events[:4], at=utc(2025, 4, 1))
    result = registry.record_usage(ENV, [*events, UsageEvent("e0", "chat", 5, 99, 0)], at=utc(2025, 4, 1))

    assert tuple(result) == (3, 4, 1)  # three new, four duplicates (e0 with other content is a conflict, not 5th)
    assert registry.usage_totals(ENV, [("chat", 0, 7 * WEEK_US)]) == [7 * 11]
    weeks = [row[0] for row in registry._read("SELECT week FROM usage_weeks ORDER BY week")]
    assert weeks == [0, 1, 2]  # n / 3 weeks for n = 0..6
    rows = sum(registry._read(f'SELECT COUNT(*) FROM "usage_week_{week}"')[0][0] for week in weeks)
    assert rows == 7
    registry.close()
