"""`privend tenant ...`: customers and the AWS principals allowed to reach their endpoints."""

from __future__ import annotations

import click

from privend.cli import env_option, format_option
from privend.cli.render import emit_json, emit_table


def _tenant_json(t) -> dict:
    return {"name": t.name, "env": t.env, "aws_account": t.aws_account, "principals": list(t.principals),
            "billing_timezone": t.billing_timezone, "tier": t.tier, "created_at": t.created_at.isoformat()}


@click.group()
def tenant() -> None:
    """Create, list, show and delete tenants."""


@tenant.command("create")
@click.argument("name")
@click.option("--aws-account", required=True, help="The tenant's 12-digit AWS account id.")
@click.option("--principal", "principals", multiple=True,
              help="IAM ARN (root, role or user) of that account allowed to connect; repeatable. Default: the account root.")
@click.option("--billing-timezone", default="UTC", show_default=True, help="IANA timezone of the billing month.")
@click.option("--tier", type=click.Choice(["shared", "dedicated"]), default="shared", show_default=True)
@env_option
def create(name, aws_account, principals, billing_timezone, tier, env) -> None:
    """Register a tenant."""
    from privend.config import load_environment
    from privend.endpoints import create_tenant
    from privend.registry import open_registry
    from privend.spec import validate_tenant

    spec = validate_tenant(name=name, aws_account=aws_account, principals=list(principals),
                           billing_timezone=billing_timezone, tier=tier)
    load_environment(env)
    with open_registry() as registry:
        created = create_tenant(registry, env, spec)
    click.echo(f"created tenant '{created.name}' in env {env} (account {created.aws_account}, tier {created.tier})")


@tenant.command("list")
@env_option
@format_option
def list_(env, fmt) -> None:
    """List tenants."""
    from privend.registry import open_registry

    with open_registry() as registry:
        tenants = registry.list_tenants(env)
    if fmt == "json":
        emit_json([_tenant_json(t) for t in tenants])
    else:
        emit_table(f"tenants in {env}", ["name", "aws account", "tier", "billing timezone", "principals"],
                   [(t.name, t.aws_account, t.tier, t.billing_timezone, len(t.principals) or "account root")
                    for t in tenants])


@tenant.command("show")
@click.argument("name")
@env_option
@format_option
def show(name, env, fmt) -> None:
    """Show one tenant."""
    from privend.registry import open_registry

    with open_registry() as registry:
        t = registry.get_tenant(env, name)
        endpoints = [e.name for e in registry.list_endpoints(env, tenant=name)]
    data = {**_tenant_json(t), "endpoints": endpoints}
    if fmt == "json":
        emit_json(data)
    else:
        emit_table(f"tenant {name}", ["field", "value"],
                   [(k, ", ".join(v) if isinstance(v, list) else v) for k, v in data.items()])


@tenant.command("delete")
@click.argument("name")
@env_option
def delete(name, env) -> None:
    """Delete a tenant (refused while it has endpoints)."""
    from privend.registry import open_registry

    with open_registry() as registry:
        registry.delete_tenant(env, name)
    click.echo(f"deleted tenant '{name}' in env {env}")
