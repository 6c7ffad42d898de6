"""Capacity use cases: plan and price an environment's GPU pools, write their bounds, check EC2 quotas."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from privend.admission import PoolCapacityFit, pool_fits
from privend.capacity import CapacityPlan
from privend.config import EnvironmentConfig
from privend.cost import CostEstimate
from privend.demand import PoolBounds, estimate_for, plan_for, pool_bounds
from privend.service.app import App
from privend.stackfile import apply_bounds, write_stack_file
from privend.values import RUNNING_STATUSES


@dataclass(frozen=True)
class CapacityReport:
    env: str
    plan: CapacityPlan
    fits: dict[str, PoolCapacityFit]
    estimate: CostEstimate


@dataclass(frozen=True)
class BoundsChange:
    """What `capacity apply` would write: the bounds per pool and the stack file's diff (empty: no change)."""

    env: str
    path: Path
    bounds: list[PoolBounds]
    diff: str
    text: str


@dataclass(frozen=True)
class QuotaReport:
    cfg: EnvironmentConfig
    basis: list
    verdicts: list
    requests: list

    @property
    def short(self) -> list:
        return [v for v in self.verdicts if v.shortfall]


def plan_capacity(app: App, env: str) -> CapacityReport:
    """Nodes per pool at min and max scale for the registered endpoints, whether they fit, and the cost."""
    cfg = app.environment(env)
    with app.registry() as registry:
        plan = plan_for(registry.list_endpoints(env), cfg)
    return CapacityReport(env, plan, pool_fits(plan), estimate_for(plan, cfg))


def propose_bounds(app: App, env: str) -> BoundsChange:
    """The pool bounds the plan asks for, never below what running endpoints need at maximum scale."""
    cfg = app.environment(env)
    path = app.stack_path(env)
    with app.registry() as registry:
        endpoints = registry.list_endpoints(env)
    plan = plan_for(endpoints, cfg)
    running = plan_for(endpoints, cfg, statuses=RUNNING_STATUSES)
    text, diff = apply_bounds(cfg, plan, path, running)
    return BoundsChange(env, path, pool_bounds(cfg, plan, running), diff, text)


def apply_capacity(app: App, env: str, confirm: Callable[[BoundsChange], None] | None = None) -> BoundsChange:
    """Write the proposed bounds into the stack file (after `confirm`, which raises to abort), if any change."""
    change = propose_bounds(app, env)
    if change.diff:
        if confirm is not None:
            confirm(change)
        write_stack_file(app.environment(env), change.path, change.text,
                         {b.pool: b.new_values() for b in change.bounds}, app.settings.stacks_dir)
    return change


def check_quotas(app: App, env: str, request_increase: bool = False) -> QuotaReport:
    """Per quota code: the vCPUs every pool needs at maxSize against the quota and usage; file increases if asked."""
    from privend import quotas  # imports boto3

    cfg = app.environment(env)
    basis = quotas.quota_basis(cfg)
    clients = quotas.aws_clients(cfg)
    verdicts = quotas.check_quotas(quotas.pool_nodes_for_quota(basis), clients)
    requests = quotas.request_increases(verdicts, clients.service_quotas) if request_increase else []
    return QuotaReport(cfg, basis, verdicts, requests)
