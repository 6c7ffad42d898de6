"""An environment's registered endpoints as capacity demands: plans, pool bounds, admission and quotas.

The capacity planner (`privend.capacity`), the cost estimate (`privend.cost`) and
the quota check (`privend.quotas`) are pure libraries. This module feeds them
what an environment holds: the endpoints in the registry and the GPU pools of
`stacks/Pulumi.<env>.yaml`, and turns their answers into the decisions the CLI
shows: `capacity plan`, `capacity apply`, `quota check`, and whether
`endpoint create` may record a new endpoint.

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
- Only those three keys are rewritten, as text: every other byte of the stack
  file (comments, order, quoting) stays as it was. The result is checked to
  parse to the old document with exactly those values changed, and to load
  through the same models as `load_environment`, before it replaces the file.

Fitting a pool (`endpoint create`, `update`, `scale`)
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
  the registry write (`admit=`; see `privend.registry.base.Registry`), so two
  creators that only one of them fits cannot both get in. The second run
  re-plans only if the endpoints' demands changed since the first.

Quotas
- `quota check` asks whether the account can run every pool at its configured
  maxSize, the most the cluster autoscaler may reach, with nodes of the pool's
  largest type (by vCPUs): a node group that mixes types may launch any of them.
- `endpoint create` asks whether the fleet with the new endpoint, at maximum
  scale as planned, fits the quota its pool counts against. Usage counts
  everything running in the account and region, this environment's nodes
  included, so both checks err towards warning.
"""

from __future__ import annotations

import difflib
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from privend.capacity import CapacityPlan, Demand, PoolFit, PoolSpec, fits_within_pool, plan_capacity
from privend.catalog import gpu_catalog
from privend.config import EnvironmentConfig, GpuPool, load_environment, namespace_values, parse_environment, stack_file
from privend.cost import CostEstimate, EndpointCost, estimate_costs
from privend.errors import InputError, PrivendError
from privend.spec import EndpointSpec

RUNNING_STATUSES = ("ready", "deploying", "suspended")
BOUND_KEYS = {"min_size": "minSize", "max_size": "maxSize", "desired_size": "desiredSize"}

NO_CREDENTIALS = (
    "quota check needs AWS credentials and found none "
    "(set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
)


class MissingCredentials(PrivendError):
    """No AWS credentials in this shell: quota checks cannot run (exit code 1)."""


# ---------------------------------------------------------------------------
# Demands and plans


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


def demands_for(env: str, registry, cfg: EnvironmentConfig, extra: EndpointSpec | None = None,
                *, statuses: Iterable[str] | None = None) -> list[Demand]:
    """The demands of `env`'s registered endpoints (not those being deleted), plus `extra`.

    `statuses` keeps only endpoints in those states. `extra`, an endpoint not yet
    recorded, replaces a registered endpoint of the same name.
    """
    if cfg.environment != env:
        raise InputError(f"config of env {cfg.environment} given for env {env}")
    return demands_of(registry.list_endpoints(env), extra, statuses=statuses)


def demands_of(endpoints: Iterable, extra: EndpointSpec | None = None,
               *, statuses: Iterable[str] | None = None) -> list[Demand]:
    """`demands_for` on registry records already read (e.g. inside a registry write)."""
    from privend.endpoints import spec_of

    wanted = set(statuses) if statuses is not None else None
    demands = []
    for endpoint in endpoints:
        if endpoint.status == "deleting" or (wanted is not None and endpoint.status not in wanted):
            continue
        if extra is not None and endpoint.name == extra.name:
            continue
        demands.append(demand_of(spec_of(endpoint)))
    if extra is not None:
        demands.append(demand_of(extra))
    return demands


def pools_for(cfg: EnvironmentConfig) -> dict[str, PoolSpec]:
    return {pool.name: PoolSpec.from_gpu_pool(pool) for pool in cfg.gpu_pools}


def capacity_for(env: str, registry, cfg: EnvironmentConfig, extra: EndpointSpec | None = None,
                 *, statuses: Iterable[str] | None = None) -> CapacityPlan:
    """Plan every pool of `env` for its registered endpoints (and `extra`) at minimum and maximum scale."""
    return plan_capacity(demands_for(env, registry, cfg, extra, statuses=statuses), pools_for(cfg))


def estimate_for(plan: CapacityPlan, cfg: EnvironmentConfig) -> CostEstimate:
    """The monthly cost estimate of a plan, with PrivateLink priced in the environment's AZ count."""
    return estimate_costs(plan, availability_zones=cfg.az_count)


# ---------------------------------------------------------------------------
# Fitting a pool's maxSize


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


# ---------------------------------------------------------------------------
# Admitting a new endpoint


@dataclass(frozen=True)
class Admission:
    """An endpoint, new or changed, that fits its pool: the plan with it (and, for a new one, its cost estimate).

    `current` is the endpoint's recorded spec when this admits a change, None for a create.
    """

    spec: EndpointSpec
    plan: CapacityPlan
    fit: PoolCapacityFit
    estimate: CostEstimate | None = None
    current: EndpointSpec | None = None

    @property
    def cost(self) -> EndpointCost:
        return self.estimate.endpoint(self.spec.name)

    def guard(self, cfg: EnvironmentConfig) -> Callable[[list], None]:
        """The same check, for the registry to run atomically with the write (`admit=`).

        It is handed the env's endpoints as stored at that moment. If their demands
        are the ones this admission planned, the answer is known; otherwise the pool
        is planned again and a refusal is raised with the numbers, nothing written.
        """
        spec, current, checked = self.spec, self.current, self.plan.demands

        def admit(endpoints: list) -> None:
            if current is None and any(e.name == spec.name for e in endpoints):
                return  # created meanwhile: the registry refuses the duplicate with its own message
            demands = tuple(sorted(demands_of(endpoints, spec), key=lambda d: d.endpoint))
            if demands == checked:
                return
            require_fit(cfg, plan_capacity(demands, pools_for(cfg)), spec, current)

        return admit


def admit_endpoint(registry, cfg: EnvironmentConfig, request) -> Admission | None:
    """Size a requested endpoint and check that its pool can hold it at maximum scale, before anything is recorded.

    Raises InputError, with the numbers, when even the pool's largest type needs
    more nodes than the pool's maxSize. Returns None when an endpoint of that
    name exists already: recording it is refused anyway, with the registry's message.
    Pass the admission to `endpoints.new_endpoint`, which checks again as it writes.
    """
    from privend.endpoints import tenant_spec
    from privend.spec import build_spec

    env = cfg.environment
    tenant = registry.get_tenant(env, request.tenant)
    spec = build_spec(request, tenant_spec(tenant), cfg)
    endpoints = registry.list_endpoints(env)
    if any(e.name == spec.name for e in endpoints):
        return None
    plan = plan_capacity(demands_of(endpoints, spec), pools_for(cfg))
    fit = require_fit(cfg, plan, spec)
    return Admission(spec=spec, plan=plan, fit=fit, estimate=estimate_for(plan, cfg))


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


def admit_change(registry, cfg: EnvironmentConfig, current: EndpointSpec, spec: EndpointSpec) -> Admission | None:
    """Check that a recorded endpoint changed from `current` to `spec` still fits its pool, before it is recorded.

    None when the change does not increase demand (`increases_demand`): such a
    change is never refused for capacity. Otherwise raises InputError with the
    numbers when the pool cannot hold the fleet with the change at maximum scale,
    unless the pool was over its maxSize already and needs no more nodes with the
    change than without it.
    """
    if not increases_demand(current, spec):
        return None
    plan = capacity_for(cfg.environment, registry, cfg, spec)
    fit = require_fit(cfg, plan, spec, current)
    return Admission(spec=spec, plan=plan, fit=fit, current=current)


def require_fit(cfg: EnvironmentConfig, plan: CapacityPlan, spec: EndpointSpec,
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
    if within and current.tier == spec.tier and fit.fewest_nodes <= before:
        return fit
    raise InputError(_refusal(cfg, plan, spec, fit, before, within))


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


def _refusal(cfg: EnvironmentConfig, plan: CapacityPlan, spec: EndpointSpec, fit: PoolCapacityFit,
             nodes_before: int, within: bool) -> str:
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
        f"{_display(stack_file(cfg.environment))}): lower the replicas MAX, use another pool, or raise maxSize"
    )


# ---------------------------------------------------------------------------
# Quotas


@dataclass(frozen=True)
class QuotaBasis:
    """What one pool counts against its EC2 vCPU quota: maxSize nodes of its largest type."""

    pool: str
    instance_type: str
    capacity_type: str
    max_size: int
    vcpus_per_node: int
    quota_code: str

    @property
    def vcpus(self) -> int:
        return self.max_size * self.vcpus_per_node

    def to_dict(self) -> dict:
        return {
            "pool": self.pool,
            "instance_type": self.instance_type,
            "capacity_type": self.capacity_type,
            "max_size": self.max_size,
            "vcpus_per_node": self.vcpus_per_node,
            "vcpus": self.vcpus,
            "quota_code": self.quota_code,
        }


def quota_basis(cfg: EnvironmentConfig) -> list[QuotaBasis]:
    """Per pool, the nodes the autoscaler may reach (maxSize) of the type with the most vCPUs."""
    catalog = gpu_catalog()
    result = []
    for pool in cfg.gpu_pools:
        biggest = max((catalog.get(t) for t in pool.instance_types), key=lambda it: (it.vcpus, it.name))
        result.append(QuotaBasis(pool.name, biggest.name, pool.capacity_type, pool.max_size, biggest.vcpus,
                                 biggest.quota_code_for(pool.capacity_type)))
    return result


def pool_nodes_for_quota(basis: Iterable[QuotaBasis]):
    from privend.quotas import PoolNodes

    return [PoolNodes(b.pool, b.instance_type, b.capacity_type, b.max_size) for b in basis]


def aws_clients(cfg: EnvironmentConfig):
    """Service Quotas and CloudWatch clients in the environment's region; MissingCredentials when there are none."""
    import boto3
    from botocore.exceptions import BotoCoreError

    from privend.quotas import AwsClients

    try:
        session = boto3.Session(region_name=cfg.region)
        if session.get_credentials() is None:
            raise MissingCredentials(NO_CREDENTIALS)
        return AwsClients(service_quotas=session.client("service-quotas"), cloudwatch=session.client("cloudwatch"))
    except BotoCoreError as exc:
        raise PrivendError(f"quota check cannot use the AWS configuration: {exc}") from None


def endpoint_quota_verdicts(admission: Admission, cfg: EnvironmentConfig, clients) -> list:
    """Verdicts for the quota codes the new endpoint's pool counts against, for the planned fleet at max scale."""
    from privend.quotas import check_quotas, pool_nodes_at_max_scale

    catalog = gpu_catalog()
    pool = cfg.pool(admission.spec.pool)
    codes = {catalog.get(t).quota_code_for(pool.capacity_type) for t in pool.instance_types}
    nodes = [
        n for n in pool_nodes_at_max_scale(admission.plan)
        if catalog.get(n.instance_type).quota_code_for(n.capacity_type) in codes
    ]
    return check_quotas(nodes, clients)


def endpoint_quota_notice(admission: Admission, cfg: EnvironmentConfig, *, strict: bool) -> str | None:
    """The quota step of `endpoint create`: a one-line note or warning to print, or None when all is well.

    With `strict`, a shortfall, missing credentials or a failed check raise
    PrivendError (exit code 1) instead: the request is valid, the account is not ready.
    """
    name = admission.spec.name
    try:
        verdicts = endpoint_quota_verdicts(admission, cfg, aws_clients(cfg))
    except MissingCredentials:
        if strict:
            raise PrivendError(
                f"--strict-quota: cannot check EC2 vCPU quotas for endpoint {name!r}: no AWS credentials found "
                "(set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY); nothing recorded"
            ) from None
        return "note: EC2 vCPU quota check skipped: no AWS credentials (run `privend quota check` where there are)"
    except PrivendError as exc:
        if strict:
            raise PrivendError(f"--strict-quota: {exc}; nothing recorded") from None
        return f"warning: EC2 vCPU quota check skipped: {exc}"
    short = [v for v in verdicts if v.shortfall]
    if not short:
        return None
    detail = "; ".join(v.message for v in short)
    hint = f"request more with `privend quota check --env {cfg.environment} --request-increase`"
    if strict:
        raise PrivendError(f"endpoint {name!r} would exceed an EC2 vCPU quota: {detail}; nothing recorded; {hint}")
    return f"warning: endpoint {name!r} would exceed an EC2 vCPU quota: {detail}; {hint}"


# ---------------------------------------------------------------------------
# Pool bounds in the stack file


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


def pool_bounds(cfg: EnvironmentConfig, plan: CapacityPlan, running: CapacityPlan | None = None) -> list[PoolBounds]:
    """New minSize/maxSize/desiredSize per pool from `plan`, guarded by `running` (the running endpoints' plan)."""
    result = []
    for pool in cfg.gpu_pools:
        planned = plan.pools[pool.name]
        need = running.pools[pool.name].max.node_count if running is not None else 0
        new_min = max(0, _not_lowered_below(planned.min.node_count, pool.min_size, need))
        new_max = max(1, new_min, _not_lowered_below(planned.max.node_count, pool.max_size, need))
        new_desired = None if pool.desired_size is None else min(max(pool.desired_size, new_min), new_max)
        result.append(PoolBounds(pool.name, pool.min_size, pool.max_size, pool.desired_size,
                                 planned.min.node_count, planned.max.node_count, need, new_min, new_max, new_desired))
    return result


def apply_bounds(cfg: EnvironmentConfig, plan: CapacityPlan, path: Path | str,
                 running: CapacityPlan | None = None) -> tuple[str, str]:
    """The stack file at `path` with the pools' bounds from `plan` written in, and the unified diff.

    Nothing is written here (see `write_stack_file`). The diff is empty when
    nothing changes.
    """
    path = Path(path)
    old = path.read_text()
    bounds = pool_bounds(cfg, plan, running)
    values = {b.pool: b.new_values() for b in bounds}
    shown = _display(path)
    new = rewrite_pool_bounds(old, values, source=shown)
    _same_but_bounds(old, new, values, shown)
    check_stack_text(new, cfg.environment, shown, values)
    return new, unified_diff(old, new, shown)


_POOLS_KEY = re.compile(r"""^(?P<indent> *)(?P<q>["']?)privend:gpuPools(?P=q) *:(?P<rest>.*)$""")
_ITEM = re.compile(r"^(?P<indent> *)-(?: +|$)")
_KEY = re.compile(r"""^(?P<q>["']?)(?P<key>[A-Za-z_][\w-]*)(?P=q) *:(?: +|$)(?P<value>.*)$""")
_SCALAR = re.compile(r"^(?P<value>[^\s#][^#]*?)(?P<tail> *(?:#.*)?)$")


def rewrite_pool_bounds(text: str, values: Mapping[str, Mapping[str, int]], *, source: str = "stack file") -> str:
    """Set `values[pool][key]` (minSize, maxSize, desiredSize) in the `privend:gpuPools` block list of `text`.

    Line-level surgery: only the value token of those keys changes; comments,
    order, quoting and line endings of everything else stay. Every key must
    already be on a line of its own in its pool's block mapping.
    """
    lines = text.splitlines(keepends=True)
    located = _locate_pool_keys(lines, source)
    for pool, keys in values.items():
        if pool not in located:
            raise PrivendError(f"{source}: pool {pool!r} not found under privend:gpuPools")
        for key, value in keys.items():
            if key not in located[pool]:
                raise PrivendError(f"{source}: pool {pool!r} has no {key} line to rewrite")
            index, column = located[pool][key]
            lines[index] = _replace_value(lines[index], column, str(int(value)), source)
    return "".join(lines)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _is_content(line: str) -> bool:
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith("#")


def _locate_pool_keys(lines: list[str], source: str) -> dict[str, dict[str, tuple[int, int]]]:
    """pool name -> stack file key -> (line index, column where the key starts), for the bound keys."""
    start = None
    for i, line in enumerate(lines):
        match = _POOLS_KEY.match(line.rstrip("\r\n"))
        if match:
            rest = match.group("rest").strip()
            if rest and not rest.startswith("#"):
                raise PrivendError(
                    f"{source}: privend:gpuPools is not a block list (one `- name: ...` item per pool); "
                    "rewrite it in block style to let `capacity apply` edit it"
                )
            start, key_indent = i, len(match.group("indent"))
            break
    if start is None:
        raise PrivendError(f"{source}: no privend:gpuPools key")

    items: list[list[tuple[int, int, str]]] = []  # per item: (line index, column, text from column)
    item_indent = None
    for i in range(start + 1, len(lines)):
        raw = lines[i].rstrip("\r\n")
        if not _is_content(raw):
            continue
        indent = _indent(raw)
        item = _ITEM.match(raw)
        if item_indent is None:
            if not item or indent < key_indent:
                break
            item_indent = indent
        if indent < item_indent or (indent == item_indent and not item):
            break
        if indent == item_indent:
            column = item.end()
            items.append([(i, column, raw[column:])] if raw[column:].strip() else [])
            continue
        if items:
            items[-1].append((i, indent, raw[indent:]))

    located: dict[str, dict[str, tuple[int, int]]] = {}
    for entries in items:
        if not entries:
            continue
        column = entries[0][1]  # the item's first key: on the dash line, or the line below a bare dash
        name, keys = None, {}
        for index, col, rest in entries:
            if col != column:
                continue  # deeper: nested mappings and lists (labels, instanceTypes)
            match = _KEY.match(rest)
            if not match:
                continue
            key = match.group("key")
            if key == "name":
                name = _plain_value(match.group("value"), source)
            elif key in BOUND_KEYS.values():
                keys[key] = (index, col)
        if name is not None:
            located[str(name)] = keys
    return located


def _plain_value(text: str, source: str):
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        raise PrivendError(f"{source}: cannot read pool name {text!r}") from None


def _replace_value(line: str, column: int, value: str, source: str) -> str:
    body = line.rstrip("\r\n")
    eol = line[len(body):]
    match = _KEY.match(body[column:])
    scalar = _SCALAR.match(match.group("value")) if match else None
    if scalar is None:
        raise PrivendError(f"{source}: cannot rewrite {body.strip()!r}: expected `key: <integer>`")
    at = column + match.start("value")
    return body[:at] + value + scalar.group("tail") + eol


def _load_stack_text(text: str, env: str, source: str):
    """The document and the validated config of a stack file's text, exactly as `load_environment` reads them."""
    try:
        document = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise PrivendError(f"{source}: the rewritten file is not valid YAML ({exc})") from None
    config = document.get("config") if isinstance(document, dict) else None
    if not isinstance(config, dict):
        raise PrivendError(f"{source}: has no `config:` mapping")
    return document, parse_environment(namespace_values(config), env, source)


def check_stack_text(text: str, env: str, source: str, values: Mapping[str, Mapping[str, int]]) -> EnvironmentConfig:
    """Check that `text` is a valid stack file whose pools carry `values`; returns its config."""
    _, cfg = _load_stack_text(text, env, source)
    _check_pool_values(cfg.gpu_pools, values, source)
    return cfg


def _check_pool_values(pools: list[GpuPool], values: Mapping[str, Mapping[str, int]], source: str) -> None:
    by_name = {p.name: p for p in pools}
    attr = {v: k for k, v in BOUND_KEYS.items()}
    for pool, keys in values.items():
        for key, value in keys.items():
            got = getattr(by_name[pool], attr[key])
            if got != value:
                raise PrivendError(f"{source}: pool {pool!r}: {key} reads back as {got}, not {value}")


def _same_but_bounds(old: str, new: str, values: Mapping[str, Mapping[str, int]], source: str) -> None:
    """The rewritten document must equal the old one with exactly the bound keys replaced."""
    before, after = yaml.safe_load(old), yaml.safe_load(new)
    for pool in before["config"]["privend:gpuPools"]:
        pool.update(values.get(pool.get("name"), {}))
    if before != after:
        raise PrivendError(f"{source}: rewriting the pool bounds would change other values; nothing written")


def unified_diff(old: str, new: str, shown: str) -> str:
    before, after = (shown, shown) if os.path.isabs(shown) else (f"a/{shown}", f"b/{shown}")
    lines = difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                 fromfile=before, tofile=after)
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)


def write_stack_file(cfg: EnvironmentConfig, path: Path | str, text: str,
                     values: Mapping[str, Mapping[str, int]]) -> EnvironmentConfig:
    """Replace the stack file with `text` atomically, after checking it, and load it back.

    `values` are the bounds the text must carry. When the file is the
    environment's own stack file, the result is read back through
    `load_environment`; if that disagrees, the old file is put back.
    """
    path = Path(path)
    shown = _display(path)
    old = path.read_text()
    _same_but_bounds(old, text, values, shown)
    check_stack_text(text, cfg.environment, shown, values)
    _atomic_write(path, text)
    if path.resolve() == stack_file(cfg.environment).resolve():
        try:
            loaded = load_environment(cfg.environment)
            _check_pool_values(loaded.gpu_pools, values, shown)
        except PrivendError:
            _atomic_write(path, old)
            raise
        return loaded
    return check_stack_text(path.read_text(), cfg.environment, shown, values)


def _atomic_write(path: Path, text: str) -> None:
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
