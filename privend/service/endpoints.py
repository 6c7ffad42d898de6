"""Endpoint use cases: the lifecycle of a customer endpoint, from create to destroy.

A change is validated, admitted to its GPU pool and checked against the
guardrails before anything is recorded; it is recorded before it is deployed, so
nothing is lost when a deploy fails or cannot run here: `sync` deploys whatever
differs from what was last deployed.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta

from privend import stack_outputs
from privend.admission import Admission, admit_change, admit_endpoint, increases_demand
from privend.billing.plans import Plan, validate_plan_name
from privend.billing.suspension import deploy_spec, is_suspended, needs_deploy, sync_message, target_hash
from privend.config import EnvironmentConfig, display_path, stack_file
from privend.connect import connect_info as render_connect_info
from privend.deploy import Deployer, DeployOutcome, DeployUnavailable
from privend.errors import InputError, PrivendError
from privend.registry import Endpoint, Registry, SubscriptionSegment, spec_hash
from privend.service.app import App
from privend.spec import EndpointRequest, EndpointSpec, TenantSpec, build_spec, validate_request
from privend.subscriptions import check_date, check_not_finalized, end_subscription, switch_plan
from privend.values import EndpointStatus

STALE_DEPLOY = timedelta(hours=1)  # a "deploying" mark older than this is from a crashed run


def now() -> datetime:
    return datetime.now(UTC)


# ---------------------------------------------------------------------------
# Requests and results


@dataclass(frozen=True)
class SpecChanges:
    """Spec fields an operator asked for; None leaves a field as it is (or to its default, on create)."""

    model: str | None = None
    revision: str | None = None
    engine: str | None = None
    pool: str | None = None
    min_replicas: int | None = None
    max_replicas: int | None = None
    plan: str | None = None
    quantize: str | None = None
    max_input_tokens: int | None = None
    max_total_tokens: int | None = None
    gpus_per_replica: int | None = None
    image: str | None = None
    cold_start_wait_seconds: int | None = None

    def given(self) -> dict[str, object]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @property
    def empty(self) -> bool:
        return not self.given()


@dataclass(frozen=True)
class Deployment:
    """What happened after a change was recorded: deployed, skipped (and why), or failed."""

    deployed: bool
    ok: bool
    message: str


@dataclass(frozen=True)
class CreateEndpoint:
    env: str
    name: str
    tenant: str
    changes: SpecChanges
    start: datetime | None = None
    strict_quota: bool = False
    deploy: bool = True
    check_quota: bool = True  # False: no AWS call at all (the offline demo)


@dataclass(frozen=True)
class CreatedEndpoint:
    endpoint: Endpoint
    spec: EndpointSpec
    admission: Admission | None  # None when the name was taken: the registry refused it first
    quota_notice: str | None  # a note or warning for stderr, None when the quota step found nothing
    deployment: Deployment


@dataclass(frozen=True)
class UpdateEndpoint:
    env: str
    name: str
    changes: SpecChanges
    effective: datetime | None = None  # when a plan change takes effect
    deploy: bool = True


@dataclass(frozen=True)
class UpdatedEndpoint:
    endpoint: Endpoint
    changed: bool
    deployment: Deployment | None  # None when nothing changed


@dataclass(frozen=True)
class DeleteEndpoint:
    env: str
    name: str
    effective: datetime | None = None  # when the subscription ends
    deploy: bool = True


@dataclass(frozen=True)
class DeletedEndpoint:
    endpoint: Endpoint
    deployment: Deployment


@dataclass(frozen=True)
class EndpointView:
    endpoint: Endpoint
    spec: EndpointSpec
    subscription: list[SubscriptionSegment] = field(default_factory=list)


@dataclass(frozen=True)
class SyncResult:
    endpoint: str
    action: str  # deploy | destroy
    ok: bool
    message: str


@dataclass(frozen=True)
class SyncReport:
    env: str
    results: list[SyncResult]

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def failed(self) -> int:
        return sum(not r.ok for r in self.results)


# ---------------------------------------------------------------------------
# Use cases


def create_endpoint(app: App, request: CreateEndpoint) -> CreatedEndpoint:
    """Validate, size, admit and record a new endpoint, then deploy it unless told not to.

    Refused (InputError, nothing recorded) when its pool cannot hold it at maximum
    scale within maxSize. With AWS credentials the quota step warns when it would
    exceed an EC2 vCPU quota (refuses, PrivendError, with `strict_quota`).
    """
    wanted = validate_request(name=request.name, tenant=request.tenant, **request.changes.given())
    if request.start is not None:
        check_date(request.start, datetime.now(UTC), "--start")
    cfg = app.environment(request.env)
    plans = app.plans()
    source = app.stack_source(request.env)
    with app.registry() as registry:
        # Capacity and quota come first: a refusal must leave nothing recorded.
        spec = size_request(registry, cfg, wanted, plans)
        admission = admit_endpoint(registry.list_endpoints(cfg.environment), spec, cfg, source)
        notice = (quota_notice(admission, cfg, strict=request.strict_quota)
                  if admission is not None and request.check_quota else None)
        # Recorded only if the pool still holds it: checked again atomically with the write,
        # so of two concurrent creators that only one fits, one is refused with the numbers.
        created = new_endpoint(registry, cfg, spec, request.start, admission=admission)
        deployment = deploy_after_record(app, registry, cfg, created.name, request.deploy)
    return CreatedEndpoint(created, EndpointSpec.from_record(created), admission, notice, deployment)


def update_endpoint(app: App, request: UpdateEndpoint) -> UpdatedEndpoint:
    """Change an endpoint's spec or plan, then deploy it unless told not to.

    Refused (InputError, nothing recorded) when the change asks more of the GPU pool
    (another pool, more GPUs per replica, a higher replicas MAX) and the pool cannot
    hold it at maximum scale within maxSize.
    """
    if request.changes.empty:
        raise InputError("nothing to change: give at least one option")
    if request.effective is not None and request.changes.plan is None:
        raise InputError("--effective dates a plan change: give --plan as well")
    if request.effective is not None:
        check_date(request.effective, datetime.now(UTC), "--effective")
    cfg = app.environment(request.env)
    with app.registry() as registry:
        before = registry.get_endpoint(request.env, request.name)
        if request.changes.plan is not None:
            at = request.effective or datetime.now(UTC)
            timezone = registry.get_tenant(request.env, before.tenant).billing_timezone
            check_not_finalized(at, timezone, [p.period for p in registry.list_billing_periods(request.env)
                                               if p.finalized], "--effective")
        after = change_endpoint(registry, cfg, request.name, effective=request.effective,
                                source=app.stack_source(request.env), plans=app.plans(),
                                **request.changes.given())
        if after.spec_hash == before.spec_hash:  # the plan is part of the spec: same hash, nothing changed
            return UpdatedEndpoint(after, changed=False, deployment=None)
        deployment = deploy_after_record(app, registry, cfg, request.name, request.deploy)
    return UpdatedEndpoint(after, changed=True, deployment=deployment)


def scale_endpoint(app: App, env: str, name: str, min_replicas: int, max_replicas: int,
                   deploy: bool = True) -> UpdatedEndpoint:
    """Change an endpoint's replica bounds; a higher MAX is admitted to its pool first."""
    cfg = app.environment(env)
    with app.registry() as registry:
        before = registry.get_endpoint(env, name)
        after = change_endpoint(registry, cfg, name, source=app.stack_source(env), plans=app.plans(),
                                min_replicas=min_replicas, max_replicas=max_replicas)
        deployment = deploy_after_record(app, registry, cfg, name, deploy)
    return UpdatedEndpoint(after, changed=after.version != before.version, deployment=deployment)


def delete_endpoint(app: App, request: DeleteEndpoint,
                    confirm: Callable[[Endpoint], None] | None = None) -> DeletedEndpoint:
    """End an endpoint's subscription and mark it for deletion; destroy its stack unless told not to.

    `confirm` is called with the endpoint before anything changes; it raises to abort.
    """
    if request.effective is not None:
        check_date(request.effective, datetime.now(UTC), "--effective")
    cfg = app.environment(request.env)
    with app.registry() as registry:
        current = registry.get_endpoint(request.env, request.name)
        if confirm is not None:
            confirm(current)
        marked = mark_deleting(registry, request.env, request.name, request.effective)
        deployment = deploy_after_record(app, registry, cfg, request.name, request.deploy)
    return DeletedEndpoint(marked, deployment)


def list_endpoints(app: App, env: str, tenant: str | None = None) -> list[EndpointView]:
    with app.registry() as registry:
        return [EndpointView(e, EndpointSpec.from_record(e)) for e in registry.list_endpoints(env, tenant=tenant)]


def show_endpoint(app: App, env: str, name: str) -> EndpointView:
    with app.registry() as registry:
        endpoint = registry.get_endpoint(env, name)
        return EndpointView(endpoint, EndpointSpec.from_record(endpoint), registry.get_subscription(env, name))


@dataclass(frozen=True)
class ConnectInfo:
    spec: EndpointSpec
    region: str
    service_name: str | None  # None until the endpoint stack is deployed
    text: str  # the instructions, as connect-info prints them


def connect_details(app: App, env: str, name: str) -> ConnectInfo:
    """What the customer needs to connect over PrivateLink, as fields and as instructions."""
    cfg = app.environment(env)
    with app.registry() as registry:
        endpoint = registry.get_endpoint(env, name)
    outputs = stack_outputs.endpoint_outputs(app.settings, cfg, name) if endpoint.deployed_hash else {}
    spec = EndpointSpec.from_record(endpoint)
    service_name = outputs.get("serviceName")
    return ConnectInfo(spec, cfg.region, service_name, render_connect_info(spec, cfg, service_name))


def connect_info(app: App, env: str, name: str) -> str:
    """What the customer runs in their own account to connect over PrivateLink."""
    return connect_details(app, env, name).text


def sync_endpoints(app: App, env: str, parallel: int, *, on_start: Callable[[int], None] | None = None,
                   on_done: Callable[[SyncResult], None] | None = None) -> SyncReport:
    """Deploy every endpoint whose spec differs from what was last deployed, `parallel` at a time.

    PrivendError, with nothing started, when deploys cannot run here. One endpoint's
    failure stops none of the others; the report says which failed.
    """
    cfg = app.environment(env)
    with app.registry() as registry:
        total = len(pending_work(registry, env))
    if total == 0:
        return SyncReport(env, [])
    if on_start is not None:
        on_start(total)
    try:
        results = sync(app.registry, cfg, app.deployer(), parallel, on_done=on_done)
    except DeployUnavailable as exc:
        raise PrivendError(f"{total} endpoint(s) in env {env} recorded but not deployed: {exc}; "
                           "then rerun `privend endpoint sync`") from None
    return SyncReport(env, results)


# ---------------------------------------------------------------------------
# Steps on an open registry


def check_policy(spec: EndpointSpec, cfg: EnvironmentConfig) -> None:
    """Refuse a spec whose endpoint stack would violate a mandatory guardrail (PolicyViolation)."""
    from privend.plan import check_endpoint_policy  # the offline engine imports the Pulumi SDKs

    check_endpoint_policy(spec, cfg)


def quota_notice(admission: Admission, cfg: EnvironmentConfig, *, strict: bool) -> str | None:
    """The quota step of a create: a note or warning to print, or None; PrivendError with `strict`."""
    from privend import quotas  # imports boto3

    return quotas.endpoint_quota_notice(admission, cfg, strict=strict,
                                        clients=lambda c: quotas.aws_clients(c))


def new_endpoint(registry: Registry, cfg: EnvironmentConfig, spec: EndpointSpec,
                 start: datetime | None = None, *, admission: Admission | None = None) -> Endpoint:
    """Check a sized spec against the guardrails and record it (status pending). Nothing is stored on any error.

    `admission`, from `admission.admit_endpoint`, makes the registry check the pool
    again atomically with the write: a concurrent creator that took the room
    first makes this one fail with the numbers.
    """
    check_policy(spec, cfg)
    data = spec.model_dump(mode="json")
    stamp = now()
    endpoint = Endpoint(env=cfg.environment, name=spec.name, tenant=spec.tenant, spec=data, spec_hash=spec_hash(data),
                        created_at=stamp, updated_at=stamp)
    return registry.create_endpoint(endpoint, [SubscriptionSegment(plan=spec.plan, start=start or stamp)],
                                    admit=admission.guard(cfg) if admission is not None else None)


def size_request(registry: Registry, cfg: EnvironmentConfig, request: EndpointRequest,
                 plans: Mapping[str, Plan] | None = None) -> EndpointSpec:
    """The spec of a request for a registered tenant of the environment."""
    tenant = registry.get_tenant(cfg.environment, request.tenant)
    return build_spec(request, TenantSpec.from_record(tenant), cfg, plans)


def change_endpoint(registry: Registry, cfg: EnvironmentConfig, name: str, effective: datetime | None = None,
                    *, source: str | None = None, plans: Mapping[str, Plan] | None = None,
                    **changes) -> Endpoint:
    """Apply changes to an endpoint's spec (and its plan, from `effective`).

    A change that may ask more of a GPU pool (`admission.increases_demand`) is refused
    with the numbers when the pool cannot hold it at maximum scale, checked before
    anything is recorded and again atomically with the write. `source` names the
    stack file in refusals (default: the project's); `plans` is the plans catalog.
    """
    if changes.get("plan") is not None:
        validate_plan_name(changes["plan"], plans)
    env = cfg.environment
    current = registry.get_endpoint(env, name)
    if current.status == EndpointStatus.DELETING:
        raise InputError(f"endpoint '{name}' is being deleted in env {env}")
    current_spec = EndpointSpec.from_record(current)
    # API keys are not part of a request: they come and go through `endpoint key`, and stay across changes.
    spec = size_request(registry, cfg, current_spec.request(**changes), plans).with_api_keys(current_spec.api_keys)
    data = spec.model_dump(mode="json")
    admission = None
    if data != current.spec:
        if increases_demand(current_spec, spec):
            shown = source if source is not None else display_path(stack_file(env))
            admission = admit_change(registry.list_endpoints(env), cfg, current_spec, spec, shown)
        check_policy(spec, cfg)
    subscription = None
    if spec.plan != current_spec.plan:
        subscription = switch_plan(registry.get_subscription(env, name), spec.plan, effective or now(), now())
    if data == current.spec and subscription is None:
        return current  # nothing changed: no write, no version bump
    return registry.update_endpoint(env, name, expected_version=current.version, spec=data,
                                    spec_hash=spec_hash(data), subscription=subscription,
                                    admit=admission.guard(cfg) if admission is not None else None)


def mark_deleting(registry: Registry, env: str, name: str, effective: datetime | None = None) -> Endpoint:
    current = registry.get_endpoint(env, name)
    subscription = end_subscription(registry.get_subscription(env, name), effective or now(), now())
    return registry.update_endpoint(env, name, expected_version=current.version, status=EndpointStatus.DELETING,
                                    status_message="delete requested", subscription=subscription)


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
        if (e.status == EndpointStatus.DELETING or needs_deploy(e))
        and not (e.status == EndpointStatus.DEPLOYING and e.updated_at > cutoff)  # another sync is on it
    ]


def deploy_one(registry: Registry, cfg: EnvironmentConfig, endpoint: Endpoint, deployer: Deployer) -> SyncResult:
    """Deploy (or destroy) one endpoint, recording each step so a crash leaves it retryable."""
    env = cfg.environment
    action = "destroy" if endpoint.status == EndpointStatus.DELETING else "deploy"
    suspended = is_suspended(endpoint)
    spec = EndpointSpec.model_validate({**deploy_spec(endpoint), "suspended": suspended})
    if action == "deploy" and not suspended:
        registry.update_endpoint(env, endpoint.name, expected_version=endpoint.version,
                                 status=EndpointStatus.DEPLOYING, status_message="deploy started")
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
                                 status=EndpointStatus.PENDING if changed else EndpointStatus.READY,
                                 status_message="changed while deploying" if changed else "",
                                 deployed_hash=endpoint.spec_hash)
    else:
        registry.update_endpoint(env, endpoint.name, expected_version=latest.version, status=EndpointStatus.FAILED,
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


def deploy_after_record(app: App, registry: Registry, cfg: EnvironmentConfig, name: str,
                        deploy: bool) -> Deployment:
    """Deploy one endpoint right after its change was recorded, or say how it will be."""
    later = f"`privend endpoint sync --env {cfg.environment}`"
    if not deploy:
        return Deployment(False, True, f"recorded; not deployed (--no-deploy): deploy with {later}")
    deployer = app.deployer()
    try:
        deployer.check()
    except DeployUnavailable as exc:
        return Deployment(False, True, f"recorded but not deployed: {exc}; deploy later with {later}")
    result = deploy_one(registry, cfg, registry.get_endpoint(cfg.environment, name), deployer)
    if not result.ok:
        return Deployment(False, False, f"{result.action} of endpoint '{name}' failed: {result.message}")
    done = f"deployed endpoint '{name}'" if result.action == "deploy" else f"destroyed endpoint '{name}'"
    return Deployment(True, True, done)


def subscription_rows(segments: Sequence[SubscriptionSegment]) -> list[dict[str, str | None]]:
    return [{"plan": s.plan, "start": s.start.isoformat(), "end": s.end.isoformat() if s.end else None}
            for s in segments]
