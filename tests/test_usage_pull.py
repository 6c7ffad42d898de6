"""`usage pull` against moto's CloudWatch: events per (endpoint, hour), idempotent, packed calls."""

from __future__ import annotations

from datetime import timedelta
from math import ceil
from typing import Any

import boto3
import pytest

from privend.billing.pull import HOUR_US, MAX_POINTS_PER_CALL, MAX_QUERIES_PER_CALL, MetricQuery, pack_calls, pull_usage
from privend.registry import Registry
from privend.registry.billing import to_us
from privend.registry.sqlite import SqliteRegistry
from tests.billing_support import ENV, add_endpoint, add_tenant, utc

REGION = "us-east-1"


@pytest.fixture
def cloudwatch(aws: None) -> Any:
    client = boto3.session.Session().client("cloudwatch", region_name=REGION)
    calls: list[str] = []
    client.meta.events.register("before-call.monitoring.GetMetricData", lambda **_: calls.append("GetMetricData"))
    client.calls = calls  # type: ignore[attr-defined]
    return client


def put(client: Any, endpoint: str, metric: str, at, value: float, tenant: str = "acme") -> None:
    client.put_metric_data(Namespace="PrivateEndpoint/Usage", MetricData=[{
        "MetricName": metric, "Timestamp": at, "Value": value, "Unit": "Count",
        "Dimensions": [{"Name": "Environment", "Value": ENV}, {"Name": "Tenant", "Value": tenant},
                       {"Name": "Endpoint", "Value": endpoint}],
    }])


@pytest.fixture
def registry(tmp_path) -> Registry:
    opened = SqliteRegistry(tmp_path / "registry.db")
    add_tenant(opened)
    yield opened
    opened.close()


def test_pull_turns_settled_hours_into_events_with_deterministic_ids(registry: Registry, cloudwatch: Any) -> None:
    add_endpoint(registry, "chat", [("basic", utc(2025, 3, 1, 5, 30), None)])
    put(cloudwatch, "chat", "InputTokens", utc(2025, 3, 1, 6, 10), 100)
    put(cloudwatch, "chat", "InputTokens", utc(2025, 3, 1, 6, 50), 20)
    put(cloudwatch, "chat", "OutputTokens", utc(2025, 3, 1, 6, 20), 7)
    put(cloudwatch, "chat", "InputTokens", utc(2025, 3, 1, 5, 45), 999)  # hour 05:00 starts before the segment
    put(cloudwatch, "chat", "InputTokens", utc(2025, 3, 1, 8, 15), 50)  # not settled yet at 09:00 - 1h
    now = utc(2025, 3, 1, 9, 0)

    first = pull_usage(registry, ENV, "2025-03", now=now, settle=timedelta(hours=1), client=cloudwatch)

    assert (first.summary.accepted, first.skipped, first.hours) == (1, 1, 8)
    march = [("chat", to_us(utc(2025, 3, 1)), to_us(utc(2025, 4, 1)))]
    assert registry.usage_totals(ENV, march) == [127]
    second = pull_usage(registry, ENV, "2025-03", now=now, settle=timedelta(hours=1), client=cloudwatch)
    assert (second.summary.accepted, second.summary.duplicate) == (0, 1)
    assert registry.usage_totals(ENV, march) == [127]
    later = pull_usage(registry, ENV, "2025-03", now=utc(2025, 3, 1, 10), settle=timedelta(hours=1),
                       client=cloudwatch)
    assert (later.summary.accepted, later.summary.duplicate) == (1, 1)
    assert registry.usage_totals(ENV, march) == [177]
    from privend.billing.usage import import_usage
    import json

    # The same hour written by hand with the id pull uses is a duplicate, so ids are deterministic.
    summary = import_usage(registry, ENV, [json.dumps({"id": "cw:dev:chat:2025-03-01T06:00:00Z", "endpoint": "chat",
                                                       "timestamp": "2025-03-01T06:00:00Z", "input_tokens": 120,
                                                       "output_tokens": 7})], now=now)
    assert summary.duplicate == 1


def test_pull_makes_the_fewest_calls_the_500_query_limit_allows(registry: Registry, cloudwatch: Any) -> None:
    for n in range(260):  # 520 queries over one day: two calls of at most 500
        add_endpoint(registry, f"ep{n:03d}", [("basic", utc(2025, 2, 1), None)])
    put(cloudwatch, "ep259", "OutputTokens", utc(2025, 3, 1, 12, 30), 42)

    result = pull_usage(registry, ENV, "2025-03", now=utc(2025, 3, 2, 1), settle=timedelta(hours=1),
                        client=cloudwatch)

    assert cloudwatch.calls == ["GetMetricData"] * 2
    assert result.calls == 2 == result.lower_bound
    assert [len(call.queries) for call in result.planned] == [500, 20]
    assert result.summary.accepted == 1


def test_pull_of_a_whole_month_respects_the_data_point_limit(registry: Registry, cloudwatch: Any) -> None:
    for n in range(150):  # 300 queries × 744 hours = 223,200 points: 3 calls of at most 135 queries
        add_endpoint(registry, f"ep{n:03d}", [("basic", utc(2025, 2, 1), None)])

    result = pull_usage(registry, ENV, "2025-03", now=utc(2025, 4, 2), client=cloudwatch)

    assert len(cloudwatch.calls) == 3 == result.lower_bound
    assert all(call.points <= MAX_POINTS_PER_CALL and len(call.queries) <= MAX_QUERIES_PER_CALL
               for call in result.planned)
    assert [len(call.queries) for call in result.planned] == [135, 135, 30]


def test_packing_ten_thousand_endpoints_stays_within_five_percent_of_the_lower_bound() -> None:
    queries = [MetricQuery(f"ep{n}", "t", m) for n in range(10_000) for m in ("InputTokens", "OutputTokens")]
    calls = pack_calls({(0, 744 * HOUR_US): queries})

    points = len(queries) * 744
    bound = max(ceil(len(queries) / MAX_QUERIES_PER_CALL), ceil(points / MAX_POINTS_PER_CALL))
    assert sum(len(c.queries) for c in calls) == len(queries)
    assert all(c.points <= MAX_POINTS_PER_CALL for c in calls)
    assert len(calls) <= bound * 1.05
