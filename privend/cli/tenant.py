"""`privend tenant ...`: customers and the AWS principals allowed to reach their endpoints."""

from __future__ import annotations

import click

from privend.cli import env_option, format_option, pass_app
from privend.cli.render import emit_json, emit_table
from privend.registry import Tenant
from privend.service import tenants
from privend.service.app import App
from privend.values import TIERS


def _tenant_json(t: Tenant) -> dict:
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
@click.option("--tier", type=click.Choice(TIERS), default="shared", show_default=True,
              help="shared: GPU pools with other tenants (never a shared GPU); dedicated: nodes of its own.")
@env_option
@format_option
@pass_app
def create(app: App, name, aws_account, principals, billing_timezone, tier, env, fmt) -> None:
    """Register a tenant."""
    created = tenants.create_tenant(app, tenants.CreateTenant(
        env=env, name=name, aws_account=aws_account, principals=tuple(principals),
        billing_timezone=billing_timezone, tier=tier))
    if fmt == "json":
        emit_json(_tenant_json(created))
        return
    render_created(created)


def render_created(created: Tenant) -> None:
    click.echo(f"created tenant '{created.name}' in env {created.env} (account {created.aws_account}, "
               f"tier {created.tier})")


@tenant.command("list")
@env_option
@format_option
@pass_app
def list_(app: App, env, fmt) -> None:
    """List tenants."""
    found = tenants.list_tenants(app, env)
    if fmt == "json":
        emit_json([_tenant_json(t) for t in found])
    else:
        emit_table(f"tenants in {env}", ["name", "aws account", "tier", "billing timezone", "principals"],
                   [(t.name, t.aws_account, t.tier, t.billing_timezone, len(t.principals) or "account root")
                    for t in found],
                   drop=["principals", "billing timezone"])


@tenant.command("show")
@click.argument("name")
@env_option
@format_option
@pass_app
def show(app: App, name, env, fmt) -> None:
    """Show one tenant."""
    view = tenants.show_tenant(app, env, name)
    data = {**_tenant_json(view.tenant), "endpoints": view.endpoints}
    if fmt == "json":
        emit_json(data)
    else:
        emit_table(f"tenant {name}", ["field", "value"],
                   [(k, ", ".join(v) if isinstance(v, list) else v) for k, v in data.items()])


@tenant.command("delete")
@click.argument("name")
@env_option
@pass_app
def delete(app: App, name, env) -> None:
    """Delete a tenant (refused while it has endpoints)."""
    tenants.delete_tenant(app, env, name)
    click.echo(f"deleted tenant '{name}' in env {env}")
