"""Benchmarks of metering and billing (figures only, never timed assertions).

1. `usage import` of 1,000,000 seeded events (1 % duplicates, 0.1 % bad lines)
   into the SQLite registry: events per second (target >= 100,000/s) and peak
   memory of the importing process (target < 300 MiB; the import streams).
2. `billing reconcile` of one period with 10,000 endpoints and hourly usage
   (744 hours: about 7.4 million events): seconds (target < 30 s) and peak
   memory (target < 1 GiB).
3. `usage pull` for 10,000 endpoints against moto's CloudWatch: GetMetricData
   calls made versus the lower bound max(ceil(queries/500), ceil(points/100,800))
   (target ratio <= 1.05).

Each measured phase runs in its own process, so its peak RSS is its own.

Phase 1 runs --repeat times (3) on the same file, each into a fresh copy of the
seeded registry, and reports the median run: on a shared machine one run can be
a third slower than the next.

    python bench/billing.py [--events 1000000] [--endpoints 10000] [--only 1|2|3] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ENV = "dev"
MARCH_START = datetime(2025, 3, 1, tzinfo=UTC)
NOW = datetime(2025, 4, 2, tzinfo=UTC)
MIB = 1024 * 1024


def peak_rss_mib() -> float:
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def seed_endpoints(path: Path, endpoints: int, tenants: int) -> None:
    from privend.registry import Endpoint, SqliteRegistry, SubscriptionSegment, Tenant, spec_hash

    start = datetime(2025, 1, 1, tzinfo=UTC)
    plans = ["starter", "standard", "scale", "enterprise-hard"]
    with SqliteRegistry(path) as registry:
        for t in range(tenants):
            registry.create_tenant(Tenant(env=ENV, name=f"t{t:04d}", aws_account=f"{100000000000 + t}",
                                          principals=[], billing_timezone=["UTC", "Europe/Paris", "America/New_York"][t % 3],
                                          tier="shared", created_at=start))
        for n in range(endpoints):
            spec = {"name": f"ep{n:05d}", "min_replicas": 1, "max_replicas": 2}
            segments = [SubscriptionSegment(plan=plans[n % 4], start=start)]
            if n % 10 == 0:  # a tenth change plan mid-month
                change = datetime(2025, 3, 15, tzinfo=UTC)
                segments = [segments[0].model_copy(update={"end": change}),
                            SubscriptionSegment(plan=plans[(n + 1) % 4], start=change)]
            registry.create_endpoint(Endpoint(env=ENV, name=f"ep{n:05d}", tenant=f"t{n % tenants:04d}", spec=spec,
                                              spec_hash=spec_hash(spec), created_at=start, updated_at=start), segments)


def write_events(path: Path, events: int, endpoints: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    month_seconds = 31 * 86_400
    recent: list[str] = []
    with path.open("w") as out:
        for n in range(events):
            roll = rng.random()
            if roll < 0.001:
                line = rng.choice(['{"id": "broken"', "not json at all", '{"id": "x", "endpoint": "ep00001"}'])
            elif roll < 0.011 and recent:
                line = rng.choice(recent)  # a duplicate of an earlier line
            else:
                stamp = MARCH_START + timedelta(seconds=rng.randrange(month_seconds))
                line = json.dumps({"id": f"{rng.getrandbits(64):016x}-{n}", "endpoint": f"ep{rng.randrange(endpoints):05d}",
                                   "timestamp": stamp.strftime("%Y-%m-%dT%H:%M:%SZ"),
                                   "input_tokens": rng.randrange(20, 4000), "output_tokens": rng.randrange(1, 1000)})
                if len(recent) < 1000:
                    recent.append(line)
                else:
                    recent[rng.randrange(1000)] = line
            out.write(line + "\n")


def phase_import(registry_path: str, events_path: str) -> dict:
    from privend.billing.usage import import_usage
    from privend.registry import SqliteRegistry

    with SqliteRegistry(registry_path) as registry, open(events_path) as stream:
        started = time.perf_counter()
        summary = import_usage(registry, ENV, stream, now=NOW, source="bench.jsonl")
        seconds = time.perf_counter() - started
    total = summary.accepted + summary.duplicate + summary.quarantined
    return {"lines": total, "seconds": seconds, "events_per_second": total / seconds, "peak_mib": peak_rss_mib(),
            **summary.to_json()}


def seed_hourly_usage(registry_path: str, endpoints: int) -> dict:
    """Every endpoint, every hour of March (UTC hours): one event each, through record_usage."""
    from privend.registry import SqliteRegistry
    from privend.registry.billing import UsageEvent, to_us

    rng = random.Random(11)
    start_us = to_us(MARCH_START - timedelta(hours=1))  # Paris' March starts an hour earlier
    hours = 744
    started = time.perf_counter()
    count = 0
    with SqliteRegistry(registry_path) as registry:
        batch: list[UsageEvent] = []
        for n in range(endpoints):
            name = f"ep{n:05d}"
            for h in range(hours):
                batch.append(UsageEvent(f"cw:{ENV}:{name}:{h}", name, start_us + h * 3_600_000_000,
                                        rng.randrange(0, 40_000), rng.randrange(0, 10_000)))
                if len(batch) == 50_000:
                    registry.record_usage(ENV, batch, at=NOW)
                    count += len(batch)
                    batch = []
        if batch:
            registry.record_usage(ENV, batch, at=NOW)
            count += len(batch)
    return {"events": count, "seconds": time.perf_counter() - started}


def phase_reconcile(registry_path: str) -> dict:
    from privend.billing.plans import load_plans
    from privend.billing.reconcile import reconcile
    from privend.registry import SqliteRegistry

    plans = load_plans(ROOT / "stacks" / "plans.yaml")
    with SqliteRegistry(registry_path) as registry:
        started = time.perf_counter()
        result = reconcile(registry, ENV, "2025-03", now=NOW, plans=plans)
        seconds = time.perf_counter() - started
        again = time.perf_counter()
        second = reconcile(registry, ENV, "2025-03", now=NOW, plans=plans)
        seconds_again = time.perf_counter() - again
    lines = sum(len(i["lines"]) for i in result.invoices)
    return {"seconds": seconds, "seconds_second_run": seconds_again, "invoices": len(result.invoices),
            "lines": lines, "identical": result.to_json() == second.to_json(), "alerts": len(result.new_alerts),
            "peak_mib": peak_rss_mib()}


def phase_pull(registry_path: str) -> dict:
    os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                       "AWS_DEFAULT_REGION": "us-east-1"})
    import boto3
    from moto import mock_aws

    from privend.billing.pull import pull_usage
    from privend.registry import SqliteRegistry

    with mock_aws(), SqliteRegistry(registry_path) as registry:
        client = boto3.session.Session().client("cloudwatch", region_name="us-east-1")
        calls: list[int] = []
        client.meta.events.register("before-call.monitoring.GetMetricData", lambda **_: calls.append(1))
        started = time.perf_counter()
        result = pull_usage(registry, ENV, "2025-03", now=NOW, client=client)
        seconds = time.perf_counter() - started
    return {"calls": len(calls), "lower_bound": result.lower_bound, "ratio": len(calls) / result.lower_bound,
            "queries": result.queries, "points": result.points, "seconds": seconds}


def child(phase: str, *args: str) -> dict:
    output = subprocess.run([sys.executable, __file__, "--phase", phase, *args], check=True,
                            capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--endpoints", type=int, default=10_000)
    parser.add_argument("--only", type=int, choices=(1, 2, 3), help="run just this phase")
    parser.add_argument("--repeat", type=int, default=3,
                        help="import runs (phase 1), each into a fresh registry; the median is reported")
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("args", nargs="*", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.phase:
        handler = {"import": phase_import, "reconcile": phase_reconcile, "pull": phase_pull,
                   "seed-usage": seed_hourly_usage}[options.phase]
        args = [int(a) if a.isdigit() else a for a in options.args]
        print(json.dumps(handler(*args)))
        return

    with tempfile.TemporaryDirectory(prefix="privend-bench-billing-") as scratch:
        work = Path(scratch)
        if options.only in (None, 1):
            import_phase(work, options.events, options.repeat)
        if options.only in (None, 2, 3):
            # Phase 3 pulls into the registry phase 2 seeds, so it needs the seeding.
            reconcile_phase(work, options.endpoints, measure=options.only in (None, 2))
        if options.only in (None, 3):
            pull_phase(work, options.endpoints)


def import_phase(work: Path, events: int, repeat: int) -> None:
    seeded, events_file = work / "seeded.db", work / "events.jsonl"
    seed_endpoints(seeded, 2_000, 200)
    write_events(events_file, events, 2_000)
    runs = []
    for _ in range(repeat):
        # Each run imports into a fresh copy of the seeded registry.
        import_db = work / "import.db"
        shutil.copyfile(seeded, import_db)
        runs.append(child("import", str(import_db), str(events_file)))
        import_db.unlink()
    figures = sorted(runs, key=lambda f: f["events_per_second"])[len(runs) // 2]  # the median run
    print(f"1. import {figures['lines']:,} lines ({figures['accepted']:,} accepted, {figures['duplicate']:,} "
          f"duplicate, {figures['quarantined']:,} quarantined) in {figures['seconds']:.1f} s: "
          f"{figures['events_per_second']:,.0f} events/s, median of {len(runs)} (target >= 100,000), "
          f"peak {max(f['peak_mib'] for f in runs):.0f} MiB, highest of {len(runs)} (target < 300)")
    if len(runs) > 1:
        print("   every run: " + ", ".join(f"{f['events_per_second']:,.0f}/s" for f in runs))
    events_file.unlink()


def reconcile_phase(work: Path, endpoints: int, measure: bool) -> None:
    reconcile_db = work / "reconcile.db"
    seed_endpoints(reconcile_db, endpoints, max(1, endpoints // 10))
    seeded = child("seed-usage", str(reconcile_db), str(endpoints))
    print(f"   (seeded {seeded['events']:,} hourly events in {seeded['seconds']:.1f} s)")
    if not measure:
        return
    figures = child("reconcile", str(reconcile_db))
    print(f"2. reconcile {endpoints:,} endpoints, {seeded['events']:,} events: "
          f"{figures['seconds']:.1f} s (target < 30; second run {figures['seconds_second_run']:.1f} s, "
          f"identical: {figures['identical']}), {figures['invoices']:,} invoices, {figures['lines']:,} lines, "
          f"peak {figures['peak_mib']:.0f} MiB (target < 1024)")


def pull_phase(work: Path, endpoints: int) -> None:
    figures = child("pull", str(work / "reconcile.db"))
    print(f"3. pull {endpoints:,} endpoints: {figures['calls']} GetMetricData calls, lower bound "
          f"{figures['lower_bound']} ({figures['queries']:,} queries, {figures['points']:,} points): "
          f"ratio {figures['ratio']:.3f} (target <= 1.05) in {figures['seconds']:.1f} s")


if __name__ == "__main__":
    main()
