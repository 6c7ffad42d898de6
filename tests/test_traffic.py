"""Traffic sources: the real Azure trace, the ledger's hourly sums, and the seeded generator."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from privend.errors import InputError
from privend.traffic import (
    TRACE_GENERATED_SHARE,
    TRACE_MINUTE_REQUESTS,
    TrafficProfile,
    from_hourly_totals,
    parse_time,
    read_trace_dir,
    read_trace_file,
    synthetic,
)

TRACE = Path(__file__).parent / "data" / "AzureLLMInferenceTrace_code.csv"


def test_the_real_trace_reads_every_request_with_its_tokens():
    trace = read_trace_file(TRACE)
    assert trace.endpoint == "AzureLLMInferenceTrace_code"
    assert len(trace.arrivals) == 8819
    assert trace.context_tokens.sum() == 18_059_974
    assert trace.generated_tokens.sum() == 245_896
    assert trace.arrivals[0] == datetime(2023, 11, 16, 18, 17, 3, 979960, tzinfo=UTC).timestamp()


def test_the_generated_share_and_the_minute_shape_are_the_real_traces():
    trace = read_trace_file(TRACE)
    assert TRACE_GENERATED_SHARE == trace.generated_tokens.sum() / (trace.context_tokens.sum()
                                                                    + trace.generated_tokens.sum())
    minutes = np.floor((trace.arrivals - trace.arrivals[0]) / 60).astype(int)
    assert tuple(np.bincount(minutes)) == TRACE_MINUTE_REQUESTS


def test_a_trace_directory_becomes_steps_per_endpoint(tmp_path):
    shutil.copy(TRACE, tmp_path / "chat.csv")
    (tmp_path / "code.csv").write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n"
                                       "2023-11-16T18:20:00+01:00,100,10\n"
                                       "2023-11-16 18:20:30,50,5\n")
    traffic = read_trace_dir(tmp_path, 60)
    assert traffic.endpoints == ["chat", "code"]
    assert traffic.start == datetime(2023, 11, 16, 17, 20, tzinfo=UTC)
    assert traffic.context_tokens["chat"].sum() == 18_059_974
    # 18:20+01:00 is 17:20 UTC, the first step; the offset-free one is UTC, an hour later.
    assert traffic.context_tokens["code"][0] == 100
    assert traffic.context_tokens["code"][60] == 50
    assert traffic.generated_tokens["code"].sum() == 15


def test_a_window_keeps_only_requests_inside_it(tmp_path):
    shutil.copy(TRACE, tmp_path / "chat.csv")
    start = datetime(2023, 11, 16, 18, 20, tzinfo=UTC)
    traffic = read_trace_dir(tmp_path, 300, start, start + timedelta(minutes=10))
    assert traffic.steps == 2
    trace = read_trace_file(TRACE)
    inside = (trace.arrivals >= start.timestamp()) & (trace.arrivals < start.timestamp() + 600)
    assert traffic.context_tokens["chat"].sum() == trace.context_tokens[inside].sum()


def test_timestamps_without_an_offset_are_utc_and_long_fractions_are_cut():
    assert parse_time("2023-11-16 18:17:03.9799600") == datetime(2023, 11, 16, 18, 17, 3, 979960, tzinfo=UTC)
    assert parse_time("2023-11-16T18:17:03-05:00").utcoffset() == timedelta(hours=-5)


@pytest.mark.parametrize("content, message", [
    ("when,tokens\n1,2\n", "expected the columns TIMESTAMP,ContextTokens,GeneratedTokens, got when,tokens"),
    ("TIMESTAMP,ContextTokens,GeneratedTokens\nyesterday,1,1\n", r"bad\.csv:2: bad row"),
])
def test_a_bad_trace_file_names_the_file_and_line(tmp_path, content, message):
    (tmp_path / "bad.csv").write_text(content)
    with pytest.raises(InputError, match=message):
        read_trace_dir(tmp_path, 60)


def test_an_empty_directory_says_what_it_expects(tmp_path):
    with pytest.raises(InputError, match="no <endpoint>.csv trace files"):
        read_trace_dir(tmp_path, 60)


def test_ledger_hours_keep_their_sums_and_follow_the_trace_minute_shape():
    start = datetime(2026, 11, 1, tzinfo=UTC)
    traffic = from_hourly_totals({"chat": [3_600_000, 0, 7_200]}, start, 60)
    tokens = traffic.context_tokens["chat"] + traffic.generated_tokens["chat"]
    assert traffic.steps == 180
    assert tokens[:60].sum() == pytest.approx(3_600_000)
    assert tokens[60:120].sum() == 0
    assert tokens[120:].sum() == pytest.approx(7_200)
    # Not an even spread: the trace's silent minutes stay silent.
    assert tokens[1] == 0 and tokens[3] > 5 * tokens.mean()
    assert traffic.generated_tokens["chat"].sum() == pytest.approx(3_607_200 * TRACE_GENERATED_SHARE)


def test_ledger_steps_must_divide_an_hour():
    with pytest.raises(InputError, match="the step must divide an hour, got 7 s"):
        from_hourly_totals({"chat": [1]}, datetime(2026, 11, 1, tzinfo=UTC), 7)


MONDAY = datetime(2026, 11, 2, tzinfo=UTC)


def _hourly(traffic, endpoint):
    tokens = traffic.context_tokens[endpoint] + traffic.generated_tokens[endpoint]
    return tokens.reshape(-1, 60).sum(axis=1)


def test_synthetic_traffic_is_the_same_for_the_same_seed_and_differs_for_another():
    profiles = [TrafficProfile("chat", 1000.0)]
    a = synthetic(profiles, 7, MONDAY, MONDAY + timedelta(days=1), 60)
    b = synthetic(profiles, 7, MONDAY, MONDAY + timedelta(days=1), 60)
    c = synthetic(profiles, 8, MONDAY, MONDAY + timedelta(days=1), 60)
    assert np.array_equal(a.context_tokens["chat"], b.context_tokens["chat"])
    assert not np.array_equal(a.context_tokens["chat"], c.context_tokens["chat"])


def test_synthetic_traffic_peaks_in_the_local_afternoon_and_dips_at_the_weekend():
    profiles = [TrafficProfile("sf", 1000.0, utc_offset_hours=-8, trough=0.3, weekend=0.6),
                TrafficProfile("sg", 1000.0, utc_offset_hours=8, trough=0.3, weekend=0.6)]
    traffic = synthetic(profiles, 1, MONDAY, MONDAY + timedelta(days=7), 60)
    sf, sg = _hourly(traffic, "sf"), _hourly(traffic, "sg")
    # Hour means over the weekdays: 14:00 local is 22:00 UTC in San Francisco and 06:00 UTC in Singapore.
    sf_day = sf[: 5 * 24].reshape(5, 24).mean(axis=0)
    sg_day = sg[: 5 * 24].reshape(5, 24).mean(axis=0)
    assert int(np.argmax(sf_day)) in (21, 22, 23)
    assert int(np.argmax(sg_day)) in (5, 6, 7)
    assert sf_day.min() / sf_day.max() == pytest.approx(0.3, abs=0.15)
    # Saturday and Sunday in Singapore (UTC+8) start at 16:00 UTC on Friday.
    weekday = sg[24:48].sum()
    weekend = sg[4 * 24 + 16: 5 * 24 + 16].sum()
    assert weekend / weekday == pytest.approx(0.6, rel=0.2)
    mean_rate = (traffic.context_tokens["sf"] + traffic.generated_tokens["sf"]).sum() / (7 * 86400)
    assert 0.3 * 1000 < mean_rate < 1000


def test_synthetic_minutes_are_bursty_like_the_trace():
    traffic = synthetic([TrafficProfile("chat", 1000.0, trough=1.0, weekend=1.0)], 3, MONDAY,
                        MONDAY + timedelta(hours=6), 60)
    minutes = traffic.context_tokens["chat"]
    assert (minutes == 0).mean() == pytest.approx(TRACE_MINUTE_REQUESTS.count(0) / len(TRACE_MINUTE_REQUESTS),
                                                  abs=0.05)
    assert minutes.max() / minutes.mean() > 2


def test_synthetic_traffic_needs_aware_times():
    with pytest.raises(InputError, match="timezone-aware"):
        synthetic([], 1, datetime(2026, 11, 2), datetime(2026, 11, 3), 60)


def test_a_profile_rejects_a_trough_above_one():
    with pytest.raises(InputError, match="trough and weekend in"):
        TrafficProfile("chat", 1.0, trough=1.5)


def test_an_aware_start_in_any_zone_is_accepted():
    start = datetime(2026, 11, 2, 9, tzinfo=timezone(timedelta(hours=9)))
    traffic = synthetic([TrafficProfile("chat", 10.0)], 1, start, start + timedelta(hours=1), 60)
    assert traffic.steps == 60
