"""Pool simulator: replay traffic through KEDA, the Cluster Autoscaler and cold starts, and price it.

Pure Python plus numpy. Input: endpoints (a capacity `Demand` plus one replica's
throughput, `privend.throughput`), the pools (`PoolSpec`), traffic
(`privend.traffic.Traffic`) and the warm headroom per pool. Output per
endpoint, per pool and for the fleet: replica-hours, GPU-hours, node-hours,
cold-start waits, unserved work, and the cost on-demand against two baselines
and a lower bound.

Load. An endpoint's work in a step, in replicas, is
  prompt tokens / (prefill rate x step) + generated tokens / (decode rate x step),
the fraction of one replica's time the step's tokens take at the latency target.

KEDA (values from `privend.autoscaling`, the ones the ScaledObject carries).
The autoscaler sees the work `reaction_seconds` late, recommends ceil(work)
replicas within [min, max] (at least 1 while a scale-to-zero endpoint has
work), scales up at once, down to the highest recommendation of the last
`scale_down_stabilization_seconds`, and to zero only after `cooldown_seconds`
without work.

Placement. A new replica goes onto a node of its group (a pool's shared nodes,
or a dedicated tenant's own nodes) under the planner's rules: whole GPUs, all
on one node, best fit (the node with the least free GPUs that holds it), ready
nodes before booting ones. Running replicas never move. A scale-down removes
replicas not yet serving first, then the one on the least used node (among equals, the
one serving longest).

Cluster Autoscaler. A replica that fits nowhere makes the autoscaler launch a
node (within the pool's maxSize, counted over the pool's node groups together:
stricter than the platform, where each group may reach it) of the type with the
lowest price per GPU it is expected to fill (the platform's priority expander
ranks the groups by price per GPU), ready `node_ready_seconds` later. A node with no replica
for `scale_down_unneeded_seconds` (the autoscaler's default 10 minutes) goes,
unless the pool's minSize or its warm headroom needs it. Nodes holding some
replicas are never drained (the autoscaler could consolidate them; not doing
so errs on the dear side).

Warm headroom. Placeholder pods of a negative PriorityClass hold N GPUs per
pool, in pods of k GPUs each (k: the largest replica of the pool's shared
endpoints, so that any replica can take a placeholder's place on its node). A
replica preempts them at once, so it waits only for its own start; the
placeholders, pending again, make the autoscaler launch a node: the pool keeps
room for N / k placeholders on its shared nodes (ready or booting).

Cold start (ColdStartModel): node ready (EC2 launch, boot, kubelet join, the
NVIDIA device plugin advertising GPUs), the engine image pull (once per node),
the weights download and load, the engine's warm-up. A replica "waited for a
node" when no ready node had room when it was wanted.

Cost (on-demand list prices of the GPU catalog). Pooled: every node from launch
to removal. An endpoint is attributed the GPU-hours its replicas hold at the
per-GPU price of their nodes; the rest (warm headroom, minSize floors, empty
nodes waiting to go, fragmentation) is platform overhead. Baselines, over the
same window: "dedicated at peak", each endpoint on its own instances of the
cheapest catalog type with the pool's GPU model that holds a replica, enough
for its own peak step, always on; "dedicated autoscaled", the same instances
following the traffic under the same policy with no shared warm capacity
(simulated here, every scale-up waiting for a new instance). Lower bound: per
step, the cheapest set of the pool's node types that holds the replicas the
served work needs at 100 % utilisation (and every endpoint's minimum), summed
over steps. A replica of g GPUs needs a node of at least g GPUs; packing across
nodes, tenancy and timing are relaxed (`_lower_bound`), so no placement beats it.

Warm headroom per pool (`choose_headroom`): the smallest N for which a pool's
share of scale-ups that did not wait for a node meets a target, found by
doubling N and then bisecting, each trial a pooled run of that pool alone.
"""

from __future__ import annotations

import heapq
import math
import multiprocessing
import os
from array import array
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from fractions import Fraction
from multiprocessing.connection import Connection
from operator import attrgetter
from typing import Any

import numpy as np

from privend.autoscaling import ScalingPolicy, scaling_policy
from privend.capacity import Demand, PoolSpec
from privend.catalog import GpuCatalog, GpuInstanceType, gpu_catalog
from privend.cost import dedicated_at_peak, dedicated_instance
from privend.errors import InputError
from privend.traffic import Traffic

CENT = Decimal("0.01")
# From this many endpoints on, `simulate` runs its two fleets (pooled, dedicated autoscaled) in two processes.
PARALLEL_FROM_ENDPOINTS = 200


@dataclass(frozen=True)
class ColdStartModel:
    """Seconds from a scale-up to a serving replica. Estimates, not measurements (README)."""

    # EC2 launch to a schedulable GPU node: boot of the EKS GPU AMI, kubelet join, device plugin.
    # AWS publishes no figure; g-family nodes are usually ready in 2 to 4 minutes, P-family
    # nodes (larger, EFA, NVSwitch fabric manager) in 4 to 6.
    g_family_node_ready_seconds: int = 180
    p_family_node_ready_seconds: int = 300
    # Cluster Autoscaler's scan interval (its default), before it acts on a pending pod.
    autoscaler_scan_seconds: int = 10
    # The engine image (TGI or vLLM, about 5 GB compressed) from ECR at about 150 MB/s: once per node.
    image_pull_seconds: int = 35
    # Weights from S3 or the hub cache at 500 MB/s, then into GPU memory.
    weight_load_bytes_per_second: float = 500e6
    # CUDA context, graph capture and the engine's warm-up request.
    engine_start_seconds: int = 30
    scale_down_unneeded_seconds: int = 600

    def node_ready_seconds(self, instance: GpuInstanceType) -> int:
        ready = self.p_family_node_ready_seconds if instance.name.startswith("p") else self.g_family_node_ready_seconds
        return self.autoscaler_scan_seconds + ready

    def replica_start_seconds(self, weight_bytes: int, image_cached: bool) -> int:
        pull = 0 if image_cached else self.image_pull_seconds
        return pull + math.ceil(weight_bytes / self.weight_load_bytes_per_second) + self.engine_start_seconds


@dataclass(frozen=True)
class SimEndpoint:
    """One endpoint as the simulator needs it."""

    demand: Demand
    prefill_tokens_per_second: float
    decode_tokens_per_second: float
    weight_bytes: int
    engine: str = "tgi"

    @property
    def name(self) -> str:
        return self.demand.endpoint

    @property
    def policy(self) -> ScalingPolicy:
        return scaling_policy(self.demand.min_replicas, self.demand.max_replicas)


@dataclass(frozen=True)
class Waits:
    count: int
    waited_for_node: int
    p50_seconds: float
    p95_seconds: float
    max_seconds: float

    @classmethod
    def of(cls, waits: Sequence[float] | np.ndarray, for_node: int) -> Waits:
        if len(waits) == 0:
            return cls(0, 0, 0.0, 0.0, 0.0)
        a = np.asarray(waits)
        return cls(len(waits), for_node, float(np.percentile(a, 50)), float(np.percentile(a, 95)), float(a.max()))

    @property
    def ready_share(self) -> Fraction:
        """Scale-ups that did not wait for a node, of all (1 when there were none)."""
        return Fraction(self.count - self.waited_for_node, self.count) if self.count else Fraction(1)

    @property
    def ready_percent(self) -> float:
        return float(self.ready_share * 100)

    def to_dict(self) -> dict:
        return {"count": self.count, "waited_for_node": self.waited_for_node, "p50_seconds": round(self.p50_seconds, 1),
                "p95_seconds": round(self.p95_seconds, 1), "max_seconds": round(self.max_seconds, 1)}


@dataclass(frozen=True)
class EndpointResult:
    name: str
    tenant: str
    pool: str
    replica_prefill_tokens_per_second: float
    replica_decode_tokens_per_second: float
    replica_hours: float
    peak_replicas: int
    gpu_hours: float
    attributed_cost: Decimal
    cold_start_waits: Waits
    work_replica_hours: float
    unserved_replica_hours: float
    dedicated_at_peak_cost: Decimal
    dedicated_autoscaled_cost: Decimal

    def to_dict(self) -> dict:
        return {
            "name": self.name, "tenant": self.tenant, "pool": self.pool,
            "replica_prefill_tokens_per_second": round(self.replica_prefill_tokens_per_second, 1),
            "replica_decode_tokens_per_second": round(self.replica_decode_tokens_per_second, 1),
            "replica_hours": round(self.replica_hours, 3),
            "peak_replicas": self.peak_replicas,
            "gpu_hours": round(self.gpu_hours, 3),
            "attributed_cost": str(self.attributed_cost),
            "cold_start_waits": self.cold_start_waits.to_dict(),
            "work_replica_hours": round(self.work_replica_hours, 3),
            "unserved_replica_hours": round(self.unserved_replica_hours, 3),
            "dedicated_at_peak_cost": str(self.dedicated_at_peak_cost),
            "dedicated_autoscaled_cost": str(self.dedicated_autoscaled_cost),
        }


@dataclass(frozen=True)
class PoolResult:
    name: str
    warm_headroom_gpus: int
    node_hours_by_type: dict[str, float]
    gpu_hours: float
    gpu_hours_held: float
    cost: Decimal
    attributed_cost: Decimal
    overhead_cost: Decimal
    headroom_cost: Decimal
    lower_bound_cost: Decimal
    peak_nodes: int
    cold_start_waits: Waits

    def to_dict(self) -> dict:
        return {
            "name": self.name, "warm_headroom_gpus": self.warm_headroom_gpus,
            "node_hours_by_type": {k: round(v, 3) for k, v in self.node_hours_by_type.items()},
            "gpu_hours": round(self.gpu_hours, 3), "gpu_hours_held": round(self.gpu_hours_held, 3),
            "gpu_hours_idle": round(self.gpu_hours - self.gpu_hours_held, 3),
            "cost": str(self.cost), "attributed_cost": str(self.attributed_cost),
            "overhead_cost": str(self.overhead_cost), "warm_headroom_cost": str(self.headroom_cost),
            "lower_bound_cost": str(self.lower_bound_cost), "peak_nodes": self.peak_nodes,
            "cold_start_waits": self.cold_start_waits.to_dict(),
            "scale_ups_without_waiting_for_a_node_percent": _ready_share(self.cold_start_waits),
        }


@dataclass(frozen=True)
class SimulationResult:
    start: str
    end: str
    step_seconds: int
    prices_read_on: str
    endpoints: tuple[EndpointResult, ...]
    pools: tuple[PoolResult, ...]
    waits: Waits  # every scale-up of the pooled run
    dedicated_autoscaled_waits: Waits

    @property
    def pooled_cost(self) -> Decimal:
        return sum((p.cost for p in self.pools), Decimal(0))

    @property
    def dedicated_at_peak_cost(self) -> Decimal:
        return sum((e.dedicated_at_peak_cost for e in self.endpoints), Decimal(0))

    @property
    def dedicated_autoscaled_cost(self) -> Decimal:
        return sum((e.dedicated_autoscaled_cost for e in self.endpoints), Decimal(0))

    @property
    def lower_bound_cost(self) -> Decimal:
        return sum((p.lower_bound_cost for p in self.pools), Decimal(0))

    @property
    def attributed_cost(self) -> Decimal:
        """What the pools' endpoints are attributed, all pools."""
        return sum((p.attributed_cost for p in self.pools), Decimal(0))

    @property
    def overhead_cost(self) -> Decimal:
        """The pools' platform overhead (warm headroom, floors, fragmentation), all pools."""
        return sum((p.overhead_cost for p in self.pools), Decimal(0))

    @property
    def headroom_cost(self) -> Decimal:
        return sum((p.headroom_cost for p in self.pools), Decimal(0))

    def saving_percent(self, baseline: Decimal) -> Decimal:
        if not baseline:
            return Decimal(0)
        return ((baseline - self.pooled_cost) / baseline * 100).quantize(Decimal("0.1"))

    def to_dict(self) -> dict:
        pooled, peak, auto, bound = (self.pooled_cost, self.dedicated_at_peak_cost, self.dedicated_autoscaled_cost,
                                     self.lower_bound_cost)
        waits = self.waits
        return {
            "window": {"start": self.start, "end": self.end, "step_seconds": self.step_seconds},
            "prices_read_on": self.prices_read_on,
            "endpoints": [e.to_dict() for e in self.endpoints],
            "pools": [p.to_dict() for p in self.pools],
            "fleet": {
                "pooled": {"cost": str(pooled),
                           "attributed_cost": str(self.attributed_cost),
                           "overhead_cost": str(self.overhead_cost),
                           "cold_start_waits": waits.to_dict()},
                "dedicated_at_peak": {"cost": str(peak)},
                "dedicated_autoscaled": {"cost": str(auto),
                                         "cold_start_waits": self.dedicated_autoscaled_waits.to_dict()},
                "lower_bound": {"cost": str(bound)},
                "saving_vs_dedicated_at_peak_percent": str(self.saving_percent(peak)),
                "saving_vs_dedicated_autoscaled_percent": str(self.saving_percent(auto)),
                "pooled_over_lower_bound_percent": str(((pooled - bound) / bound * 100).quantize(Decimal("0.1"))
                                                       if bound else Decimal(0)),
                "scale_ups_without_waiting_for_a_node_percent": _ready_share(waits),
            },
        }


def _ready_share(waits: Waits) -> str:
    share = waits.ready_share
    return str((Decimal(share.numerator) / share.denominator * 100).quantize(Decimal("0.1")))


# ---------------------------------------------------------------------------
# The engine
#
# Event-driven inside fixed steps: per step it applies the replicas that finished starting and the nodes
# that became ready (two heaps), KEDA's changes (precomputed from the desired-replica matrix), pending
# retries, the warm headroom and the scale-down of nodes whose unneeded time ran out (a third heap).
# Accounting is by change, not by step: every replica and node adds its GPU-steps when it goes, and
# serving and placed replicas per endpoint and step come from cumulative sums of their changes.


class _Node:
    __slots__ = ("id", "group", "type", "type_index", "gpus", "ready_at", "launched_step", "used", "replicas",
                 "empty_since", "images", "removed")

    def __init__(self, node_id: int, group: _Group, type_: GpuInstanceType, type_index: int, ready_at: float,
                 launched_step: int) -> None:
        self.id = node_id
        self.group = group
        self.type = type_
        self.type_index = type_index
        self.gpus = type_.gpus
        self.ready_at = ready_at
        self.launched_step = launched_step
        self.used = 0
        self.replicas = 0
        self.empty_since: float | None = None
        self.images: set[str] = set()
        self.removed = False

    @property
    def free(self) -> int:
        return self.gpus - self.used


class _Replica:
    __slots__ = ("endpoint", "node", "ready_at", "wanted_at", "serial", "alive", "serving", "placed_step",
                 "type_index")

    def __init__(self, endpoint: int, wanted_at: float, serial: int) -> None:
        self.endpoint = endpoint
        self.node: _Node | None = None
        self.ready_at = math.inf  # while pending (no node)
        self.wanted_at = wanted_at
        self.serial = serial
        self.alive = True
        self.serving = False
        self.placed_step = 0
        self.type_index = 0


class _Group:
    """Nodes that may hold one another's replicas: a pool's shared tier, or one dedicated tenant."""

    __slots__ = ("pool", "dedicated_tenant", "ready_by_free", "booting", "free_total", "blocked")

    def __init__(self, pool: str, dedicated_tenant: str | None, max_gpus: int) -> None:
        self.pool = pool
        self.dedicated_tenant = dedicated_tenant
        # Ready nodes by free GPUs, for best fit without a scan; booting nodes apart (few at a time).
        self.ready_by_free: list[dict[int, _Node]] = [{} for _ in range(max_gpus + 1)]
        self.booting: dict[int, _Node] = {}
        self.free_total = 0
        # Empty nodes whose unneeded time ran out but that minSize or the warm headroom keeps.
        self.blocked: dict[int, _Node] = {}


def work_in_replicas(endpoint: SimEndpoint, traffic: Traffic) -> np.ndarray:
    step = traffic.step_seconds
    return (traffic.context_tokens[endpoint.name] / (endpoint.prefill_tokens_per_second * step)
            + traffic.generated_tokens[endpoint.name] / (endpoint.decode_tokens_per_second * step))


def desired_replicas(work: np.ndarray, policy: ScalingPolicy, step_seconds: int) -> np.ndarray:
    """What KEDA and the HPA ask for in each step, from the work in replicas (module docstring)."""
    steps = len(work)
    lag = math.ceil(policy.reaction_seconds / step_seconds)
    seen = np.concatenate([np.full(lag, work[0] if steps else 0.0), work])[:steps]
    recommended = np.ceil(np.maximum(seen - 1e-9, 0)).astype(np.int64)
    recommended = np.clip(recommended, policy.min_replicas, policy.max_replicas)
    window = max(1, math.ceil(policy.scale_down_stabilization_seconds / step_seconds) + 1)
    held = _sliding_max(recommended, window)
    if policy.scale_to_zero:
        active = (seen > 1e-9).astype(np.int64)
        cooldown = max(1, math.ceil(policy.cooldown_seconds / step_seconds) + 1)
        held = np.maximum(held, _sliding_max(active, cooldown))
    return np.minimum(held, policy.max_replicas)


def _sliding_max(values: np.ndarray, window: int) -> np.ndarray:
    """For each i, the max of values[i - window + 1 .. i]."""
    if window <= 1 or len(values) == 0:
        return values.copy()
    padded = np.concatenate([np.full(window - 1, values[0]), values])
    return np.lib.stride_tricks.sliding_window_view(padded, window).max(axis=1)


def simulate(endpoints: Sequence[SimEndpoint], pools: Mapping[str, PoolSpec], traffic: Traffic,
             headroom: Mapping[str, int] | None = None, *, headroom_pod_gpus: Mapping[str, int] | None = None,
             cold_start: ColdStartModel | None = None, catalog: GpuCatalog | None = None,
             audit: Callable[[Placement], None] | None = None, workers: int | None = None) -> SimulationResult:
    """Pooled run, both baselines and the lower bound over `traffic`'s window.

    `audit`, if given, sees every replica of the pooled run arrive on and leave its node. With
    `workers` 2 the dedicated-autoscaled baseline runs in a second process beside the pooled run
    (default: from PARALLEL_FROM_ENDPOINTS endpoints on, where the machine has two cores).
    """
    catalog = catalog or gpu_catalog()
    cold_start = cold_start or ColdStartModel()
    headroom = dict(headroom or {})
    for e in endpoints:
        if e.demand.pool not in pools:
            raise InputError(f"endpoint {e.name!r}: pool {e.demand.pool!r} is not configured")
        biggest = max(catalog.get(t).gpus for t in pools[e.demand.pool].instance_types)
        if e.demand.gpus_per_replica > biggest:
            raise InputError(f"endpoint {e.name!r}: a replica of {e.demand.gpus_per_replica} GPUs fits no instance "
                             f"type of pool {e.demand.pool!r} (largest: {biggest} GPUs)")
        if e.name not in traffic.context_tokens:
            raise InputError(f"endpoint {e.name!r} has no traffic in the window")
    pod_gpus = {name: (headroom_pod_gpus or {}).get(name) or placeholder_gpus(endpoints, name) for name in pools}
    for name, n in headroom.items():
        if name in pools and n % pod_gpus[name]:
            raise InputError(f"pool {name!r}: warm headroom of {n} GPUs is not a whole number of "
                             f"{pod_gpus[name]}-GPU placeholders")
    dedicated_endpoints, dedicated_pools = _dedicated_fleet(endpoints, pools, catalog)
    baseline_args = (dedicated_endpoints, dedicated_pools, traffic, cold_start, catalog)
    if workers is None:
        workers = 2 if len(endpoints) >= PARALLEL_FROM_ENDPOINTS and (os.cpu_count() or 1) >= 2 else 1
    if workers > 1:
        # The dedicated-autoscaled baseline in a forked process (it inherits the inputs, nothing is
        # copied up front), while this one runs the pooled fleet; only its costs and waits come back.
        context = multiprocessing.get_context("fork")
        receive, send = context.Pipe(duplex=False)
        child = context.Process(target=_baseline_in_child, args=(send, *baseline_args), daemon=True)
        child.start()
        send.close()
        try:
            pooled = _Run(endpoints, pools, traffic, headroom, cold_start, catalog, pod_gpus=pod_gpus,
                          audit=audit).run()
            outcome = receive.recv()
        finally:
            child.join()
        if isinstance(outcome, BaseException):
            raise outcome
        baseline_cost, baseline_waits = outcome
    else:
        pooled = _Run(endpoints, pools, traffic, headroom, cold_start, catalog, pod_gpus=pod_gpus, audit=audit).run()
        baseline_cost, baseline_waits = _autoscaled_baseline(*baseline_args)
    hours = Decimal(traffic.steps * traffic.step_seconds) / 3600
    results = []
    for e in endpoints:
        stats = pooled.endpoint_stats[e.name]
        peak = max(1, e.demand.min_replicas, stats["peak_work"])
        ded_type, instances = dedicated_at_peak(e.demand, pools[e.demand.pool], catalog, peak)
        at_peak = (instances * ded_type.on_demand_hourly * hours).quantize(CENT)
        results.append(EndpointResult(
            name=e.name, tenant=e.demand.tenant, pool=e.demand.pool,
            replica_prefill_tokens_per_second=e.prefill_tokens_per_second,
            replica_decode_tokens_per_second=e.decode_tokens_per_second,
            replica_hours=stats["replica_seconds"] / 3600, peak_replicas=stats["peak_replicas"],
            gpu_hours=stats["gpu_seconds"] / 3600, attributed_cost=pooled.attributed[e.name].quantize(CENT),
            cold_start_waits=pooled.waits[e.name],
            work_replica_hours=stats["work_seconds"] / 3600, unserved_replica_hours=stats["unserved_seconds"] / 3600,
            dedicated_at_peak_cost=at_peak,
            dedicated_autoscaled_cost=baseline_cost[_dedicated_pool_name(e)].quantize(CENT),
        ))
    pool_results = tuple(pooled.pool_result(name) for name in pools)
    return SimulationResult(traffic.start.isoformat(), traffic.end.isoformat(), traffic.step_seconds,
                            catalog.prices_read_on, tuple(results), pool_results, pooled.all_waits,
                            baseline_waits)


@dataclass(frozen=True)
class Placement:
    """A replica arriving on a node (gpus > 0) or leaving it (gpus < 0), as `simulate`'s audit sees it."""

    seconds: float
    endpoint: str
    tenant: str
    node: int
    node_gpus: int
    node_tenant: str | None  # the dedicated tenant whose node it is; None for a pool's shared node
    gpus: int


@dataclass(frozen=True)
class HeadroomTrial:
    gpus: int
    ready_percent: float  # scale-ups that did not wait for a node
    scale_ups: int
    pool_cost: Decimal
    headroom_cost: Decimal


@dataclass(frozen=True)
class HeadroomChoice:
    """The warm headroom chosen for one pool, and every trial that led to it."""

    pool: str
    gpus: int
    pod_gpus: int  # GPUs per placeholder pod
    target_percent: float
    met: bool
    trials: tuple[HeadroomTrial, ...]

    @property
    def chosen(self) -> HeadroomTrial:
        return next(t for t in self.trials if t.gpus == self.gpus)

    @property
    def without(self) -> HeadroomTrial:
        """The trial with no headroom (always run first)."""
        return self.trials[0]

    @property
    def extra_cost(self) -> Decimal:
        """What the chosen headroom adds to the pool's cost over the simulated window."""
        return self.chosen.pool_cost - self.without.pool_cost


def placeholder_gpus(endpoints: Sequence[SimEndpoint], pool: str) -> int:
    """GPUs per placeholder pod of `pool`: its shared endpoints' largest replica (1 without any)."""
    return max((e.demand.gpus_per_replica for e in endpoints
                if e.demand.pool == pool and e.demand.tier != "dedicated"), default=1)


def choose_headroom(endpoints: Sequence[SimEndpoint], pools: Mapping[str, PoolSpec], traffic: Traffic,
                    target_percent: float = 99.0, limit: int = 512, *, cold_start: ColdStartModel | None = None,
                    catalog: GpuCatalog | None = None) -> dict[str, HeadroomChoice]:
    """Per pool, the fewest warm GPUs with which `target_percent` of scale-ups do not wait for a node.

    N counts whole placeholders of `placeholder_gpus` each. Doubling the placeholders from 0 to the first
    count that meets the target (at most `limit` GPUs), then bisecting below it; a pool that misses the
    target at `limit` gets the trial with the highest share (the fewest GPUs among equals), and `met` is
    False. A pool without endpoints or scale-ups needs none.
    """
    catalog = catalog or gpu_catalog()
    cold_start = cold_start or ColdStartModel()
    return {name: _choose_pool_headroom(name, pool, [e for e in endpoints if e.demand.pool == name], traffic,
                                        target_percent, limit, cold_start, catalog)
            for name, pool in pools.items()}


def _choose_pool_headroom(name: str, pool: PoolSpec, members: list[SimEndpoint], traffic: Traffic,
                          target_percent: float, limit: int, cold_start: ColdStartModel,
                          catalog: GpuCatalog) -> HeadroomChoice:
    k = placeholder_gpus(members, name)
    trials: dict[int, HeadroomTrial] = {}

    def trial(pods: int) -> HeadroomTrial:
        n = pods * k
        if n not in trials:
            run = _Run(members, {name: pool}, traffic, {name: n}, cold_start, catalog, bounds=False,
                       pod_gpus={name: k}).run()
            result, waits = run.pool_result(name), run.all_waits
            trials[n] = HeadroomTrial(n, waits.ready_percent, waits.count, result.cost, result.headroom_cost)
        return trials[n]

    most = max(0, limit // k)
    low, pods = -1, 0
    while trial(pods).ready_percent < target_percent and pods < most:
        low, pods = pods, min(most, max(1, pods * 2))
    met = trial(pods).ready_percent >= target_percent
    if met:
        high = pods
        while high - low > 1:
            mid = (low + high) // 2
            if trial(mid).ready_percent >= target_percent:
                high = mid
            else:
                low = mid
        chosen = high * k
    else:
        chosen = max(trials.values(), key=lambda t: (t.ready_percent, -t.gpus)).gpus
    return HeadroomChoice(name, chosen, k, target_percent, met, tuple(trials[n] for n in sorted(trials)))


def _autoscaled_baseline(endpoints: Sequence[SimEndpoint], pools: Mapping[str, PoolSpec], traffic: Traffic,
                         cold_start: ColdStartModel, catalog: GpuCatalog) -> tuple[dict[str, Decimal], Waits]:
    """"Dedicated autoscaled": each endpoint on instances of its own, every scale-up waiting for one."""
    run = _Run(endpoints, pools, traffic, {}, cold_start, catalog, bounds=False).run()
    return run.pool_cost, run.all_waits


def _baseline_in_child(send: Connection, *args: Any) -> None:
    try:
        send.send(_autoscaled_baseline(*args))
    except BaseException as error:  # handed to the parent, which raises it
        send.send(error)
    finally:
        send.close()


def _dedicated_pool_name(e: SimEndpoint) -> str:
    return f"dedicated/{e.name}"


def _dedicated_fleet(endpoints: Sequence[SimEndpoint], pools: Mapping[str, PoolSpec],
                     catalog: GpuCatalog) -> tuple[list[SimEndpoint], dict[str, PoolSpec]]:
    out, out_pools = [], {}
    for e in endpoints:
        name = _dedicated_pool_name(e)
        type_ = dedicated_instance(e.demand, pools[e.demand.pool], catalog)
        out_pools[name] = PoolSpec(name, (type_.name,), "on-demand", 0, max(1, e.demand.max_replicas))
        out.append(replace(e, demand=replace(e.demand, pool=name, tenant=e.name, tier="dedicated")))
    return out, out_pools


class _Run:
    """One simulation of a fleet on its pools (the pooled run, or the dedicated-autoscaled one)."""

    def __init__(self, endpoints: Sequence[SimEndpoint], pools: Mapping[str, PoolSpec], traffic: Traffic,
                 headroom: Mapping[str, int], cold_start: ColdStartModel, catalog: GpuCatalog,
                 bounds: bool = True, pod_gpus: Mapping[str, int] | None = None,
                 audit: Callable[[Placement], None] | None = None) -> None:
        self.bounds = bounds
        self.audit = audit
        self.endpoints = list(endpoints)
        self.pools = dict(pools)
        self.pool_names = list(pools)
        self.pool_row = {name: p for p, name in enumerate(self.pool_names)}
        self.traffic = traffic
        self.headroom = {name: headroom.get(name, 0) for name in pools}
        self.pod_gpus = {name: (pod_gpus or {}).get(name, 1) for name in pools}
        self.cold = cold_start
        self.catalog = catalog
        self.types: list[GpuInstanceType] = sorted({catalog.get(t) for p in pools.values() for t in p.instance_types},
                                                   key=lambda t: t.name)
        self.type_index = {t.name: i for i, t in enumerate(self.types)}
        self.max_gpus = max((t.gpus for t in self.types), default=1)
        self.pool_types = {name: [catalog.get(t) for t in p.instance_types] for name, p in pools.items()}
        self.groups: dict[tuple[str, str | None], _Group] = {}
        self.pool_nodes = dict.fromkeys(pools, 0)
        self.peak_nodes = dict.fromkeys(pools, 0)
        self.touched: set[str] = set()
        self.node_steps = [[0] * len(self.types) for _ in self.pool_names]
        self.nodes: dict[int, _Node] = {}
        self.next_node = 0
        self.step_index = 0
        self.node_heap: list[tuple[float, int, _Node]] = []
        self.replica_heap: list[tuple[float, int, _Replica]] = []
        self.unneeded_heap: list[tuple[float, int, float, _Node]] = []
        self.blocked_groups: dict[tuple[str, str | None], _Group] = {}
        self._type_choice: dict[tuple[str, int, int], GpuInstanceType | None] = {}
        # Every placement: its endpoint, its wait and whether it waited for a node.
        self.wait_endpoint = array("i")
        self.wait_seconds = array("d")
        self.wait_for_node = array("b")

    # -- nodes

    def _group(self, e: SimEndpoint) -> _Group:
        tenant = e.demand.tenant if e.demand.tier == "dedicated" else None
        return self._group_of(e.demand.pool, tenant)

    def _group_of(self, pool: str, tenant: str | None) -> _Group:
        key = (pool, tenant)
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = _Group(pool, tenant, self.max_gpus)
        return group

    def _launch_type(self, pool: str, size: int, expected: int) -> GpuInstanceType | None:
        key = (pool, size, min(max(expected, size), self.max_gpus))
        if key not in self._type_choice:
            fill = key[2]
            self._type_choice[key] = min((t for t in self.pool_types[pool] if t.gpus >= size),
                                         key=lambda t: (t.on_demand_hourly / min(t.gpus, fill), -t.gpus, t.name),
                                         default=None)
        return self._type_choice[key]

    def _launch(self, group: _Group, size: int, expected: int, now: float, ready: bool = False) -> _Node | None:
        pool = group.pool
        if self.pool_nodes[pool] >= self.pools[pool].max_size:
            return None
        type_ = self._launch_type(pool, size, expected)
        if type_ is None:
            return None
        ready_at = now if ready else now + self.cold.node_ready_seconds(type_)
        node = _Node(self.next_node, group, type_, self.type_index[type_.name], ready_at, self.step_index)
        self.next_node += 1
        self.nodes[node.id] = node
        if ready:
            group.ready_by_free[node.gpus][node.id] = node
        else:
            group.booting[node.id] = node
            heapq.heappush(self.node_heap, (ready_at, node.id, node))
        group.free_total += node.gpus
        self._now_empty(node, now)
        self.pool_nodes[pool] += 1
        self.touched.add(pool)
        return node

    def _now_empty(self, node: _Node, now: float) -> None:
        node.empty_since = now
        due = max(now + self.cold.scale_down_unneeded_seconds, node.ready_at)
        heapq.heappush(self.unneeded_heap, (due, node.id, now, node))

    def _node_ready(self, now: float) -> None:
        heap = self.node_heap
        while heap and heap[0][0] <= now:
            node = heapq.heappop(heap)[2]
            group = node.group
            del group.booting[node.id]
            group.ready_by_free[node.free][node.id] = node

    def _remove_node(self, group: _Group, node: _Node) -> None:
        del group.ready_by_free[node.free][node.id]
        del self.nodes[node.id]
        node.removed = True
        group.free_total -= node.free
        self.pool_nodes[group.pool] -= 1
        self.touched.add(group.pool)
        self.node_steps[self.pool_row[group.pool]][node.type_index] += self.step_index - node.launched_step

    def _take(self, group: _Group, node: _Node, gpus: int, now: float) -> None:
        """A replica of `gpus` GPUs arrives on `node` (negative: one leaves)."""
        if node.id in group.booting:
            node.used += gpus
        else:
            buckets = group.ready_by_free
            del buckets[node.gpus - node.used][node.id]
            node.used += gpus
            buckets[node.gpus - node.used][node.id] = node
        group.free_total -= gpus
        if gpus > 0:
            node.replicas += 1
            node.empty_since = None
        else:
            node.replicas -= 1
            if not node.replicas:
                self._now_empty(node, now)

    def _best_fit(self, group: _Group, size: int) -> _Node | None:
        """The ready node with the least free GPUs that holds `size`; else the booting one ready first."""
        buckets = group.ready_by_free
        for free in range(size, len(buckets)):
            bucket = buckets[free]
            if bucket:
                return next(iter(bucket.values()))
        booting = None
        for node in group.booting.values():
            if node.gpus - node.used >= size and (booting is None or (node.ready_at, node.id) < (booting.ready_at,
                                                                                                   booting.id)):
                booting = node
        return booting

    def _scale_down_nodes(self, now: float) -> None:
        """Remove nodes empty for the unneeded time, unless the pool's minSize or warm headroom needs them."""
        heap = self.unneeded_heap
        while heap and heap[0][0] <= now:
            _, _, since, node = heapq.heappop(heap)
            group = node.group
            if node.removed or node.empty_since != since:
                continue  # it took a replica since; a later entry covers its next empty spell
            if not self._try_remove(group, node):
                group.blocked[node.id] = node
                self.blocked_groups[(group.pool, group.dedicated_tenant)] = group
        for key, group in list(self.blocked_groups.items()):
            for node in list(group.blocked.values()):
                if node.removed or node.empty_since is None or self._try_remove(group, node):
                    del group.blocked[node.id]
            if not group.blocked:
                del self.blocked_groups[key]

    def _try_remove(self, group: _Group, node: _Node) -> bool:
        if self.pool_nodes[group.pool] <= self.pools[group.pool].min_size:
            return False
        if group.dedicated_tenant is None and self.headroom[group.pool]:
            k = self.pod_gpus[group.pool]
            if (self._slots(group, k) - node.free // k) * k < self.headroom[group.pool]:
                return False
        self._remove_node(group, node)
        return True

    @staticmethod
    def _slots(group: _Group, k: int) -> int:
        """Placeholders of k GPUs the group's nodes (ready or booting) have room for."""
        if k == 1:
            return group.free_total
        slots = sum(len(bucket) * (free // k) for free, bucket in enumerate(group.ready_by_free) if free >= k)
        return slots + sum((node.gpus - node.used) // k for node in group.booting.values())

    def _keep_headroom(self, pool: str, now: float) -> int:
        """Launch nodes until the pool's shared nodes have room for its placeholders; the GPUs they hold."""
        want, k = self.headroom[pool], self.pod_gpus[pool]
        group = self._group_of(pool, None)
        slots, pods = self._slots(group, k), want // k
        while slots < pods:
            node = self._launch(group, k, (pods - slots) * k, now, ready=now == 0.0)
            if node is None:
                break
            slots += node.gpus // k
        return min(want, slots * k)

    # -- replicas

    def _place(self, r: _Replica, now: float, expected: int) -> bool:
        i = r.endpoint
        group = self.group_of[i]
        size = self.gpus[i]
        node = self._best_fit(group, size) or self._launch(group, size, expected, now)
        if node is None:
            return False
        # Waited for a node: the node was not ready when the replica was wanted, or the pool was at maxSize.
        waited_for_node = node.ready_at > r.wanted_at or now > r.wanted_at
        self._take(group, node, size, now)
        if self.audit is not None:
            self._audit(i, node, group, size, now)
        engine = self.engine[i]
        if engine in node.images:
            start = self.start_cached[i]
        else:
            node.images.add(engine)
            start = self.start_cold[i]
        r.node = node
        ready_at = r.ready_at = (now if now > node.ready_at else node.ready_at) + start
        t = r.placed_step = self.step_index
        r.type_index = node.type_index
        self.placed_changes.append(i * self.columns + t)
        self.wait_endpoint.append(i)
        self.wait_seconds.append(ready_at - r.wanted_at)
        self.wait_for_node.append(waited_for_node)
        if ready_at <= now:
            self._serve(r)
        else:
            self.start[i].append(r)
            heapq.heappush(self.replica_heap, (ready_at, r.serial, r))
        return True

    def _audit(self, i: int, node: _Node, group: _Group, gpus: int, now: float) -> None:
        assert self.audit is not None
        e = self.endpoints[i]
        self.audit(Placement(now, e.name, e.demand.tenant, node.id, node.gpus, group.dedicated_tenant, gpus))

    def _serve(self, r: _Replica) -> None:
        r.serving = True
        self.serve[r.endpoint].append(r)
        self.serving_changes.append(r.endpoint * self.columns + self.step_index)

    def _unplace(self, r: _Replica, now: float) -> None:
        r.alive = False
        node = r.node
        if node is None:
            return
        i = r.endpoint
        size = self.gpus[i]
        self._take(self.group_of[i], node, -size, now)
        if self.audit is not None:
            self._audit(i, node, self.group_of[i], -size, now)
        self.held_steps[i][r.type_index] += size * (self.step_index - r.placed_step)
        self.placed_changes.append(-(i * self.columns + self.step_index) - 1)
        if r.serving:
            self.serving_changes.append(-(i * self.columns + self.step_index) - 1)

    def _scale_down(self, i: int, count: int, now: float) -> None:
        """Remove `count` replicas: pending ones first, then the starting one ready last, then a serving one
        on the least used node (among equals, the one serving longest)."""
        pend, start, serve = self.pend[i], self.start[i], self.serve[i]
        for _ in range(count):
            if pend:
                r = pend.pop(0)
            elif start:
                r = max(start, key=_ready_at)
                start.remove(r)
            else:
                r = min(serve, key=_NODE_USED)  # the first of equals: the one serving longest
                serve.remove(r)
            self._unplace(r, now)

    def run(self) -> _Run:
        traffic, step = self.traffic, self.traffic.step_seconds
        n, steps = len(self.endpoints), traffic.steps
        work = np.zeros((n, steps))
        desired = np.zeros((n, steps), dtype=np.int32)
        for i, e in enumerate(self.endpoints):
            work[i] = work_in_replicas(e, traffic)
            desired[i] = desired_replicas(work[i], e.policy, step)
        self.group_of = [self._group(e) for e in self.endpoints]
        self.gpus = [e.demand.gpus_per_replica for e in self.endpoints]
        self.engine = [e.engine for e in self.endpoints]
        self.start_cold = [self.cold.replica_start_seconds(e.weight_bytes, False) for e in self.endpoints]
        self.start_cached = [self.cold.replica_start_seconds(e.weight_bytes, True) for e in self.endpoints]
        self.held_steps = [[0] * len(self.types) for _ in range(n)]
        # Changes per endpoint and step; their cumulative sums are the placed and serving replicas.
        # As flat cells i * columns + t of an (endpoint, step) matrix: +1 as the cell, -1 as -cell - 1.
        self.columns = steps + 1
        self.placed_changes = array("q")
        self.serving_changes = array("q")
        # Each endpoint's replicas: pending (no node), starting, serving.
        self.pend: list[list[_Replica]] = [[] for _ in range(n)]
        self.start: list[list[_Replica]] = [[] for _ in range(n)]
        self.serve: list[list[_Replica]] = [[] for _ in range(n)]
        pending: list[_Replica] = []
        headroom_pools = [name for name in self.pools if self.headroom[name]]
        headroom_steps = dict.fromkeys(self.pools, 0)
        serial = 0

        # Floors: minSize nodes, ready from the start.
        for name, pool in self.pools.items():
            if pool.min_size:
                group = self._group_of(name, None)
                for _ in range(pool.min_size):
                    self._launch(group, 1, 1, 0.0, ready=True)
        # The window opens on a running fleet: the first step's replicas serve, on ready nodes.
        for i in range(n):
            group, size = self.group_of[i], self.gpus[i]
            first = int(desired[i, 0]) if steps else 0
            for _ in range(first):
                r = _Replica(i, 0.0, 0)
                node = self._best_fit(group, size)
                if node is None:
                    node = self._launch(group, size, size * first, 0.0, ready=True)
                    if node is None:
                        pending.append(r)
                        self.pend[i].append(r)
                        continue
                self._take(group, node, size, 0.0)
                if self.audit is not None:
                    self._audit(i, node, group, size, 0.0)
                node.images.add(self.engine[i])
                r.node, r.ready_at, r.type_index = node, 0.0, node.type_index
                self.placed_changes.append(i * self.columns)
                self._serve(r)
        for name in headroom_pools:
            self._keep_headroom(name, 0.0)

        # KEDA's changes, in step order: (step, endpoint, replicas wanted).
        if steps > 1:
            change_t, change_i = np.nonzero((desired[:, 1:] != desired[:, :-1]).T)
            change_t = change_t + 1
        else:
            change_t = change_i = np.zeros(0, dtype=np.int64)
        change_want = desired[change_i, change_t].tolist()
        bounds = np.searchsorted(change_t, np.arange(steps + 1)).tolist()
        change_i_list = change_i.tolist()
        current = desired[:, 0].tolist() if steps else [0] * n
        gpus = self.gpus
        replica_heap = self.replica_heap

        for t in range(steps):
            self.step_index = t
            now = float(t * step)
            if self.node_heap and self.node_heap[0][0] <= now:
                self._node_ready(now)
            while replica_heap and replica_heap[0][0] <= now:
                r = heapq.heappop(replica_heap)[2]
                if r.alive and not r.serving:
                    self.start[r.endpoint].remove(r)
                    self._serve(r)
            for k in range(bounds[t], bounds[t + 1]):
                i, want = change_i_list[k], change_want[k]
                have = current[i]
                if want > have:
                    expected = (want - have) * gpus[i]
                    for _ in range(want - have):
                        serial += 1
                        r = _Replica(i, now, serial)
                        if not self._place(r, now, expected):
                            pending.append(r)
                            self.pend[i].append(r)
                else:
                    self._scale_down(i, have - want, now)
                current[i] = want
            if pending:
                # Replicas pending since the pool was at maxSize retry.
                still = []
                for r in pending:
                    if r.alive and r.node is None:
                        if self._place(r, now, gpus[r.endpoint]):
                            self.pend[r.endpoint].remove(r)
                        else:
                            still.append(r)
                pending = still
            if self.blocked_groups or (self.unneeded_heap and self.unneeded_heap[0][0] <= now):
                self._scale_down_nodes(now)
            for name in headroom_pools:
                headroom_steps[name] += self._keep_headroom(name, now)
            if self.touched:
                for name in self.touched:
                    if self.pool_nodes[name] > self.peak_nodes[name]:
                        self.peak_nodes[name] = self.pool_nodes[name]
                self.touched.clear()

        # Close what is still running at the window's end.
        self.step_index = steps
        for node in self.nodes.values():
            pool_name = node.group.pool
            self.node_steps[self.pool_row[pool_name]][node.type_index] += steps - node.launched_step
        for i in range(n):
            for r in self.start[i] + self.serve[i]:
                if r.node is not None:
                    self.held_steps[i][r.type_index] += gpus[i] * (steps - r.placed_step)
        placed = _cumulative(self.placed_changes, n, self.columns)[:, :steps]
        serving = _cumulative(self.serving_changes, n, self.columns)[:, :steps]
        del self.placed_changes, self.serving_changes
        self._finish(work, placed, serving, headroom_steps)
        return self

    # -- results

    def _waits(self) -> tuple[dict[str, Waits], dict[str, Waits], Waits]:
        ep = np.asarray(self.wait_endpoint, dtype=np.int64)
        secs = np.asarray(self.wait_seconds, dtype=np.float64)
        for_node = np.asarray(self.wait_for_node, dtype=np.int64)
        pool_of = np.array([self.pool_row[e.demand.pool] for e in self.endpoints], dtype=np.int64)
        by_endpoint = _grouped(ep, len(self.endpoints), secs, for_node)
        by_pool = _grouped(pool_of[ep] if len(ep) else ep, len(self.pool_names), secs, for_node)
        return ({e.name: by_endpoint[i] for i, e in enumerate(self.endpoints)},
                {name: by_pool[p] for p, name in enumerate(self.pool_names)}, Waits.of(secs, int(for_node.sum())))

    def _finish(self, work: np.ndarray, placed: np.ndarray, serving: np.ndarray, headroom_steps: dict) -> None:
        step = self.traffic.step_seconds
        served = np.minimum(work, serving)
        unserved = (work - served).sum(axis=1) * step
        gpus = np.array(self.gpus, dtype=np.int64)
        mins = np.array([e.demand.min_replicas for e in self.endpoints], dtype=np.int64)
        need = np.maximum(np.ceil(np.maximum(served - 1e-9, 0)).astype(np.int64), mins[:, None])
        del served
        self.waits, pool_waits, self.all_waits = self._waits()
        per_gpu = [t.on_demand_hourly / t.gpus for t in self.types]
        self.attributed: dict[str, Decimal] = {}
        self.endpoint_stats: dict[str, dict] = {}
        pool_attr: dict[str, Decimal] = defaultdict(Decimal)
        pool_held: dict[str, int] = defaultdict(int)
        for i, e in enumerate(self.endpoints):
            held = self.held_steps[i]
            cost = sum((Decimal(held[k] * step) * per_gpu[k] for k in range(len(self.types)) if held[k]),
                       Decimal(0)) / 3600
            self.attributed[e.name] = cost
            pool_attr[e.demand.pool] += cost
            pool_held[e.demand.pool] += sum(held)
            self.endpoint_stats[e.name] = {
                "replica_seconds": float(placed[i].sum() * step), "peak_replicas": int(placed[i].max(initial=0)),
                "gpu_seconds": float(sum(held) * step), "work_seconds": float(work[i].sum() * step),
                "unserved_seconds": float(unserved[i]),
                "peak_work": int(np.ceil(max(float(work[i].max(initial=0.0)), 0) - 1e-9)),
            }
        self.pool_cost: dict[str, Decimal] = {}
        self._pool_results: dict[str, PoolResult] = {}
        rows_of: dict[str, list[int]] = defaultdict(list)
        for i, e in enumerate(self.endpoints):
            rows_of[e.demand.pool].append(i)
        for p, name in enumerate(self.pool_names):
            rows = rows_of[name]
            lower = (_lower_bound(need[rows], gpus[rows], self.pool_types[name]) * step / 3600 if self.bounds
                     else Decimal(0))
            steps_by_type = self.node_steps[p]
            cost = sum((Decimal(steps_by_type[k] * step) * self.types[k].on_demand_hourly
                        for k in range(len(self.types)) if steps_by_type[k]), Decimal(0)) / 3600
            self.pool_cost[name] = cost
            gpu_seconds = float(sum(steps_by_type[k] * self.types[k].gpus for k in range(len(self.types))) * step)
            cheapest = min(t.on_demand_hourly / t.gpus for t in self.pool_types[name])
            headroom_cost = Decimal(headroom_steps[name] * step) * cheapest / 3600
            self._pool_results[name] = PoolResult(
                name=name, warm_headroom_gpus=self.headroom[name],
                node_hours_by_type={self.types[k].name: steps_by_type[k] * step / 3600
                                    for k in range(len(self.types)) if steps_by_type[k]},
                gpu_hours=gpu_seconds / 3600, gpu_hours_held=pool_held[name] * step / 3600,
                cost=cost.quantize(CENT), attributed_cost=pool_attr[name].quantize(CENT),
                overhead_cost=(cost - pool_attr[name]).quantize(CENT), headroom_cost=headroom_cost.quantize(CENT),
                lower_bound_cost=lower.quantize(CENT), peak_nodes=self.peak_nodes[name],
                cold_start_waits=pool_waits[name],
            )

    def pool_result(self, name: str) -> PoolResult:
        return self._pool_results[name]


def _lower_bound(need: np.ndarray, gpus: np.ndarray, types: Sequence[GpuInstanceType]) -> Decimal:
    """Sum over steps of the cheapest node set of `types` holding `need[i, t]` replicas of `gpus[i]` GPUs.

    Per step the bound is the largest of these, each below any placement's cost: for every replica size s,
    the cheapest whole nodes of at least s GPUs whose GPUs cover the replicas of at least s GPUs (an
    unbounded covering knapsack); and the cheapest fractional nodes, layer by layer, the GPUs of replicas
    of size s at the lowest per-GPU price of the types that hold size s. Packing across nodes, tenancy and
    timing are ignored, so no placement beats it.
    """
    if not need.size:
        return Decimal(0)
    sizes = sorted({int(g) for g in gpus}, reverse=True)
    per_size = np.stack([need[gpus == s].sum(axis=0) for s in sizes])  # replicas of each size, per step
    columns, counts = np.unique(per_size, axis=1, return_counts=True)
    eligible = [[t for t in types if t.gpus >= s] for s in sizes]
    per_gpu = [min(t.on_demand_hourly / t.gpus for t in ts) for ts in eligible]
    covers: list[list[Decimal]] = [[Decimal(0)] for _ in sizes]

    def cover(k: int, g: int) -> Decimal:
        table = covers[k]
        while len(table) <= g:
            need_g = len(table)
            table.append(min(t.on_demand_hourly + table[max(0, need_g - t.gpus)] for t in eligible[k]))
        return table[g]

    total = Decimal(0)
    for column, count in zip(columns.T.tolist(), counts.tolist(), strict=True):
        layer_gpus = [s * c for s, c in zip(sizes, column, strict=True)]
        fractional = sum((g * p for g, p in zip(layer_gpus, per_gpu, strict=True)), Decimal(0))
        best, above = fractional, 0
        for k in range(len(sizes)):
            above += layer_gpus[k]
            if above:
                best = max(best, cover(k, above))
        total += best * count
    return total


_NODE_USED = attrgetter("node.used")


def _ready_at(r: _Replica) -> float:
    return r.ready_at


def _cumulative(changes: array, rows: int, columns: int) -> np.ndarray:
    """The running sum along each row of the +1/-1 changes recorded as flat cells (see `_Run.run`)."""
    cells = np.frombuffer(changes, dtype=np.int64) if len(changes) else np.zeros(0, dtype=np.int64)
    up, down = cells[cells >= 0], -cells[cells < 0] - 1
    delta = (np.bincount(up, minlength=rows * columns) - np.bincount(down, minlength=rows * columns))
    return np.cumsum(delta.reshape(rows, columns).astype(np.int32), axis=1, dtype=np.int32)


def _grouped(keys: np.ndarray, groups: int, seconds: np.ndarray, for_node: np.ndarray) -> list[Waits]:
    """Waits per group of placements, `keys` naming each placement's group (0 to groups - 1)."""
    order = np.argsort(keys, kind="stable")
    cuts = np.searchsorted(keys[order], np.arange(groups + 1))
    out = []
    for g in range(groups):
        idx = order[cuts[g]:cuts[g + 1]]
        out.append(Waits.of(seconds[idx], int(for_node[idx].sum())))
    return out
