"""An environment's registered endpoints as capacity demands, and what the planners make of them.

The capacity planner (`privend.capacity`) and the cost estimate (`privend.cost`)
are pure libraries over demands and pools. This module turns registry records
and the GPU pools of `stacks/Pulumi.<env>.yaml` into their inputs, and their
plans into the pool bounds `capacity apply` writes.

Which endpoints count
- The plan counts every registered endpoint of the environment except those
  being deleted (status `deleting`): a pending or failed endpoint will be
  deployed by the next `sync`, so it needs its room.
- "Running" endpoints (status ready, deploying or suspended) are the ones whose
  pods exist or may come back at any time. `capacity apply` never lowers a pool
  bound below the nodes they need at their maximum scale.

Pool bounds (`capacity apply`)
- minSize follows the nodes the plan needs at minimum scale, maxSize the nodes
  it needs at maximum scale (maxSize at least 1: a node group needs it).
- A bound that would go down is kept at least at what running endpoints need at
  maximum scale (or at its current value, if that is lower): lowering is how a
  pool loses the GPU capacity a running endpoint may need to scale up, and GPU
  capacity is not always there to get back. Raising is always allowed.
- desiredSize, where the file sets it, is clamped between the new bounds.
  `privend.stackfile` writes them into the stack file.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from privend.capacity import CapacityPlan, Demand, PoolSpec, plan_capacity
from privend.catalog import gpu_catalog, model_catalog
from privend.config import MAX_POOL_NODES, EnvironmentConfig
from privend.cost import CostEstimate, estimate_costs
from privend.errors import InputError
from privend.registry.models import Endpoint
from privend.simulator import SimEndpoint
from privend.sizing import weight_bytes
from privend.spec import EndpointSpec
from privend.throughput import DEFAULT_TPOT_SECONDS, replica_throughput
from privend.values import EndpointStatus


def demand_of(spec: EndpointSpec) -> Demand:
    return Demand(
        endpoint=spec.name,
        tenant=spec.tenant,
        pool=spec.pool,
        gpus_per_replica=spec.gpus_per_replica,
        min_replicas=spec.min_replicas,
        max_replicas=spec.max_replicas,
        tier=spec.tier,
    )


def demands_of(endpoints: Iterable[Endpoint], extra: EndpointSpec | None = None,
               *, statuses: Iterable[str] | None = None) -> list[Demand]:
    """The demands of registered endpoints (not those being deleted), plus `extra`.

    `statuses` keeps only endpoints in those states. `extra`, an endpoint not yet
    recorded (or recorded with another spec), replaces a registered endpoint of the same name.
    """
    wanted = set(statuses) if statuses is not None else None
    demands = []
    for endpoint in endpoints:
        if endpoint.status == EndpointStatus.DELETING or (wanted is not None and endpoint.status not in wanted):
            continue
        if extra is not None and endpoint.name == extra.name:
            continue
        demands.append(demand_of(EndpointSpec.from_record(endpoint)))
    if extra is not None:
        demands.append(demand_of(extra))
    return demands


def pools_for(cfg: EnvironmentConfig) -> dict[str, PoolSpec]:
    return {pool.name: PoolSpec.from_gpu_pool(pool) for pool in cfg.gpu_pools}


def plan_for(endpoints: Iterable[Endpoint], cfg: EnvironmentConfig, extra: EndpointSpec | None = None,
             *, statuses: Iterable[str] | None = None) -> CapacityPlan:
    """Plan every pool of the environment for `endpoints` (and `extra`) at minimum and maximum scale."""
    return plan_capacity(demands_of(endpoints, extra, statuses=statuses), pools_for(cfg))


def estimate_for(plan: CapacityPlan, cfg: EnvironmentConfig) -> CostEstimate:
    """The monthly cost estimate of a plan: PrivateLink in the environment's AZ count, the pools' warm headroom."""
    return estimate_costs(plan, availability_zones=cfg.az_count,
                          warm_headroom={pool.name: pool.warm_headroom_gpus for pool in cfg.gpu_pools},
                          headroom_pod_gpus={pool.name: pool.warm_headroom_pod_gpus for pool in cfg.gpu_pools})


@dataclass(frozen=True)
class PoolBounds:
    """A pool's bounds now, what the plan asks, and what `capacity apply` writes."""

    pool: str
    min_size: int
    max_size: int
    desired_size: int | None
    planned_min: int
    planned_max: int
    running_need: int
    new_min: int
    new_max: int
    new_desired: int | None
    headroom_nodes: int = 0  # nodes maxSize leaves for the warm headroom's placeholders

    @property
    def changed(self) -> bool:
        return (self.min_size, self.max_size, self.desired_size) != (self.new_min, self.new_max, self.new_desired)

    def new_values(self) -> dict[str, int]:
        """The stack file keys this pool's rewrite sets (desiredSize only where the file has it)."""
        values = {"minSize": self.new_min, "maxSize": self.new_max}
        if self.new_desired is not None:
            values["desiredSize"] = self.new_desired
        return values

    def to_dict(self) -> dict:
        return {
            "pool": self.pool,
            "current": {"min_size": self.min_size, "max_size": self.max_size, "desired_size": self.desired_size},
            "planned": {"nodes_at_min": self.planned_min, "nodes_at_max": self.planned_max},
            "running_need_at_max": self.running_need,
            "new": {"min_size": self.new_min, "max_size": self.new_max, "desired_size": self.new_desired},
            "changed": self.changed,
        }


def _not_lowered_below(target: int, current: int, floor: int) -> int:
    """`target`, except that going down stops at `floor` (or at `current`, if that is lower)."""
    if target >= current:
        return target
    return max(target, min(current, floor))


def pool_bounds(cfg: EnvironmentConfig, plan: CapacityPlan, running: CapacityPlan | None = None,
                headroom_nodes: Mapping[str, int] | None = None) -> list[PoolBounds]:
    """New minSize/maxSize/desiredSize per pool from `plan`, guarded by `running` (the running endpoints' plan).

    maxSize also leaves `headroom_nodes[pool]` nodes for the pool's warm headroom.
    """
    result = []
    for pool in cfg.gpu_pools:
        planned = plan.pools[pool.name]
        need = running.pools[pool.name].max.node_count if running is not None else 0
        new_min = max(0, _not_lowered_below(planned.min.node_count, pool.min_size, need))
        extra = (headroom_nodes or {}).get(pool.name, 0)
        new_max = max(1, new_min, _not_lowered_below(min(MAX_POOL_NODES, planned.max.node_count + extra),
                                                     pool.max_size, need))
        new_desired = None if pool.desired_size is None else min(max(pool.desired_size, new_min), new_max)
        result.append(PoolBounds(pool.name, pool.min_size, pool.max_size, pool.desired_size,
                                 planned.min.node_count, planned.max.node_count, need, new_min, new_max, new_desired,
                                 extra))
    return result


def sim_endpoint_of(spec: EndpointSpec, cfg: EnvironmentConfig, *,
                    tpot_seconds: float = DEFAULT_TPOT_SECONDS) -> SimEndpoint:
    """An endpoint as the simulator sees it: its demand, one replica's throughput on its pool's GPUs, its weights."""
    model = model_catalog().models.get(spec.model)
    if model is None:
        raise InputError(f"endpoint {spec.name!r}: model {spec.model!r} is not in the model catalog, so its "
                         "throughput is unknown; the simulator needs catalog models")
    pool = next(p for p in cfg.gpu_pools if p.name == spec.pool)
    gpu_model = gpu_catalog().get(pool.instance_types[0]).gpu_model
    dtype = spec.quantize or spec.dtype or model.default_dtype
    rate = replica_throughput(model, dtype, gpu_model, spec.gpus_per_replica, spec.max_total_tokens,
                              tpot_seconds=tpot_seconds)
    return SimEndpoint(demand_of(spec), rate.prefill_tokens_per_second, rate.decode_tokens_per_second,
                       weight_bytes(model, dtype), spec.engine)
