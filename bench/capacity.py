"""Benchmark: capacity planning of seeded fleets, and pooled cost against dedicated instances.

For fleets of 50, 500 and 5,000 endpoints (seeded, so every run plans the same
fleets) over three pools (l4: g6.12xlarge/g6.48xlarge, l40s: g6e.12xlarge/
g6e.48xlarge, h100: p5.48xlarge), prints per scale and pool the nodes, the node
lower bound, the hourly price and its lower bound, the gap on price (what the
planner minimises; on a single-type pool it equals the node-count gap), GPU
utilisation, and the time to plan both scales of all pools (median of
--repeat runs). Targets: under 1 s at 5,000 endpoints on a 2-core machine, and
a gap of at most 2 %.

Then the monthly cost without traffic, on-demand on both sides (privend.cost):
pooled at minimum and at maximum scale against "dedicated at peak" (instances of
its own for each endpoint's replicas MAX, always on), and the same fleet on
pools that also offer the single-GPU types. The traffic-driven comparison is
bench/pooling.py's.

    python bench/capacity.py [--seed N] [--repeat N] [--sizes 50 500 5000]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections import Counter
from decimal import Decimal

from privend.capacity import CapacityPlan, Demand, PoolSpec, plan_capacity
from privend.catalog import gpu_catalog
from privend.cost import estimate_costs

POOLS = {
    "l4": PoolSpec("l4", ("g6.12xlarge", "g6.48xlarge"), "on-demand", 0, 100_000),
    "l40s": PoolSpec("l40s", ("g6e.12xlarge", "g6e.48xlarge"), "on-demand", 0, 100_000),
    "h100": PoolSpec("h100", ("p5.48xlarge",), "on-demand", 0, 100_000),
}
# The same pools, also offering the single-GPU type of their GPU model.
POOLS_WITH_SINGLE_GPU = {
    "l4": PoolSpec("l4", ("g6.xlarge", "g6.12xlarge", "g6.48xlarge"), "on-demand", 0, 100_000),
    "l40s": PoolSpec("l40s", ("g6e.xlarge", "g6e.12xlarge", "g6e.48xlarge"), "on-demand", 0, 100_000),
    "h100": POOLS["h100"],
}

# (pool, GPUs per replica, share of endpoints): what customers deploy.
MODEL_MIX = [
    ("l4", 1, 0.60),    # 7-8B models in bf16 (Llama 3.1 8B, Mistral 7B, Qwen2.5 7B)
    ("l4", 2, 0.10),    # 13-14B models
    ("l4", 4, 0.04),    # 32B models, 4-bit
    ("l40s", 1, 0.12),  # 7-8B with long contexts, 14B in fp8
    ("l40s", 2, 0.06),  # 32B models in fp8
    ("l40s", 4, 0.05),  # 70B models, 4-bit
    ("h100", 8, 0.03),  # 70B-class models in bf16
]
MIN_REPLICAS = [(0, 0.05), (1, 0.70), (2, 0.25)]
EXTRA_AT_MAX = [(0, 0.20), (1, 0.35), (2, 0.30), (4, 0.15)]
DEDICATED_TENANT_SHARE = 0.05
ENDPOINTS_PER_TENANT = 3


def _pick(rng: random.Random, weighted):
    values, weights = zip(*[(entry[:-1], entry[-1]) for entry in weighted], strict=True)
    choice = rng.choices(values, weights)[0]
    return choice if len(choice) > 1 else choice[0]


def fleet(endpoints: int, seed: int) -> list[Demand]:
    """A reproducible fleet: the model mix above, tenants owning about three endpoints each."""
    rng = random.Random(f"{seed}-{endpoints}")
    tenants = [f"tenant-{i:05d}" for i in range(max(1, endpoints // ENDPOINTS_PER_TENANT))]
    dedicated = set(rng.sample(tenants, max(1, round(len(tenants) * DEDICATED_TENANT_SHARE))))
    demands = []
    for i in range(endpoints):
        pool, gpus = _pick(rng, MODEL_MIX)
        low = _pick(rng, MIN_REPLICAS)
        high = max(1, low + _pick(rng, EXTRA_AT_MAX))
        tenant = rng.choice(tenants)
        tier = "dedicated" if tenant in dedicated else "shared"
        demands.append(Demand(f"ep-{i:05d}", tenant, pool, gpus, low, high, tier))
    return demands


def timed_plan(demands: list[Demand], pools, repeat: int) -> tuple[CapacityPlan, float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        plan = plan_capacity(demands, pools)
        times.append(time.perf_counter() - start)
    return plan, statistics.median(times)


def print_plan(plan: CapacityPlan, seconds: float) -> list[float]:
    demands = plan.demands
    dedicated = {d.tenant for d in demands if d.tier == "dedicated"}
    replicas = {s: sum(d.replicas(s) for d in demands) for s in ("min", "max")}
    print(f"\n{len(demands):,} endpoints, {len({d.tenant for d in demands}):,} tenants "
          f"({len(dedicated)} dedicated); replicas {replicas['min']:,} at min, {replicas['max']:,} at max")
    print(f"  {'scale':5} {'pool':6} {'nodes':>6} {'node lb':>7} {'$/h':>12} {'$/h bound':>12} {'gap':>7} {'util':>6}")
    gaps = []
    for scale in ("min", "max"):
        totals = Counter()
        cost = bound = Decimal(0)
        for name, pool_plan in plan.pools.items():
            s = pool_plan.scale(scale)
            gaps.append(float(s.gap))
            print(f"  {scale:5} {name:6} {s.node_count:6,} {s.lower_bound:7,} {s.on_demand_hourly:12,.2f} "
                  f"{s.cost_lower_bound:12,.2f} {float(s.gap):7.2%} {float(s.gpu_utilisation):6.1%}")
            totals.update(nodes=s.node_count, lb=s.lower_bound, used=s.allocated_gpus, gpus=s.total_gpus)
            cost += s.on_demand_hourly
            bound += s.cost_lower_bound
        gap = float((cost - bound) / bound) if bound else 0.0
        util = totals["used"] / totals["gpus"] if totals["gpus"] else 0.0
        print(f"  {scale:5} {'all':6} {totals['nodes']:6,} {totals['lb']:7,} {cost:12,.2f} {bound:12,.2f} "
              f"{gap:7.2%} {util:6.1%}")
    print(f"  planning time, both scales, all pools: {seconds:.3f} s")
    return gaps


def print_costs(plan: CapacityPlan, label: str) -> float:
    """Monthly cost, on-demand on both sides: pooled at min and max scale against dedicated at peak."""
    estimate = estimate_costs(plan)
    saving, at_max = float(estimate.savings_fraction), float(estimate.savings_at_max_fraction)
    print(f"\n  {label}")
    print(f"    pooled at min scale ${estimate.pooled_monthly:>14,.2f} / month "
          f"(platform overhead ${estimate.platform_overhead_monthly:,.2f})")
    print(f"    pooled at max scale ${estimate.pooled_at_max_monthly:>14,.2f} / month "
          f"(platform overhead ${estimate.platform_overhead_at_max_monthly:,.2f})")
    print(f"    dedicated at peak   ${estimate.baseline_monthly:>14,.2f} / month (instances for each endpoint's "
          "replicas MAX, always on)")
    for name, value in (("min", saving), ("max", at_max)):
        print(f"    pooled at {name} scale is {abs(value):.1%} {'cheaper' if value >= 0 else 'dearer'} than "
              "dedicated at peak")
    if estimate.spot_pooled_monthly is not None:
        print(f"    on spot (apart, in no saving): ${estimate.spot_pooled_monthly:,.2f} / month at min scale")
    return saving


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 500, 5000])
    args = parser.parse_args()

    catalog = gpu_catalog()  # loaded once per process; not part of planning time
    print(f"GPU catalog prices read on {catalog.prices_read_on}; seed {args.seed}")
    worst_gap, slowest = 0.0, 0.0
    plans = {}
    for size in args.sizes:
        plan, seconds = timed_plan(fleet(size, args.seed), POOLS, args.repeat)
        worst_gap = max([worst_gap] + print_plan(plan, seconds))
        slowest = max(slowest, seconds)
        plans[size] = plan

    print(f"\nworst gap {worst_gap:.2%} (target 2 %); slowest plan {slowest:.3f} s (target 1 s at 5,000)")
    print("node lb: fewest nodes any placement could use; in mixed pools that assumes all nodes of the largest\n"
          "type, while the cheapest placement uses smaller ones, so there the gap is measured on price only.")

    print("\nmonthly cost without traffic, on-demand, default mix")
    for size, plan in plans.items():
        print_costs(plan, f"{size:,} endpoints, pools as above")
    largest = max(plans)
    single = plan_capacity(plans[largest].demands, POOLS_WITH_SINGLE_GPU)
    print_costs(single, f"{largest:,} endpoints, pools that also offer g6.xlarge / g6e.xlarge")


if __name__ == "__main__":
    main()
