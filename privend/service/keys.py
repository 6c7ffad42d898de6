"""API key use cases: create, list and revoke an endpoint's named keys.

A key's secret is made here, stored in the endpoint stack's Pulumi secret config (the
only copy privend keeps) and handed back once, for the operator to pass on. The
registry records the key's name, fingerprint, limit and state. The endpoint spec lists
the active keys, so creating or revoking one is a spec change that `sync` (or the
deploy right after) rolls out: the gateway's key Secret changes, and the gateway picks
it up without restarting (see privend.gateway).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from privend.deploy import DeployUnavailable
from privend.errors import InputError
from privend.gateway import fingerprint
from privend.registry import ApiKey, spec_hash
from privend.registry.errors import api_key_exists
from privend.service.app import App
from privend.service.endpoints import Deployment, deploy_after_record, now
from privend.spec import EndpointSpec, GatewayKey
from privend.values import API_KEY_NAME_MAX, EndpointStatus, check_dns_label

SECRET_PREFIX = "pe-"
RATE_LIMIT_MAX_PER_MINUTE = 1_000_000


def parse_rate_limit(text: str | None) -> int | None:
    """`N/min` (or a bare N) -> N requests per minute."""
    if text is None:
        return None
    value = text.strip().removesuffix("/min")
    if not value.isdigit() or not 1 <= int(value) <= RATE_LIMIT_MAX_PER_MINUTE:
        raise InputError(f"--rate-limit {text!r} must be N/min with N from 1 to {RATE_LIMIT_MAX_PER_MINUTE}, like 600/min")
    return int(value)


@dataclass(frozen=True)
class CreateApiKey:
    env: str
    endpoint: str
    name: str
    rate_limit_per_minute: int | None = None
    deploy: bool = True


@dataclass(frozen=True)
class CreatedApiKey:
    key: ApiKey
    secret: str = field(repr=False)  # shown once, by the command that asked for it
    deployment: Deployment


@dataclass(frozen=True)
class RevokedApiKey:
    key: ApiKey
    deployment: Deployment


def _check_name(name: str) -> str:
    try:
        return check_dns_label(name, "API key name", API_KEY_NAME_MAX)
    except ValueError as exc:
        raise InputError(str(exc)) from None


def create_api_key(app: App, request: CreateApiKey) -> CreatedApiKey:
    """Make a key, store its secret in the endpoint stack, record it, and roll it out."""
    _check_name(request.name)
    cfg = app.environment(request.env)
    deployer = app.deployer()
    with app.registry() as registry:
        endpoint = registry.get_endpoint(request.env, request.endpoint)
        if endpoint.status == EndpointStatus.DELETING:
            raise InputError(f"endpoint '{request.endpoint}' is being deleted in env {request.env}")
        if any(k.name == request.name for k in registry.list_api_keys(request.env, request.endpoint)):
            raise api_key_exists(request.env, request.endpoint, request.name)
        try:
            deployer.check()
        except DeployUnavailable as exc:
            raise DeployUnavailable(f"cannot store the key's secret in the endpoint stack: {exc}") from None
        spec = EndpointSpec.from_record(endpoint)
        secret = SECRET_PREFIX + secrets.token_urlsafe(32)
        deployer.set_api_key_secret(spec, cfg, request.name, secret)
        key = registry.create_api_key(ApiKey(
            env=request.env, endpoint=request.endpoint, name=request.name, fingerprint=fingerprint(secret),
            rate_limit_per_minute=request.rate_limit_per_minute, created_at=now()))
        keys = [k for k in spec.api_keys if k.name != request.name]
        keys.append(GatewayKey(name=request.name, rate_limit_per_minute=request.rate_limit_per_minute))
        _record_keys(registry, endpoint, spec.with_api_keys(keys))
        deployment = deploy_after_record(app, registry, cfg, request.endpoint, request.deploy)
    return CreatedApiKey(key, secret, deployment)


def list_api_keys(app: App, env: str, endpoint: str) -> list[ApiKey]:
    with app.registry() as registry:
        return registry.list_api_keys(env, endpoint)


def revoke_api_key(app: App, env: str, endpoint: str, name: str, *, deploy: bool = True) -> RevokedApiKey:
    """Revoke a key: the registry marks it, the spec drops it, its secret leaves the stack config."""
    cfg = app.environment(env)
    with app.registry() as registry:
        current = registry.get_endpoint(env, endpoint)
        key = registry.revoke_api_key(env, endpoint, name, now())
        spec = EndpointSpec.from_record(current)
        _record_keys(registry, current, spec.with_api_keys([k for k in spec.api_keys if k.name != name]))
        deployer = app.deployer()
        try:
            deployer.check()
            deployer.set_api_key_secret(spec, cfg, name, None)
        except DeployUnavailable:
            pass  # the spec no longer lists it: no route is rendered for it even if the secret stays
        deployment = deploy_after_record(app, registry, cfg, endpoint, deploy)
    return RevokedApiKey(key, deployment)


def _record_keys(registry, endpoint, spec: EndpointSpec) -> None:
    data = spec.model_dump(mode="json")
    if data != endpoint.spec:
        registry.update_endpoint(endpoint.env, endpoint.name, expected_version=endpoint.version, spec=data,
                                 spec_hash=spec_hash(data))
