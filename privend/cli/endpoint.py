"""`privend endpoint ...`: the customer endpoint lifecycle."""

from __future__ import annotations

import click

from privend.cli import env_option, format_option
from privend.cli.render import emit_json, emit_table, parse_time
from privend.errors import PrivendError


def _spec_options(func):
    options = [
        click.option("--model", help="Hugging Face hub id, org/name."),
        click.option("--revision", help="Model revision: commit sha, branch or tag (default main)."),
        click.option("--engine", type=click.Choice(["tgi", "vllm"]), help="Inference engine (default tgi)."),
        click.option("--pool", help="GPU pool of the environment (default: its first pool)."),
        click.option("--replicas", help="MIN or MIN:MAX replicas (MIN 0 = scale to zero)."),
        click.option("--plan", "plan_name", help="Subscription plan."),
        click.option("--quantize", type=click.Choice(["awq", "gptq", "bitsandbytes", "bitsandbytes-nf4",
                                                     "bitsandbytes-fp4", "eetq", "fp8"])),
        click.option("--max-input-tokens", type=int),
        click.option("--max-total-tokens", type=int),
        click.option("--gpus-per-replica", type=int, help="Required for models outside the catalog."),
        click.option("--image", help="'stock' (default), or a baked image with the weights built in, "
                                     "pinned by digest: registry/repo@sha256:<digest> (see images/)."),
        click.option("--no-deploy", is_flag=True, help="Record the change only; `endpoint sync` deploys it."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _changes(model, revision, engine, pool, replicas, plan_name, quantize, max_input_tokens, max_total_tokens,
             gpus_per_replica, image) -> dict:
    from privend.spec import parse_replicas

    low = high = None
    if replicas is not None:
        low, high = parse_replicas(replicas)
    return {"model": model, "revision": revision, "engine": engine, "pool": pool, "min_replicas": low,
            "max_replicas": high, "plan": plan_name, "quantize": quantize, "max_input_tokens": max_input_tokens,
            "max_total_tokens": max_total_tokens, "gpus_per_replica": gpus_per_replica, "image": image}


def _endpoint_json(e) -> dict:
    spec = e.spec
    return {
        "name": e.name, "env": e.env, "tenant": e.tenant, "status": e.status, "status_message": e.status_message,
        "model": spec["model"], "engine": spec["engine"], "pool": spec["pool"],
        "replicas": {"min": spec["min_replicas"], "max": spec["max_replicas"]},
        "gpus_per_replica": spec["gpus_per_replica"], "plan": spec["plan"],
        "spec_hash": e.spec_hash, "deployed_hash": e.deployed_hash, "in_sync": e.spec_hash == e.deployed_hash,
        "updated_at": e.updated_at.isoformat(), "version": e.version,
    }


def _deploy_after_record(registry, cfg, name: str, no_deploy: bool) -> None:
    from privend.deploy import default_deployer
    from privend.endpoints import deploy_now

    if no_deploy:
        click.echo(f"recorded; not deployed (--no-deploy): deploy with `privend endpoint sync --env {cfg.environment}`")
        return
    _, message = deploy_now(registry, cfg, name, default_deployer())
    click.echo(message)


@click.group()
def endpoint() -> None:
    """Create, change, deploy and inspect customer endpoints."""


def _cost_lines(admission) -> list[str]:
    """The new endpoint's monthly estimate: its pooled share and network, next to the dedicated baseline."""
    from privend.cost import SPOT_PRICE_FACTOR

    c = admission.cost
    on = ", ".join(f"{count} on {name}" for name, count in c.instance_types.items()) or "none: scales to zero"
    spot = f"; spot at {SPOT_PRICE_FACTOR * 100:.0f} % of on-demand, an assumption" if c.capacity_type == "spot" else ""
    return [
        f"monthly cost estimate, USD (prices read {c.prices_read_on}; {c.gpus_at_min} GPU(s) at min scale{spot}):",
        f"  pooled     ${c.total_monthly:,.2f} = compute ${c.compute_monthly:,.2f} (replicas at min: {on}) "
        f"+ NLB ${c.nlb_monthly:,.2f} + PrivateLink ${c.privatelink_monthly:,.2f}",
        f"  dedicated  ${c.baseline_total_monthly:,.2f} = {c.baseline_instances}x {c.baseline_instance_type} on-demand "
        f"${c.baseline_compute_monthly:,.2f} + the same network",
    ]


@endpoint.command("create")
@click.argument("name")
@click.option("--tenant", required=True)
@click.option("--start", help="Subscription start, ISO 8601 with offset (default now).")
@click.option("--strict-quota", is_flag=True,
              help="Refuse (exit 1) when the endpoint would exceed an EC2 vCPU quota or quotas cannot be checked.")
@_spec_options
@env_option
def create(name, tenant, start, strict_quota, no_deploy, env, **options) -> None:
    """Create an endpoint for a tenant.

    Refused (exit 2) when its pool cannot hold it at maximum scale within
    maxSize. With AWS credentials, warns when it would exceed an EC2 vCPU quota
    (refuses, exit 1, with --strict-quota).
    """
    from privend.config import load_environment
    from privend.endpoints import new_endpoint
    from privend.fleet import admit_endpoint, endpoint_quota_notice
    from privend.registry import open_registry
    from privend.spec import validate_request

    if options["model"] is None:
        raise click.UsageError("Missing option '--model'.")
    changes = _changes(**options)
    request = validate_request(name=name, tenant=tenant, **changes)
    start_at = parse_time(start, "--start")
    cfg = load_environment(env)
    with open_registry() as registry:
        # Capacity and quota come first: a refusal must leave nothing recorded.
        admission = admit_endpoint(registry, cfg, request)
        notice = endpoint_quota_notice(admission, cfg, strict=strict_quota) if admission else None
        # Recorded only if the pool still holds it: checked again atomically with the write,
        # so of two concurrent creators that only one fits, one is refused with the numbers.
        created = new_endpoint(registry, cfg, request, start_at, admission=admission)
        spec = created.spec
        click.echo(
            f"created endpoint '{name}' for tenant '{tenant}' in env {env}: {spec['model']} on pool {spec['pool']}, "
            f"{spec['gpus_per_replica']} GPU(s) per replica, replicas {spec['min_replicas']}..{spec['max_replicas']}, "
            f"tokens {spec['max_input_tokens']} in / {spec['max_total_tokens']} total"
        )
        for line in _cost_lines(admission) if admission else []:
            click.echo(line)
        if notice:
            click.echo(notice, err=True)
        _deploy_after_record(registry, cfg, name, no_deploy)


@endpoint.command("update")
@click.argument("name")
@click.option("--effective", help="When a plan change takes effect, ISO 8601 with offset (default now).")
@_spec_options
@env_option
def update(name, effective, no_deploy, env, **options) -> None:
    """Change an endpoint's spec or plan.

    Refused (exit 2, nothing recorded) when the change asks more of the GPU pool
    (another pool, more GPUs per replica, a higher replicas MAX) and the pool
    cannot hold it at maximum scale within maxSize.
    """
    from privend.config import load_environment
    from privend.endpoints import change_endpoint
    from privend.registry import open_registry

    changes = _changes(**options)
    if all(v is None for v in changes.values()):
        raise click.UsageError("nothing to change: give at least one option")
    at = parse_time(effective, "--effective")
    if at is not None and changes["plan"] is None:
        raise click.UsageError("--effective dates a plan change: give --plan as well")
    cfg = load_environment(env)
    with open_registry() as registry:
        before = registry.get_endpoint(env, name)
        after = change_endpoint(registry, cfg, name, effective=at, **changes)
        if after.spec_hash == before.spec_hash:
            click.echo(f"endpoint '{name}' unchanged")
            return
        click.echo(f"updated endpoint '{name}' in env {env}")
        _deploy_after_record(registry, cfg, name, no_deploy)


@endpoint.command("scale")
@click.argument("name")
@click.option("--replicas", required=True, help="MIN or MIN:MAX.")
@click.option("--no-deploy", is_flag=True)
@env_option
def scale(name, replicas, no_deploy, env) -> None:
    """Change an endpoint's replica bounds.

    Refused (exit 2, nothing recorded) when a higher MAX does not fit the
    pool's maxSize at maximum scale; a lower or equal MAX is never refused.
    """
    from privend.config import load_environment
    from privend.endpoints import change_endpoint
    from privend.registry import open_registry
    from privend.spec import parse_replicas

    low, high = parse_replicas(replicas)
    cfg = load_environment(env)
    with open_registry() as registry:
        change_endpoint(registry, cfg, name, min_replicas=low, max_replicas=high)
        click.echo(f"scaled endpoint '{name}' to {low}..{high} replicas")
        _deploy_after_record(registry, cfg, name, no_deploy)


@endpoint.command("delete")
@click.argument("name")
@click.option("--effective", help="When the subscription ends, ISO 8601 with offset (default now).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--no-deploy", is_flag=True, help="Only mark for deletion; `endpoint sync` destroys the stack.")
@env_option
def delete(name, effective, yes, no_deploy, env) -> None:
    """Delete an endpoint: end its subscription and destroy its stack."""
    from privend.config import load_environment
    from privend.endpoints import mark_deleting
    from privend.registry import open_registry

    at = parse_time(effective, "--effective")
    cfg = load_environment(env)
    with open_registry() as registry:
        registry.get_endpoint(env, name)
        if not yes:
            click.confirm(f"Delete endpoint '{name}' in env {env}, destroying its load balancer and workload?",
                          abort=True)
        mark_deleting(registry, env, name, at)
        click.echo(f"endpoint '{name}' marked for deletion")
        _deploy_after_record(registry, cfg, name, no_deploy)


@endpoint.command("list")
@click.option("--tenant")
@env_option
@format_option
def list_(tenant, env, fmt) -> None:
    """List endpoints."""
    from privend.registry import open_registry

    with open_registry() as registry:
        endpoints = registry.list_endpoints(env, tenant=tenant)
    if fmt == "json":
        emit_json([_endpoint_json(e) for e in endpoints])
        return
    emit_table(f"endpoints in {env}", ["name", "tenant", "model", "pool", "replicas", "gpus/replica", "status", "in sync"],
               [(e.name, e.tenant, e.spec["model"], e.spec["pool"], f"{e.spec['min_replicas']}..{e.spec['max_replicas']}",
                 e.spec["gpus_per_replica"], e.status, "yes" if e.spec_hash == e.deployed_hash else "no")
                for e in endpoints])


@endpoint.command("show")
@click.argument("name")
@env_option
@format_option
def show(name, env, fmt) -> None:
    """Show one endpoint, its spec and subscription."""
    from privend.registry import open_registry

    with open_registry() as registry:
        e = registry.get_endpoint(env, name)
        segments = registry.get_subscription(env, name)
    data = {**_endpoint_json(e), "spec": e.spec,
            "subscription": [{"plan": s.plan, "start": s.start.isoformat(), "end": s.end.isoformat() if s.end else None}
                             for s in segments]}
    if fmt == "json":
        emit_json(data)
        return
    rows = [(k, v) for k, v in data.items() if k not in ("spec", "subscription", "replicas")]
    rows.append(("replicas", f"{data['replicas']['min']}..{data['replicas']['max']}"))
    rows += [(f"spec.{k}", ", ".join(v) if isinstance(v, list) else v) for k, v in sorted(e.spec.items())]
    rows += [("subscription", f"{s['plan']}: {s['start']} .. {s['end'] or 'open'}") for s in data["subscription"]]
    emit_table(f"endpoint {name}", ["field", "value"], rows)


@endpoint.command("sync")
@click.option("--parallel", type=click.IntRange(min=1), default=4, show_default=True, help="Stacks deployed at once.")
@env_option
@format_option
def sync_(parallel, env, fmt) -> None:
    """Deploy every endpoint whose spec differs from what was last deployed."""
    from rich.progress import Progress

    from privend.config import load_environment
    from privend.deploy import DeployUnavailable, default_deployer
    from privend.endpoints import pending_work, sync
    from privend.registry import open_registry

    cfg = load_environment(env)
    with open_registry() as registry:
        total = len(pending_work(registry, env))
    if total == 0:
        if fmt == "json":
            emit_json({"env": env, "results": [], "ok": True})
        else:
            click.echo(f"all endpoints in env {env} are in sync")
        return
    import sys

    with Progress(transient=True, disable=fmt == "json" or not sys.stdout.isatty()) as progress:
        task = progress.add_task(f"syncing {total} endpoint(s)", total=total)
        try:
            results = sync(open_registry, cfg, default_deployer(), parallel,
                           on_done=lambda _r: progress.advance(task))
        except DeployUnavailable as exc:
            raise PrivendError(f"{total} endpoint(s) in env {env} recorded but not deployed: {exc}; "
                               "then rerun `privend endpoint sync`") from None
    ok = all(r.ok for r in results)
    if fmt == "json":
        emit_json({"env": env, "ok": ok, "results": [r.__dict__ for r in results]})
    else:
        emit_table(f"sync of {env}", ["endpoint", "action", "result", "message"],
                   [(r.endpoint, r.action, "ok" if r.ok else "FAILED", r.message) for r in results])
    if not ok:
        failed = sum(not r.ok for r in results)
        raise PrivendError(f"{failed} of {len(results)} endpoint(s) failed to sync")


@endpoint.command("connect-info")
@click.argument("name")
@env_option
def connect_info(name, env) -> None:
    """What the customer needs to connect over PrivateLink."""
    from privend.config import load_environment
    from privend.connect import connect_info as render_info
    from privend.endpoints import spec_of
    from privend.registry import open_registry
    from privend.stack_outputs import endpoint_outputs

    cfg = load_environment(env)
    with open_registry() as registry:
        e = registry.get_endpoint(env, name)
    outputs = endpoint_outputs(cfg, name) if e.deployed_hash else {}
    click.echo(render_info(spec_of(e), cfg, outputs.get("serviceName")), nl=False)
