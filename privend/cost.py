"""Monthly cost estimates per endpoint, per pool and per environment, next to "dedicated at peak".

Money is Decimal throughout (exact fractions until rounded to cents). Every
estimate carries the date its prices were read. The rules:

- A month is 730 hours (365 days x 24 h / 12), the convention of AWS price pages.
- Every figure is priced on-demand (the GPU catalog's list prices), so pooled and
  dedicated compare like with like. A spot pool's figures appear once more on a
  line of their own at SPOT_PRICE_FACTOR x on-demand (an assumption: spot prices
  move by type, zone and hour); spot never enters a saving.
- Compute comes from the capacity plan's placements, at minimum scale (every
  endpoint at its MIN replicas) and at maximum scale (every endpoint at MAX).
- Attribution: an endpoint pays for the GPU-hours its replicas hold, at the
  per-GPU price of the node each replica runs on (node price / node GPUs).
  Nodes of a dedicated-tier tenant are that tenant's own: their idle GPUs are
  part of its endpoints' compute, pro rata to the GPUs they hold there.
- Platform overhead, a line of each pool, never spread over endpoints: idle GPUs
  of shared nodes (fragmentation), the nodes the pool's min_size keeps beyond
  the plan (floor nodes, priced as the pool's first instance type), and the
  nodes added for the pool's warm headroom (`warmHeadroomGpus`: GPUs kept free on
  shared nodes in placeholders of `warmHeadroomPodGpus` GPUs, each on one node;
  the room idle GPUs of shared nodes and floor nodes have counts towards it, and
  only the rest is bought, as the cheapest set of the pool's types that holds it).
- Rounding: each endpoint's figure and each overhead part is rounded to cents on
  its own (half even); a pool's monthly cost is the sum of those parts.
- Network, per endpoint: its internal NLB (hourly plus an assumed NLCU usage)
  and one PrivateLink interface endpoint per AZ. The interface endpoint is billed
  to the account that creates it, usually the customer's; it is included so the
  figure is the whole cost of the private connection. Per-GB data processing and
  data transfer depend on traffic and are not included.
- Baseline, "dedicated at peak" (the name `privend capacity simulate` uses): each
  endpoint on on-demand instances of its own, of the cheapest catalog type with
  the pool's GPU model that holds one replica, enough for its peak, always on,
  plus the same network. Without traffic the peak is taken as the endpoint's
  replicas MAX; the simulator measures it from traffic instead. So the pooled
  cost at maximum scale is what pooling costs while every endpoint is at its
  peak, and the saving comes from not holding the peak all month.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction

from privend.capacity import SCALES, CapacityPlan, Demand, PoolPlan, PoolSpec, Scale, ScalePlan
from privend.catalog import GpuCatalog, GpuInstanceType, gpu_catalog
from privend.errors import InputError

HOURS_PER_MONTH = Decimal("730")

# us-east-1 list prices, checked against AWS's Elastic Load Balancing and
# PrivateLink price pages (stored copies) on NETWORK_PRICES_READ_ON.
NETWORK_PRICES_REGION = "us-east-1"
NETWORK_PRICES_READ_ON = "2026-11-26"
NLB_HOURLY = Decimal("0.0225")  # per Network Load Balancer-hour
NLB_NLCU_HOURLY = Decimal("0.006")  # per NLCU-hour
INTERFACE_ENDPOINT_HOURLY_PER_AZ = Decimal("0.01")  # per VPC endpoint-hour, per AZ

# Assumptions, stated in every estimate.
SPOT_PRICE_FACTOR = Decimal("0.60")
# One NLCU is 1 GB/h processed (or 800 new TCP flows/s, or 100,000 active):
# far above what token streams of one endpoint usually move.
DEFAULT_NLCU_PER_HOUR = Decimal("1")
DEFAULT_AVAILABILITY_ZONES = 2

BASELINE_NAME = "dedicated at peak"

CENT = Decimal("0.01")


@dataclass(frozen=True)
class EndpointCost:
    """One endpoint's monthly cost, on-demand: pooled at min and max scale, and dedicated at peak."""

    endpoint: str
    tenant: str
    pool: str
    tier: str
    capacity_type: str
    gpus_at_min: int
    gpus_at_max: int
    instance_types: dict[str, int]  # node type -> replicas on it, at minimum scale
    compute_monthly: Decimal  # at minimum scale
    compute_at_max_monthly: Decimal
    # The part of compute that is idle GPUs of a dedicated tenant's own nodes (0 for the shared tier).
    own_nodes_idle_monthly: Decimal
    own_nodes_idle_at_max_monthly: Decimal
    nlb_monthly: Decimal
    privatelink_monthly: Decimal
    baseline_instance_type: str
    baseline_instances: int
    baseline_peak_replicas: int
    baseline_compute_monthly: Decimal
    prices_read_on: str

    @property
    def network_monthly(self) -> Decimal:
        return self.nlb_monthly + self.privatelink_monthly

    @property
    def total_monthly(self) -> Decimal:
        return self.compute_monthly + self.network_monthly

    @property
    def total_at_max_monthly(self) -> Decimal:
        return self.compute_at_max_monthly + self.network_monthly

    @property
    def spot_compute_monthly(self) -> Decimal | None:
        """Compute at minimum scale on spot (SPOT_PRICE_FACTOR x on-demand); None for an on-demand pool."""
        return cents(self.compute_monthly * SPOT_PRICE_FACTOR) if self.capacity_type == "spot" else None

    @property
    def spot_total_monthly(self) -> Decimal | None:
        spot = self.spot_compute_monthly
        return None if spot is None else spot + self.network_monthly

    @property
    def baseline_total_monthly(self) -> Decimal:
        return self.baseline_compute_monthly + self.network_monthly

    @property
    def savings_monthly(self) -> Decimal:
        """Dedicated at peak less pooled at minimum scale (both on-demand; platform overhead not included)."""
        return self.baseline_total_monthly - self.total_monthly

    @property
    def savings_at_max_monthly(self) -> Decimal:
        return self.baseline_total_monthly - self.total_at_max_monthly

    def to_dict(self) -> dict:
        spot_compute, spot_total = self.spot_compute_monthly, self.spot_total_monthly
        return {
            "endpoint": self.endpoint,
            "tenant": self.tenant,
            "pool": self.pool,
            "tier": self.tier,
            "capacity_type": self.capacity_type,
            "gpus_at_min": self.gpus_at_min,
            "gpus_at_max": self.gpus_at_max,
            "instance_types": dict(self.instance_types),
            "compute_monthly": str(self.compute_monthly),
            "compute_at_max_monthly": str(self.compute_at_max_monthly),
            "own_nodes_idle_monthly": str(self.own_nodes_idle_monthly),
            "own_nodes_idle_at_max_monthly": str(self.own_nodes_idle_at_max_monthly),
            "nlb_monthly": str(self.nlb_monthly),
            "privatelink_monthly": str(self.privatelink_monthly),
            "total_monthly": str(self.total_monthly),
            "total_at_max_monthly": str(self.total_at_max_monthly),
            "spot": None if spot_compute is None else {
                "price_factor": str(SPOT_PRICE_FACTOR),
                "compute_monthly": str(spot_compute),
                "total_monthly": str(spot_total),
            },
            "baseline": {
                "name": BASELINE_NAME,
                "instance_type": self.baseline_instance_type,
                "instances": self.baseline_instances,
                "peak_replicas": self.baseline_peak_replicas,
                "compute_monthly": str(self.baseline_compute_monthly),
                "total_monthly": str(self.baseline_total_monthly),
            },
            "savings_monthly": str(self.savings_monthly),
            "savings_at_max_monthly": str(self.savings_at_max_monthly),
            "prices_read_on": self.prices_read_on,
        }


@dataclass(frozen=True)
class PoolScaleCost:
    """A pool's monthly cost at one scale, on-demand: what endpoints are attributed and the platform overhead."""

    scale: Scale
    nodes: int  # nodes of the plan's placement
    floor_nodes: int  # kept by min_size beyond those
    headroom_nodes: dict[str, int]  # added for the warm headroom: type -> count
    hourly: Decimal  # every node above, on-demand
    attributed_monthly: Decimal
    idle_gpus_monthly: Decimal  # idle GPUs of shared nodes
    floor_nodes_monthly: Decimal
    warm_headroom_monthly: Decimal

    @property
    def platform_overhead_monthly(self) -> Decimal:
        return self.idle_gpus_monthly + self.floor_nodes_monthly + self.warm_headroom_monthly

    @property
    def monthly(self) -> Decimal:
        return self.attributed_monthly + self.platform_overhead_monthly

    def to_dict(self) -> dict:
        return {
            "scale": self.scale,
            "nodes": self.nodes,
            "floor_nodes": self.floor_nodes,
            "headroom_nodes": dict(self.headroom_nodes),
            "hourly": str(self.hourly),
            "monthly": str(self.monthly),
            "attributed_monthly": str(self.attributed_monthly),
            "platform_overhead": {
                "monthly": str(self.platform_overhead_monthly),
                "idle_gpus_monthly": str(self.idle_gpus_monthly),
                "floor_nodes_monthly": str(self.floor_nodes_monthly),
                "warm_headroom_monthly": str(self.warm_headroom_monthly),
            },
        }


@dataclass(frozen=True)
class PoolCost:
    pool: str
    capacity_type: str
    warm_headroom_gpus: int
    min: PoolScaleCost
    max: PoolScaleCost

    # The minimum-scale figures, under the names the estimate has always used.
    @property
    def nodes(self) -> int:
        return self.min.nodes

    @property
    def floor_nodes(self) -> int:
        return self.min.floor_nodes

    @property
    def hourly(self) -> Decimal:
        return self.min.hourly

    @property
    def monthly(self) -> Decimal:
        return self.min.monthly

    @property
    def platform_overhead_monthly(self) -> Decimal:
        return self.min.platform_overhead_monthly

    @property
    def unattributed_monthly(self) -> Decimal:
        """What no endpoint pays at minimum scale: the platform overhead."""
        return self.min.platform_overhead_monthly

    @property
    def spot_monthly(self) -> Decimal | None:
        """The minimum-scale cost on spot (SPOT_PRICE_FACTOR x on-demand); None for an on-demand pool."""
        return cents(self.monthly * SPOT_PRICE_FACTOR) if self.capacity_type == "spot" else None

    def to_dict(self) -> dict:
        spot = self.spot_monthly
        return {
            "pool": self.pool,
            "capacity_type": self.capacity_type,
            "warm_headroom_gpus": self.warm_headroom_gpus,
            **self.min.to_dict(),
            "unattributed_monthly": str(self.unattributed_monthly),
            "spot_monthly": None if spot is None else str(spot),
            "at_max": self.max.to_dict(),
        }


@dataclass(frozen=True)
class CostEstimate:
    region: str
    prices_read_on: str
    network_prices_read_on: str
    availability_zones: int
    nlcu_per_hour: Decimal
    endpoints: tuple[EndpointCost, ...]
    pools: tuple[PoolCost, ...]

    @property
    def assumptions(self) -> tuple[str, ...]:
        return (
            f"a month is {HOURS_PER_MONTH} hours; every figure is on-demand, spot appears only on its own line",
            "pooled compute: an endpoint pays for the GPU-hours its replicas hold, at the per-GPU price of the nodes "
            "they run on, at minimum scale (replicas MIN) and at maximum scale (replicas MAX); idle GPUs of a "
            "dedicated-tier tenant's own nodes are its endpoints' (pro rata to GPUs)",
            "platform overhead, per pool and never spread over endpoints: idle GPUs of shared nodes, floor nodes "
            "kept by minSize (priced as the pool's first instance type) and nodes added for warm headroom",
            f"spot capacity priced at {SPOT_PRICE_FACTOR * 100:.0f} % of on-demand (assumption; spot prices vary), "
            "shown on its own line and never in a saving",
            f"network per endpoint: internal NLB at ${NLB_HOURLY}/h plus {self.nlcu_per_hour} NLCU at "
            f"${NLB_NLCU_HOURLY}/h; PrivateLink interface endpoint at ${INTERFACE_ENDPOINT_HOURLY_PER_AZ}/h in "
            f"{self.availability_zones} AZs (billed to the connecting account); per-GB charges excluded",
            f"{BASELINE_NAME}: each endpoint on on-demand instances of its own, of the cheapest catalog type with "
            "the pool's GPU model that holds a replica, enough for its peak, always on, plus the same network; "
            "without traffic the peak is taken as the endpoint's replicas MAX "
            "(`privend capacity simulate` measures it from traffic)",
            f"EC2 prices from the GPU catalog ({self.region}, read {self.prices_read_on}); "
            f"network prices {NETWORK_PRICES_REGION}, read {self.network_prices_read_on}",
        )

    @property
    def network_monthly(self) -> Decimal:
        return sum((e.network_monthly for e in self.endpoints), Decimal(0))

    @property
    def pooled_monthly(self) -> Decimal:
        """Every pool at minimum scale, platform overhead included, plus every endpoint's network: on-demand."""
        return sum((p.min.monthly for p in self.pools), Decimal(0)) + self.network_monthly

    @property
    def pooled_at_max_monthly(self) -> Decimal:
        return sum((p.max.monthly for p in self.pools), Decimal(0)) + self.network_monthly

    @property
    def platform_overhead_monthly(self) -> Decimal:
        return sum((p.min.platform_overhead_monthly for p in self.pools), Decimal(0))

    @property
    def platform_overhead_at_max_monthly(self) -> Decimal:
        return sum((p.max.platform_overhead_monthly for p in self.pools), Decimal(0))

    @property
    def spot_pooled_monthly(self) -> Decimal | None:
        """pooled_monthly with spot pools at SPOT_PRICE_FACTOR x on-demand; None when no pool is spot."""
        if not any(p.capacity_type == "spot" for p in self.pools):
            return None
        compute = sum((p.monthly if p.spot_monthly is None else p.spot_monthly for p in self.pools), Decimal(0))
        return compute + self.network_monthly

    @property
    def baseline_monthly(self) -> Decimal:
        """Dedicated at peak, every endpoint."""
        return sum((e.baseline_total_monthly for e in self.endpoints), Decimal(0))

    @property
    def savings_fraction(self) -> Fraction:
        """(dedicated at peak - pooled at min scale) / dedicated at peak: 0.35 means pooled costs 35 % less."""
        return _saving(self.baseline_monthly, self.pooled_monthly)

    @property
    def savings_at_max_fraction(self) -> Fraction:
        return _saving(self.baseline_monthly, self.pooled_at_max_monthly)

    def endpoint(self, name: str) -> EndpointCost:
        for cost in self.endpoints:
            if cost.endpoint == name:
                return cost
        raise KeyError(name)

    def to_dict(self) -> dict:
        spot = self.spot_pooled_monthly
        return {
            "currency": "USD",
            "region": self.region,
            "hours_per_month": int(HOURS_PER_MONTH),
            "prices_read_on": self.prices_read_on,
            "network_prices_read_on": self.network_prices_read_on,
            "spot_price_factor": str(SPOT_PRICE_FACTOR),
            "assumptions": list(self.assumptions),
            "baseline_name": BASELINE_NAME,
            "pooled_monthly": str(self.pooled_monthly),
            "pooled_at_max_monthly": str(self.pooled_at_max_monthly),
            "platform_overhead_monthly": str(self.platform_overhead_monthly),
            "platform_overhead_at_max_monthly": str(self.platform_overhead_at_max_monthly),
            "spot_pooled_monthly": None if spot is None else str(spot),
            "baseline_monthly": str(self.baseline_monthly),
            "savings_fraction": round(float(self.savings_fraction), 6),
            "savings_at_max_fraction": round(float(self.savings_at_max_fraction), 6),
            "pools": [p.to_dict() for p in self.pools],
            "endpoints": [e.to_dict() for e in self.endpoints],
        }


def estimate_costs(
    plan: CapacityPlan,
    *,
    catalog: GpuCatalog | None = None,
    availability_zones: int = DEFAULT_AVAILABILITY_ZONES,
    nlcu_per_hour: Decimal = DEFAULT_NLCU_PER_HOUR,
    warm_headroom: Mapping[str, int] | None = None,
    headroom_pod_gpus: Mapping[str, int] | None = None,
) -> CostEstimate:
    """Estimate the monthly cost of every endpoint of `plan` and of each pool, with the baseline.

    `warm_headroom` is the GPUs each pool keeps free on its shared nodes (missing pools: none), held
    by placeholder pods of `headroom_pod_gpus` GPUs each (default 1): a placeholder needs that many
    free GPUs on one node.
    """
    catalog = catalog or gpu_catalog()
    warm_headroom = warm_headroom or {}
    headroom_pod_gpus = headroom_pod_gpus or {}
    nlb_monthly = cents(nlb_hourly(nlcu_per_hour) * HOURS_PER_MONTH)
    privatelink_monthly = cents(privatelink_hourly(availability_zones) * HOURS_PER_MONTH)

    attributed: dict[Scale, dict[str, _Attributed]] = {"min": {}, "max": {}}
    types_at_min: dict[str, dict[str, int]] = {}
    pools = []
    for pool_plan in plan.pools.values():
        headroom = warm_headroom.get(pool_plan.pool.name, 0)
        scales = {}
        for scale in SCALES:
            scales[scale], shares = _pool_at(pool_plan, scale, headroom,
                                             headroom_pod_gpus.get(pool_plan.pool.name, 1), catalog)
            attributed[scale].update(shares)
        pools.append(PoolCost(pool_plan.pool.name, pool_plan.pool.capacity_type, headroom,
                              scales["min"], scales["max"]))
        types_at_min.update(_instance_types(pool_plan.min))

    endpoints = []
    nothing = _Attributed(Decimal("0.00"), Decimal("0.00"))
    for demand in plan.demands:
        pool_plan = plan.pools[demand.pool]
        baseline, instances = dedicated_at_peak(demand, pool_plan.pool, catalog)
        at_min = attributed["min"].get(demand.endpoint, nothing)
        at_max = attributed["max"].get(demand.endpoint, nothing)
        endpoints.append(
            EndpointCost(
                endpoint=demand.endpoint,
                tenant=demand.tenant,
                pool=demand.pool,
                tier=demand.tier,
                capacity_type=pool_plan.pool.capacity_type,
                gpus_at_min=demand.gpus_per_replica * demand.min_replicas,
                gpus_at_max=demand.gpus_per_replica * demand.max_replicas,
                instance_types=types_at_min.get(demand.endpoint, {}),
                compute_monthly=at_min.compute,
                compute_at_max_monthly=at_max.compute,
                own_nodes_idle_monthly=at_min.own_nodes_idle,
                own_nodes_idle_at_max_monthly=at_max.own_nodes_idle,
                nlb_monthly=nlb_monthly,
                privatelink_monthly=privatelink_monthly,
                baseline_instance_type=baseline.name,
                baseline_instances=instances,
                baseline_peak_replicas=demand.max_replicas,
                baseline_compute_monthly=cents(baseline.on_demand_hourly * instances * HOURS_PER_MONTH),
                prices_read_on=catalog.prices_read_on,
            )
        )
    return CostEstimate(
        region=catalog.region,
        prices_read_on=catalog.prices_read_on,
        network_prices_read_on=NETWORK_PRICES_READ_ON,
        availability_zones=availability_zones,
        nlcu_per_hour=nlcu_per_hour,
        endpoints=tuple(endpoints),
        pools=tuple(pools),
    )


def dedicated_instance(demand: Demand, pool: PoolSpec, catalog: GpuCatalog) -> GpuInstanceType:
    """The instance type of `demand`'s dedicated baselines: the cheapest catalog type with the pool's GPU
    model that holds one replica (among equals the larger, then by name)."""
    gpu_model = catalog.get(pool.instance_types[0]).gpu_model
    fitting = [it for it in catalog.instances.values()
               if it.gpu_model == gpu_model and it.gpus >= demand.gpus_per_replica]
    if not fitting:
        raise InputError(f"endpoint {demand.endpoint!r}: no {gpu_model} instance type holds "
                         f"{demand.gpus_per_replica} GPUs")
    return min(fitting, key=lambda it: (it.on_demand_hourly, -it.gpus, it.name))


def dedicated_at_peak(demand: Demand, pool: PoolSpec, catalog: GpuCatalog,
                      peak_replicas: int | None = None) -> tuple[GpuInstanceType, int]:
    """The instance type and count of `demand`'s dedicated-at-peak baseline: `dedicated_instance`, as many
    as hold `peak_replicas` (default: replicas MAX; several per instance where they fit)."""
    cheapest = dedicated_instance(demand, pool, catalog)
    per_instance = cheapest.gpus // demand.gpus_per_replica
    peak = demand.max_replicas if peak_replicas is None else peak_replicas
    return cheapest, math.ceil(peak / per_instance)


@dataclass(frozen=True)
class _Attributed:
    compute: Decimal
    own_nodes_idle: Decimal


def _pool_at(pool_plan: PoolPlan, scale: Scale, headroom_gpus: int, pod_gpus: int,
             catalog: GpuCatalog) -> tuple[PoolScaleCost, dict[str, _Attributed]]:
    """The pool's on-demand cost at one scale, and what each endpoint is attributed of it."""
    spec, placed = pool_plan.pool, pool_plan.scale(scale)
    held: dict[str, Fraction] = defaultdict(Fraction)  # hourly, exact
    own_idle: dict[str, Fraction] = defaultdict(Fraction)  # by dedicated tenant
    own_gpus: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))  # tenant -> endpoint -> GPUs
    shared_idle, shared_slots = Fraction(0), 0  # placeholders of pod_gpus the shared nodes have room for
    for node in placed.nodes:
        per_gpu = Fraction(node.on_demand_hourly) / node.gpus
        for replica in node.replicas:
            held[replica.endpoint] += per_gpu * len(replica.gpu_indices)
            if node.dedicated_tenant is not None:
                own_gpus[node.dedicated_tenant][replica.endpoint] += len(replica.gpu_indices)
        if node.dedicated_tenant is not None:
            own_idle[node.dedicated_tenant] += per_gpu * node.free_gpus
        else:
            shared_idle += per_gpu * node.free_gpus
            shared_slots += node.free_gpus // pod_gpus

    idle_share: dict[str, Fraction] = defaultdict(Fraction)
    for tenant, amount in own_idle.items():
        total = sum(own_gpus[tenant].values())
        for endpoint, gpus in own_gpus[tenant].items():
            idle_share[endpoint] += amount * gpus / total

    floor_type = catalog.get(spec.instance_types[0])
    floor_nodes = max(0, spec.min_size - placed.node_count)
    floor_hourly = floor_type.on_demand_hourly * floor_nodes
    # Free GPUs count towards the headroom first (on shared and floor nodes), in whole placeholders.
    shortfall = max(0, headroom_gpus // pod_gpus - shared_slots - floor_nodes * (floor_type.gpus // pod_gpus))
    headroom_nodes = _cheapest_cover([catalog.get(name) for name in spec.instance_types], shortfall, pod_gpus)
    headroom_hourly = sum((catalog.get(name).on_demand_hourly * count for name, count in headroom_nodes.items()),
                          Decimal(0))

    month = Fraction(HOURS_PER_MONTH)
    shares = {endpoint: _Attributed(cents((held[endpoint] + idle_share[endpoint]) * month),
                                    cents(idle_share[endpoint] * month))
              for endpoint in held}
    cost = PoolScaleCost(
        scale=scale,
        nodes=placed.node_count,
        floor_nodes=floor_nodes,
        headroom_nodes=headroom_nodes,
        hourly=placed.on_demand_hourly + floor_hourly + headroom_hourly,
        attributed_monthly=sum((s.compute for s in shares.values()), Decimal("0.00")),
        idle_gpus_monthly=cents(shared_idle * month),
        floor_nodes_monthly=cents(floor_hourly * HOURS_PER_MONTH),
        warm_headroom_monthly=cents(headroom_hourly * HOURS_PER_MONTH),
    )
    return cost, shares


def _cheapest_cover(types: list[GpuInstanceType], units: int, unit_gpus: int = 1) -> dict[str, int]:
    """The cheapest multiset of `types` with room for `units` placeholders of `unit_gpus` GPUs each, a
    placeholder on one node (then fewest nodes): type -> count."""
    if units <= 0:
        return {}
    room = [(t, t.gpus // unit_gpus) for t in types if t.gpus >= unit_gpus]
    # best[u]: (price, nodes, counts) of the cheapest set with room for u (unbounded covering knapsack).
    best: list[tuple[Decimal, int, tuple[str, ...]]] = [(Decimal(0), 0, ())]
    for u in range(1, units + 1):
        best.append(min(((best[max(0, u - r)][0] + t.on_demand_hourly, best[max(0, u - r)][1] + 1,
                          tuple(sorted(best[max(0, u - r)][2] + (t.name,)))) for t, r in room),
                        key=lambda option: (option[0], option[1], option[2])))
    counts: dict[str, int] = defaultdict(int)
    for name in best[units][2]:
        counts[name] += 1
    return dict(sorted(counts.items()))


def _instance_types(placed: ScalePlan) -> dict[str, dict[str, int]]:
    """Per endpoint, how many of its replicas run on each node type at this scale."""
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for node in placed.nodes:
        for replica in node.replicas:
            counts[replica.endpoint][node.instance_type] += 1
    return {endpoint: dict(sorted(types.items())) for endpoint, types in counts.items()}


def _saving(baseline: Decimal, pooled: Decimal) -> Fraction:
    if not baseline:
        return Fraction(0)
    return Fraction(baseline - pooled) / Fraction(baseline)


def cents(amount: Decimal | Fraction) -> Decimal:
    """`amount` rounded half-even to cents, once (a Fraction exactly)."""
    if isinstance(amount, Fraction):
        return Decimal(round(amount * 100)).scaleb(-2)  # Fraction rounds halves to even
    return amount.quantize(CENT, rounding=ROUND_HALF_EVEN)


def nlb_hourly(nlcu_per_hour: Decimal = DEFAULT_NLCU_PER_HOUR) -> Decimal:
    """One endpoint's internal NLB per hour: the load balancer and its NLCU-hours."""
    return NLB_HOURLY + NLB_NLCU_HOURLY * nlcu_per_hour


def privatelink_hourly(availability_zones: int = DEFAULT_AVAILABILITY_ZONES) -> Decimal:
    """One endpoint's PrivateLink interface endpoint per hour, in `availability_zones` AZs."""
    return INTERFACE_ENDPOINT_HOURLY_PER_AZ * availability_zones
