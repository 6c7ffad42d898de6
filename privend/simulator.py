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
replicas not yet serving first, then the one on the least used node.

Cluster Autoscaler. A replica that fits nowhere makes the autoscaler launch a
node (within the pool's maxSize) of the type with the lowest price per GPU it
is expected to fill, ready `node_ready_seconds` later. A node with no replica
for `scale_down_unneeded_seconds` (the autoscaler's default 10 minutes) goes,
unless the pool's minSize or its warm headroom needs it. Nodes holding some
replicas are never drained (the autoscaler could consolidate them; not doing
so errs on the dear side).

Warm headroom. Placeholder pods of a negative PriorityClass hold N GPUs per
pool. A replica preempts them at once, so it waits only for its own start; the
placeholders, pending again, make the autoscaler launch a node: the pool keeps
N free GPUs on its shared nodes (ready or booting).

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
step, the cheapest set of the pool's node types whose GPUs hold the replicas
the served work needs at 100 % utilisation (and every endpoint's minimum),
summed over steps; packing and tenancy are ignored, so no placement beats it.
"""

from __future__ import annotations

import heapq
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal

import numpy as np

from privend.autoscaling import ScalingPolicy, scaling_policy
from privend.capacity import Demand, PoolSpec
from privend.catalog import GpuCatalog, GpuInstanceType, gpu_catalog
from privend.errors import InputError
from privend.traffic import Traffic

CENT = Decimal("0.01")


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
    def of(cls, waits: Sequence[float], for_node: int) -> Waits:
        if not waits:
            return cls(0, 0, 0.0, 0.0, 0.0)
        a = np.asarray(waits)
        return cls(len(waits), for_node, float(np.percentile(a, 50)), float(np.percentile(a, 95)), float(a.max()))

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

    def to_dict(self) -> dict:
        return {
            "name": self.name, "warm_headroom_gpus": self.warm_headroom_gpus,
            "node_hours_by_type": {k: round(v, 3) for k, v in self.node_hours_by_type.items()},
            "gpu_hours": round(self.gpu_hours, 3), "gpu_hours_held": round(self.gpu_hours_held, 3),
            "gpu_hours_idle": round(self.gpu_hours - self.gpu_hours_held, 3),
            "cost": str(self.cost), "attributed_cost": str(self.attributed_cost),
            "overhead_cost": str(self.overhead_cost), "warm_headroom_cost": str(self.headroom_cost),
            "lower_bound_cost": str(self.lower_bound_cost), "peak_nodes": self.peak_nodes,
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
                           "attributed_cost": str(sum((p.attributed_cost for p in self.pools), Decimal(0))),
                           "overhead_cost": str(sum((p.overhead_cost for p in self.pools), Decimal(0))),
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
    if not waits.count:
        return "100.0"
    return str((Decimal(waits.count - waits.waited_for_node) / waits.count * 100).quantize(Decimal("0.1")))


# ---------------------------------------------------------------------------
# The engine


@dataclass
class _Node:
    id: int
    type: GpuInstanceType
    type_index: int
    ready_at: float
    launched_at: float
    dedicated_tenant: str | None
    used: int = 0
    replicas: int = 0
    empty_since: float | None = None
    images: set[str] = field(default_factory=set)

    @property
    def free(self) -> int:
        return self.type.gpus - self.used


@dataclass(eq=False)
class _Replica:
    node: _Node | None
    ready_at: float  # inf while pending (no node)
    wanted_at: float
    serial: int = 0


@dataclass
class _Group:
    """Nodes that may hold one another's replicas: a pool's shared tier, or one dedicated tenant."""

    pool: str
    dedicated_tenant: str | None
    nodes: dict[int, _Node] = field(default_factory=dict)
    # Nodes by free GPUs (index 0 to 8), for best fit without a scan; and those holding no replica.
    by_free: list[dict[int, _Node]] = field(default_factory=lambda: [{} for _ in range(9)])
    empty: dict[int, _Node] = field(default_factory=dict)
    free_total: int = 0

    def add(self, node: _Node) -> None:
        self.nodes[node.id] = node
        self.by_free[node.free][node.id] = node
        self.free_total += node.free
        if not node.replicas:
            self.empty[node.id] = node

    def remove(self, node: _Node) -> None:
        del self.nodes[node.id]
        del self.by_free[node.free][node.id]
        self.free_total -= node.free
        self.empty.pop(node.id, None)

    def take(self, node: _Node, gpus: int, now: float) -> None:
        """A replica of `gpus` GPUs arrives on `node` (negative: one leaves)."""
        del self.by_free[node.free][node.id]
        node.used += gpus
        node.replicas += 1 if gpus > 0 else -1
        self.by_free[node.free][node.id] = node
        self.free_total -= gpus
        if node.replicas:
            node.empty_since = None
            self.empty.pop(node.id, None)
        else:
            node.empty_since = now
            self.empty[node.id] = node


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


class _WaitLog:
    def __init__(self) -> None:
        self.waits: list[float] = []
        self.for_node = 0

    def add(self, wait: float, for_node: bool) -> None:
        self.waits.append(wait)
        self.for_node += for_node

    def result(self) -> Waits:
        return Waits.of(self.waits, self.for_node)


def simulate(endpoints: Sequence[SimEndpoint], pools: Mapping[str, PoolSpec], traffic: Traffic,
             headroom: Mapping[str, int] | None = None, *, cold_start: ColdStartModel | None = None,
             catalog: GpuCatalog | None = None) -> SimulationResult:
    """Pooled run, both baselines and the lower bound over `traffic`'s window."""
    catalog = catalog or gpu_catalog()
    cold_start = cold_start or ColdStartModel()
    headroom = dict(headroom or {})
    for e in endpoints:
        if e.demand.pool not in pools:
            raise InputError(f"endpoint {e.name!r}: pool {e.demand.pool!r} is not configured")
        if e.name not in traffic.context_tokens:
            raise InputError(f"endpoint {e.name!r} has no traffic in the window")
    pooled = _Run(endpoints, pools, traffic, headroom, cold_start, catalog).run()
    dedicated_endpoints, dedicated_pools = _dedicated_fleet(endpoints, pools, catalog)
    autoscaled = _Run(dedicated_endpoints, dedicated_pools, traffic, {}, cold_start, catalog).run()
    hours = Decimal(traffic.steps * traffic.step_seconds) / 3600
    results = []
    for e in endpoints:
        stats = pooled.endpoint_stats[e.name]
        ded_type = _cheapest_holding_one(e, pools[e.demand.pool], catalog)
        per_instance = ded_type.gpus // e.demand.gpus_per_replica
        peak = max(1, e.demand.min_replicas, stats["peak_work"])
        at_peak = (math.ceil(peak / per_instance) * ded_type.on_demand_hourly * hours).quantize(CENT)
        results.append(EndpointResult(
            name=e.name, tenant=e.demand.tenant, pool=e.demand.pool,
            replica_prefill_tokens_per_second=e.prefill_tokens_per_second,
            replica_decode_tokens_per_second=e.decode_tokens_per_second,
            replica_hours=stats["replica_seconds"] / 3600, peak_replicas=stats["peak_replicas"],
            gpu_hours=stats["gpu_seconds"] / 3600, attributed_cost=pooled.attributed[e.name].quantize(CENT),
            cold_start_waits=pooled.waits[e.name].result(),
            work_replica_hours=stats["work_seconds"] / 3600, unserved_replica_hours=stats["unserved_seconds"] / 3600,
            dedicated_at_peak_cost=at_peak,
            dedicated_autoscaled_cost=autoscaled.pool_cost[_dedicated_pool_name(e)].quantize(CENT),
        ))
    pool_results = tuple(pooled.pool_result(name) for name in pools)
    return SimulationResult(traffic.start.isoformat(), traffic.end.isoformat(), traffic.step_seconds,
                            catalog.prices_read_on, tuple(results), pool_results, pooled.all_waits.result(),
                            autoscaled.all_waits.result())


def _dedicated_pool_name(e: SimEndpoint) -> str:
    return f"dedicated/{e.name}"


def _cheapest_holding_one(e: SimEndpoint, pool: PoolSpec, catalog: GpuCatalog) -> GpuInstanceType:
    gpu_model = catalog.get(pool.instance_types[0]).gpu_model
    candidates = [t for t in catalog.instances.values()
                  if t.gpu_model == gpu_model and t.gpus >= e.demand.gpus_per_replica]
    if not candidates:
        raise InputError(f"endpoint {e.name!r}: no {gpu_model} instance type holds {e.demand.gpus_per_replica} GPUs")
    return min(candidates, key=lambda t: (t.on_demand_hourly, -t.gpus, t.name))


def _dedicated_fleet(endpoints: Sequence[SimEndpoint], pools: Mapping[str, PoolSpec],
                     catalog: GpuCatalog) -> tuple[list[SimEndpoint], dict[str, PoolSpec]]:
    out, out_pools = [], {}
    for e in endpoints:
        name = _dedicated_pool_name(e)
        type_ = _cheapest_holding_one(e, pools[e.demand.pool], catalog)
        out_pools[name] = PoolSpec(name, (type_.name,), "on-demand", 0, max(1, e.demand.max_replicas))
        out.append(replace(e, demand=replace(e.demand, pool=name, tenant=e.name, tier="dedicated")))
    return out, out_pools


class _Run:
    """One simulation of a fleet on its pools (the pooled run, or the dedicated-autoscaled one)."""

    def __init__(self, endpoints: Sequence[SimEndpoint], pools: Mapping[str, PoolSpec], traffic: Traffic,
                 headroom: Mapping[str, int], cold_start: ColdStartModel, catalog: GpuCatalog) -> None:
        self.endpoints = list(endpoints)
        self.pools = dict(pools)
        self.traffic = traffic
        self.headroom = {name: headroom.get(name, 0) for name in pools}
        self.cold = cold_start
        self.catalog = catalog
        self.types: list[GpuInstanceType] = sorted({catalog.get(t) for p in pools.values() for t in p.instance_types},
                                                   key=lambda t: t.name)
        self.type_index = {t.name: i for i, t in enumerate(self.types)}
        self.groups: dict[tuple[str, str | None], _Group] = {}
        self.pool_groups: dict[str, list[_Group]] = {}
        self.pool_nodes: dict[str, int] = defaultdict(int)
        self.next_node = 0
        self.waits = {e.name: _WaitLog() for e in endpoints}
        self.all_waits = _WaitLog()

    # -- nodes

    def _group(self, e: SimEndpoint) -> _Group:
        tenant = e.demand.tenant if e.demand.tier == "dedicated" else None
        key = (e.demand.pool, tenant)
        if key not in self.groups:
            self._new_group(e.demand.pool, tenant)
        return self.groups[key]

    def _new_group(self, pool: str, tenant: str | None) -> _Group:
        group = self.groups[(pool, tenant)] = _Group(pool, tenant)
        self.pool_groups.setdefault(pool, []).append(group)
        return group

    def _launch(self, group: _Group, size: int, expected: int, now: float, ready: bool = False) -> _Node | None:
        pool = self.pools[group.pool]
        if self.pool_nodes[group.pool] >= pool.max_size:
            return None
        types = [self.catalog.get(t) for t in pool.instance_types]
        type_ = min((t for t in types if t.gpus >= size),
                    key=lambda t: (t.on_demand_hourly / min(t.gpus, max(expected, size)), -t.gpus, t.name),
                    default=None)
        if type_ is None:
            return None
        ready_at = now if ready else now + self.cold.node_ready_seconds(type_)
        node = _Node(self.next_node, type_, self.type_index[type_.name], ready_at, now, group.dedicated_tenant)
        node.empty_since = now
        self.next_node += 1
        group.add(node)
        self.pool_nodes[group.pool] += 1
        self.node_counts[self.type_index[type_.name]] += 1
        self.pool_type_counts[self.pool_row[group.pool], self.type_index[type_.name]] += 1
        return node

    def _remove_node(self, group: _Group, node: _Node) -> None:
        group.remove(node)
        self.pool_nodes[group.pool] -= 1
        self.node_counts[node.type_index] -= 1
        self.pool_type_counts[self.pool_row[group.pool], node.type_index] -= 1

    def _best_fit(self, group: _Group, size: int, now: float) -> _Node | None:
        booting = None
        for free in range(size, len(group.by_free)):
            for node in group.by_free[free].values():
                if node.ready_at <= now:
                    return node
                if booting is None or (node.ready_at, node.id) < (booting.ready_at, booting.id):
                    booting = node
        return booting

    # -- replicas

    def _place(self, i: int, replica: _Replica, now: float, expected: int) -> bool:
        e = self.endpoints[i]
        group = self.group_of[i]
        size = e.demand.gpus_per_replica
        node = self._best_fit(group, size, now)
        if node is None:
            node = self._launch(group, size, expected, now)
            if node is None:
                return False
        waited_for_node = node.ready_at > replica.wanted_at
        group.take(node, size, now)
        cached = e.engine in node.images
        node.images.add(e.engine)
        start = max(now, node.ready_at)
        replica.node = node
        replica.ready_at = start + self.cold.replica_start_seconds(e.weight_bytes, cached)
        self.held[i, node.type_index] += size
        wait = replica.ready_at - replica.wanted_at
        self.waits[e.name].add(wait, waited_for_node)
        self.all_waits.add(wait, waited_for_node)
        heapq.heappush(self.ready_events, (replica.ready_at, i, replica.serial))
        return True

    def _unplace(self, i: int, replica: _Replica, now: float) -> None:
        node = replica.node
        if node is None:
            return
        size = self.endpoints[i].demand.gpus_per_replica
        self.group_of[i].take(node, -size, now)
        self.held[i, node.type_index] -= size
        if replica.ready_at <= now:
            self.serving[i] -= 1

    def run(self) -> _Run:
        traffic, step = self.traffic, self.traffic.step_seconds
        n, steps = len(self.endpoints), traffic.steps
        work = np.zeros((n, steps))
        desired = np.zeros((n, steps), dtype=np.int64)
        for i, e in enumerate(self.endpoints):
            work[i] = work_in_replicas(e, traffic)
            desired[i] = desired_replicas(work[i], e.policy, step)
        self.group_of = [self._group(e) for e in self.endpoints]
        self.held = np.zeros((n, len(self.types)), dtype=np.int64)
        self.node_counts = np.zeros(len(self.types), dtype=np.int64)
        self.pool_row = {name: p for p, name in enumerate(self.pools)}
        self.pool_type_counts = np.zeros((len(self.pools), len(self.types)), dtype=np.int64)
        headroom_pools = [name for name in self.pools if self.headroom[name]]
        headroom_want = np.array([self.headroom[name] for name in headroom_pools], dtype=np.int64)
        held_seconds = np.zeros((n, len(self.types)))
        node_seconds_matrix = np.zeros((len(self.pools), len(self.types)), dtype=np.int64)
        headroom_seconds = np.zeros(len(headroom_pools))
        self.serving = np.zeros(n, dtype=np.int64)
        self.ready_events: list[tuple[float, int, int]] = []
        replicas: list[list[_Replica]] = [[] for _ in range(n)]
        live: dict[int, _Replica] = {}
        pending: list[tuple[int, _Replica]] = []
        peak_node_counts = np.zeros(len(self.pools), dtype=np.int64)
        pool_of = [e.demand.pool for e in self.endpoints]
        pool_names = list(self.pools)
        pool_idx = np.array([pool_names.index(p) for p in pool_of], dtype=np.int64)
        gpus = np.array([e.demand.gpus_per_replica for e in self.endpoints], dtype=np.int64)
        mins = np.array([e.demand.min_replicas for e in self.endpoints], dtype=np.int64)
        served_need = np.zeros((len(pool_names), steps), dtype=np.int64)
        served = np.zeros(n)
        unserved = np.zeros(n)
        replica_seconds = np.zeros(n)
        peak_replicas = np.zeros(n, dtype=np.int64)
        current = np.zeros(n, dtype=np.int64)
        serial = 0

        # Floors: minSize nodes, ready from the start.
        for name, pool in self.pools.items():
            if pool.min_size:
                group = self.groups.get((name, None)) or self._new_group(name, None)
                for _ in range(pool.min_size):
                    self._launch(group, 1, 1, 0.0, ready=True)
        # The window opens on a running fleet: the first step's replicas serve, on ready nodes.
        for i in range(n):
            for _ in range(int(desired[i, 0])):
                r = _Replica(None, math.inf, -math.inf)
                group = self.group_of[i]
                size = gpus[i]
                node = self._best_fit(group, size, 0.0) or self._launch(group, size, size * desired[i, 0], 0.0,
                                                                        ready=True)
                if node is None:
                    pending.append((i, r))
                    replicas[i].append(r)
                    continue
                group.take(node, size, 0.0)
                node.images.add(self.endpoints[i].engine)
                r.node, r.ready_at = node, 0.0
                self.held[i, node.type_index] += size
                self.serving[i] += 1
                replicas[i].append(r)
            current[i] = desired[i, 0]
        for name in self.pools:
            self._keep_headroom(name, 0.0)

        for t in range(steps):
            now = float(t * step)
            # Replicas that finished starting.
            while self.ready_events and self.ready_events[0][0] <= now:
                _, i, rid = heapq.heappop(self.ready_events)
                if rid in live:
                    self.serving[i] += 1
                    del live[rid]
            # KEDA's changes.
            changed = np.nonzero(desired[:, t] != current)[0]
            for i in changed.tolist():
                want, have = int(desired[i, t]), int(current[i])
                if want > have:
                    for _ in range(want - have):
                        serial += 1
                        r = _Replica(None, math.inf, now, serial)
                        replicas[i].append(r)
                        if self._place(i, r, now, (want - have) * int(gpus[i])):
                            if r.ready_at > now:
                                live[r.serial] = r
                            else:
                                self.serving[i] += 1
                        else:
                            pending.append((i, r))
                else:
                    self._scale_down(i, replicas[i], have - want, now, live, pending)
                current[i] = want
            # Pending replicas retry (the pool was at maxSize).
            if pending:
                still = []
                for i, r in pending:
                    if r in replicas[i] and r.node is None:
                        if self._place(i, r, now, int(gpus[i])):
                            live[r.serial] = r
                        else:
                            still.append((i, r))
                pending = still
            for name in headroom_pools:
                self._keep_headroom(name, now)
            for group in [g for g in self.groups.values() if g.empty]:
                self._scale_down_group(group, now)
            # Accounting for this step.
            held_seconds += self.held * step
            node_seconds_matrix += self.pool_type_counts * step
            np.maximum(peak_node_counts, self.pool_type_counts.sum(axis=1), out=peak_node_counts)
            if headroom_pools:
                free = np.array([self._free(name) for name in headroom_pools])
                headroom_seconds += np.minimum(headroom_want, free) * step
            w = work[:, t]
            s = np.minimum(w, self.serving)
            served += s * step
            unserved += (w - s) * step
            placed = self.held.sum(axis=1) // gpus
            replica_seconds += placed * step
            peak_replicas = np.maximum(peak_replicas, placed)
            need = np.maximum(np.ceil(np.maximum(s - 1e-9, 0)).astype(np.int64), mins) * gpus
            served_need[:, t] = np.bincount(pool_idx, need, minlength=len(pool_names)).astype(np.int64)

        node_seconds = {name: node_seconds_matrix[p] for p, name in enumerate(self.pools)}
        headroom_gpu_seconds = dict.fromkeys(self.pools, 0.0)
        headroom_gpu_seconds.update(zip(headroom_pools, headroom_seconds.tolist(), strict=True))
        peak_nodes = {name: int(peak_node_counts[p]) for p, name in enumerate(self.pools)}
        self._finish(held_seconds, node_seconds, headroom_gpu_seconds, served_need, peak_nodes, work, served,
                     unserved, replica_seconds, peak_replicas, desired)
        return self

    def _free(self, pool: str) -> int:
        group = self.groups.get((pool, None))
        return group.free_total if group else 0

    def _keep_headroom(self, pool: str, now: float) -> None:
        want = self.headroom[pool]
        if not want:
            return
        group = self.groups.get((pool, None)) or self._new_group(pool, None)
        free = self._free(pool)
        while free < want:
            node = self._launch(group, 1, want - free, now, ready=now == 0.0)
            if node is None:
                return
            free += node.free

    def _scale_down(self, i: int, reps: list[_Replica], count: int, now: float, live: dict, pending: list) -> None:
        # Pending first, then starting (latest first), then serving on the least used node.
        def rank(r: _Replica) -> tuple:
            if r.node is None:
                return (0, 0.0, 0)
            if r.ready_at > now:
                return (1, -r.ready_at, 0)
            return (2, float(r.node.used), r.node.id)

        for r in sorted(reps, key=rank)[:count]:
            reps.remove(r)
            live.pop(r.serial, None)
            self._unplace(i, r, now)

    def _scale_down_group(self, group: _Group, now: float) -> None:
        """Remove the group's nodes that have held no replica for the unneeded time (minSize and headroom permitting)."""
        spec = self.pools[group.pool]
        for node in list(group.empty.values()):
            if node.empty_since is None or node.ready_at > now:
                continue
            if now - node.empty_since < self.cold.scale_down_unneeded_seconds:
                continue
            if self.pool_nodes[group.pool] <= spec.min_size:
                return
            if group.dedicated_tenant is None and self._free(group.pool) - node.free < self.headroom[group.pool]:
                continue
            self._remove_node(group, node)

    def _finish(self, held_seconds, node_seconds, headroom_gpu_seconds, served_need, peak_nodes, work, served,
                unserved, replica_seconds, peak_replicas, desired) -> None:
        per_gpu = [t.on_demand_hourly / t.gpus for t in self.types]
        self.attributed: dict[str, Decimal] = {}
        self.endpoint_stats: dict[str, dict] = {}
        pool_attr: dict[str, Decimal] = defaultdict(Decimal)
        for i, e in enumerate(self.endpoints):
            cost = sum((Decimal(int(round(held_seconds[i, k]))) * per_gpu[k] for k in range(len(self.types))
                        if held_seconds[i, k]), Decimal(0)) / 3600
            self.attributed[e.name] = cost
            pool_attr[e.demand.pool] += cost
            self.endpoint_stats[e.name] = {
                "replica_seconds": float(replica_seconds[i]), "peak_replicas": int(peak_replicas[i]),
                "gpu_seconds": float(held_seconds[i].sum()), "work_seconds": float(work[i].sum() * self.traffic.step_seconds),
                "unserved_seconds": float(unserved[i]),
                "peak_work": int(np.ceil(max(float(work[i].max()) if work.shape[1] else 0.0, 0) - 1e-9)),
            }
        self.pool_cost: dict[str, Decimal] = {}
        self._pool_results: dict[str, PoolResult] = {}
        lower = self._lower_bounds(served_need)
        for p, name in enumerate(self.pools):
            secs = node_seconds[name]
            cost = sum((Decimal(int(round(secs[k]))) * self.types[k].on_demand_hourly for k in range(len(self.types))
                        if secs[k]), Decimal(0)) / 3600
            self.pool_cost[name] = cost
            gpu_seconds = float(sum(secs[k] * self.types[k].gpus for k in range(len(self.types))))
            held = float(sum(held_seconds[i].sum() for i, e in enumerate(self.endpoints) if e.demand.pool == name))
            cheapest = min((self.catalog.get(t).on_demand_hourly / self.catalog.get(t).gpus
                            for t in self.pools[name].instance_types))
            headroom_cost = Decimal(int(round(headroom_gpu_seconds[name]))) * cheapest / 3600
            self._pool_results[name] = PoolResult(
                name=name, warm_headroom_gpus=self.headroom[name],
                node_hours_by_type={self.types[k].name: secs[k] / 3600 for k in range(len(self.types)) if secs[k]},
                gpu_hours=gpu_seconds / 3600, gpu_hours_held=held / 3600, cost=cost.quantize(CENT),
                attributed_cost=pool_attr[name].quantize(CENT), overhead_cost=(cost - pool_attr[name]).quantize(CENT),
                headroom_cost=headroom_cost.quantize(CENT), lower_bound_cost=lower[p].quantize(CENT),
                peak_nodes=peak_nodes[name],
            )

    def _lower_bounds(self, served_need: np.ndarray) -> list[Decimal]:
        step = self.traffic.step_seconds
        out = []
        for p, name in enumerate(self.pools):
            types = [self.catalog.get(t) for t in self.pools[name].instance_types]
            need = served_need[p]
            top = int(need.max()) if len(need) else 0
            # cheapest[g]: least hourly price of nodes with at least g GPUs in all (unbounded covering knapsack).
            cheapest = [Decimal(0)] + [Decimal("Infinity")] * top
            for g in range(1, top + 1):
                cheapest[g] = min(t.on_demand_hourly + cheapest[max(0, g - t.gpus)] for t in types)
            values, counts = np.unique(need, return_counts=True)
            total = sum((cheapest[int(v)] * int(c) for v, c in zip(values, counts, strict=True)), Decimal(0))
            out.append(total * step / 3600)
        return out

    def pool_result(self, name: str) -> PoolResult:
        return self._pool_results[name]
