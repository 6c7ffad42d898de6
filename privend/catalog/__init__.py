"""Catalogs: the one place for facts about GPU instance types and open models.

Each catalog is a data file beside this module, loaded once and validated with
pydantic; everything else asks these loaders.
"""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

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
    gpu_memory_gib: Decimal = Field(gt=0, alias="gpuMemoryGiB")
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


class GpuCatalog(_CatalogModel):
    region: str
    currency: Literal["USD"]
    prices_read_on: str
    quota_codes: dict[str, str]
    instances: dict[str, GpuInstanceType]

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
