"""`privend endpoint ...`: the customer endpoint lifecycle."""

from __future__ import annotations

import sys

import click
from rich.progress import Progress

from privend.cli import env_option, format_option, pass_app
from privend.cli.render import Count, emit_json, emit_table, parse_time
from privend.cost import BASELINE_NAME, SPOT_PRICE_FACTOR
from privend.errors import PrivendError
from privend.service import endpoints, keys
from privend.service.app import App
from privend.service.endpoints import Deployment, EndpointView, SpecChanges
from privend.spec import DEFAULT_PLAN, QUANTIZATIONS, parse_duration, parse_replicas
from privend.values import ENGINES


def _spec_options(func=None, *, model_required: bool = False):
    if func is None:
        return lambda f: _spec_options(f, model_required=model_required)
    options = [
        click.option("--model", required=model_required,
                     help="Hugging Face hub id, org/name (`privend catalog models` lists the sized ones)."),
        click.option("--revision", help="Model revision: commit sha, branch or tag (default main)."),
        click.option("--engine", type=click.Choice(ENGINES), help="Inference engine (default tgi)."),
        click.option("--pool", help="GPU pool of the environment (default: its first pool)."),
        click.option("--replicas", help="MIN or MIN:MAX replicas (MIN 0 = scale to zero)."),
        click.option("--plan", "plan_name",
                     help=f"Subscription plan from the plans catalog (`privend catalog plans`); "
                          f"endpoint create defaults to {DEFAULT_PLAN}."),
        click.option("--quantize", type=click.Choice(QUANTIZATIONS),
                     help="Quantize the weights at load time (fewer GPUs; default: the model's dtype)."),
        click.option("--max-input-tokens", type=Count(min=1),
                     help="Longest prompt accepted, in tokens (default: from the model catalog)."),
        click.option("--max-total-tokens", type=Count(min=2),
                     help="Longest prompt plus generated tokens (default: from the model catalog)."),
        click.option("--gpus-per-replica", type=Count(min=1), help="Required for models outside the catalog."),
        click.option("--image", help="'stock' (default), or a baked image with the weights built in, "
                                     "pinned by digest: registry/repo@sha256:<digest> (see images/)."),
        click.option("--cold-start-wait", help="How long the gateway holds a request while no replica is ready "
                                               "(90s, 10m, 1h; default 10m, at most 1h); then 503 with Retry-After."),
        click.option("--no-deploy", is_flag=True, help="Record the change only; `endpoint sync` deploys it."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _changes(model, revision, engine, pool, replicas, plan_name, quantize, max_input_tokens, max_total_tokens,
             gpus_per_replica, image, cold_start_wait=None) -> SpecChanges:
    low = high = None
    if replicas is not None:
        low, high = parse_replicas(replicas)
    wait = parse_duration(cold_start_wait, "--cold-start-wait") if cold_start_wait is not None else None
    return SpecChanges(model=model, revision=revision, engine=engine, pool=pool, min_replicas=low,
                       max_replicas=high, plan=plan_name, quantize=quantize, max_input_tokens=max_input_tokens,
                       max_total_tokens=max_total_tokens, gpus_per_replica=gpus_per_replica, image=image,
                       cold_start_wait_seconds=wait)


def _endpoint_json(view: EndpointView) -> dict:
    e, spec = view.endpoint, view.spec
    return {
        "name": e.name, "env": e.env, "tenant": e.tenant, "status": e.status, "status_message": e.status_message,
        "model": spec.model, "engine": spec.engine, "pool": spec.pool,
        "replicas": {"min": spec.min_replicas, "max": spec.max_replicas},
        "gpus_per_replica": spec.gpus_per_replica, "plan": spec.plan,
        "spec_hash": e.spec_hash, "deployed_hash": e.deployed_hash, "in_sync": e.spec_hash == e.deployed_hash,
        "updated_at": e.updated_at.isoformat(), "version": e.version,
    }


def _record_json(e) -> dict:
    """The stable fields of an endpoint record, for commands that changed it."""
    return {"name": e.name, "env": e.env, "tenant": e.tenant, "status": e.status,
            "status_message": e.status_message, "spec_hash": e.spec_hash, "deployed_hash": e.deployed_hash,
            "in_sync": e.spec_hash == e.deployed_hash, "updated_at": e.updated_at.isoformat(), "version": e.version}


def _deployment_json(deployment: Deployment | None) -> dict | None:
    if deployment is None:
        return None
    return {"deployed": deployment.deployed, "ok": deployment.ok, "message": deployment.message}


def _emit_change(data: dict, deployment: Deployment | None) -> None:
    """JSON of a change, then exit 1 (one line on stderr) when its deploy failed: the record stays for sync."""
    emit_json({**data, "deployment": _deployment_json(deployment)})
    if deployment is not None and not deployment.ok:
        raise PrivendError(deployment.message)


def _report(deployment: Deployment | None) -> None:
    """Say what happened after the change was recorded; a failed deploy exits 1 (the record stays for sync)."""
    if deployment is None:
        return
    if not deployment.ok:
        raise PrivendError(deployment.message)
    click.echo(deployment.message)


@click.group()
def endpoint() -> None:
    """Create, change, deploy and inspect customer endpoints."""


def _cost_lines(admission) -> list[str]:
    """The new endpoint's monthly estimate, on-demand: pooled at min and max scale, and dedicated at peak."""
    c, spec = admission.cost, admission.spec
    on = ", ".join(f"{count} on {name}" for name, count in c.instance_types.items()) or "none"
    own = (f"; ${c.own_nodes_idle_monthly:,.2f} of it for idle GPUs of the tenant's own nodes"
           if c.own_nodes_idle_monthly else "")
    lines = [
        f"monthly cost estimate, USD, on-demand (prices read {c.prices_read_on}; replicas "
        f"{spec.min_replicas}..{spec.max_replicas}, {spec.gpus_per_replica} GPU(s) each):",
        f"  pooled at min scale  ${c.total_monthly:,.2f} = compute ${c.compute_monthly:,.2f} (replicas at min: "
        f"{on}{own}) + NLB ${c.nlb_monthly:,.2f} + PrivateLink ${c.privatelink_monthly:,.2f}",
        f"  pooled at max scale  ${c.total_at_max_monthly:,.2f} = compute ${c.compute_at_max_monthly:,.2f} "
        "+ the same network",
        f"  dedicated at peak    ${c.baseline_total_monthly:,.2f} = {c.baseline_instances}x {c.baseline_instance_type} "
        f"${c.baseline_compute_monthly:,.2f} (peak taken as replicas MAX {c.baseline_peak_replicas}, always on) "
        "+ the same network",
    ]
    if c.spot_total_monthly is not None:
        lines.append(f"  on spot (assumed {SPOT_PRICE_FACTOR} x on-demand): ${c.spot_total_monthly:,.2f} at min scale")
    lines.append("  (idle GPUs of shared nodes, floor nodes and warm headroom are the platform's overhead, not in "
                 "these figures: `privend capacity plan`; traffic-driven figures: `privend capacity simulate`)")
    return lines


@endpoint.command("create")
@click.argument("name")
@click.option("--tenant", required=True, help="The tenant (customer) the endpoint belongs to.")
@click.option("--start", help="Subscription start, ISO 8601 with offset (default now).")
@click.option("--strict-quota", is_flag=True,
              help="Refuse (exit 1) when the endpoint would exceed an EC2 vCPU quota or quotas cannot be checked.")
@_spec_options(model_required=True)
@env_option
@format_option
@pass_app
def create(app: App, name, tenant, start, strict_quota, no_deploy, env, fmt, **options) -> None:
    """Create an endpoint for a tenant.

    Refused (exit 2) when its pool cannot hold it at maximum scale within
    maxSize. With AWS credentials, warns when it would exceed an EC2 vCPU quota
    (refuses, exit 1, with --strict-quota).
    """
    changes = _changes(**options)
    start_at = parse_time(start, "--start")
    created = endpoints.create_endpoint(app, endpoints.CreateEndpoint(
        env=env, name=name, tenant=tenant, changes=changes, start=start_at, strict_quota=strict_quota,
        deploy=not no_deploy))
    if fmt == "json":
        if created.quota_notice:
            click.echo(created.quota_notice, err=True)
        _emit_change({**_endpoint_json(EndpointView(created.endpoint, created.spec)),
                      "cost": _cost_json(created.admission)}, created.deployment)
        return
    render_created(created)


def _cost_json(admission) -> dict | None:
    if admission is None:
        return None
    c = admission.cost
    return {"prices_read_on": str(c.prices_read_on), "pooled_monthly": str(c.total_monthly),
            "compute_monthly": str(c.compute_monthly), "nlb_monthly": str(c.nlb_monthly),
            "privatelink_monthly": str(c.privatelink_monthly),
            "own_nodes_idle_monthly": str(c.own_nodes_idle_monthly),
            "pooled_at_max_monthly": str(c.total_at_max_monthly),
            "compute_at_max_monthly": str(c.compute_at_max_monthly),
            "spot_pooled_monthly": None if c.spot_total_monthly is None else str(c.spot_total_monthly),
            "dedicated_monthly": str(c.baseline_total_monthly),
            "dedicated": {"name": BASELINE_NAME, "instance_type": c.baseline_instance_type,
                          "instances": c.baseline_instances, "peak_replicas": c.baseline_peak_replicas,
                          "compute_monthly": str(c.baseline_compute_monthly)}}


def render_created(created: endpoints.CreatedEndpoint, costs: bool = True, deployment: bool = True) -> None:
    spec = created.spec
    click.echo(
        f"created endpoint '{spec.name}' for tenant '{spec.tenant}' in env {spec.env}: {spec.model} on pool {spec.pool}, "
        f"{spec.gpus_per_replica} GPU(s) per replica, replicas {spec.min_replicas}..{spec.max_replicas}, "
        f"tokens {spec.max_input_tokens} in / {spec.max_total_tokens} total"
    )
    for line in _cost_lines(created.admission) if created.admission and costs else []:
        click.echo(line)
    click.echo(f"subscribed to plan '{spec.plan}'" + (" (the default; --plan chooses another)"
                                                      if spec.plan == DEFAULT_PLAN else ""))
    if created.quota_notice:
        click.echo(created.quota_notice, err=True)
    if deployment:
        _report(created.deployment)


@endpoint.command("update")
@click.argument("name")
@click.option("--effective", help="When a plan change takes effect, ISO 8601 with offset (default now).")
@_spec_options
@env_option
@format_option
@pass_app
def update(app: App, name, effective, no_deploy, env, fmt, **options) -> None:
    """Change an endpoint's spec or plan.

    Refused (exit 2, nothing recorded) when the change asks more of the GPU pool
    (another pool, more GPUs per replica, a higher replicas MAX) and the pool
    cannot hold it at maximum scale within maxSize.
    """
    changes = _changes(**options)
    if changes.empty:
        raise click.UsageError("nothing to change: give at least one option")
    at = parse_time(effective, "--effective")
    if at is not None and changes.plan is None:
        raise click.UsageError("--effective dates a plan change: give --plan as well")
    updated = endpoints.update_endpoint(app, endpoints.UpdateEndpoint(
        env=env, name=name, changes=changes, effective=at, deploy=not no_deploy))
    if fmt == "json":
        _emit_change({**_record_json(updated.endpoint), "changed": updated.changed}, updated.deployment)
        return
    if not updated.changed:
        click.echo(f"endpoint '{name}' unchanged")
        return
    click.echo(f"updated endpoint '{name}' in env {env}")
    _report(updated.deployment)


@endpoint.command("scale")
@click.argument("name")
@click.option("--replicas", required=True, help="MIN or MIN:MAX replicas (MIN 0 = scale to zero).")
@click.option("--no-deploy", is_flag=True, help="Record the change only; `endpoint sync` deploys it.")
@env_option
@format_option
@pass_app
def scale(app: App, name, replicas, no_deploy, env, fmt) -> None:
    """Change an endpoint's replica bounds.

    Refused (exit 2, nothing recorded) when a higher MAX does not fit the
    pool's maxSize at maximum scale; a lower or equal MAX is never refused.
    """
    low, high = parse_replicas(replicas)
    scaled = endpoints.scale_endpoint(app, env, name, low, high, deploy=not no_deploy)
    if fmt == "json":
        _emit_change({**_record_json(scaled.endpoint), "changed": scaled.changed,
                      "replicas": {"min": low, "max": high}}, scaled.deployment)
        return
    click.echo(f"scaled endpoint '{name}' to {low}..{high} replicas")
    _report(scaled.deployment)


@endpoint.command("delete")
@click.argument("name")
@click.option("--effective", help="When the subscription ends, ISO 8601 with offset (default now).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--no-deploy", is_flag=True, help="Only mark for deletion; `endpoint sync` destroys the stack.")
@env_option
@format_option
@pass_app
def delete(app: App, name, effective, yes, no_deploy, env, fmt) -> None:
    """Delete an endpoint: end its subscription and destroy its stack."""
    at = parse_time(effective, "--effective")

    def confirm(_endpoint) -> None:
        if not yes:
            click.confirm(f"Delete endpoint '{name}' in env {env}, destroying its load balancer and workload?",
                          abort=True)

    deleted = endpoints.delete_endpoint(app, endpoints.DeleteEndpoint(
        env=env, name=name, effective=at, deploy=not no_deploy), confirm=confirm)
    if fmt == "json":
        _emit_change(_record_json(deleted.endpoint), deleted.deployment)
        return
    click.echo(f"endpoint '{name}' marked for deletion")
    _report(deleted.deployment)


@endpoint.command("list")
@click.option("--tenant", help="Only this tenant's endpoints.")
@env_option
@format_option
@pass_app
def list_(app: App, tenant, env, fmt) -> None:
    """List endpoints."""
    render_list(endpoints.list_endpoints(app, env, tenant), env, fmt)


def render_list(views: list[EndpointView], env: str, fmt: str) -> None:
    if fmt == "json":
        emit_json([_endpoint_json(v) for v in views])
        return
    emit_table(f"endpoints in {env}", ["name", "tenant", "model", "pool", "replicas", "gpus/replica", "status", "in sync"],
               [(v.endpoint.name, v.endpoint.tenant, v.spec.model, v.spec.pool,
                 f"{v.spec.min_replicas}..{v.spec.max_replicas}", v.spec.gpus_per_replica, v.endpoint.status,
                 "yes" if v.endpoint.spec_hash == v.endpoint.deployed_hash else "no")
                for v in views],
               drop=["gpus/replica", "in sync", "pool", "replicas"])


@endpoint.command("show")
@click.argument("name")
@env_option
@format_option
@pass_app
def show(app: App, name, env, fmt) -> None:
    """Show one endpoint, its spec and subscription."""
    view = endpoints.show_endpoint(app, env, name)
    spec = view.spec.model_dump(mode="json")
    data = {**_endpoint_json(view), "spec": spec, "subscription": endpoints.subscription_rows(view.subscription)}
    if fmt == "json":
        emit_json(data)
        return
    rows = [(k, v) for k, v in data.items() if k not in ("spec", "subscription", "replicas")]
    rows.append(("replicas", f"{data['replicas']['min']}..{data['replicas']['max']}"))
    rows += [(f"spec.{k}", ", ".join(str(x["name"]) if isinstance(x, dict) else str(x) for x in v)
              if isinstance(v, list) else v) for k, v in sorted(spec.items())]
    rows += [("subscription", f"{s['plan']}: {s['start']} .. {s['end'] or 'open'}") for s in data["subscription"]]
    emit_table(f"endpoint {name}", ["field", "value"], rows)


@endpoint.command("sync")
@click.option("--parallel", type=Count(min=1), default=4, show_default=True, help="Stacks deployed at once.")
@env_option
@format_option
@pass_app
def sync_(app: App, parallel, env, fmt) -> None:
    """Deploy every endpoint whose spec differs from what was last deployed."""
    try:
        with Progress(transient=True, disable=fmt == "json" or not sys.stdout.isatty()) as progress:
            task = progress.add_task(f"syncing endpoints in env {env}", total=None)
            report = endpoints.sync_endpoints(
                app, env, parallel,
                on_start=lambda total: progress.update(task, total=total,
                                                       description=f"syncing {total} endpoint(s)"),
                on_done=lambda _r: progress.advance(task))
    except PrivendError as exc:
        if fmt == "json":  # a pipeline reading stdout still gets JSON; the line on stderr and the exit code follow
            emit_json({"env": env, "ok": False, "error": str(exc), "results": []})
        raise
    if not report.results:
        if fmt == "json":
            emit_json({"env": env, "results": [], "ok": True})
        else:
            click.echo(f"all endpoints in env {env} are in sync")
        return
    if fmt == "json":
        emit_json({"env": env, "ok": report.ok, "results": [r.__dict__ for r in report.results]})
    else:
        emit_table(f"sync of {env}", ["endpoint", "action", "result", "message"],
                   [(r.endpoint, r.action, "ok" if r.ok else "FAILED", r.message) for r in report.results])
    if not report.ok:
        raise PrivendError(f"{report.failed} of {len(report.results)} endpoint(s) failed to sync")


@endpoint.command("connect-info")
@click.argument("name")
@env_option
@format_option
@pass_app
def connect_info(app: App, name, env, fmt) -> None:
    """What the customer needs to connect over PrivateLink."""
    info = endpoints.connect_details(app, env, name)
    if fmt == "json":
        spec = info.spec
        emit_json({"endpoint": spec.name, "env": spec.env, "tenant": spec.tenant, "model": spec.model,
                   "engine": spec.engine, "region": info.region, "service_name": info.service_name,
                   "allowed_principals": list(spec.allowed_principals), "instructions": info.text})
        return
    click.echo(info.text, nl=False)


@endpoint.group("key")
def key() -> None:
    """Named API keys of an endpoint: the secret is shown once, at creation."""


def _key_json(k) -> dict:
    return {"name": k.name, "endpoint": k.endpoint, "env": k.env, "fingerprint": k.fingerprint,
            "rate_limit_per_minute": k.rate_limit_per_minute, "state": k.state,
            "created_at": k.created_at.isoformat(), "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None}


@key.command("create")
@click.argument("name")
@click.option("--endpoint", "endpoint_name", required=True, help="The endpoint the key belongs to.")
@click.option("--rate-limit", help="Requests per minute this key may make, N/min (default: no per-key limit).")
@click.option("--no-deploy", is_flag=True, help="Record the key only; `endpoint sync` rolls it out.")
@env_option
@format_option
@pass_app
def key_create(app: App, name, endpoint_name, rate_limit, no_deploy, env, fmt) -> None:
    """Create a key; its secret is printed once and never again."""
    created = keys.create_api_key(app, keys.CreateApiKey(
        env=env, endpoint=endpoint_name, name=name, rate_limit_per_minute=keys.parse_rate_limit(rate_limit),
        deploy=not no_deploy))
    if fmt == "json":
        emit_json({**_key_json(created.key), "secret": created.secret, "deployment": created.deployment.message})
    else:
        click.echo(f"created API key '{name}' of endpoint '{endpoint_name}' ({created.key.fingerprint})")
        click.echo(f"secret (shown once; store it now): {created.secret}")
    _report(created.deployment)


@key.command("list")
@click.option("--endpoint", "endpoint_name", required=True, help="The endpoint the key belongs to.")
@env_option
@format_option
@pass_app
def key_list(app: App, endpoint_name, env, fmt) -> None:
    """List an endpoint's keys, active and revoked (never their secrets)."""
    found = keys.list_api_keys(app, env, endpoint_name)
    if fmt == "json":
        emit_json([_key_json(k) for k in found])
        return
    emit_table(f"API keys of {endpoint_name} in {env}", ["name", "fingerprint", "rate limit", "state", "created"],
               [(k.name, k.fingerprint, f"{k.rate_limit_per_minute}/min" if k.rate_limit_per_minute else "none",
                 k.state, k.created_at.isoformat()) for k in found])


@key.command("revoke")
@click.argument("name")
@click.option("--endpoint", "endpoint_name", required=True, help="The endpoint the key belongs to.")
@click.option("--no-deploy", is_flag=True, help="Record the revocation only; `endpoint sync` rolls it out.")
@env_option
@pass_app
def key_revoke(app: App, name, endpoint_name, no_deploy, env) -> None:
    """Revoke a key: the gateway refuses it once the change is rolled out."""
    revoked = keys.revoke_api_key(app, env, endpoint_name, name, deploy=not no_deploy)
    click.echo(f"revoked API key '{name}' of endpoint '{endpoint_name}' ({revoked.key.fingerprint})")
    _report(revoked.deployment)
