"""Typed environment configuration: everything under `privend:` in a stack file.

The platform program (under the Pulumi engine) and the CLI (offline) load the
same `stacks/Pulumi.<env>.yaml` through the same models, so a value that the
CLI accepts is a value `pulumi up` accepts. Validation errors become one line
naming the file, the key and the reason.
"""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

from privend import versions
from privend.catalog import gpu_catalog
from privend.errors import InputError
from privend.files import read_text
from privend.suggest import did_you_mean
from privend.netplan import MAX_AZS, MAX_VPC_PREFIX, MIN_VPC_PREFIX
from privend.settings import stacks_dir
from privend.values import ENV_NAME_MAX, CapacityType
from privend.values import check_dns_label as dns_label

NAMESPACE = "privend"
POOL_NAME_MAX = 20  # pool names end up inside node group, IAM role and label names
TAG_KEY = re.compile(r"^[\w.:/=+\-@ ]{1,128}$")
RESERVED_TAG_KEYS = {"environment", "managed-by"}
# Keys that may only be stored as Pulumi secrets (`pulumi config set --secret`).
SECRET_KEYS = {"hfToken": "the Hugging Face token"}


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class ApiAccess(_Model):
    """Who can reach the EKS API server."""

    mode: Literal["private", "public"] = "private"
    public_cidrs: list[str] = Field(default_factory=list)

    @field_validator("public_cidrs")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        for cidr in value:
            try:
                net = ipaddress.ip_network(cidr, strict=True)
            except ValueError as exc:
                raise ValueError(f"{cidr!r} is not a valid CIDR ({exc})") from None
            if net.prefixlen == 0:
                raise ValueError(f"{cidr!r} opens the API server to the whole internet")
        return value

    @model_validator(mode="after")
    def _public_needs_cidrs(self) -> "ApiAccess":
        if self.mode == "public" and not self.public_cidrs:
            raise ValueError("public API access must be restricted to publicCidrs")
        if self.mode == "private" and self.public_cidrs:
            raise ValueError("publicCidrs is only meaningful with mode: public")
        return self


MAX_POOL_NODES = 1000  # a managed node group's maxSize, at most


class _Scaling(_Model):
    min_size: int = Field(ge=0)
    max_size: int = Field(ge=1, le=MAX_POOL_NODES)
    desired_size: int | None = Field(default=None, ge=0)
    disk_size_gib: int = Field(default=100, ge=20, le=16384, alias="diskSizeGiB")

    @model_validator(mode="after")
    def _bounds(self) -> "_Scaling":
        if self.min_size > self.max_size:
            raise ValueError(f"minSize ({self.min_size}) is larger than maxSize ({self.max_size})")
        desired = self.desired
        if not self.min_size <= desired <= self.max_size:
            raise ValueError(f"desiredSize ({desired}) must be between minSize and maxSize")
        return self

    @property
    def desired(self) -> int:
        return self.min_size if self.desired_size is None else self.desired_size


class SystemPool(_Scaling):
    """The CPU node group that runs cluster add-ons."""

    instance_types: list[str] = Field(default_factory=lambda: ["m7i.xlarge"], min_length=1)
    min_size: int = Field(default=2, ge=1)
    max_size: int = Field(default=4, ge=1, le=100)
    disk_size_gib: int = Field(default=50, ge=20, le=16384, alias="diskSizeGiB")


MAX_WARM_HEADROOM_GPUS = 1024


class GpuPool(_Scaling):
    """One shared GPU pool: a managed node group of GPU instances."""

    name: str
    instance_types: list[str] = Field(min_length=1)
    capacity_type: CapacityType = "on-demand"
    disk_size_gib: int = Field(default=200, ge=50, le=16384, alias="diskSizeGiB")
    labels: dict[str, str] = Field(default_factory=dict)
    # GPUs kept free on the pool's shared nodes so a scale-up starts on a warm GPU: placeholder
    # pods of a negative PriorityClass, warmHeadroomPodGpus GPUs each (the pool's largest replica,
    # so any replica can take a placeholder's place). `capacity apply` sets both from a simulation
    # of recent traffic; `capacity simulate` replays traffic with them.
    warm_headroom_gpus: int = Field(default=0, ge=0, le=MAX_WARM_HEADROOM_GPUS)
    warm_headroom_pod_gpus: int = Field(default=1, ge=1, le=8)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return dns_label(value, "pool name", POOL_NAME_MAX)

    @field_validator("instance_types")
    @classmethod
    def _instance_types(cls, value: list[str]) -> list[str]:
        catalog = gpu_catalog()
        unknown = [t for t in value if t not in catalog.instances]
        if unknown:
            raise ValueError(f"{', '.join(unknown)} not in the GPU catalog (privend/catalog/gpu_instances.yaml)")
        if len(set(value)) != len(value):
            raise ValueError("instance types are listed twice")
        models = {catalog.instances[t].gpu_model for t in value}
        if len(models) > 1:
            # One pool, one GPU model: the pool label promises a model, and sizing depends on it.
            raise ValueError(f"a pool must use one GPU model, got {', '.join(sorted(models))}")
        return value

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if key.startswith("privend.io/") or key.startswith("nvidia.com/"):
                raise ValueError(f"label {key!r} is reserved: the platform sets it")
        return value

    @model_validator(mode="after")
    def _headroom_fits(self) -> "GpuPool":
        k = self.warm_headroom_pod_gpus
        if self.warm_headroom_gpus % k:
            raise ValueError(f"warmHeadroomGpus ({self.warm_headroom_gpus}) must be a multiple of "
                             f"warmHeadroomPodGpus ({k})")
        if k > self.gpus_per_node_max:
            raise ValueError(f"warmHeadroomPodGpus ({k}) is more than the pool's largest instance type holds "
                             f"({self.gpus_per_node_max} GPUs)")
        # Placeholders the pool cannot hold even at maxSize would keep it at maxSize for good, and still be Pending.
        most = self.max_size * self.gpus_per_node_max
        if self.warm_headroom_gpus > most:
            raise ValueError(f"warmHeadroomGpus ({self.warm_headroom_gpus}) is more than the pool holds at maxSize "
                             f"({self.max_size} nodes of at most {self.gpus_per_node_max} GPUs: {most})")
        return self

    @property
    def gpu_model(self) -> str:
        return gpu_catalog().get(self.instance_types[0]).gpu_model

    @property
    def gpus_per_node_max(self) -> int:
        catalog = gpu_catalog()
        return max(catalog.get(t).gpus for t in self.instance_types)

    @property
    def gpu_memory_gib(self):
        return gpu_catalog().get(self.instance_types[0]).gpu_memory_gib


class AddonVersions(_Model):
    vpc_cni: str = versions.ADDON_VERSIONS["vpc-cni"]
    coredns: str = versions.ADDON_VERSIONS["coredns"]
    kube_proxy: str = versions.ADDON_VERSIONS["kube-proxy"]
    ebs_csi_driver: str = versions.ADDON_VERSIONS["aws-ebs-csi-driver"]
    cloudwatch_observability: str = versions.ADDON_VERSIONS["amazon-cloudwatch-observability"]


class ChartVersions(_Model):
    nvidia_device_plugin: str = versions.CHART_VERSIONS["nvidia-device-plugin"]
    aws_load_balancer_controller: str = versions.CHART_VERSIONS["aws-load-balancer-controller"]
    keda: str = versions.CHART_VERSIONS["keda"]
    cluster_autoscaler: str = versions.CHART_VERSIONS["cluster-autoscaler"]


class EnvironmentConfig(_Model):
    """The validated `privend:` namespace of one stack file."""

    environment: str
    region: str
    az_count: int = Field(default=2, ge=2, le=MAX_AZS)
    vpc_cidr: str = "10.0.0.0/16"
    kubernetes_version: str = versions.KUBERNETES_VERSION
    api_access: ApiAccess = Field(default_factory=ApiAccess)
    nat_gateways: Literal["single", "per-az"] = "single"
    system_pool: SystemPool = Field(default_factory=SystemPool)
    gpu_pools: list[GpuPool] = Field(min_length=1)
    addon_versions: AddonVersions = Field(default_factory=AddonVersions)
    chart_versions: ChartVersions = Field(default_factory=ChartVersions)
    cost_tags: dict[str, str] = Field(default_factory=dict)
    allowed_image_registries: list[str] = Field(default_factory=list)
    # The private DNS names endpoints are reached by: <endpoint>.<env>.<endpointDomain>, with TLS from
    # one wildcard certificate per environment, DNS-validated in this Route 53 hosted zone.
    endpoint_domain: str | None = None
    hosted_zone_id: str | None = None

    @field_validator("endpoint_domain")
    @classmethod
    def _endpoint_domain(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"(?=.{4,200}$)([a-z0-9]([-a-z0-9]*[a-z0-9])?\.)+[a-z]{2,}", value):
            raise ValueError(f"{value!r} is not a DNS domain name (like endpoints.example.com)")
        return value

    @field_validator("hosted_zone_id")
    @classmethod
    def _hosted_zone_id(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"Z[A-Z0-9]{1,31}", value):
            raise ValueError(f"{value!r} is not a Route 53 hosted zone id (like Z0123456789ABCDEFGHIJ)")
        return value

    @model_validator(mode="after")
    def _domain_and_zone(self) -> "EnvironmentConfig":
        if (self.endpoint_domain is None) != (self.hosted_zone_id is None):
            raise ValueError("endpointDomain and hostedZoneId are set together")
        return self

    @property
    def endpoint_zone(self) -> str | None:
        """`<env>.<endpointDomain>`: every endpoint's name sits directly under it."""
        return f"{self.environment}.{self.endpoint_domain}" if self.endpoint_domain else None

    def endpoint_hostname(self, endpoint: str) -> str | None:
        return f"{endpoint}.{self.endpoint_zone}" if self.endpoint_zone else None

    @field_validator("environment")
    @classmethod
    def _environment(cls, value: str) -> str:
        return dns_label(value, "environment name", ENV_NAME_MAX)

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        if not re.match(r"^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", value):
            raise ValueError(f"{value!r} is not an AWS region name (like us-east-1)")
        return value

    @field_validator("vpc_cidr")
    @classmethod
    def _vpc_cidr(cls, value: str) -> str:
        try:
            net = ipaddress.IPv4Network(value, strict=True)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a valid IPv4 network ({exc})") from None
        if not MIN_VPC_PREFIX <= net.prefixlen <= MAX_VPC_PREFIX:
            raise ValueError(f"VPC CIDR must be a /{MIN_VPC_PREFIX} to /{MAX_VPC_PREFIX}, got /{net.prefixlen}")
        if not net.is_private:
            raise ValueError(f"{value!r} is not a private (RFC 1918) range")
        return value

    @field_validator("kubernetes_version")
    @classmethod
    def _k8s_version(cls, value: str) -> str:
        if not re.match(r"^1\.(2[89]|3[0-9])$", value):
            raise ValueError(f"{value!r} is not a supported EKS Kubernetes version (1.28 to 1.39)")
        return value

    @field_validator("gpu_pools")
    @classmethod
    def _unique_pools(cls, value: list[GpuPool]) -> list[GpuPool]:
        names = [p.name for p in value]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"pool names must be unique, {', '.join(dupes)} repeated")
        return value

    @field_validator("cost_tags")
    @classmethod
    def _cost_tags(cls, value: dict[str, str]) -> dict[str, str]:
        for key, tag_value in value.items():
            if key in RESERVED_TAG_KEYS:
                raise ValueError(f"tag {key!r} is reserved: the platform sets it")
            if not TAG_KEY.match(key) or key.lower().startswith("aws:"):
                raise ValueError(f"{key!r} is not a valid AWS tag key")
            if len(tag_value) > 256:
                raise ValueError(f"tag {key!r} value is longer than 256 characters")
        return value

    def pool(self, name: str) -> GpuPool:
        for pool in self.gpu_pools:
            if pool.name == name:
                return pool
        raise InputError(
            f"pool {name!r} does not exist in env {self.environment} "
            f"(pools: {', '.join(p.name for p in self.gpu_pools)}){did_you_mean(name, [p.name for p in self.gpu_pools])}"
        )

    def tags(self) -> dict[str, str]:
        """Tags every AWS resource of this environment carries."""
        return {"environment": self.environment, "managed-by": "privend", **self.cost_tags}


def stack_file(env: str, directory: Path | None = None) -> Path:
    return stacks_dir(directory) / f"Pulumi.{env}.yaml"


def _format_loc(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts)


def _first_error(exc: ValidationError) -> tuple[str, str]:
    error = exc.errors()[0]
    loc = tuple(error["loc"])
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, "):]
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    return _format_loc(loc), message


def split_secrets(raw: dict[str, Any], source: str, strict: bool = True) -> tuple[dict[str, Any], set[str]]:
    """Separate secret keys from plain ones.

    A secret stored in plain text is refused when `strict` (the deploy path);
    offline it is left to the no-plaintext-credentials guardrail, which reports
    it with exit code 3 (privend.policy.config_violations).
    """
    plain: dict[str, Any] = {}
    secrets: set[str] = set()
    for key, value in raw.items():
        is_secure = isinstance(value, dict) and set(value) == {"secure"}
        if key in SECRET_KEYS:
            if not is_secure and not strict:
                continue
            if not is_secure:
                raise InputError(
                    f"{source}: {NAMESPACE}:{key}: {SECRET_KEYS[key]} is stored in plain text; "
                    f"set it with `pulumi config set --secret {NAMESPACE}:{key}`"
                )
            secrets.add(key)
        elif is_secure:
            raise InputError(f"{source}: {NAMESPACE}:{key}: unknown secret key")
        else:
            plain[key] = value
    return plain, secrets


def parse_environment(raw: dict[str, Any], env: str, source: str, strict: bool = False) -> EnvironmentConfig:
    """Validate a `privend:` namespace (keys without the prefix) into an EnvironmentConfig."""
    plain, _ = split_secrets(raw, source, strict=strict)
    data = {"environment": env, **plain}
    try:
        return EnvironmentConfig.model_validate(data)
    except ValidationError as exc:
        key, reason = _first_error(exc)
        raise InputError(f"{source}: {NAMESPACE}:{key}: {reason}") from None


def namespace_values(config: dict[str, Any]) -> dict[str, Any]:
    """The `privend:` keys of a Pulumi `config:` block, prefix removed."""
    prefix = NAMESPACE + ":"
    return {key[len(prefix):]: value for key, value in config.items() if key.startswith(prefix)}


def load_environment(env: str, directory: Path | None = None) -> EnvironmentConfig:
    """Load and validate `Pulumi.<env>.yaml` from the stack files' directory (see `stacks_dir`)."""
    path = check_environment(env, directory)
    shown = display_path(path)
    try:
        document = yaml.safe_load(read_text(path, shown)) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise InputError(f"{shown}:{where} is not valid YAML ({getattr(exc, 'problem', exc)})") from None
    config = document.get("config") if isinstance(document, dict) else None
    if not isinstance(config, dict):
        raise InputError(f"{shown}: has no `config:` mapping")
    return parse_environment(namespace_values(config), env, shown)


def check_environment(env: str, directory: Path | None = None) -> Path:
    """The stack file of `env`; InputError, with the environments there are, when it has none."""
    def known() -> str:
        names = sorted(p.name[len("Pulumi."):-len(".yaml")] for p in stacks_dir(directory).glob("Pulumi.*.yaml"))
        return f"(environments: {', '.join(names) or 'none'})"

    try:
        dns_label(env, "environment name", ENV_NAME_MAX)
    except ValueError as exc:
        raise InputError(f"{exc} {known()}") from None
    path = stack_file(env, directory)
    if not path.is_file():
        raise InputError(f"environment {env!r} has no stack file {display_path(path)} {known()}")
    return path


def display_path(path: Path) -> str:
    """`path` relative to the working directory where it lies below it, as messages show files."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def load_pulumi_config() -> EnvironmentConfig:
    """Load the running stack's `privend:` config from the Pulumi engine (under `pulumi up`).

    Same models as `load_environment`; an invalid value stops the program with
    Pulumi's RunError, which the engine prints as one line without a traceback.
    """
    import pulumi  # the Pulumi SDK: only the platform program under the engine loads config this way
    from pulumi.runtime import config as runtime_config

    env = pulumi.get_stack()
    prefix = NAMESPACE + ":"
    keys = {k for k in {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()} if k.startswith(prefix)}
    raw: dict[str, Any] = {}
    for key in keys:
        value = runtime_config.get_config(key)
        if runtime_config.is_config_secret(key):
            raw[key[len(prefix):]] = {"secure": "<redacted>"}
            continue
        # The engine hands every value over as a string; structured values as JSON.
        # Scalars stay strings (pydantic coerces "3" to 3, and "1.34" must stay "1.34").
        if isinstance(value, str) and value[:1] in "{[":
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                pass
        raw[key[len(prefix):]] = value
    try:
        return parse_environment(raw, env, f"stacks/Pulumi.{env}.yaml", strict=True)
    except InputError as exc:
        raise pulumi.RunError(str(exc)) from None
