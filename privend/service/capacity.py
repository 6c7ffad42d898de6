"""Capacity use cases: plan and price an environment's GPU pools, write their bounds, check EC2 quotas."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from privend import traffic as traffic_mod

from privend.admission import PoolCapacityFit, pool_fits
from privend.capacity import CapacityPlan
from privend.config import MAX_POOL_NODES, MAX_WARM_HEADROOM_GPUS, EnvironmentConfig
from privend.cost import CostEstimate
from privend.billing.periods import check_period, period_bounds, period_of, previous_period
from privend.demand import PoolBounds, estimate_for, plan_for, pool_bounds, pools_for, sim_endpoint_of
from privend.catalog import model_catalog
from privend.errors import InputError
from privend.simulator import HeadroomChoice, SimEndpoint, SimulationResult, choose_headroom, simulate
from privend.spec import EndpointSpec
from privend.service.app import App
from privend.stackfile import apply_bounds, bound_values, write_stack_file
from privend.values import RUNNING_STATUSES, EndpointStatus


@dataclass(frozen=True)
class CapacityReport:
    env: str
    plan: CapacityPlan
    fits: dict[str, PoolCapacityFit]
    estimate: CostEstimate


@dataclass(frozen=True)
class BoundsChange:
    """What `capacity apply` would write: the bounds and warm headroom per pool, and the stack file's diff.

    The diff is empty when nothing changes. `headroom` holds, per pool, the choice a simulation of
    `traffic` made (`privend.simulator.choose_headroom`); `window_hours` is that simulation's length.
    """

    env: str
    path: Path
    bounds: list[PoolBounds]
    diff: str
    text: str
    headroom: dict[str, HeadroomChoice]
    traffic: str
    window_hours: float
    unsimulated: list[str]  # endpoints the headroom simulation left out (models outside the catalog)

    headroom_values: dict[str, dict[str, int]]  # the headroom keys that change, per pool

    @property
    def values(self) -> dict[str, dict[str, int]]:
        return bound_values(self.bounds, self.headroom_values)


# `capacity apply`'s default: scale-ups that must not wait for a node, in percent.
DEFAULT_READY_TARGET_PERCENT = 99.0


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


def recent_traffic(now: datetime) -> TrafficSource:
    """What `capacity apply` sizes warm headroom on by default: the usage ledger of the last full period."""
    return TrafficSource(period=previous_period(period_of(now, "UTC")))


def propose_bounds(app: App, env: str, source: TrafficSource | None = None,
                   target_percent: float = DEFAULT_READY_TARGET_PERCENT) -> BoundsChange:
    """The pool bounds the plan asks for, never below what running endpoints need at maximum scale, and
    per pool the warm headroom with which `target_percent` of the scale-ups of `source`'s traffic
    (default: `recent_traffic`) do not wait for a node."""
    cfg = app.environment(env)
    path = app.stack_path(env)
    with app.registry() as registry:
        endpoints = registry.list_endpoints(env)
    plan = plan_for(endpoints, cfg)
    running = plan_for(endpoints, cfg, statuses=RUNNING_STATUSES)
    replay = load_traffic(app, env, source or recent_traffic(datetime.now(UTC)), skip_unknown=True)
    # The headroom is sized on the bounds about to be written: the new floor, and a ceiling that the
    # headroom's own nodes then widen (maxSize must leave room for the placeholders).
    planned = {b.pool: b for b in pool_bounds(cfg, plan, running)}
    pools = {name: replace(spec, min_size=planned[name].new_min, max_size=MAX_POOL_NODES)
             for name, spec in pools_for(cfg).items()}
    choices = choose_headroom(replay.endpoints, pools, replay.traffic, target_percent, limit=MAX_WARM_HEADROOM_GPUS)
    bounds = pool_bounds(cfg, plan, running,
                         {p.name: -(-choices[p.name].gpus // p.gpus_per_node_max) for p in cfg.gpu_pools})
    headroom: dict[str, dict[str, int]] = {}
    for pool in cfg.gpu_pools:
        c = choices[pool.name]
        keys = {key: new for key, new, old in (("warmHeadroomGpus", c.gpus, pool.warm_headroom_gpus),
                                               ("warmHeadroomPodGpus", c.pod_gpus, pool.warm_headroom_pod_gpus))
                if new != old}
        if keys:
            headroom[pool.name] = keys
    text, diff = apply_bounds(cfg, bounds, path, headroom)
    hours = replay.traffic.steps * replay.traffic.step_seconds / 3600
    return BoundsChange(env, path, bounds, diff, text, choices, replay.label, hours, replay.unknown, headroom)


def apply_capacity(app: App, env: str, confirm: Callable[[BoundsChange], None] | None = None,
                   source: TrafficSource | None = None,
                   target_percent: float = DEFAULT_READY_TARGET_PERCENT) -> BoundsChange:
    """Write the proposed bounds and headroom into the stack file (after `confirm`, which raises to abort)."""
    change = propose_bounds(app, env, source, target_percent)
    if change.diff:
        if confirm is not None:
            confirm(change)
        write_stack_file(app.environment(env), change.path, change.text, change.values, app.settings.stacks_dir)
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


@dataclass(frozen=True)
class TrafficSource:
    """Where `capacity simulate` takes its traffic from: exactly one of the three."""

    traces: Path | None = None
    period: str | None = None
    seed: int | None = None


@dataclass(frozen=True)
class SimulationReport:
    env: str
    source: str
    result: SimulationResult


# What the synthetic source assumes of a registered endpoint's users (README, "capacity simulate").
SYNTHETIC_PEAK_OF_MAX = 0.5
SYNTHETIC_TROUGH = 0.3
SYNTHETIC_WEEKEND = 0.6


@dataclass(frozen=True)
class Replay:
    """An environment's registered endpoints as the simulator sees them, and the traffic to replay."""

    endpoints: list[SimEndpoint]
    traffic: traffic_mod.Traffic
    label: str
    unknown: list[str]  # endpoints left out: their model is not in the catalog, so their throughput is unknown


def load_traffic(app: App, env: str, source: TrafficSource, *, start: datetime | None = None,
                 end: datetime | None = None, step_seconds: int = 60, skip_unknown: bool = False) -> Replay:
    """The environment's endpoints (all but those being deleted) and `source`'s traffic for them.

    An endpoint of a model outside the catalog is refused, or with `skip_unknown` left out and named.
    """
    cfg = app.environment(env)
    with app.registry() as registry:
        records = [e for e in registry.list_endpoints(env) if e.status != EndpointStatus.DELETING]
        specs = [EndpointSpec.from_record(e) for e in records]
        tenants = {t.name: t for t in registry.list_tenants(env)}
        unknown = [spec.name for spec in specs if spec.model not in model_catalog().models] if skip_unknown else []
        specs = [spec for spec in specs if spec.name not in unknown]
        endpoints = [sim_endpoint_of(spec, cfg) for spec in specs]
        names = [e.name for e in endpoints]
        if source.traces is not None:
            traffic = traffic_mod.read_trace_dir(source.traces, step_seconds, start, end)
            label = f"traces in {source.traces}"
        elif source.period is not None:
            period = check_period(source.period)
            lo, hi = period_bounds(period, "UTC")
            hours = (hi - lo) // 3_600_000_000
            windows = [(name, lo + h * 3_600_000_000, lo + (h + 1) * 3_600_000_000)
                       for name in names for h in range(hours)]
            sums = registry.usage_totals(env, windows)
            totals = {name: sums[i * hours:(i + 1) * hours] for i, name in enumerate(names)}
            traffic = traffic_mod.from_hourly_totals(totals, datetime.fromtimestamp(lo / 1e6, UTC), step_seconds)
            label = f"usage ledger, period {period} (hourly sums)"
        elif source.seed is not None:
            start = start or datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
            end = end or start + timedelta(days=7)
            profiles = []
            for spec, e in zip(specs, endpoints, strict=True):
                g = traffic_mod.TRACE_GENERATED_SHARE
                per_replica = 1 / ((1 - g) / e.prefill_tokens_per_second + g / e.decode_tokens_per_second)
                tenant = tenants.get(spec.tenant)
                zone = ZoneInfo(tenant.billing_timezone if tenant else "UTC")
                offset = start.astimezone(zone).utcoffset() or timedelta(0)
                profiles.append(traffic_mod.TrafficProfile(
                    spec.name, SYNTHETIC_PEAK_OF_MAX * spec.max_replicas * per_replica,
                    offset.total_seconds() / 3600, SYNTHETIC_TROUGH, SYNTHETIC_WEEKEND))
            traffic = traffic_mod.synthetic(profiles, source.seed, start, end, step_seconds)
            label = f"synthetic, seed {source.seed}"
        else:
            raise InputError("give one traffic source: --traffic DIR, --period YYYY-MM or --synthetic SEED")
    return Replay(endpoints, traffic_mod.for_endpoints(traffic, names), label, unknown)


def simulate_capacity(app: App, env: str, source: TrafficSource, *, start: datetime | None = None,
                      end: datetime | None = None, step_seconds: int = 60) -> SimulationReport:
    """Replay traffic for the environment's registered endpoints through its pools (privend.simulator)."""
    cfg = app.environment(env)
    replay = load_traffic(app, env, source, start=start, end=end, step_seconds=step_seconds)
    result = simulate(replay.endpoints, pools_for(cfg), replay.traffic,
                      {p.name: p.warm_headroom_gpus for p in cfg.gpu_pools},
                      headroom_pod_gpus={p.name: p.warm_headroom_pod_gpus for p in cfg.gpu_pools})
    return SimulationReport(env, replay.label, result)
