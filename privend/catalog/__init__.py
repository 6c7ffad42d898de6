"""Catalogs: the one place for facts about GPU instance types and open models.

Each catalog is a data file beside this module, loaded once and validated with
pydantic; everything else asks these loaders (`gpu_catalog()`, `model_catalog()`).
"""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache
from math import gcd
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from privend.suggest import did_you_mean
from privend.errors import InputError

CATALOG_DIR = Path(__file__).parent

QUOTA_G_ON_DEMAND = "L-DB2E81BA"
QUOTA_P_ON_DEMAND = "L-417A185B"
QUOTA_G_SPOT = "L-3819A6DF"
QUOTA_P_SPOT = "L-7212CCBC"


class _CatalogModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True, extra="forbid")


class GpuInstanceType(_CatalogModel):
    """One EC2 GPU instance type."""

    name: str
    gpus: int = Field(gt=0)
    gpu_model: str
    # What a serving engine can allocate per GPU; sizing uses this one.
    gpu_memory_gib: Decimal = Field(gt=0, alias="gpuMemoryGiB")
    # The marketing figure (24 for an L4), for people reading a quote.
    gpu_memory_nominal_gb: int = Field(gt=0, alias="gpuMemoryNominalGB")
    vcpus: int = Field(gt=0)
    memory_gib: int = Field(gt=0, alias="memoryGiB")
    quota_code: Literal["L-DB2E81BA", "L-417A185B"]
    spot_quota_code: Literal["L-3819A6DF", "L-7212CCBC"]
    on_demand_hourly: Decimal = Field(gt=0)

    @property
    def family(self) -> str:
        return self.name.split(".", 1)[0]

    def quota_code_for(self, capacity_type: str) -> str:
        return self.spot_quota_code if capacity_type == "spot" else self.quota_code


class GpuModelSpec(_CatalogModel):
    """One GPU model's peak figures, as the throughput model reads them."""

    memory_bandwidth_gbps: Decimal = Field(gt=0, alias="memoryBandwidthGBps")
    dense_bf16_tflops: Decimal = Field(gt=0)
    dense_fp8_tflops: Decimal | None = Field(default=None, gt=0)
    interconnect_gbps: Decimal = Field(gt=0, alias="interconnectGBps")
    interconnect: str


class ThroughputEfficiency(_CatalogModel):
    """What fraction of the datasheet peaks a serving engine reaches (assumptions, see the catalog)."""

    memory_bandwidth_efficiency: Decimal = Field(gt=0, le=1)
    compute_efficiency: Decimal = Field(gt=0, le=1)
    step_overhead_seconds: Decimal = Field(ge=0)
    all_reduce_latency_seconds: Decimal = Field(ge=0)


class GpuCatalog(_CatalogModel):
    region: str
    currency: Literal["USD"]
    prices_read_on: str
    price_source: str
    quota_codes: dict[str, str]
    instances: dict[str, GpuInstanceType]
    gpu_models_read_on: str
    throughput_efficiency: ThroughputEfficiency
    gpu_models: dict[str, GpuModelSpec]

    @model_validator(mode="after")
    def _every_gpu_model_described(self) -> GpuCatalog:
        missing = sorted({i.gpu_model for i in self.instances.values()} - set(self.gpu_models))
        if missing:
            raise ValueError(f"gpuModels has no entry for {', '.join(missing)}")
        return self

    def gpu_model(self, name: str) -> GpuModelSpec:
        try:
            return self.gpu_models[name]
        except KeyError:
            raise InputError(f"GPU model {name!r} is not in the GPU catalog (known: {', '.join(sorted(self.gpu_models))})") from None

    @field_validator("instances", mode="before")
    @classmethod
    def _name_entries(cls, value: dict) -> dict:
        return {name: {"name": name, **spec} for name, spec in value.items()}

    def get(self, instance_type: str) -> GpuInstanceType:
        try:
            return self.instances[instance_type]
        except KeyError:
            raise InputError(
                f"instance type {instance_type!r} is not in the GPU catalog "
                f"(known: {', '.join(sorted(self.instances))})"
            ) from None


@lru_cache(maxsize=1)
def gpu_catalog() -> GpuCatalog:
    """The GPU instance catalog, loaded once per process."""
    raw = yaml.safe_load((CATALOG_DIR / "gpu_instances.yaml").read_text())
    return GpuCatalog.model_validate(raw)


class OpenModel(_CatalogModel):
    """One open model from the Hugging Face hub, as its config.json describes it."""

    id: str = Field(pattern=r"^[^/\s]+/[^/\s]+$")
    parameters: int = Field(gt=0)
    layers: int = Field(gt=0)
    attention_heads: int = Field(gt=0)
    kv_heads: int = Field(gt=0)
    head_dim: int = Field(gt=0)
    max_context: int = Field(gt=0)
    default_dtype: Literal["bfloat16", "float16"]

    @model_validator(mode="after")
    def _kv_heads_group_attention_heads(self) -> OpenModel:
        # Grouped-query attention shares each KV head among a whole number of
        # query heads; anything else is a typo in the catalog.
        if self.attention_heads % self.kv_heads:
            raise ValueError(
                f"{self.id}: kvHeads {self.kv_heads} does not divide attentionHeads {self.attention_heads}"
            )
        return self

    def valid_shard_counts(self, up_to: int) -> list[int]:
        """Tensor-parallel shard counts from 1 to `up_to` that this model accepts.

        TGI and vLLM split attention heads and KV heads evenly across shards, so a
        count is valid when it divides both.
        """
        common = gcd(self.attention_heads, self.kv_heads)
        return [n for n in range(1, up_to + 1) if common % n == 0]


class ModelCatalog(_CatalogModel):
    models: dict[str, OpenModel]

    @field_validator("models", mode="before")
    @classmethod
    def _id_entries(cls, value: dict) -> dict:
        return {model_id: {"id": model_id, **spec} for model_id, spec in value.items()}

    def get(self, model_id: str) -> OpenModel:
        try:
            return self.models[model_id]
        except KeyError:
            raise InputError(
                f"model {model_id!r} is not in the model catalog "
                f"(known: {', '.join(sorted(self.models))}){did_you_mean(model_id, self.models)}"
            ) from None


@lru_cache(maxsize=1)
def model_catalog() -> ModelCatalog:
    """The open model catalog, loaded once per process."""
    raw = yaml.safe_load((CATALOG_DIR / "models.yaml").read_text())
    return ModelCatalog.model_validate(raw)


class EngineImage(_CatalogModel):
    repository: str
    tag: str
    digest: str = Field(pattern=r"^sha256:[0-9a-f]{64}$")
    port: int
    health_path: str
    metrics_path: str
    queue_metric: str
    failure_metric: str

    @property
    def reference(self) -> str:
        """The image pinned by digest (the tag is kept for people, the digest decides)."""
        return f"{self.repository}@{self.digest}"


class EngineCatalog(_CatalogModel):
    engines: dict[str, EngineImage]
    allowed_registries: list[str]

    def get(self, engine: str) -> EngineImage:
        try:
            return self.engines[engine]
        except KeyError:
            raise InputError(f"engine {engine!r} is not supported (engines: {', '.join(sorted(self.engines))})") from None


@lru_cache(maxsize=1)
def engine_catalog() -> EngineCatalog:
    raw = yaml.safe_load((CATALOG_DIR / "engines.yaml").read_text())
    return EngineCatalog.model_validate(raw)
