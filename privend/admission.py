"""Admission: whether a GPU pool can hold an endpoint, new or changed, at maximum scale within its maxSize.

The planner minimises price, so with a mixed pool its cheapest placement may
use more, smaller nodes than maxSize allows while a placement on the pool's
largest type fits. A pool holds its endpoints if either does; an endpoint is
refused only when even the largest type needs more nodes than maxSize.
- A create is always checked. A change is checked only when it may ask more of
  a pool: another pool or tier, more GPUs per replica, or a higher replicas MAX.
  Any other change (MIN, token limits, image, plan, a model that needs no more
  GPUs; or fewer GPUs or a lower MAX) is never refused for capacity, even in a
  pool that is already over its maxSize.
- The check runs twice: once before anything is recorded (for the early
  refusal, the cost estimate and the quota step), and again atomically with
  the registry write (`Admission.guard`, passed as `admit=`; see
  `privend.registry.base.Registry`), so two creators that only one of them fits
  cannot both get in. The second run re-plans only if the endpoints' demands
  changed since the first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from privend.capacity import CapacityPlan, PoolFit, PoolSpec, fits_within_pool, plan_capacity
from privend.catalog import gpu_catalog
from privend.config import EnvironmentConfig
from privend.cost import CostEstimate, EndpointCost
from privend.demand import demand_of, demands_of, estimate_for, plan_for, pools_for
from privend.errors import InputError
from privend.registry.models import Endpoint
from privend.spec import EndpointSpec


@dataclass(frozen=True)
class PoolCapacityFit:
    """Whether a pool's endpoints fit its maxSize at maximum scale, on the cheapest placement or the fewest nodes."""

    pool: str
    max_size: int
    cheapest: PoolFit  # the plan's placement, which minimises price
    fewest: PoolFit | None  # all nodes of the largest type; only computed when the cheapest does not fit
    largest_type: str

    @property
    def fits(self) -> bool:
        return bool(self.cheapest) or bool(self.fewest)

    @property
    def fewest_nodes(self) -> int:
        return self.fewest.nodes_needed if self.fewest is not None else self.cheapest.nodes_needed

    def to_dict(self) -> dict:
        return {
            "pool": self.pool,
            "max_size": self.max_size,
            "fits": self.fits,
            "nodes_needed_cheapest": self.cheapest.nodes_needed,
            "nodes_needed_fewest": self.fewest_nodes,
            "largest_type": self.largest_type,
        }


def _largest_type(pool: PoolSpec) -> str:
    catalog = gpu_catalog()
    return max(pool.instance_types, key=lambda t: (catalog.get(t).gpus, -catalog.get(t).on_demand_hourly))


def pool_fit(plan: CapacityPlan, pool: str, *, endpoint: str | None = None) -> PoolCapacityFit:
    cheapest = fits_within_pool(plan, pool, endpoint=endpoint)
    spec = plan.pools[pool].pool
    largest = _largest_type(spec)
    fewest = None
    if not cheapest and len(spec.instance_types) > 1:
        single = PoolSpec(spec.name, (largest,), spec.capacity_type, spec.min_size, spec.max_size)
        replan = plan_capacity([d for d in plan.demands if d.pool == pool], {pool: single})
        fewest = fits_within_pool(replan, pool, endpoint=endpoint)
    return PoolCapacityFit(pool, spec.max_size, cheapest, fewest, largest)


def pool_fits(plan: CapacityPlan) -> dict[str, PoolCapacityFit]:
    return {name: pool_fit(plan, name) for name in plan.pools}


@dataclass(frozen=True)
class Admission:
    """An endpoint, new or changed, that fits its pool: the plan with it (and, for a new one, its cost estimate).

    `current` is the endpoint's recorded spec when this admits a change, None for a create.
    """

    spec: EndpointSpec
    plan: CapacityPlan
    fit: PoolCapacityFit
    source: str  # the stack file the pool's maxSize comes from, as refusals name it
    estimate: CostEstimate | None = None
    current: EndpointSpec | None = None

    @property
    def cost(self) -> EndpointCost:
        if self.estimate is None:
            raise ValueError(f"the admission of a change to {self.spec.name!r} carries no cost estimate")
        return self.estimate.endpoint(self.spec.name)

    def guard(self, cfg: EnvironmentConfig) -> Callable[[list[Endpoint]], None]:
        """The same check, for the registry to run atomically with the write (`admit=`).

        It is handed the env's endpoints as stored at that moment. If their demands
        are the ones this admission planned, the answer is known; otherwise the pool
        is planned again and a refusal is raised with the numbers, nothing written.
        """
        spec, current, checked, source = self.spec, self.current, self.plan.demands, self.source

        def admit(endpoints: list[Endpoint]) -> None:
            if current is None and any(e.name == spec.name for e in endpoints):
                return  # created meanwhile: the registry refuses the duplicate with its own message
            demands = tuple(sorted(demands_of(endpoints, spec), key=lambda d: d.endpoint))
            if demands == checked:
                return
            require_fit(cfg, plan_capacity(demands, pools_for(cfg)), spec, source, current)

        return admit


def admit_endpoint(endpoints: list[Endpoint], spec: EndpointSpec, cfg: EnvironmentConfig,
                   source: str) -> Admission | None:
    """Check that a new endpoint's pool can hold it at maximum scale, before anything is recorded.

    `endpoints` are the environment's registered endpoints. Raises InputError, with
    the numbers, when even the pool's largest type needs more nodes than the pool's
    maxSize. Returns None when an endpoint of that name exists already: recording
    it is refused anyway, with the registry's message. The registry write runs
    `Admission.guard` again, atomically with the write.
    """
    if any(e.name == spec.name for e in endpoints):
        return None
    plan = plan_capacity(demands_of(endpoints, spec), pools_for(cfg))
    fit = require_fit(cfg, plan, spec, source)
    return Admission(spec=spec, plan=plan, fit=fit, source=source, estimate=estimate_for(plan, cfg))


def increases_demand(current: EndpointSpec, spec: EndpointSpec) -> bool:
    """Whether changing `current` into `spec` may ask more of a pool at maximum scale.

    Another pool or tier, more GPUs per replica or a higher replicas MAX may;
    anything else asks the same or less of the same pool.
    """
    return (
        spec.pool != current.pool
        or spec.tier != current.tier
        or spec.gpus_per_replica > current.gpus_per_replica
        or spec.max_replicas > current.max_replicas
    )


def admit_change(endpoints: list[Endpoint], cfg: EnvironmentConfig, current: EndpointSpec, spec: EndpointSpec,
                 source: str) -> Admission | None:
    """Check that a recorded endpoint changed from `current` to `spec` still fits its pool, before it is recorded.

    None when the change does not increase demand (`increases_demand`): such a
    change is never refused for capacity. Otherwise raises InputError with the
    numbers when the pool cannot hold the fleet with the change at maximum scale,
    unless the pool was over its maxSize already and needs no more nodes with the
    change than without it.
    """
    if not increases_demand(current, spec):
        return None
    plan = plan_for(endpoints, cfg, spec)
    fit = require_fit(cfg, plan, spec, source, current)
    return Admission(spec=spec, plan=plan, fit=fit, source=source, current=current)


def require_fit(cfg: EnvironmentConfig, plan: CapacityPlan, spec: EndpointSpec, source: str,
                current: EndpointSpec | None = None) -> PoolCapacityFit:
    """The fit of `spec`'s pool in `plan`; InputError with the numbers when it does not fit.

    A change within a pool already over its maxSize is let through when the pool needs
    no more nodes with it than with the current spec (4 GPUs x 2 replicas reshaped into
    2 x 4, say); both counts are of the pool's largest type, the fewest nodes it can take.
    """
    fit = pool_fit(plan, spec.pool, endpoint=spec.name)
    if fit.fits:
        return fit
    within = current is not None and current.pool == spec.pool
    before = _nodes_on_largest(plan, spec, fit, current if within else None)
    if within and current is not None and current.tier == spec.tier and fit.fewest_nodes <= before:
        return fit
    raise InputError(_refusal(plan, spec, fit, before, within, source))


def _nodes_on_largest(plan: CapacityPlan, spec: EndpointSpec, fit: PoolCapacityFit,
                      current: EndpointSpec | None) -> int:
    """Nodes of the pool's largest type that its other endpoints (and `current`, if given) need at max scale."""
    pool = plan.pools[spec.pool].pool
    demands = [d for d in plan.demands if d.pool == spec.pool and d.endpoint != spec.name]
    if current is not None:
        demands.append(demand_of(current))
    if not demands:
        return 0
    single = PoolSpec(pool.name, (fit.largest_type,), pool.capacity_type, 0, pool.max_size)
    return plan_capacity(demands, {pool.name: single}).pools[pool.name].max.node_count


def _refusal(plan: CapacityPlan, spec: EndpointSpec, fit: PoolCapacityFit, nodes_before: int, within: bool,
             source: str) -> str:
    pool = spec.pool
    largest = gpu_catalog().get(fit.largest_type)
    if within:
        # A change within the pool: compared with the pool as it is, the endpoint at its current spec.
        subject, before = f"does not fit pool {pool!r} with this change", "with its current spec"
    else:
        subject, before = f"does not fit pool {pool!r}", "without it"
    gpus = sum(d.gpus_per_replica * d.max_replicas for d in plan.demands if d.pool == pool)
    return (
        f"endpoint {spec.name!r} {subject}: at max scale ({spec.gpus_per_replica} GPU(s) x "
        f"{spec.max_replicas} replicas for {spec.name!r}, {gpus} GPUs in the pool in all) the pool would need "
        f"{fit.fewest_nodes} nodes even of its largest type {largest.name} ({largest.gpus} GPUs each), "
        f"{nodes_before} {before}; pool {pool!r} allows at most {fit.max_size} (maxSize in "
        f"{source}): lower the replicas MAX, use another pool, or raise maxSize"
    )
