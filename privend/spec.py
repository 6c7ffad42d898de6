"""Specs of what operators ask for: tenants and endpoints, validated once.

A spec that passes here is a spec every later step (sizing, rendering, the
registry, billing) can trust. Every rejection is an InputError with one line
that names the field and the reason.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from privend.suggest import did_you_mean
from privend.billing.plans import Plan, validate_plan_name
from privend.catalog import model_catalog
from privend.config import EnvironmentConfig
from privend.errors import InputError
from privend.registry.models import Endpoint, Tenant
from privend.sizing import ReplicaSize, size_custom, size_replica
from privend.values import (
    AwsAccountId,
    Engine,
    EndpointName,
    TenantName,
    Tier,
    TimeZoneName,
    check_principal,
    principal_account,
)

MODEL_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")
REVISION = re.compile(r"^[\w.-][\w./-]{0,99}$")
QUANTIZATIONS = ("awq", "gptq", "bitsandbytes", "bitsandbytes-nf4", "bitsandbytes-fp4", "eetq", "fp8")
MAX_REPLICAS = 64
COLD_START_WAIT_DEFAULT = 600
COLD_START_WAIT_MAX = 3600
# Limits at the door; defaults every endpoint gets.
MAX_REQUEST_BODY_BYTES = 4 * 1024 * 1024
MAX_REQUEST_HEADERS_KIB = 64
IDLE_TIMEOUT_SECONDS = 300
RESPONSE_TIMEOUT_SECONDS = 600
MAX_CONCURRENT_REQUESTS_AT_DOOR = 1024
# A baked image: the engine with one model's weights built in, pinned by digest.
# The subscription plan of an endpoint created without --plan (stacks/plans.yaml).
DEFAULT_PLAN = "standard"
BAKED_IMAGE = re.compile(r"^[a-z0-9.-]+(:\d+)?/[a-z0-9._/-]+@sha256:[0-9a-f]{64}$")


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TenantSpec(_Spec):
    name: TenantName
    aws_account: AwsAccountId
    principals: list[str] = Field(default_factory=list)
    billing_timezone: TimeZoneName = "UTC"
    tier: Tier = "shared"

    @model_validator(mode="after")
    def _principals(self) -> "TenantSpec":
        for arn in self.principals:
            check_principal(arn)  # here, not as the item type: its message names the tenant
            if principal_account(arn) != self.aws_account:
                raise ValueError(f"principal {arn!r} is not in the tenant's account {self.aws_account}")
        if len(set(self.principals)) != len(self.principals):
            raise ValueError("principals are listed twice")
        return self

    @classmethod
    def from_record(cls, tenant: Tenant) -> "TenantSpec":
        """The spec of a tenant as the registry holds it."""
        return cls(name=tenant.name, aws_account=tenant.aws_account, principals=list(tenant.principals),
                   billing_timezone=tenant.billing_timezone, tier=tenant.tier)

    @property
    def allowed_principals(self) -> list[str]:
        """Who may connect to the tenant's endpoint services: the listed principals, else the account root."""
        return sorted(self.principals) or [f"arn:aws:iam::{self.aws_account}:root"]


class EndpointRequest(_Spec):
    """What an operator typed for `endpoint create`/`update`, before sizing."""

    name: EndpointName
    tenant: TenantName
    model: str
    revision: str = "main"
    engine: Engine = "tgi"
    pool: str | None = None
    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int | None = Field(default=None, ge=1, le=MAX_REPLICAS)
    plan: str = DEFAULT_PLAN
    quantize: Literal[QUANTIZATIONS] | None = None  # type: ignore[valid-type]
    max_input_tokens: int | None = Field(default=None, ge=1)
    max_total_tokens: int | None = Field(default=None, ge=2)
    gpus_per_replica: int | None = Field(default=None, ge=1, le=8)
    image: str = "stock"  # "stock", or a baked image reference pinned by digest
    # The front door (privend.gateway): how long a request waits for a replica during a cold start.
    cold_start_wait_seconds: int = Field(default=COLD_START_WAIT_DEFAULT, ge=1, le=COLD_START_WAIT_MAX)

    @field_validator("model")
    @classmethod
    def _model(cls, value: str) -> str:
        if not MODEL_ID.match(value):
            raise ValueError(f"model {value!r} must be a hub id of the form org/name")
        return value

    @field_validator("image")
    @classmethod
    def _image(cls, value: str) -> str:
        if value != "stock" and not BAKED_IMAGE.match(value):
            raise ValueError(f"image {value!r} must be 'stock' or a baked image pinned by digest "
                             "(registry/repository@sha256:<64 hex>)")
        return value

    @field_validator("revision")
    @classmethod
    def _revision(cls, value: str) -> str:
        if not REVISION.match(value) or ".." in value:
            raise ValueError(f"revision {value!r} must be a commit sha, branch or tag")
        return value

    @property
    def effective_max_replicas(self) -> int:
        """MAX as given, else MIN (at least one: an endpoint can always serve)."""
        return self.max_replicas if self.max_replicas is not None else max(self.min_replicas, 1)

    @model_validator(mode="after")
    def _replicas(self) -> "EndpointRequest":
        maximum = self.effective_max_replicas
        if self.min_replicas > maximum:
            raise ValueError(f"replicas: MIN ({self.min_replicas}) is larger than MAX ({maximum})")
        if self.min_replicas > MAX_REPLICAS:
            raise ValueError(f"replicas: MIN ({self.min_replicas}) is above the limit of {MAX_REPLICAS}")
        return self


class GatewayKey(_Spec):
    """An active API key as the gateway renders it: its name and limit (the secret is a Pulumi secret)."""

    name: str
    rate_limit_per_minute: int | None = None


class EndpointSpec(_Spec):
    """A sized, validated endpoint: what the registry stores and the renderers consume."""

    name: str
    tenant: str
    env: str
    model: str
    revision: str
    engine: Engine
    pool: str
    tier: Tier
    min_replicas: int
    max_replicas: int
    plan: str
    quantize: str | None
    dtype: str | None
    gpus_per_replica: int
    max_input_tokens: int
    max_total_tokens: int
    image: str
    tenant_account: str
    allowed_principals: list[str]
    suspended: bool = False  # set only on what sync deploys for a hard-capped endpoint
    # The gateway's limits (privend.gateway.GatewayLimits); defaults so specs stored before the gateway load.
    cold_start_wait_seconds: int = COLD_START_WAIT_DEFAULT
    max_request_body_bytes: int = MAX_REQUEST_BODY_BYTES
    max_request_headers_kib: int = MAX_REQUEST_HEADERS_KIB
    idle_timeout_seconds: int = IDLE_TIMEOUT_SECONDS
    response_timeout_seconds: int = RESPONSE_TIMEOUT_SECONDS
    max_concurrent_requests: int = MAX_CONCURRENT_REQUESTS_AT_DOOR
    # The endpoint's active API keys, sorted by name: a key created or revoked changes the spec, so
    # `sync` rolls it out (the gateway's key Secret changes; its pods and the engine's do not).
    api_keys: list[GatewayKey] = Field(default_factory=list)

    @classmethod
    def from_record(cls, endpoint: Endpoint) -> "EndpointSpec":
        """The typed spec of an endpoint as the registry holds it."""
        return cls.model_validate(endpoint.spec)

    @property
    def scale_to_zero(self) -> bool:
        return self.min_replicas == 0

    def with_api_keys(self, keys: "list[GatewayKey]") -> "EndpointSpec":
        return self.model_copy(update={"api_keys": sorted(keys, key=lambda k: k.name)})

    def request(self, **changes) -> EndpointRequest:
        """The request that would produce this spec, with `changes` applied (None keeps a value)."""
        current = {
            "name": self.name, "tenant": self.tenant, "model": self.model, "revision": self.revision,
            "engine": self.engine, "pool": self.pool, "min_replicas": self.min_replicas,
            "max_replicas": self.max_replicas, "plan": self.plan, "quantize": self.quantize,
            "max_input_tokens": self.max_input_tokens, "max_total_tokens": self.max_total_tokens,
            "gpus_per_replica": self.gpus_per_replica, "image": self.image,
            "cold_start_wait_seconds": self.cold_start_wait_seconds,
        }
        model_changed = changes.get("model") not in (None, self.model) or changes.get("pool") not in (None, self.pool) \
            or changes.get("quantize") not in (None, self.quantize)
        if model_changed:
            # A new model, pool or quantization is sized afresh unless the operator says otherwise.
            for key in ("gpus_per_replica", "max_input_tokens", "max_total_tokens"):
                current[key] = None
        if changes.get("max_total_tokens") is not None and changes.get("max_input_tokens") is None:
            # The input limit was derived from the old total: derive it again from the new one.
            current["max_input_tokens"] = None
        current.update({k: v for k, v in changes.items() if v is not None})
        return validate_request(**current)

    @property
    def baked(self) -> bool:
        """Weights are built into the image: no model hub access at start-up."""
        return self.image != "stock"


def parse_replicas(text: str) -> tuple[int, int]:
    """`MIN` or `MIN:MAX` -> (min, max)."""
    match = re.fullmatch(r"([0-9]+)(?::([0-9]+))?", text.strip())
    if not match:
        raise InputError(f"--replicas {text!r} must be MIN or MIN:MAX, like 1 or 1:4")
    low = int(match.group(1))
    high = int(match.group(2)) if match.group(2) is not None else max(low, 1)
    if low > high:
        raise InputError(f"--replicas {text!r}: MIN ({low}) is larger than MAX ({high})")
    if high < 1:
        raise InputError(f"--replicas {text!r}: MAX must be at least 1")
    if high > MAX_REPLICAS:
        raise InputError(f"--replicas {text!r}: MAX ({high}) is above the limit of {MAX_REPLICAS}")
    return low, high


def parse_duration(text: str, flag: str) -> int:
    """`90s`, `10m`, `1h` or bare seconds -> seconds."""
    match = re.fullmatch(r"(\d+)\s*([smh]?)", text.strip())
    if not match or int(match.group(1)) == 0:
        raise InputError(f"{flag} {text!r} must be a duration like 90s, 10m or 1h")
    return int(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]


def _first_error(exc: ValidationError, what: str) -> InputError:
    error = exc.errors()[0]
    field = ".".join(str(p) for p in error["loc"])
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown field"
    # Field validators already name the field in their message; pydantic's own messages do not.
    if error["type"] == "value_error":
        prefix = "" if field else f"{what}: "
    else:
        prefix = f"{what} {field}: " if field else f"{what}: "
    return InputError(prefix + message)


def validate_tenant(**fields) -> TenantSpec:
    try:
        return TenantSpec(**fields)
    except ValidationError as exc:
        raise _first_error(exc, "tenant") from None


def validate_request(**fields) -> EndpointRequest:
    try:
        return EndpointRequest(**{k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        raise _first_error(exc, "endpoint") from None


def size_endpoint(request: EndpointRequest, pool_cfg) -> ReplicaSize:
    """GPUs per replica and token limits: from the model catalog, or explicit for other models."""
    try:
        model = model_catalog().get(request.model)
    except InputError:
        model = None
    if model is None:
        gpus, max_input, max_total = request.gpus_per_replica, request.max_input_tokens, request.max_total_tokens
        if gpus is None or max_input is None or max_total is None:
            missing = [flag for flag, value in (("--gpus-per-replica", gpus), ("--max-input-tokens", max_input),
                                               ("--max-total-tokens", max_total)) if value is None]
            hint = did_you_mean(request.model, model_catalog().models)
            raise InputError(
                f"model {request.model!r} is not in the model catalog{hint or ''}"
                f"{'' if hint else ';'} {'or ' if hint else ''}give {', '.join(missing)} explicitly"
            )
        return size_custom(gpus, max_input, max_total, pool_cfg.gpus_per_node_max, pool_cfg.name)
    size = size_replica(model, pool_cfg.gpu_memory_gib, pool_cfg.gpus_per_node_max, pool_cfg.name,
                        quantize=request.quantize, max_total_tokens=request.max_total_tokens,
                        max_input_tokens=request.max_input_tokens)
    if request.gpus_per_replica is not None and request.gpus_per_replica < size.gpus_per_replica:
        raise InputError(
            f"--gpus-per-replica {request.gpus_per_replica} is too few for {request.model}: "
            f"needs {size.gpus_per_replica} ({size.needed_gib} GiB) on pool {pool_cfg.name}"
        )
    if request.gpus_per_replica is not None and request.gpus_per_replica != size.gpus_per_replica:
        if request.gpus_per_replica not in model.valid_shard_counts(pool_cfg.gpus_per_node_max):
            raise InputError(
                f"--gpus-per-replica {request.gpus_per_replica} is not a valid shard count for {request.model} "
                f"(valid: {', '.join(map(str, model.valid_shard_counts(pool_cfg.gpus_per_node_max)))})"
            )
        size = ReplicaSize(**{**size.__dict__, "gpus_per_replica": request.gpus_per_replica})
    return size


def build_spec(request: EndpointRequest, tenant: TenantSpec, cfg: EnvironmentConfig,
               plans: Mapping[str, Plan] | None = None) -> EndpointSpec:
    """Validate a request against its tenant, environment and plans catalog, size it, and return the spec.

    `plans` defaults to the project's `stacks/plans.yaml`.
    """
    if request.tenant != tenant.name:
        raise InputError(f"endpoint {request.name!r} belongs to tenant {request.tenant!r}, not {tenant.name!r}")
    validate_plan_name(request.plan, plans)
    pool_cfg = cfg.pool(request.pool) if request.pool else cfg.gpu_pools[0]
    size = size_endpoint(request, pool_cfg)
    try:
        default_dtype = model_catalog().get(request.model).default_dtype
    except InputError:
        default_dtype = None
    return EndpointSpec(
        name=request.name,
        tenant=tenant.name,
        env=cfg.environment,
        model=request.model,
        revision=request.revision,
        engine=request.engine,
        pool=pool_cfg.name,
        tier=tenant.tier,
        min_replicas=request.min_replicas,
        max_replicas=request.effective_max_replicas,
        plan=request.plan,
        quantize=request.quantize,
        dtype=None if request.quantize else default_dtype,
        gpus_per_replica=size.gpus_per_replica,
        max_input_tokens=size.max_input_tokens,
        max_total_tokens=size.max_total_tokens,
        image=request.image,
        cold_start_wait_seconds=request.cold_start_wait_seconds,
        tenant_account=tenant.aws_account,
        allowed_principals=tenant.allowed_principals,
    )
