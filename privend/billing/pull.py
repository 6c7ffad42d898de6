"""`usage pull`: hourly token sums from CloudWatch, turned into usage events with deterministic ids.

The CloudWatch agent publishes per-endpoint counters to `PrivateEndpoint/Usage`
(`InputTokens`, `OutputTokens`; dimensions Environment, Tenant, Endpoint; see
`agent_config`). Each (endpoint, hour) becomes one event with id
`cw:<env>:<endpoint>:<hour>`, so pulling twice is idempotent; an hour belongs
to the segment that contains its start. Only hours that ended at least
`settle` ago are read: CloudWatch may still receive data points for a recent
hour, and an event, once accepted, never changes (a later, different sum for
the same hour would be quarantined as a conflict).

GetMetricData takes at most 500 queries and returns at most 100,800 data
points per call, and every query of a call shares one time range; the packing
below groups endpoints by range and fills each call up to both limits.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from math import ceil
from typing import Any

from privend.billing.periods import check_period, period_bounds
from privend.billing.usage import (
    FUTURE_TOLERANCE,
    ImportSummary,
    Rejected,
    SubscriptionIndex,
    UsageWriter,
    check_event,
)
from privend.registry import Registry
from privend.registry.billing import BillingSubscription, from_us, to_us

NAMESPACE = "PrivateEndpoint/Usage"
METRICS = ("InputTokens", "OutputTokens")
MAX_QUERIES_PER_CALL = 500
MAX_POINTS_PER_CALL = 100_800
HOUR_US = 3_600_000_000


@dataclass(frozen=True)
class MetricQuery:
    endpoint: str
    tenant: str
    metric: str


@dataclass(frozen=True)
class Call:
    """One GetMetricData request: its queries share [start_us, end_us)."""

    start_us: int
    end_us: int
    queries: tuple[MetricQuery, ...]

    @property
    def points(self) -> int:
        return len(self.queries) * ((self.end_us - self.start_us) // HOUR_US)


@dataclass
class PullResult:
    summary: ImportSummary
    calls: int = 0
    hours: int = 0
    skipped: int = 0
    queries: int = 0
    points: int = 0  # the points the period needs, not the (possibly more) the calls read
    planned: list[Call] = field(default_factory=list)

    @property
    def lower_bound(self) -> int:
        """The fewest calls any packing could make: max(ceil(queries/500), ceil(points/100,800))."""
        return max(ceil(self.queries / MAX_QUERIES_PER_CALL), ceil(self.points / MAX_POINTS_PER_CALL))


def pack_calls(ranges: dict[tuple[int, int], list[MetricQuery]]) -> list[Call]:
    """Fill each call with queries of one time range, up to 500 queries and 100,800 points."""
    calls: list[Call] = []
    for (start, end), queries in sorted(ranges.items()):
        hours = (end - start) // HOUR_US
        if hours <= 0:
            continue
        per_call = max(1, min(MAX_QUERIES_PER_CALL, MAX_POINTS_PER_CALL // hours))
        for index in range(0, len(queries), per_call):
            calls.append(Call(start, end, tuple(queries[index:index + per_call])))
    return calls


def plan_pull(
    subscriptions: Iterable[BillingSubscription], period: str, now: datetime, settle: timedelta
) -> tuple[list[Call], int]:
    """The GetMetricData calls `pull_usage` makes, without making them, and the data points
    the period needs (each endpoint's own hours): what the lower bound is computed from."""
    check_period(period)
    settled = to_us(now - settle) // HOUR_US * HOUR_US
    ranges: dict[tuple[int, int], list[MetricQuery]] = defaultdict(list)
    for subscription in subscriptions:
        start, end = period_bounds(period, subscription.billing_timezone)
        # Whole UTC hours whose start lies in the period and that are settled.
        first = -(-start // HOUR_US) * HOUR_US
        last = min(-(-end // HOUR_US) * HOUR_US, settled)
        spans = [(to_us(s.start), to_us(s.end) if s.end else 2**62) for s in subscription.segments]
        if last <= first or not any(low < last and high > first for low, high in spans):
            continue
        for metric in METRICS:
            ranges[(first, last)].append(MetricQuery(subscription.endpoint, subscription.tenant, metric))
    # An endpoint retired and re-created under one name appears twice: query it once.
    grouped = {key: list(dict.fromkeys(queries)) for key, queries in ranges.items()}
    needed = sum(len(queries) * ((end - start) // HOUR_US) for (start, end), queries in grouped.items())
    by_range = pack_calls(grouped)
    if len(grouped) > 1:
        # Tenants in several time zones give several ranges, a part-filled call each. One
        # range covering them all reads a few hours more per query but may fill the calls
        # better; the extra hours are ordinary (endpoint, hour) events with their own ids.
        start = min(key[0] for key in grouped)
        end = max(key[1] for key in grouped)
        merged = pack_calls({(start, end): list(dict.fromkeys(q for qs in grouped.values() for q in qs))})
        if len(merged) < len(by_range):
            return merged, needed
    return by_range, needed


def _request(env: str, call: Call) -> dict[str, Any]:
    return {
        "MetricDataQueries": [
            {
                "Id": f"q{index}",
                "MetricStat": {
                    "Metric": {
                        "Namespace": NAMESPACE,
                        "MetricName": query.metric,
                        "Dimensions": [
                            {"Name": "Environment", "Value": env},
                            {"Name": "Tenant", "Value": query.tenant},
                            {"Name": "Endpoint", "Value": query.endpoint},
                        ],
                    },
                    "Period": 3600,
                    "Stat": "Sum",
                },
                "ReturnData": True,
            }
            for index, query in enumerate(call.queries)
        ],
        "StartTime": from_us(call.start_us),
        "EndTime": from_us(call.end_us),
        "ScanBy": "TimestampAscending",
    }


def fetch(client: Any, env: str, calls: Iterable[Call]) -> tuple[dict[tuple[str, int], dict[str, float]], int]:
    """Sums by (endpoint, hour start) and metric; and the number of API calls made (pages included)."""
    sums: dict[tuple[str, int], dict[str, float]] = defaultdict(dict)
    made = 0
    for call in calls:
        request = _request(env, call)
        while True:
            response = client.get_metric_data(**request)
            made += 1
            for result in response["MetricDataResults"]:
                query = call.queries[int(result["Id"][1:])]
                for stamp, value in zip(result["Timestamps"], result["Values"], strict=True):
                    hour = to_us(stamp) // HOUR_US * HOUR_US
                    bucket = sums[(query.endpoint, hour)]
                    bucket[query.metric] = bucket.get(query.metric, 0.0) + value
            token = response.get("NextToken")
            if not token:
                break
            request = {**request, "NextToken": token}
    return sums, made


def pull_usage(
    registry: Registry,
    env: str,
    period: str,
    *,
    now: datetime,
    settle: timedelta = timedelta(hours=1),
    client: Any,
) -> PullResult:
    subscriptions = registry.list_billing_subscriptions(env)  # read once: for the calls and the checks
    calls, needed_points = plan_pull(subscriptions, period, now, settle)
    sums, made = fetch(client, env, calls)
    index = SubscriptionIndex(subscriptions)
    writer = UsageWriter(registry, env, now)
    now_us = to_us(now + FUTURE_TOLERANCE)
    result = PullResult(writer.summary, calls=made, queries=sum(len(c.queries) for c in calls),
                        points=needed_points, planned=calls)
    result.hours = max(((c.end_us - c.start_us) // HOUR_US for c in calls), default=0)
    for (endpoint, hour), values in sorted(sums.items()):
        input_tokens = round(values.get("InputTokens", 0.0))
        output_tokens = round(values.get("OutputTokens", 0.0))
        if input_tokens == 0 and output_tokens == 0:
            continue
        stamp = from_us(hour).strftime("%Y-%m-%dT%H:%M:%SZ")
        data = {"id": f"cw:{env}:{endpoint}:{stamp}", "endpoint": endpoint, "timestamp": stamp,
                "input_tokens": input_tokens, "output_tokens": output_tokens}
        try:
            writer.event(check_event(data, index, now_us))
        except Rejected as rejected:
            if rejected.reason == "outside_subscription":
                result.skipped += 1  # the hour's start is in no segment: it belongs to none
                continue
            writer.reject(rejected, json.dumps(data, sort_keys=True), "cloudwatch")
    writer.close()
    return result
