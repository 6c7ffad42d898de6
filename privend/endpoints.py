"""Tenant and endpoint lifecycle: what the CLI's tenant and endpoint commands do.

The CLI parses and renders; this module validates, records in the registry and
deploys. A change is recorded before it is deployed, so nothing is lost when a
deploy fails or cannot run here: `sync` deploys whatever differs.
"""

from __future__ import annotations

import concurrent.futures
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Callable, Sequence

from privend.config import EnvironmentConfig
from privend.deploy import Deployer, DeployOutcome, DeployUnavailable
from privend.errors import InputError, PrivendError
from privend.billing.plans import validate_plan_name
from privend.billing.suspension import deploy_spec, is_suspended, needs_deploy, sync_message, target_hash
from privend.plan import check_endpoint_policy
from privend.registry import Endpoint, Registry, SubscriptionSegment, Tenant, spec_hash
from privend.spec import EndpointRequest, EndpointSpec, TenantSpec, build_spec

if TYPE_CHECKING:
    from privend.fleet import Admission

STALE_DEPLOY = timedelta(hours=1)  # a "deploying" mark older than this is from a crashed run


def now() -> datetime:
    return datetime.now(timezone.utc)


def tenant_spec(tenant: Tenant) -> TenantSpec:
    return TenantSpec(name=tenant.name, aws_account=tenant.aws_account, principals=list(tenant.principals),
                      billing_timezone=tenant.billing_timezone, tier=tenant.tier)


def create_tenant(registry: Registry, env: str, spec: TenantSpec) -> Tenant:
    # One AWS account, one tenant: otherwise one customer's principals could reach another's endpoints.
    for other in registry.list_tenants(env):
        if other.aws_account == spec.aws_account and other.name != spec.name:
            raise InputError(f"AWS account {spec.aws_account} already belongs to tenant '{other.name}' in env {env}")
    return registry.create_tenant(Tenant(
        env=env, name=spec.name, aws_account=spec.aws_account, principals=spec.principals,
        billing_timezone=spec.billing_timezone, tier=spec.tier, created_at=now(),
    ))


def spec_of(endpoint: Endpoint) -> EndpointSpec:
    return EndpointSpec.model_validate(endpoint.spec)


def request_from(endpoint: Endpoint, **changes) -> EndpointRequest:
    """The request that would produce `endpoint`'s spec, with `changes` applied (None keeps a value)."""
    spec = spec_of(endpoint)
    current = {
        "name": spec.name, "tenant": spec.tenant, "model": spec.model, "revision": spec.revision,
        "engine": spec.engine, "pool": spec.pool, "min_replicas": spec.min_replicas,
        "max_replicas": spec.max_replicas, "plan": spec.plan, "quantize": spec.quantize,
        "max_input_tokens": spec.max_input_tokens, "max_total_tokens": spec.max_total_tokens,
        "gpus_per_replica": spec.gpus_per_replica, "image": spec.image,
    }
    model_changed = changes.get("model") not in (None, spec.model) or changes.get("pool") not in (None, spec.pool) \
        or changes.get("quantize") not in (None, spec.quantize)
    if model_changed:
        # A new model, pool or quantization is sized afresh unless the operator says otherwise.
        for key in ("gpus_per_replica", "max_input_tokens", "max_total_tokens"):
            current[key] = None
    if changes.get("max_total_tokens") is not None and changes.get("max_input_tokens") is None:
        # The input limit was derived from the old total: derive it again from the new one.
        current["max_input_tokens"] = None
    current.update({k: v for k, v in changes.items() if v is not None})
    from privend.spec import validate_request

    return validate_request(**current)


def new_endpoint(registry: Registry, cfg: EnvironmentConfig, request: EndpointRequest,
                 start: datetime | None = None, *, admission: Admission | None = None) -> Endpoint:
    """Validate, size and record a new endpoint (status pending). Nothing is stored on any error.

    `admission`, from `fleet.admit_endpoint(registry, cfg, request)`, makes the
    registry check the pool again atomically with the write: a concurrent
    creator that took the room first makes this one fail with the numbers.
    """
    if admission is not None:
        spec = admission.spec
    else:
        tenant = registry.get_tenant(cfg.environment, request.tenant)
        spec = build_spec(request, tenant_spec(tenant), cfg)
    check_endpoint_policy(spec, cfg)
    data = spec.model_dump(mode="json")
    stamp = now()
    endpoint = Endpoint(env=cfg.environment, name=spec.name, tenant=spec.tenant, spec=data, spec_hash=spec_hash(data),
                        created_at=stamp, updated_at=stamp)
    return registry.create_endpoint(endpoint, [SubscriptionSegment(plan=spec.plan, start=start or stamp)],
                                    admit=admission.guard(cfg) if admission is not None else None)


def change_endpoint(registry: Registry, cfg: EnvironmentConfig, name: str, effective: datetime | None = None,
                    **changes) -> Endpoint:
    """Apply changes to an endpoint's spec (and its plan, from `effective`).

    A change that may ask more of a GPU pool (`fleet.increases_demand`) is refused
    with the numbers when the pool cannot hold it at maximum scale, checked before
    anything is recorded and again atomically with the write.
    """
    from privend.fleet import admit_change

    if changes.get("plan") is not None:
        validate_plan_name(changes["plan"])
    current = registry.get_endpoint(cfg.environment, name)
    if current.status == "deleting":
        raise InputError(f"endpoint '{name}' is being deleted in env {cfg.environment}")
    tenant = registry.get_tenant(cfg.environment, current.tenant)
    spec = build_spec(request_from(current, **changes), tenant_spec(tenant), cfg)
    data = spec.model_dump(mode="json")
    admission = None
    if data != current.spec:
        admission = admit_change(registry, cfg, spec_of(current), spec)
        check_endpoint_policy(spec, cfg)
    subscription = None
    if spec.plan != spec_of(current).plan:
        subscription = switch_plan(registry.get_subscription(cfg.environment, name), spec.plan, effective or now())
    if data == current.spec and subscription is None:
        return current  # nothing changed: no write, no version bump
    return registry.update_endpoint(cfg.environment, name, expected_version=current.version, spec=data,
                                    spec_hash=spec_hash(data), subscription=subscription,
                                    admit=admission.guard(cfg) if admission is not None else None)


def switch_plan(segments: Sequence[SubscriptionSegment], plan: str, at: datetime) -> list[SubscriptionSegment]:
    if not segments or segments[-1].end is not None:
        raise InputError("the endpoint has no running subscription to change")
    last = segments[-1]
    if at <= last.start and last.start > now():
        # The current plan has not started yet: it is replaced, not ended.
        return [*segments[:-1], last.model_copy(update={"plan": plan})]
    if at <= last.start:
        raise InputError(f"plan change at {at.isoformat()} is not after the current plan's start {last.start.isoformat()}")
    return [*segments[:-1], last.model_copy(update={"end": at}), SubscriptionSegment(plan=plan, start=at)]


def end_subscription(segments: Sequence[SubscriptionSegment], at: datetime) -> list[SubscriptionSegment]:
    """The history cut at `at`: segments that had not started by then are dropped, the running one ends.

    A subscription that has not started yet can be dropped whole; ending a started
    one before its own start is a mistake and is refused.
    """
    if segments and at <= segments[0].start and segments[0].start <= now():
        raise InputError(f"end at {at.isoformat()} is not after the subscription's start "
                         f"{segments[0].start.isoformat()}")
    kept = [s for s in segments if s.start < at]
    if kept and (kept[-1].end is None or kept[-1].end > at):
        kept[-1] = kept[-1].model_copy(update={"end": at})
    return kept


def mark_deleting(registry: Registry, env: str, name: str, effective: datetime | None = None) -> Endpoint:
    current = registry.get_endpoint(env, name)
    subscription = end_subscription(registry.get_subscription(env, name), effective or now())
    return registry.update_endpoint(env, name, expected_version=current.version, status="deleting",
                                    status_message="delete requested", subscription=subscription)


@dataclass(frozen=True)
class SyncResult:
    endpoint: str
    action: str  # deploy | destroy
    ok: bool
    message: str


def pending_work(registry: Registry, env: str) -> list[Endpoint]:
    """Endpoints to deploy or destroy: marked for deletion, or not deployed as they should run.

    `needs_deploy` compares the deployed hash with what should run, so it covers a
    changed spec and a hard-capped endpoint not yet scaled to zero, and leaves out a
    suspended endpoint already deployed at zero (whose hash differs from its spec's
    by design). One scan of the environment answers all of it.
    """
    cutoff = now() - STALE_DEPLOY
    return [
        e for e in registry.list_endpoints(env)
        if (e.status == "deleting" or needs_deploy(e))
        and not (e.status == "deploying" and e.updated_at > cutoff)  # another sync is on it
    ]


def deploy_one(registry: Registry, cfg: EnvironmentConfig, endpoint: Endpoint, deployer: Deployer) -> SyncResult:
    """Deploy (or destroy) one endpoint, recording each step so a crash leaves it retryable."""
    env = cfg.environment
    action = "destroy" if endpoint.status == "deleting" else "deploy"
    suspended = is_suspended(endpoint)
    spec = EndpointSpec.model_validate({**deploy_spec(endpoint), "suspended": suspended})
    marked = endpoint
    if action == "deploy" and not suspended:
        marked = registry.update_endpoint(env, endpoint.name, expected_version=endpoint.version,
                                          status="deploying", status_message="deploy started")
    try:
        outcome = deployer.destroy(spec, cfg) if action == "destroy" else deployer.deploy(spec, cfg)
    except Exception as exc:  # noqa: BLE001 - one endpoint's failure must not stop the others
        outcome = DeployOutcome(False, f"{type(exc).__name__}: {exc}", {})
    # Re-read: the spec may have changed while the stack deployed. What was deployed
    # is recorded either way; a newer spec stays pending for the next sync.
    latest = registry.get_endpoint(env, endpoint.name)
    if action == "destroy":
        if outcome.ok:
            registry.delete_endpoint(env, endpoint.name, expected_version=latest.version)
        else:
            registry.update_endpoint(env, endpoint.name, expected_version=latest.version,
                                     status_message=f"destroy failed: {outcome.message}")
    elif outcome.ok and suspended:
        registry.update_endpoint(env, endpoint.name, expected_version=latest.version,
                                 deployed_hash=target_hash(endpoint))
        return SyncResult(endpoint.name, action, True, sync_message(endpoint))
    elif outcome.ok:
        changed = latest.spec_hash != endpoint.spec_hash
        registry.update_endpoint(env, endpoint.name, expected_version=latest.version,
                                 status="pending" if changed else "ready",
                                 status_message="changed while deploying" if changed else "",
                                 deployed_hash=endpoint.spec_hash)
    else:
        registry.update_endpoint(env, endpoint.name, expected_version=latest.version, status="failed",
                                 status_message=outcome.message)
    return SyncResult(endpoint.name, action, outcome.ok, outcome.message)


def sync(registry_factory: Callable[[], Registry], cfg: EnvironmentConfig, deployer: Deployer, parallel: int,
         on_done: Callable[[SyncResult], None] | None = None) -> list[SyncResult]:
    """Deploy every endpoint whose spec changed, `parallel` at a time; one failure stops nothing."""
    if parallel < 1:
        raise InputError(f"--parallel must be at least 1, got {parallel}")
    with registry_factory() as registry:
        work = pending_work(registry, cfg.environment)
    if not work:
        return []
    deployer.check()  # raises DeployUnavailable: nothing was started

    def run(endpoint: Endpoint) -> SyncResult:
        try:
            with registry_factory() as registry:  # one connection per worker
                return deploy_one(registry, cfg, endpoint, deployer)
        except PrivendError as exc:  # e.g. a concurrent writer: report it, keep the others going
            return SyncResult(endpoint.name, "deploy", False, str(exc))

    results: list[SyncResult] = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=parallel) as pool:
        for future in concurrent.futures.as_completed([pool.submit(run, e) for e in work]):
            result = future.result()
            results.append(result)
            if on_done:
                on_done(result)
    return sorted(results, key=lambda r: r.endpoint)


def deploy_now(registry: Registry, cfg: EnvironmentConfig, name: str, deployer: Deployer) -> tuple[bool, str]:
    """Deploy one endpoint right after recording a change. Returns (deployed, message)."""
    try:
        deployer.check()
    except DeployUnavailable as exc:
        return False, (f"recorded but not deployed: {exc}; deploy later with "
                       f"`privend endpoint sync --env {cfg.environment}`")
    endpoint = registry.get_endpoint(cfg.environment, name)
    result = deploy_one(registry, cfg, endpoint, deployer)
    if not result.ok:
        raise PrivendError(f"{result.action} of endpoint '{name}' failed: {result.message}")
    return True, f"{result.action}ed endpoint '{name}'" if result.action == "deploy" else f"destroyed endpoint '{name}'"
