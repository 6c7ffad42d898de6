"""Catalog use cases: what an operator can choose from (models, GPU instance types, plans, an
environment's pools), as rows with stable field names."""

from __future__ import annotations

from privend.catalog import gpu_catalog, model_catalog
from privend.service.app import App


def models() -> list[dict]:
    """The open models the sizing knows (any other hub id needs --gpus-per-replica and token limits)."""
    return [{"id": m.id, "parameters": m.parameters, "max_context": m.max_context, "default_dtype": m.default_dtype,
             "layers": m.layers} for m in sorted(model_catalog().models.values(), key=lambda m: m.id)]


def gpus() -> dict:
    """The GPU instance types, with the region and date their on-demand prices were read."""
    catalog = gpu_catalog()
    return {
        "region": catalog.region, "currency": catalog.currency, "prices_read_on": catalog.prices_read_on,
        "instances": [{"name": i.name, "gpus": i.gpus, "gpu_model": i.gpu_model,
                       "gpu_memory_gib": str(i.gpu_memory_gib), "vcpus": i.vcpus, "memory_gib": i.memory_gib,
                       "on_demand_hourly": str(i.on_demand_hourly), "quota_code": i.quota_code}
                      for i in sorted(catalog.instances.values(), key=lambda i: (i.gpu_model, i.gpus, i.name))],
    }


def plans(app: App) -> list[dict]:
    """The subscription plans of the plans catalog, amounts as decimal strings."""
    return [plan.terms() for _, plan in sorted(app.plans().items())]


def pools(app: App, env: str) -> list[dict]:
    """The GPU pools of `env`, as its stack file configures them."""
    return [{"name": p.name, "instance_types": list(p.instance_types), "capacity_type": p.capacity_type,
             "min_size": p.min_size, "max_size": p.max_size}
            for p in app.environment(env).gpu_pools]
