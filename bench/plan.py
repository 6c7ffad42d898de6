"""Benchmark: offline plan of the prod platform stack against a bare mock program.

Prints the time of `plan_platform(prod)` and, in the same run, of a bare Pulumi
program that registers the same resources (same SDK classes, same inputs) flat,
with no component logic, config, applies or lookups, both under the same mock runtime, and their
ratio (target: at most 1.5). For reference it also prints a program of the same
number of one-input resources, Pulumi's floor cost per registration. Also times
the whole `privend plan --env prod --format json` command, imports included
(target: under 10 s on a 2-core machine).

    python bench/plan.py [--repeat N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pulumi

from privend.config import load_environment
from privend.offline import OfflineCloud, run_program
from privend.plan import plan_platform

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _replay import replay_program  # noqa: E402


def empty_program(count: int):
    """N resources with one input each: Pulumi's floor cost per registration."""
    def program():
        for i in range(count):
            pulumi.CustomResource("bench:index:Bare", f"r{i}", {"value": i})
        return {}
    return program


def timed(fn, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    cfg = load_environment("prod")
    plan_platform(cfg)  # warm imports and caches once, so both sides are measured warm
    plan_time, plan = timed(lambda: plan_platform(cfg), args.repeat)
    count = len(plan.resources)
    cloud = OfflineCloud(cfg.region)
    replay, replay_count = replay_program([plan])
    bare_time, bare = timed(lambda: run_program(replay, stack="bench", cloud=cloud), args.repeat)
    assert len(bare.resources) == replay_count
    empty_time, _ = timed(lambda: run_program(empty_program(count), stack="bench", cloud=cloud), args.repeat)

    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "privend", "plan", "--env", "prod", "--format", "json"],
                   check=True, stdout=subprocess.DEVNULL, cwd=Path(__file__).resolve().parent.parent)
    cli_time = time.perf_counter() - start

    print(f"resources in prod plan         {count} (bare program registers {replay_count})")
    print(f"prod platform plan (median)    {plan_time:.3f} s")
    print(f"bare program, same resources   {bare_time:.3f} s  (same SDK classes and inputs, registered flat, no logic)")
    print(f"ratio plan / bare              {plan_time / bare_time:.2f}  (target <= 1.5)")
    print(f"empty program, {count} resources {empty_time:.3f} s  (one input each: Pulumi's floor per registration)")
    print(f"ratio plan / empty             {plan_time / empty_time:.2f}  (for reference)")
    print(f"privend plan --env prod      {cli_time:.3f} s wall, imports included  (target < 10 s)")


if __name__ == "__main__":
    main()
