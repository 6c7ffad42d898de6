"""Tenant use cases: customers and the AWS principals allowed to reach their endpoints."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from privend.errors import InputError
from privend.registry import Registry, Tenant
from privend.service.app import App
from privend.spec import TenantSpec, validate_tenant
from privend.values import Tier


@dataclass(frozen=True)
class CreateTenant:
    env: str
    name: str
    aws_account: str
    principals: tuple[str, ...] = ()
    billing_timezone: str = "UTC"
    tier: Tier = "shared"


@dataclass(frozen=True)
class TenantView:
    tenant: Tenant
    endpoints: list[str]


def close_name(app: App, kind: str, env: str, name: str) -> str:
    """'; did you mean ...?' for a tenant or endpoint name not found in `env`, or ''."""
    from privend.suggest import did_you_mean

    with app.registry() as registry:
        names = ([t.name for t in registry.list_tenants(env)] if kind == "tenant"
                 else [e.name for e in registry.list_endpoints(env)])
    return did_you_mean(name, names)


def now() -> datetime:
    return datetime.now(UTC)


def record_tenant(registry: Registry, env: str, spec: TenantSpec) -> Tenant:
    """Record a validated tenant. One AWS account, one tenant: otherwise one customer's
    principals could reach another's endpoints."""
    for other in registry.list_tenants(env):
        if other.aws_account == spec.aws_account and other.name != spec.name:
            raise InputError(f"AWS account {spec.aws_account} already belongs to tenant '{other.name}' in env {env}")
    return registry.create_tenant(Tenant(
        env=env, name=spec.name, aws_account=spec.aws_account, principals=spec.principals,
        billing_timezone=spec.billing_timezone, tier=spec.tier, created_at=now(),
    ))


def create_tenant(app: App, request: CreateTenant) -> Tenant:
    """Validate and record a tenant in an existing environment; nothing is stored on any error."""
    spec = validate_tenant(name=request.name, aws_account=request.aws_account, principals=list(request.principals),
                           billing_timezone=request.billing_timezone, tier=request.tier)
    app.environment(request.env)
    with app.registry() as registry:
        return record_tenant(registry, request.env, spec)


def list_tenants(app: App, env: str) -> list[Tenant]:
    with app.registry() as registry:
        return registry.list_tenants(env)


def show_tenant(app: App, env: str, name: str) -> TenantView:
    with app.registry() as registry:
        tenant = registry.get_tenant(env, name)
        return TenantView(tenant, [e.name for e in registry.list_endpoints(env, tenant=name)])


def delete_tenant(app: App, env: str, name: str) -> None:
    """Delete a tenant; the registry refuses while it has endpoints."""
    with app.registry() as registry:
        registry.delete_tenant(env, name)
