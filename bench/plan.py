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
import inspect
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pulumi
from pydantic.alias_generators import to_camel

from privend.config import load_environment
from privend.offline import OfflineCloud, run_program
from privend.plan import plan_platform


def empty_program(count: int):
    """N resources with one input each: Pulumi's floor cost per registration."""
    def program():
        for i in range(count):
            pulumi.CustomResource("bench:index:Bare", f"r{i}", {"value": i})
        return {}
    return program


def _sdk_class(token: str):
    """The SDK class behind a type token, e.g. aws:ec2/subnet:Subnet -> pulumi_aws.ec2.Subnet."""
    import pulumi_aws
    import pulumi_kubernetes

    package, module, name = token.split(":")
    if package == "pulumi":  # pulumi:providers:aws
        return {"aws": pulumi_aws.Provider, "kubernetes": pulumi_kubernetes.Provider}[name]
    if token == "kubernetes:helm.sh/v3:Release":
        return pulumi_kubernetes.helm.v3.Release
    return getattr(getattr(pulumi_aws, module.split("/")[0]), name)


def _kwargs(cls, inputs: dict) -> dict:
    params = inspect.signature(cls._internal_init).parameters
    by_camel = {to_camel(p): p for p in params}
    kwargs = {}
    for key, value in inputs.items():
        if key not in by_camel:
            raise SystemExit(f"bench: cannot map input {key!r} of {cls.__name__}")
        kwargs[by_camel[key]] = value
    return kwargs


def replay_program(plan):
    """The plan's own resources, same SDK classes and inputs, registered flat:
    no components' logic, no config, no applies, no lookups."""
    entries = []
    for r in plan.resources:
        if not r.custom:
            entries.append((pulumi.ComponentResource, r.type, r.name, None))
        else:
            cls = _sdk_class(r.type)
            entries.append((cls, r.type, r.name, _kwargs(cls, r.inputs)))

    def program():
        for cls, type_, name, kwargs in entries:
            if kwargs is None:
                cls(type_, name)
            else:
                cls(name, **kwargs)
        return {}
    return program, len(entries)


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
    replay, replay_count = replay_program(plan)
    bare_time, bare = timed(lambda: run_program(replay, stack="bench", cloud=cloud), args.repeat)
    assert len(bare.resources) == replay_count
    empty_time, _ = timed(lambda: run_program(empty_program(count), stack="bench", cloud=cloud), args.repeat)

    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "privend", "plan", "--env", "prod", "--format", "json"],
                   check=True, stdout=subprocess.DEVNULL, cwd=Path(__file__).resolve().parent.parent)
    cli_time = time.perf_counter() - start

    print(f"resources in prod plan         {count} ({replay_count} cloud resources, the rest components and providers)")
    print(f"prod platform plan (median)    {plan_time:.3f} s")
    print(f"bare program, same resources   {bare_time:.3f} s  (same SDK classes and inputs, registered flat, no logic)")
    print(f"ratio plan / bare              {plan_time / bare_time:.2f}  (target <= 1.5)")
    print(f"empty program, {count} resources {empty_time:.3f} s  (one input each: Pulumi's floor per registration)")
    print(f"ratio plan / empty             {plan_time / empty_time:.2f}  (for reference)")
    print(f"privend plan --env prod      {cli_time:.3f} s wall, imports included  (target < 10 s)")


if __name__ == "__main__":
    main()
