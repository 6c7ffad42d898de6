"""Pooling that pays: seeded fleets through the simulator, pooled against both baselines and the lower bound.

    python bench/pooling.py [--seed N] [--sizes 100,1000] [--days 7] [--target 99] [--headroom l4=48/2,...]

Fleet mix (fixed here, not tuned to a result): 70 % 7-9B models on L4 or L40S, 25 % 14-32B on L40S,
5 % 70B on H100; each endpoint's peak (the weekday peak hour's mean load, before minute bursts) log-uniform
from 0.3 to 20 replicas; a third scale to zero; users in UTC-8, -5, +1 or +8; diurnal trough 25-40 % of the
peak; weekends 50-70 % of weekdays; minute bursts from the real Azure trace (privend.traffic). Pools offer
the single-GPU types and the 4- and 8-GPU ones.

Per fleet: the warm headroom per pool that `capacity apply` would choose (`privend.simulator.choose_headroom`:
the fewest placeholders with which --target % of the pool's scale-ups start on a warm node), then one
simulation with it, timed in a fresh process (its wall time and peak RSS are the figures against the
targets; the headroom search is not part of them). It prints pooled cost, both baselines, the lower bound,
the savings, cold-start waits, where the gap to the lower bound comes from, each against its target.
Never asserts.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from privend.capacity import Demand, PoolSpec  # noqa: E402
from privend.catalog import gpu_catalog, model_catalog  # noqa: E402
from privend.simulator import SimEndpoint, choose_headroom, desired_replicas, simulate, work_in_replicas  # noqa: E402
from privend.sizing import size_replica, weight_bytes  # noqa: E402
from privend.throughput import replica_throughput  # noqa: E402
from privend.traffic import TRACE_GENERATED_SHARE, TrafficProfile, synthetic  # noqa: E402

POOLS = {
    "l4": PoolSpec("l4", ("g6.xlarge", "g6.12xlarge", "g6.48xlarge"), "on-demand", 0, 5000),
    "l40s": PoolSpec("l40s", ("g6e.xlarge", "g6e.12xlarge", "g6e.48xlarge"), "on-demand", 0, 5000),
    "h100": PoolSpec("h100", ("p5.4xlarge", "p5.48xlarge"), "on-demand", 0, 1000),
}
SMALL = ["meta-llama/Llama-3.1-8B-Instruct", "mistralai/Mistral-7B-Instruct-v0.3", "Qwen/Qwen2.5-7B-Instruct",
         "google/gemma-2-9b-it"]
MEDIUM = ["Qwen/Qwen2.5-14B-Instruct", "Qwen/Qwen2.5-32B-Instruct", "google/gemma-2-27b-it"]
LARGE = ["meta-llama/Llama-3.1-70B-Instruct"]
OFFSETS = [-8, -5, 1, 8]
MONDAY = datetime(2026, 11, 2, tzinfo=UTC)


def fleet(size: int, seed: int):
    rng = np.random.default_rng(seed)
    catalog = gpu_catalog()
    endpoints, profiles = [], []
    for i in range(size):
        roll = rng.random()
        if roll < 0.70:
            model_id, pool = SMALL[rng.integers(len(SMALL))], ("l4" if rng.random() < 0.5 else "l40s")
        elif roll < 0.95:
            model_id, pool = MEDIUM[rng.integers(len(MEDIUM))], "l40s"
        else:
            model_id, pool = LARGE[0], "h100"
        model = model_catalog().get(model_id)
        spec = POOLS[pool]
        biggest = max(catalog.get(t).gpus for t in spec.instance_types)
        gpu_type = catalog.get(spec.instance_types[0])
        size_ = size_replica(model, gpu_type.gpu_memory_gib, biggest, pool)
        t = replica_throughput(model, model.default_dtype, gpu_type.gpu_model, size_.gpus_per_replica,
                               size_.max_total_tokens)
        peak = float(np.exp(rng.uniform(np.log(0.3), np.log(20))))
        min_replicas = 0 if rng.random() < 1 / 3 else 1
        max_replicas = min(64, max(2, math.ceil(peak * 4)))
        tenant = f"tenant-{i // 3}"  # a few endpoints per tenant
        demand = Demand(f"ep-{i:04d}", tenant, pool, size_.gpus_per_replica, min_replicas, max_replicas)
        endpoints.append(SimEndpoint(demand, t.prefill_tokens_per_second, t.decode_tokens_per_second,
                                     weight_bytes(model, model.default_dtype)))
        g = TRACE_GENERATED_SHARE
        capacity = 1 / ((1 - g) / t.prefill_tokens_per_second + g / t.decode_tokens_per_second)
        profiles.append(TrafficProfile(demand.endpoint, peak * capacity, float(OFFSETS[rng.integers(4)]),
                                       float(rng.uniform(0.25, 0.40)), float(rng.uniform(0.5, 0.7))))
    return endpoints, profiles


def _timed(size: int, seed: int, days: int, headroom: dict, pod_gpus: dict):
    """One simulation, in a process of its own: (result, wall seconds, peak RSS in bytes).

    The RSS is this process's peak plus that of the process the simulator forks for the
    dedicated-autoscaled baseline (an upper bound: pages they share count twice)."""
    endpoints, profiles = fleet(size, seed)
    traffic = synthetic(profiles, seed, MONDAY, MONDAY + timedelta(days=days), 60)
    began = time.perf_counter()
    result = simulate(endpoints, POOLS, traffic, headroom, headroom_pod_gpus=pod_gpus)
    seconds = time.perf_counter() - began
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss + resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return result, seconds, rss * 1024


def timed(size: int, seed: int, days: int, headroom: dict, pod_gpus: dict):
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_timed, size, seed, days, headroom, pod_gpus).result()


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def gap_sources(endpoints, traffic) -> tuple[float, float, float]:
    """GPU-hours of the work itself, of ceil(work) per step (what the lower bound may hold at most before
    the minimums), and of KEDA's desired replicas (what any placement must hold, cold starts aside)."""
    work = ceil = desired = 0.0
    for e in endpoints:
        w = work_in_replicas(e, traffic)
        g = e.demand.gpus_per_replica
        work += float(w.sum()) * g
        ceil += float(np.maximum(np.ceil(np.maximum(w - 1e-9, 0)), e.demand.min_replicas).sum()) * g
        desired += float(desired_replicas(w, e.policy, traffic.step_seconds).sum()) * g
    hours = traffic.step_seconds / 3600
    return work * hours, ceil * hours, desired * hours


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--sizes", default="100,1000")
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--target", type=float, default=99.0, help="scale-ups without waiting for a node, %%")
    parser.add_argument("--headroom", help="POOL=GPUS/POD_GPUS,...: use this headroom instead of searching (one size)")
    args = parser.parse_args()
    given = None
    if args.headroom:
        given = {}
        for item in args.headroom.split(","):
            pool, _, value = item.partition("=")
            gpus, _, pod = value.partition("/")
            given[pool] = (int(gpus), int(pod or 1))
    print(f"seed {args.seed}, {args.days} days at 60 s steps, prices read {gpu_catalog().prices_read_on}, "
          f"on-demand on every side")
    for size in [int(s) for s in args.sizes.split(",")]:
        endpoints, profiles = fleet(size, args.seed)
        traffic = synthetic(profiles, args.seed, MONDAY, MONDAY + timedelta(days=args.days), 60)
        if given is not None:
            headroom = {name: given.get(name, (0, 1))[0] for name in POOLS}
            pod_gpus = {name: given.get(name, (0, 1))[1] for name in POOLS}
            print(f"\n{size} endpoints: warm headroom as given, {args.headroom}")
        else:
            began = time.perf_counter()
            choices = choose_headroom(endpoints, POOLS, traffic, args.target)
            search = time.perf_counter() - began
            print(f"\n{size} endpoints: warm headroom per pool for {args.target:g} % ready scale-ups "
                  f"(search {search:.0f} s, {sum(len(c.trials) for c in choices.values())} pool runs)")
            for c in choices.values():
                print(f"  {c.pool:5} {c.gpus:4} GPUs in {c.gpus // c.pod_gpus} pods of {c.pod_gpus}: "
                      f"{c.chosen.ready_percent:.2f} % of {c.chosen.scale_ups} scale-ups ready "
                      f"({c.without.ready_percent:.2f} % without), pool cost +${c.extra_cost:,.2f} for it"
                      + ("" if c.met else "  TARGET NOT REACHED"))
            headroom = {name: c.gpus for name, c in choices.items()}
            pod_gpus = {name: c.pod_gpus for name, c in choices.items()}
        result, seconds, rss = timed(size, args.seed, args.days, headroom, pod_gpus)
        pooled, at_peak = result.pooled_cost, result.dedicated_at_peak_cost
        auto, bound = result.dedicated_autoscaled_cost, result.lower_bound_cost
        saving = (at_peak - pooled) / at_peak * 100
        over_bound = (pooled - bound) / bound * 100
        w = result.waits
        ready = w.ready_percent
        print(f"  pooled                 ${pooled:>14,.2f}  (attributed ${result.attributed_cost:,.2f}, "
              f"platform overhead ${result.overhead_cost:,.2f}, of it warm headroom ${result.headroom_cost:,.2f})")
        print(f"  dedicated at peak      ${at_peak:>14,.2f}")
        dw = result.dedicated_autoscaled_waits
        print(f"  dedicated autoscaled   ${auto:>14,.2f}  (scale-ups waiting for a node: {dw.waited_for_node} of "
              f"{dw.count}; waits p50 {dw.p50_seconds:.0f} s, p95 {dw.p95_seconds:.0f} s, max {dw.max_seconds:.0f} s)")
        print(f"  lower bound            ${bound:>14,.2f}")
        print(f"  saving vs dedicated at peak    {saving:5.1f} %   target >= 35 %: {verdict(saving >= 35)}")
        print(f"  saving vs dedicated autoscaled {(auto - pooled) / auto * 100:5.1f} %")
        print(f"  pooled over lower bound        {over_bound:5.1f} %   target <= 50 %: {verdict(over_bound <= 50)}")
        print(f"  scale-ups {w.count}, waited for a node {w.waited_for_node}, ready {ready:.2f} %   "
              f"target >= 99 %: {verdict(ready >= 99)}")
        print(f"  cold-start waits p50 {w.p50_seconds:.0f} s, p95 {w.p95_seconds:.0f} s, max {w.max_seconds:.0f} s")
        unserved = sum(e.unserved_replica_hours for e in result.endpoints)
        work = sum(e.work_replica_hours for e in result.endpoints)
        print(f"  unserved work {unserved:,.1f} of {work:,.1f} replica-hours ({unserved / work * 100:.2f} %)")
        w_h, ceil_h, desired_h = gap_sources(endpoints, traffic)
        held = sum(p.gpu_hours_held for p in result.pools)
        nodes = sum(p.gpu_hours for p in result.pools)
        print(f"  GPU-hours: work {w_h:,.0f}; ceil(work) per step {ceil_h:,.0f}; KEDA's desired replicas "
              f"{desired_h:,.0f} ({desired_h / ceil_h:.2f} x); held by replicas {held:,.0f}; on nodes {nodes:,.0f}")
        target = seconds < 60 and rss < 2 * 2**30
        print(f"  simulation {seconds:.1f} s, peak RSS {rss / 2**20:,.0f} MiB (fresh process and its baseline "
              "process, summed)"
              + ("" if size < 1000 else f"   target < 60 s, < 2 GiB: {verdict(target)}"))


if __name__ == "__main__":
    main()
