"""Monthly cost estimates per endpoint and per environment, next to a dedicated-instance baseline.

Money is Decimal throughout (shares are exact fractions until rounded to cents).
Every estimate carries the date its prices were read. The rules:

- A month is 730 hours (365 days x 24 h / 12), the convention of AWS price pages.
- Compute is attributed at minimum scale, from the capacity plan's placement:
  each endpoint pays its GPUs at the per-GPU price of the node it lands on
  (node price / node GPUs). Idle GPUs are attributed pro rata to GPUs, so the
  endpoints' shares sum to the pool's total: idle GPUs of a dedicated tenant's
  nodes to that tenant's dedicated endpoints; idle GPUs of shared nodes, and
  whole nodes that the pool's min_size keeps beyond the plan, to the pool's
  shared-tier endpoints (to all the pool's endpoints if it has no shared ones).
  Shares are rounded to cents by largest remainder, so they still add up.
- Spot pools are priced at SPOT_PRICE_FACTOR x on-demand: an assumption, since
  spot prices move by type, zone and hour.
- Network, per endpoint: its internal NLB (hourly plus an assumed NLCU usage)
  and one PrivateLink interface endpoint per AZ. The interface endpoint is billed
  to the account that creates it, usually the customer's; it is included so the
  figure is the whole cost of the private connection. Per-GB data processing and
  data transfer depend on traffic and are not included.
- Dedicated baseline, what managed endpoint products sell: per replica at
  minimum scale, one on-demand instance of the cheapest catalog type with the
  pool's GPU model and at least the replica's GPUs, plus the same network.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction

from privend.capacity import CapacityPlan, Demand, PoolPlan
from privend.catalog import GpuCatalog, GpuInstanceType, gpu_catalog

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

CENT = Decimal("0.01")


@dataclass(frozen=True)
class EndpointCost:
    endpoint: str
    tenant: str
    pool: str
    tier: str
    capacity_type: str
    gpus_at_min: int
    instance_types: dict[str, int]  # node type -> replicas on it, at minimum scale
    compute_monthly: Decimal
    nlb_monthly: Decimal
    privatelink_monthly: Decimal
    baseline_instance_type: str
    baseline_instances: int
    baseline_compute_monthly: Decimal
    prices_read_on: str

    @property
    def network_monthly(self) -> Decimal:
        return self.nlb_monthly + self.privatelink_monthly

    @property
    def total_monthly(self) -> Decimal:
        return self.compute_monthly + self.network_monthly

    @property
    def baseline_total_monthly(self) -> Decimal:
        return self.baseline_compute_monthly + self.network_monthly

    @property
    def savings_monthly(self) -> Decimal:
        return self.baseline_total_monthly - self.total_monthly

    def to_dict(self) -> dict:
        return {
            "endpoint": self.endpoint,
            "tenant": self.tenant,
            "pool": self.pool,
            "tier": self.tier,
            "capacity_type": self.capacity_type,
            "gpus_at_min": self.gpus_at_min,
            "instance_types": dict(self.instance_types),
            "compute_monthly": str(self.compute_monthly),
            "nlb_monthly": str(self.nlb_monthly),
            "privatelink_monthly": str(self.privatelink_monthly),
            "total_monthly": str(self.total_monthly),
            "baseline": {
                "instance_type": self.baseline_instance_type,
                "instances": self.baseline_instances,
                "compute_monthly": str(self.baseline_compute_monthly),
                "total_monthly": str(self.baseline_total_monthly),
            },
            "savings_monthly": str(self.savings_monthly),
            "prices_read_on": self.prices_read_on,
        }


@dataclass(frozen=True)
class PoolCost:
    pool: str
    capacity_type: str
    nodes: int
    floor_nodes: int
    hourly: Decimal
    monthly: Decimal
    # Only when no endpoint of the pool runs a replica at minimum scale.
    unattributed_monthly: Decimal

    def to_dict(self) -> dict:
        return {
            "pool": self.pool,
            "capacity_type": self.capacity_type,
            "nodes": self.nodes,
            "floor_nodes": self.floor_nodes,
            "hourly": str(self.hourly),
            "monthly": str(self.monthly),
            "unattributed_monthly": str(self.unattributed_monthly),
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
            f"a month is {HOURS_PER_MONTH} hours",
            "pooled compute at minimum scale: an endpoint's GPUs at the per-GPU price of the nodes it lands on, "
            "idle GPUs and min_size floor nodes shared pro rata to GPUs (dedicated idle within the tenant)",
            "floor nodes kept by a pool's min_size are priced as the pool's first instance type",
            f"spot capacity priced at {SPOT_PRICE_FACTOR * 100:.0f} % of on-demand (assumption; spot prices vary)",
            f"network per endpoint: internal NLB at ${NLB_HOURLY}/h plus {self.nlcu_per_hour} NLCU at "
            f"${NLB_NLCU_HOURLY}/h; PrivateLink interface endpoint at ${INTERFACE_ENDPOINT_HOURLY_PER_AZ}/h in "
            f"{self.availability_zones} AZs (billed to the connecting account); per-GB charges excluded",
            "dedicated baseline: per replica at minimum scale, one on-demand instance of the cheapest catalog type "
            "with the pool's GPU model and enough GPUs, plus the same network",
            f"EC2 prices from the GPU catalog ({self.region}, read {self.prices_read_on}); "
            f"network prices {NETWORK_PRICES_REGION}, read {self.network_prices_read_on}",
        )

    @property
    def pooled_monthly(self) -> Decimal:
        compute = sum((p.monthly for p in self.pools), Decimal(0))
        return compute + sum((e.network_monthly for e in self.endpoints), Decimal(0))

    @property
    def baseline_monthly(self) -> Decimal:
        return sum((e.baseline_total_monthly for e in self.endpoints), Decimal(0))

    @property
    def savings_fraction(self) -> Fraction:
        """(baseline - pooled) / baseline: 0.35 means pooled costs 35 % less."""
        if not self.baseline_monthly:
            return Fraction(0)
        return Fraction(self.baseline_monthly - self.pooled_monthly) / Fraction(self.baseline_monthly)

    def endpoint(self, name: str) -> EndpointCost:
        for cost in self.endpoints:
            if cost.endpoint == name:
                return cost
        raise KeyError(name)

    def to_dict(self) -> dict:
        return {
            "currency": "USD",
            "region": self.region,
            "hours_per_month": int(HOURS_PER_MONTH),
            "prices_read_on": self.prices_read_on,
            "network_prices_read_on": self.network_prices_read_on,
            "spot_price_factor": str(SPOT_PRICE_FACTOR),
            "assumptions": list(self.assumptions),
            "pooled_monthly": str(self.pooled_monthly),
            "baseline_monthly": str(self.baseline_monthly),
            "savings_fraction": round(float(self.savings_fraction), 6),
            "pools": [p.to_dict() for p in self.pools],
            "endpoints": [e.to_dict() for e in self.endpoints],
        }


def estimate_costs(
    plan: CapacityPlan,
    *,
    catalog: GpuCatalog | None = None,
    availability_zones: int = DEFAULT_AVAILABILITY_ZONES,
    nlcu_per_hour: Decimal = DEFAULT_NLCU_PER_HOUR,
) -> CostEstimate:
    """Estimate the monthly cost of every endpoint of `plan` and of each pool, with the baseline."""
    catalog = catalog or gpu_catalog()
    nlb_monthly = _cents((NLB_HOURLY + NLB_NLCU_HOURLY * nlcu_per_hour) * HOURS_PER_MONTH)
    privatelink_monthly = _cents(INTERFACE_ENDPOINT_HOURLY_PER_AZ * availability_zones * HOURS_PER_MONTH)

    compute: dict[str, Decimal] = {}
    types_at_min: dict[str, dict[str, int]] = {}
    pools = []
    for pool_plan in plan.pools.values():
        pool_cost, shares = _attribute_pool(pool_plan, catalog)
        pools.append(pool_cost)
        compute.update(shares)
        types_at_min.update(_instance_types(pool_plan))

    endpoints = []
    for demand in plan.demands:
        pool_plan = plan.pools[demand.pool]
        baseline = _baseline_type(demand, pool_plan, catalog)
        endpoints.append(
            EndpointCost(
                endpoint=demand.endpoint,
                tenant=demand.tenant,
                pool=demand.pool,
                tier=demand.tier,
                capacity_type=pool_plan.pool.capacity_type,
                gpus_at_min=demand.gpus_per_replica * demand.min_replicas,
                instance_types=types_at_min.get(demand.endpoint, {}),
                compute_monthly=compute.get(demand.endpoint, Decimal("0.00")),
                nlb_monthly=nlb_monthly,
                privatelink_monthly=privatelink_monthly,
                baseline_instance_type=baseline.name,
                baseline_instances=demand.min_replicas,
                baseline_compute_monthly=_cents(baseline.on_demand_hourly * demand.min_replicas * HOURS_PER_MONTH),
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


def _attribute_pool(pool_plan: PoolPlan, catalog: GpuCatalog) -> tuple[PoolCost, dict[str, Decimal]]:
    """The pool's minimum-scale cost, and each endpoint's monthly share of it (summing to it)."""
    spec = pool_plan.pool
    factor = SPOT_PRICE_FACTOR if spec.capacity_type == "spot" else Decimal(1)
    floor_price = catalog.get(spec.instance_types[0]).on_demand_hourly * factor

    share: dict[str, Fraction] = defaultdict(Fraction)  # hourly, exact
    idle: dict[str | None, Fraction] = defaultdict(Fraction)  # by dedicated tenant; None: shared
    gpus: dict[str | None, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    hourly = Decimal(0)
    for node in pool_plan.min.nodes:
        node_hourly = node.on_demand_hourly * factor
        hourly += node_hourly
        per_gpu = Fraction(node_hourly) / node.gpus
        for replica in node.replicas:
            share[replica.endpoint] += per_gpu * len(replica.gpu_indices)
            gpus[node.dedicated_tenant][replica.endpoint] += len(replica.gpu_indices)
        idle[node.dedicated_tenant] += per_gpu * node.free_gpus
    hourly += floor_price * pool_plan.floor_nodes
    idle[None] += Fraction(floor_price) * pool_plan.floor_nodes

    for group, amount in idle.items():
        takers = gpus.get(group)
        if not takers:
            # No shared endpoint to carry the shared idle: every endpoint in the pool does.
            takers = defaultdict(int)
            for per_group in gpus.values():
                for endpoint, count in per_group.items():
                    takers[endpoint] += count
        total = sum(takers.values())
        for endpoint, count in takers.items():
            share[endpoint] += amount * count / total

    monthly = _cents(hourly * HOURS_PER_MONTH)
    if share:
        shares = _split_cents({e: s * Fraction(HOURS_PER_MONTH) for e, s in share.items()}, monthly)
        unattributed = Decimal("0.00")
    else:
        shares, unattributed = {}, monthly
    cost = PoolCost(
        pool=spec.name,
        capacity_type=spec.capacity_type,
        nodes=pool_plan.min.node_count,
        floor_nodes=pool_plan.floor_nodes,
        hourly=hourly,
        monthly=monthly,
        unattributed_monthly=unattributed,
    )
    return cost, shares


def _split_cents(exact: dict[str, Fraction], total: Decimal) -> dict[str, Decimal]:
    """Round exact shares to cents so that they sum to `total`: largest remainders get the spare cents."""
    total_cents = int(total * 100)
    floors = {name: (value * 100).numerator // (value * 100).denominator for name, value in exact.items()}
    spare = total_cents - sum(floors.values())
    by_remainder = sorted(exact, key=lambda name: (-(exact[name] * 100 - floors[name]), name))
    for name in by_remainder[:spare]:
        floors[name] += 1
    return {name: (Decimal(cents) / 100).quantize(Decimal("0.01")) for name, cents in floors.items()}


def _baseline_type(demand: Demand, pool_plan: PoolPlan, catalog: GpuCatalog) -> GpuInstanceType:
    models = {catalog.get(name).gpu_model for name in pool_plan.pool.instance_types}
    fitting = [
        it for it in catalog.instances.values() if it.gpu_model in models and it.gpus >= demand.gpus_per_replica
    ]
    return min(fitting, key=lambda it: (it.on_demand_hourly, it.gpus, it.name))


def _instance_types(pool_plan: PoolPlan) -> dict[str, dict[str, int]]:
    """Per endpoint, how many of its replicas run on each node type at minimum scale."""
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for node in pool_plan.min.nodes:
        for replica in node.replicas:
            counts[replica.endpoint][node.instance_type] += 1
    return {endpoint: dict(sorted(types.items())) for endpoint, types in counts.items()}


def _cents(amount: Decimal) -> Decimal:
    return amount.quantize(CENT, rounding=ROUND_HALF_EVEN)
