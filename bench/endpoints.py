"""Benchmarks of the endpoint lifecycle.

1. `privend endpoint sync` with 1,000 registered endpoints whose specs are
   unchanged: it must start no stack operation (target: under 2 s).
2. The offline plan of one endpoint stack and of 100, the cost per endpoint and
   its ratio to a bare program registering the same resources (target: at
   most 1.5), and the peak memory of the 100-endpoint plan (target: under 1 GiB).

    python bench/endpoints.py [--endpoints 1000] [--planned 100]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from privend.config import load_environment  # noqa: E402
from privend.endpoints import create_tenant, new_endpoint  # noqa: E402
from privend.registry import SqliteRegistry  # noqa: E402
from privend.spec import build_spec, validate_request, validate_tenant  # noqa: E402

MODELS = ["meta-llama/Llama-3.1-8B-Instruct", "Qwen/Qwen2.5-7B-Instruct", "mistralai/Mistral-7B-Instruct-v0.3",
          "meta-llama/Llama-3.2-3B-Instruct", "google/gemma-2-9b-it"]


def seed_registry(home: Path, count: int) -> None:
    """`count` endpoints over 50 tenants, all marked as deployed at their current spec."""
    cfg = load_environment("dev")
    with SqliteRegistry(home / "registry.db") as registry:
        tenants = [create_tenant(registry, "dev", validate_tenant(name=f"t{i:03d}", aws_account=f"{100000000000 + i}"))
                   for i in range(50)]
        for i in range(count):
            tenant = tenants[i % len(tenants)]
            request = validate_request(name=f"ep{i:04d}", tenant=tenant.name, model=MODELS[i % len(MODELS)],
                                       max_replicas=2)
            created = new_endpoint(registry, cfg, request)
            registry.update_endpoint("dev", created.name, expected_version=created.version, status="ready",
                                     deployed_hash=created.spec_hash)


def bench_sync(count: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        seed_registry(home, count)
        env = {**os.environ, "PRIVEND_HOME": str(home), "PATH": os.environ.get("PATH", "")}
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "privend", "endpoint", "sync", "--env", "dev"], env=env,
                              capture_output=True, text=True, check=True, cwd=HERE.parent)
        elapsed = time.perf_counter() - start
    assert "in sync" in done.stdout, done.stdout
    print(f"sync, {count} unchanged endpoints   {elapsed:.3f} s wall, process start included  (target < 2 s); "
          f"stack operations started: 0 ({done.stdout.strip()!r})")


def fleet_specs(count: int):
    cfg = load_environment("prod")
    specs = []
    for i in range(count):
        tenant = validate_tenant(name=f"t{i % 20:03d}", aws_account=f"{200000000000 + i % 20}",
                                 tier="dedicated" if i % 20 == 0 else "shared")
        request = validate_request(name=f"ep{i:04d}", tenant=tenant.name, model=MODELS[i % len(MODELS)],
                                   pool="l40s", min_replicas=i % 2, max_replicas=3)
        specs.append(build_spec(request, tenant, cfg))
    return cfg, specs


def bench_plans(planned: int) -> None:
    from _replay import replay_program
    from privend.offline import OfflineCloud, run_program
    from privend.plan import plan_endpoint, plan_platform

    cfg, specs = fleet_specs(planned)
    platform = plan_platform(cfg)
    plan_endpoint(specs[1], cfg, platform)  # warm imports

    start = time.perf_counter()
    one = plan_endpoint(specs[1], cfg, platform)
    one_time = time.perf_counter() - start

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    plans = [plan_endpoint(spec, cfg, platform) for spec in specs]
    many_time = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    resources = sum(len(p.resources) for p in plans)

    program, replayed = replay_program(plans)
    start = time.perf_counter()
    run_program(program, stack="bench", cloud=OfflineCloud(cfg.region))
    bare_time = time.perf_counter() - start

    print(f"plan of one endpoint stack       {one_time:.3f} s ({len(one.resources)} resources)")
    print(f"plan of {planned} endpoint stacks      {many_time:.3f} s ({resources} resources), "
          f"{many_time / planned * 1000:.1f} ms per endpoint")
    print(f"bare program, same resources     {bare_time:.3f} s ({replayed} resources registered flat, no logic)")
    print(f"ratio plan / bare                {many_time / bare_time:.2f}  (target <= 1.5)")
    print(f"peak RSS of the process          {peak_mib:.0f} MiB (before the {planned} plans: "
          f"{rss_before / 1024:.0f} MiB; target < 1024 MiB)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoints", type=int, default=1000)
    parser.add_argument("--planned", type=int, default=100)
    args = parser.parse_args()
    bench_sync(args.endpoints)
    bench_plans(args.planned)


if __name__ == "__main__":
    main()
