"""Capacity planner: how many GPU nodes each pool needs, and the placement that proves it.

Pure Python (no Pulumi, no AWS). Input: the endpoints' demands and the pools'
specs; output, per pool and for both minimum and maximum scale, a placement of
every replica on a node and GPU slots, with a lower bound that no placement can
beat, so the gap between the plan and the best possible is known, not guessed.

Placement rules
- GPUs are never shared: a replica gets whole GPUs, so no GPU ever serves two
  tenants. A replica's GPUs sit on one node.
- Nodes of a pool hold replicas of several tenants ("shared" tier), except that
  a tenant's "dedicated"-tier endpoints get nodes of their own: such a node holds
  that tenant's dedicated replicas only. Each dedicated tenant is therefore a
  separate packing problem ("group"), and so is the shared tier of each pool.
- A pool with several instance types may mix them; the planner minimises the
  pool's hourly (on-demand list) price first, then the node count.

Algorithm (per group)
Best-fit decreasing: replicas sorted by GPUs per replica, largest first, each
into the open node with the least free GPUs that still fits it, else into a new
node of the type with the lowest price per GPU it is expected to fill. Replica
sizes are almost always powers of two (tensor parallelism: 1, 2, 4, 8 GPUs) and
node sizes 1, 4 or 8. With such divisible sizes the free space of every open
node is a multiple of the replica being placed, so a new node is only opened
when every open node is full: the single-type result is ceil(GPUs / node GPUs)
nodes, which is optimal (Coffman, Garey and Johnson's result on divisible item
sizes). Two passes follow for other sizes and for mixed types: every node is
re-typed to the cheapest type that holds its replicas, then partly used nodes
are merged onto one node where that is no dearer (two 3-GPU replicas and a
2-GPU one fill one 8-GPU node, where best fit put them on three 4-GPU nodes). Against brute
force on thousands of random pools and fleets of up to ten replicas, sizes 1 to
8, the result was always the cheapest, then the fewest nodes. (A pass that
empties a node into others' free GPUs finds nothing after best fit: a node's
first replica fitted nowhere when it was opened, and free space only shrinks.)

Lower bounds (per group, summed over groups: groups never share nodes)
- Nodes: Martello and Toth's L2 for capacity C (the largest node type), which
  is at least ceil(GPUs / C) and at least the number of replicas larger than
  C/2 (no two of them fit one node), and adds the small replicas that cannot
  fit the room those large ones leave; or, if higher, sum(f(size)) / C for a
  dual feasible function f (any f with sum(f) <= C over what fits one node).
- Price, the higher of two:
  (a) the cheapest integer mix of node counts per GPU capacity level that
      gives, for every level, the GPU volume and the node count that the
      replicas too large for all smaller levels need;
  (b) sum over replicas of weight(size), weight(s) being the least, over the
      capacities c that fit s, of price(c) x f_c(s) / c for one dual feasible
      function f_c per capacity (best choice searched): the weights on any node
      add up to at most its price. This one sees that two 3-GPU replicas never
      share a 4-GPU node, where GPU volume does not.
  Every valid placement satisfies both. With a single instance type, (a) is
  the node bound x price, so the price gap equals the node-count gap.
Checked against brute force as above: never above the true optimum.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from functools import cache
from itertools import combinations_with_replacement, product
from typing import Literal

from privend.catalog import GpuCatalog, GpuInstanceType, gpu_catalog
from privend.errors import InputError

Tier = Literal["shared", "dedicated"]
CapacityType = Literal["on-demand", "spot"]
Scale = Literal["min", "max"]

TIERS = ("shared", "dedicated")
CAPACITY_TYPES = ("on-demand", "spot")
SCALES: tuple[Scale, ...] = ("min", "max")


# ---------------------------------------------------------------------------
# Inputs


@dataclass(frozen=True)
class Demand:
    """What one endpoint asks of its pool."""

    endpoint: str
    tenant: str
    pool: str
    gpus_per_replica: int
    min_replicas: int
    max_replicas: int
    tier: Tier = "shared"

    def __post_init__(self) -> None:
        if not self.endpoint or not self.tenant or not self.pool:
            raise InputError(f"demand {self!r}: endpoint, tenant and pool must be non-empty")
        if self.tier not in TIERS:
            raise InputError(f"endpoint {self.endpoint!r}: tier {self.tier!r} is not one of {', '.join(TIERS)}")
        if self.gpus_per_replica < 1:
            raise InputError(
                f"endpoint {self.endpoint!r}: gpus_per_replica must be at least 1, got {self.gpus_per_replica}"
            )
        if self.min_replicas < 0 or self.max_replicas < max(1, self.min_replicas):
            raise InputError(
                f"endpoint {self.endpoint!r}: replicas must satisfy 0 <= min <= max and max >= 1, "
                f"got min {self.min_replicas}, max {self.max_replicas}"
            )

    def replicas(self, scale: Scale) -> int:
        return self.min_replicas if scale == "min" else self.max_replicas

    def to_dict(self) -> dict:
        return {
            "endpoint": self.endpoint,
            "tenant": self.tenant,
            "pool": self.pool,
            "gpus_per_replica": self.gpus_per_replica,
            "min_replicas": self.min_replicas,
            "max_replicas": self.max_replicas,
            "tier": self.tier,
        }


@dataclass(frozen=True)
class PoolSpec:
    """A GPU pool as configured: one managed node group."""

    name: str
    instance_types: tuple[str, ...]
    capacity_type: CapacityType = "on-demand"
    min_size: int = 0
    max_size: int = 1

    def __post_init__(self) -> None:
        # Accept any iterable (a list from YAML) but keep the spec hashable.
        object.__setattr__(self, "instance_types", tuple(self.instance_types))
        if not self.instance_types:
            raise InputError(f"pool {self.name!r}: instance_types is empty")
        if len(set(self.instance_types)) != len(self.instance_types):
            raise InputError(f"pool {self.name!r}: instance_types lists a type twice: {', '.join(self.instance_types)}")
        if self.capacity_type not in CAPACITY_TYPES:
            raise InputError(
                f"pool {self.name!r}: capacity_type {self.capacity_type!r} is not one of {', '.join(CAPACITY_TYPES)}"
            )
        if self.min_size < 0 or self.max_size < self.min_size:
            raise InputError(
                f"pool {self.name!r}: sizes must satisfy 0 <= min_size <= max_size, "
                f"got min_size {self.min_size}, max_size {self.max_size}"
            )

    @classmethod
    def from_gpu_pool(cls, pool) -> PoolSpec:
        """From a stack file's pool (`privend.config.GpuPool`), which has these same fields."""
        return cls(pool.name, tuple(pool.instance_types), pool.capacity_type, pool.min_size, pool.max_size)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "instance_types": list(self.instance_types),
            "capacity_type": self.capacity_type,
            "min_size": self.min_size,
            "max_size": self.max_size,
        }


# ---------------------------------------------------------------------------
# Outputs


@dataclass(frozen=True)
class ReplicaSlot:
    """One replica on a node, with the node's GPU indices it holds."""

    endpoint: str
    tenant: str
    replica: int
    gpu_indices: tuple[int, ...]

    def to_dict(self) -> dict:
        return {
            "endpoint": self.endpoint,
            "tenant": self.tenant,
            "replica": self.replica,
            "gpu_indices": list(self.gpu_indices),
        }


@dataclass(frozen=True)
class NodePlacement:
    """One node: its instance type and which replica holds each GPU."""

    index: int
    instance_type: str
    gpus: int
    on_demand_hourly: Decimal
    dedicated_tenant: str | None
    replicas: tuple[ReplicaSlot, ...]

    @property
    def used_gpus(self) -> int:
        return sum(len(r.gpu_indices) for r in self.replicas)

    @property
    def free_gpus(self) -> int:
        return self.gpus - self.used_gpus

    def slots(self) -> tuple[ReplicaSlot | None, ...]:
        """Per GPU index, the replica on it (None for an idle GPU)."""
        by_gpu: list[ReplicaSlot | None] = [None] * self.gpus
        for replica in self.replicas:
            for gpu in replica.gpu_indices:
                by_gpu[gpu] = replica
        return tuple(by_gpu)

    def to_dict(self) -> dict:
        return {
            "index": self.index,
            "instance_type": self.instance_type,
            "gpus": self.gpus,
            "on_demand_hourly": str(self.on_demand_hourly),
            "dedicated_tenant": self.dedicated_tenant,
            "gpu_slots": [
                {"gpu": gpu, "endpoint": slot.endpoint, "replica": slot.replica, "tenant": slot.tenant}
                if slot is not None
                else {"gpu": gpu, "endpoint": None, "replica": None, "tenant": None}
                for gpu, slot in enumerate(self.slots())
            ],
        }


@dataclass(frozen=True)
class ScalePlan:
    """The nodes one pool needs at one scale (all endpoints at min, or all at max, replicas).

    `lower_bound` is a node count no valid placement goes below; `cost_lower_bound`
    an hourly on-demand price no valid placement goes below. `gap` is measured on
    what the planner minimises, the price: (price - bound) / bound. With a single
    instance type that is exactly (nodes - lower_bound) / lower_bound. With mixed
    types the cheapest placement may use more, smaller nodes than `lower_bound`,
    which only bounds the count.
    """

    scale: Scale
    nodes: tuple[NodePlacement, ...]
    lower_bound: int
    cost_lower_bound: Decimal

    @property
    def node_count(self) -> int:
        return len(self.nodes)

    @property
    def allocated_gpus(self) -> int:
        return sum(n.used_gpus for n in self.nodes)

    @property
    def total_gpus(self) -> int:
        return sum(n.gpus for n in self.nodes)

    @property
    def gpu_utilisation(self) -> Fraction:
        return Fraction(self.allocated_gpus, self.total_gpus) if self.total_gpus else Fraction(0)

    @property
    def on_demand_hourly(self) -> Decimal:
        return sum((n.on_demand_hourly for n in self.nodes), Decimal(0))

    @property
    def gap(self) -> Fraction:
        if not self.cost_lower_bound:
            return Fraction(0)
        return (Fraction(self.on_demand_hourly) - Fraction(self.cost_lower_bound)) / Fraction(self.cost_lower_bound)

    def nodes_by_type(self) -> dict[str, int]:
        return dict(sorted(Counter(n.instance_type for n in self.nodes).items()))

    def to_dict(self) -> dict:
        return {
            "scale": self.scale,
            "node_count": self.node_count,
            "nodes_by_type": self.nodes_by_type(),
            "lower_bound": self.lower_bound,
            "on_demand_hourly": str(self.on_demand_hourly),
            "cost_lower_bound_hourly": str(self.cost_lower_bound),
            "gap": _ratio(self.gap),
            "allocated_gpus": self.allocated_gpus,
            "total_gpus": self.total_gpus,
            "gpu_utilisation": _ratio(self.gpu_utilisation),
            "nodes": [n.to_dict() for n in self.nodes],
        }


@dataclass(frozen=True)
class PoolPlan:
    pool: PoolSpec
    min: ScalePlan
    max: ScalePlan

    def scale(self, scale: Scale) -> ScalePlan:
        return self.min if scale == "min" else self.max

    @property
    def floor_nodes(self) -> int:
        """Nodes the pool's min_size keeps running beyond what minimum scale needs."""
        return max(0, self.pool.min_size - self.min.node_count)

    def to_dict(self) -> dict:
        return {
            "pool": self.pool.to_dict(),
            "floor_nodes": self.floor_nodes,
            "min": self.min.to_dict(),
            "max": self.max.to_dict(),
        }


@dataclass(frozen=True)
class ReplicaPlacement:
    """Where one replica of an endpoint runs, for `placements_for`."""

    endpoint: str
    replica: int
    pool: str
    scale: Scale
    node_index: int
    instance_type: str
    gpu_indices: tuple[int, ...]

    def to_dict(self) -> dict:
        return {
            "endpoint": self.endpoint,
            "replica": self.replica,
            "pool": self.pool,
            "scale": self.scale,
            "node_index": self.node_index,
            "instance_type": self.instance_type,
            "gpu_indices": list(self.gpu_indices),
        }


@dataclass(frozen=True)
class CapacityPlan:
    demands: tuple[Demand, ...]
    pools: Mapping[str, PoolPlan]
    prices_read_on: str

    def placements_for(self, endpoint: str) -> dict[Scale, tuple[ReplicaPlacement, ...]]:
        """Where each replica of `endpoint` runs at minimum and at maximum scale."""
        demand = self.demand(endpoint)
        result: dict[Scale, tuple[ReplicaPlacement, ...]] = {}
        for scale in SCALES:
            found = [
                ReplicaPlacement(endpoint, r.replica, demand.pool, scale, node.index, node.instance_type, r.gpu_indices)
                for node in self.pools[demand.pool].scale(scale).nodes
                for r in node.replicas
                if r.endpoint == endpoint
            ]
            result[scale] = tuple(sorted(found, key=lambda p: p.replica))
        return result

    def demand(self, endpoint: str) -> Demand:
        for demand in self.demands:
            if demand.endpoint == endpoint:
                return demand
        raise InputError(f"endpoint {endpoint!r} is not in this capacity plan")

    def to_dict(self) -> dict:
        return {
            "prices_read_on": self.prices_read_on,
            "demands": [d.to_dict() for d in self.demands],
            "pools": {name: plan.to_dict() for name, plan in self.pools.items()},
        }


@dataclass(frozen=True)
class PoolFit:
    """Whether a plan fits a pool's max_size; falsy with a one-line reason when not."""

    pool: str
    nodes_needed: int
    max_size: int
    message: str

    def __bool__(self) -> bool:
        return self.nodes_needed <= self.max_size


def fits_within_pool(plan: CapacityPlan, pool: str, *, endpoint: str | None = None) -> PoolFit:
    """Check that the pool's maximum-scale plan fits within its max_size.

    Pass `endpoint` when the plan includes an endpoint being created, so the
    message names it: "endpoint 'x' needs 3 nodes (3x g6.12xlarge) in pool 'l4' at
    max scale; pool 'l4' allows at most 2 (max_size)".
    """
    if pool not in plan.pools:
        raise InputError(f"pool {pool!r} is not in this capacity plan (pools: {', '.join(plan.pools)})")
    pool_plan = plan.pools[pool]
    needed = pool_plan.max.node_count
    limit = pool_plan.pool.max_size
    by_type = ", ".join(f"{count}x {name}" for name, count in pool_plan.max.nodes_by_type().items())
    subject = f"endpoint {endpoint!r} needs" if endpoint else "the plan needs"
    if needed <= limit:
        message = f"pool {pool!r} needs {needed} of at most {limit} nodes at max scale"
    else:
        message = (
            f"{subject} {needed} nodes ({by_type}) in pool {pool!r} at max scale; "
            f"pool {pool!r} allows at most {limit} (max_size)"
        )
    return PoolFit(pool=pool, nodes_needed=needed, max_size=limit, message=message)


# ---------------------------------------------------------------------------
# Planning


def plan_capacity(
    demands: Iterable[Demand],
    pools: Mapping[str, PoolSpec],
    catalog: GpuCatalog | None = None,
) -> CapacityPlan:
    """Plan every pool at minimum and maximum scale. Deterministic for equal inputs."""
    catalog = catalog or gpu_catalog()
    demands = tuple(sorted(demands, key=lambda d: d.endpoint))
    _check_inputs(demands, pools, catalog)

    by_pool: dict[str, list[Demand]] = defaultdict(list)
    for demand in demands:
        by_pool[demand.pool].append(demand)

    plans = {}
    for name in sorted(pools):
        spec = pools[name]
        types = _node_types(spec, catalog)
        bounds = _BoundTables.for_types(types)
        pool_demands = by_pool.get(name, [])
        plans[name] = PoolPlan(
            pool=spec,
            min=_plan_scale("min", pool_demands, types, bounds),
            max=_plan_scale("max", pool_demands, types, bounds),
        )
    return CapacityPlan(demands=demands, pools=plans, prices_read_on=catalog.prices_read_on)


def _check_inputs(demands: tuple[Demand, ...], pools: Mapping[str, PoolSpec], catalog: GpuCatalog) -> None:
    for key, spec in pools.items():
        if key != spec.name:
            raise InputError(f"pool {key!r} is configured with the name {spec.name!r}")
    seen: set[str] = set()
    for demand in demands:
        if demand.endpoint in seen:
            raise InputError(f"endpoint {demand.endpoint!r} appears twice in the demands")
        seen.add(demand.endpoint)
        if demand.pool not in pools:
            raise InputError(
                f"endpoint {demand.endpoint!r} asks for pool {demand.pool!r}, which is not configured "
                f"(pools: {', '.join(sorted(pools)) or 'none'})"
            )
        largest = max((catalog.get(t) for t in pools[demand.pool].instance_types), key=lambda t: t.gpus)
        if demand.gpus_per_replica > largest.gpus:
            raise InputError(
                f"endpoint {demand.endpoint!r} needs {demand.gpus_per_replica} GPUs per replica, but the largest "
                f"node type in pool {demand.pool!r} ({largest.name}) has {largest.gpus}; a replica cannot span nodes"
            )


@dataclass(frozen=True)
class _NodeType:
    name: str
    gpus: int
    price: Decimal
    # Price as an integer number of nano-dollars, so comparisons stay exact and fast.
    price_units: int


_PRICE_SCALE = 10**9


def _node_types(spec: PoolSpec, catalog: GpuCatalog) -> list[_NodeType]:
    result = []
    for name in spec.instance_types:
        it: GpuInstanceType = catalog.get(name)
        units = it.on_demand_hourly * _PRICE_SCALE
        if units != units.to_integral_value():
            raise InputError(f"instance type {name!r}: price {it.on_demand_hourly} has more than 9 decimal places")
        result.append(_NodeType(name, it.gpus, it.on_demand_hourly, int(units)))
    return result


# A replica to place: (gpus, replica index, endpoint, tenant).
_Item = tuple[int, int, str, str]


def _plan_scale(scale: Scale, demands: list[Demand], types: list[_NodeType], bounds: _BoundTables) -> ScalePlan:
    groups: dict[str | None, list[_Item]] = {None: []}  # None: the shared tier
    for demand in demands:
        key = demand.tenant if demand.tier == "dedicated" else None
        items = groups.setdefault(key, [])
        items.extend(
            (demand.gpus_per_replica, replica, demand.endpoint, demand.tenant)
            for replica in range(demand.replicas(scale))
        )

    nodes: list[NodePlacement] = []
    lower_bound = 0
    cost_bound_units = 0
    ordered = [None] + sorted(k for k in groups if k is not None)
    for key in ordered:
        items = groups[key]
        if not items:
            continue
        sizes = Counter(item[0] for item in items)
        group_nodes, group_cost = bounds.group_bounds(sizes)
        lower_bound += group_nodes
        cost_bound_units += group_cost
        for type_, node_items in _pack_group(items, types):
            nodes.append(_placement(len(nodes), type_, key, node_items))
    cost_bound = Decimal(cost_bound_units) / _PRICE_SCALE
    return ScalePlan(scale=scale, nodes=tuple(nodes), lower_bound=lower_bound, cost_lower_bound=cost_bound)


def _placement(index: int, type_: _NodeType, dedicated_tenant: str | None, items: list[_Item]) -> NodePlacement:
    replicas = []
    gpu = 0
    # Largest first, then by name, so GPU indices read the same on every run.
    for size, replica, endpoint, tenant in sorted(items, key=lambda i: (-i[0], i[2], i[1])):
        replicas.append(ReplicaSlot(endpoint, tenant, replica, tuple(range(gpu, gpu + size))))
        gpu += size
    return NodePlacement(index, type_.name, type_.gpus, type_.price, dedicated_tenant, tuple(replicas))


class _OpenNode:
    __slots__ = ("type", "free", "items", "alive")

    def __init__(self, type_: _NodeType, items: list[_Item], free: int) -> None:
        self.type = type_
        self.items = items
        self.free = free
        self.alive = True


class _FreeIndex:
    """Open nodes by free GPU count, for best fit in O(largest node) per replica.

    Buckets are dicts used as insertion-ordered sets: O(1) add and remove, and a
    deterministic choice within a bucket.
    """

    def __init__(self, max_free: int) -> None:
        self.buckets: list[dict[int, None]] = [{} for _ in range(max_free + 1)]
        self.total_free = 0

    def add(self, node_id: int, free: int) -> None:
        self.total_free += free
        if free:
            self.buckets[free][node_id] = None

    def remove(self, node_id: int, free: int) -> None:
        self.total_free -= free
        if free:
            del self.buckets[free][node_id]

    def best_fit(self, size: int) -> int | None:
        for free in range(size, len(self.buckets)):
            bucket = self.buckets[free]
            if bucket:
                return next(iter(bucket))
        return None


def _pack_group(items: list[_Item], types: list[_NodeType]) -> list[tuple[_NodeType, list[_Item]]]:
    """Best-fit decreasing into mixed node types, then re-type and merge nodes where cheaper."""
    # Decreasing size; within a size, replica index before endpoint, so replica 0
    # of every endpoint is placed before any replica 1. Free of cost, that
    # spreads an endpoint's replicas over several nodes.
    items = sorted(items, key=lambda i: (-i[0], i[1], i[2]))
    max_gpus = max(t.gpus for t in types)
    index = _FreeIndex(max_gpus)
    nodes: list[_OpenNode] = []
    remaining = sum(item[0] for item in items)
    # The choice depends only on (size, expected fill up to the largest node): memoise it.
    choices: dict[tuple[int, int], _NodeType] = {}

    for item in items:
        size = item[0]
        remaining -= size
        node_id = index.best_fit(size)
        if node_id is not None:
            node = nodes[node_id]
            index.remove(node_id, node.free)
            node.items.append(item)
            node.free -= size
            index.add(node_id, node.free)
            continue
        # The replicas still to come that open nodes cannot absorb are what the
        # new node can expect to hold besides this one.
        expected = min(max_gpus, size + max(0, remaining - index.total_free))
        type_ = choices.get((size, expected))
        if type_ is None:
            type_ = choices[size, expected] = _cheapest_per_gpu(types, size, expected)
        nodes.append(_OpenNode(type_, [item], type_.gpus - size))
        index.add(len(nodes) - 1, nodes[-1].free)

    for node in nodes:
        _retype(node, _cheapest_holding(types, node.type.gpus - node.free))
    _merge_nodes(nodes, types)
    return [(node.type, node.items) for node in nodes if node.alive]


def _cheapest_per_gpu(types: list[_NodeType], size: int, expected: int) -> _NodeType:
    """The type with the lowest price per GPU it will likely fill; ties go to larger nodes (fewer of them)."""
    return min(
        (t for t in types if t.gpus >= size),
        key=lambda t: (Fraction(t.price_units, min(t.gpus, expected)), -t.gpus, t.price_units, t.name),
    )


def _cheapest_holding(types: list[_NodeType], used: int) -> _NodeType:
    return min((t for t in types if t.gpus >= used), key=lambda t: (t.price_units, -t.gpus, t.name))


def _retype(node: _OpenNode, type_: _NodeType) -> None:
    node.free = type_.gpus - (node.type.gpus - node.free)
    node.type = type_


# Merging more than four partly used nodes into one never pays with the
# catalog's shapes (1, 4 and 8 GPUs) and would only widen the search.
_MERGE_WIDTH = 4


def _merge_nodes(nodes: list[_OpenNode], types: list[_NodeType]) -> None:
    """Replace several partly used nodes by one node of a type that holds them all, where no dearer.

    Best fit cannot see that two 3-GPU replicas and a 2-GPU one fill one 8-GPU
    node, rather than three 4-GPU nodes. Partly used nodes are grouped by
    (GPUs used, type); merges are searched over those groups, not single nodes,
    so the search stays small however many nodes there are. GPUs within a node
    are interchangeable, so a merge is feasible exactly when the GPUs used fit.
    """
    max_gpus = max(t.gpus for t in types)
    while True:
        partial: dict[tuple[int, str], list[int]] = defaultdict(list)
        for node_id, node in enumerate(nodes):
            if node.alive and node.free:
                partial[(node.type.gpus - node.free, node.type.name)].append(node_id)
        keys = sorted(partial)
        best: tuple | None = None
        for width in range(2, _MERGE_WIDTH + 1):
            for combo in combinations_with_replacement(range(len(keys)), width):
                used = sum(keys[k][0] for k in combo)
                if used > max_gpus or any(combo.count(k) > len(partial[keys[k]]) for k in set(combo)):
                    continue
                target = _cheapest_holding(types, used)
                saving = sum(nodes[partial[keys[k]][0]].type.price_units for k in combo) - target.price_units
                # A merge at equal price still saves nodes, the second objective.
                rank = (saving, width)
                if saving >= 0 and (best is None or rank > best[0]):
                    best = (rank, combo, target)
        if best is None:
            return
        _, combo, target = best
        needed = Counter(combo)
        # The same merge pays as often as its groups have nodes: do them all
        # before searching again, so the search runs once per kind of merge.
        while all(len(partial[keys[k]]) >= n for k, n in needed.items()):
            merged = [partial[keys[k]].pop() for k in combo]
            keep = nodes[merged[0]]
            for node_id in merged[1:]:
                keep.items.extend(nodes[node_id].items)
                nodes[node_id].alive = False
                nodes[node_id].items = []
            keep.type, keep.free = target, target.gpus - sum(item[0] for item in keep.items)


# ---------------------------------------------------------------------------
# Lower bounds


def _l2_bound(sizes: Mapping[int, int], capacity: int) -> int:
    """Martello-Toth L2 for bins of `capacity`, from counts of item sizes.

    For each k in 0..capacity/2: items larger than capacity - k each need a bin
    no other large item shares; items in (capacity/2, capacity - k] likewise,
    and the items in [k, capacity/2] that do not fit the room those leave need
    more bins. The maximum over k is a lower bound at least ceil(volume / capacity).
    """
    best = 0
    for k in range(0, capacity // 2 + 1):
        j1 = sum(n for s, n in sizes.items() if s > capacity - k)
        j2_count = sum(n for s, n in sizes.items() if capacity / 2 < s <= capacity - k)
        j2_volume = sum(s * n for s, n in sizes.items() if capacity / 2 < s <= capacity - k)
        j3_volume = sum(s * n for s, n in sizes.items() if k <= s <= capacity / 2)
        overflow = j3_volume - (j2_count * capacity - j2_volume)
        best = max(best, j1 + j2_count + max(0, -(-overflow // capacity)))
    return best


@dataclass(frozen=True)
class _BoundTables:
    """What the lower bounds of one pool need, computed once per pool.

    Per GPU capacity only the cheapest type matters to a lower bound. Dual
    feasible function values are kept as integers over a common denominator,
    so bounding a group is integer arithmetic only.
    """

    caps: tuple[int, ...]
    prices: tuple[int, ...]
    # Node bound: f(size) x node_scale, for functions f on the largest capacity.
    node_weights: tuple[tuple[int, ...], ...]
    node_scale: int
    # Price bound: weight(size) x cost_scale, one vector per choice of functions.
    cost_weights: tuple[tuple[int, ...], ...]
    cost_scale: int

    @classmethod
    def for_types(cls, types: list[_NodeType]) -> _BoundTables:
        levels: dict[int, int] = {}
        for t in types:
            levels[t.gpus] = min(levels.get(t.gpus, t.price_units), t.price_units)
        caps = tuple(sorted(levels))
        prices = tuple(levels[c] for c in caps)
        top = caps[-1]
        node_weights, node_scale = _as_integers(
            [[f[size] for size in range(top + 1)] for f in _dual_feasible_functions(top)]
        )
        cost_weights, cost_scale = _as_integers([
            [
                min(
                    (
                        Fraction(price) * f[size] / cap
                        for cap, price, f in zip(caps, prices, combo, strict=True)
                        if cap >= size
                    ),
                    default=Fraction(0),
                )
                for size in range(top + 1)
            ]
            for combo in product(*(_dual_feasible_functions(c) for c in caps))
        ])
        return cls(caps, prices, node_weights, node_scale, cost_weights, cost_scale)

    def group_bounds(self, sizes: Mapping[int, int]) -> tuple[int, int]:
        """(node lower bound, price lower bound in price units) for one group; the best of the bounds below."""
        caps = self.caps
        # Constraint j: replicas larger than every capacity below level j can only
        # use levels >= j; those levels need their GPU volume and their node count.
        volume_needed, count_needed = [], []
        for j in range(len(caps)):
            below = caps[j - 1] if j else 0
            larger = {s: n for s, n in sizes.items() if s > below}
            volume_needed.append(sum(s * n for s, n in larger.items()))
            count_needed.append(self.node_bound(larger) if larger else 0)
        cost = max(
            _cheapest_level_mix(list(caps), list(self.prices), volume_needed, count_needed),
            self.dff_cost_bound(sizes),
        )
        return count_needed[0], cost

    def node_bound(self, sizes: Mapping[int, int]) -> int:
        """Fewest nodes: L2, or a dual feasible function's total over the largest capacity, whichever is higher.

        A node of fewer GPUs holds no more than one of the largest, so both bound mixed pools too.
        """
        top = self.caps[-1]
        dff = max(sum(w[s] * n for s, n in sizes.items()) for w in self.node_weights)
        return max(_l2_bound(sizes, top), -(-dff // (top * self.node_scale)))

    def dff_cost_bound(self, sizes: Mapping[int, int]) -> int:
        """The best, over one dual feasible function per capacity level, of sum(weight(size)).

        weight(s) = min over levels c >= s of price(c) x f_c(s) / c. On any node of
        level c the weights of what it holds add up to at most price(c) x
        sum(f_c) / c <= price(c), so the weights of all replicas are at most what
        the nodes cost. Unlike the volume bound, this charges a 3-GPU replica a
        whole 4-GPU node when no two of them can share one.
        """
        best = max(sum(w[s] * n for s, n in sizes.items()) for w in self.cost_weights)
        return -(-best // self.cost_scale)


@cache
def _dual_feasible_functions(capacity: int) -> tuple[dict[int, Fraction], ...]:
    """Dual feasible functions f on sizes 1..capacity: whatever fits one node, sum(f) <= capacity.

    The identity; Martello and Toth's u(k) (sizes above capacity - k count as a
    whole node, below k as nothing); Fekete and Schepers' family (size x counts
    x when (k+1)x/capacity is whole, else floor((k+1)x/capacity) x capacity/k).
    """
    sizes = range(1, capacity + 1)
    functions = [{x: Fraction(x) for x in sizes}]
    for k in range(1, capacity // 2 + 1):
        functions.append({x: Fraction(capacity if x > capacity - k else 0 if x < k else x) for x in sizes})
    for k in range(1, capacity):
        functions.append({
            x: Fraction(x) if (k + 1) * x % capacity == 0 else Fraction((k + 1) * x // capacity * capacity, k)
            for x in sizes
        })
    return tuple(f | {0: Fraction(0)} for f in functions)


def _as_integers(vectors: list[list[Fraction]]) -> tuple[tuple[tuple[int, ...], ...], int]:
    """Scale vectors to integers over one common denominator, dropping duplicates and dominated ones."""
    scale = math.lcm(*(v.denominator for vector in vectors for v in vector))
    scaled = sorted({tuple(int(v * scale) for v in vector) for vector in vectors}, reverse=True)
    kept = [v for v in scaled if not any(u != v and all(a >= b for a, b in zip(u, v, strict=True)) for u in scaled)]
    return tuple(kept), scale


def _cheapest_level_mix(caps: list[int], prices: list[int], volume: list[int], count: list[int]) -> int:
    """min sum(prices[j] * y[j]) over integers y >= 0 such that for every j
    sum(caps[k] * y[k], k >= j) >= volume[j] and sum(y[k], k >= j) >= count[j].

    Branches on the node count of the highest level first; within a level the
    search stops once a bound on what the lower levels add proves the rest worse.
    Pool types are few (two or three GPU capacities), so this stays small.
    """

    def ceil_div(a: int, b: int) -> int:
        return -(-a // b)

    def solve(j: int, vol: list[int], cnt: list[int], best: int) -> int:
        lo = max(0, ceil_div(vol[j], caps[j]), cnt[j])
        if j == 0:
            return prices[0] * lo
        # More than enough to satisfy every remaining constraint alone is never useful.
        hi = max([lo] + [max(ceil_div(vol[k], caps[j]), cnt[k]) for k in range(j)])
        min_rate = min(Fraction(prices[k], caps[k]) for k in range(j))
        min_price = min(prices[:j])
        cap, price = caps[j], prices[j]
        # Where the bound below is monotone in y, the scan can stop at the first y it rules out.
        rising = price >= cap * min_rate and price >= min_price
        falling = price <= cap * min_rate and price <= min_price
        order = range(hi, lo - 1, -1) if falling and not rising else range(lo, hi + 1)
        for y in order:
            # What the lower levels cost at least: by the volume left, or by the node count left.
            volume_bound, count_bound = min_rate * max(0, vol[0] - cap * y), min_price * max(0, cnt[0] - y)
            rest_bound: Fraction | int = count_bound if count_bound > volume_bound else volume_bound
            if price * y + rest_bound >= best:
                if rising or falling:
                    break
                continue
            rest = solve(
                j - 1,
                [v - cap * y for v in vol[:j]],
                [c - y for c in cnt[:j]],
                best - price * y,
            )
            best = min(best, price * y + rest)
        return best

    top = len(caps) - 1
    # Any feasible mix is an upper bound to start from: top-level nodes only.
    start = prices[top] * max(max(ceil_div(v, caps[top]) for v in volume), max(count))
    return solve(top, list(volume), list(count), start + 1)


def _ratio(value: Fraction) -> float:
    """Fractions render as floats rounded to 6 places: stable text, exact enough to read."""
    return round(float(value), 6)
