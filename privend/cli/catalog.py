"""`privend catalog ...`: what there is to choose from: models, GPU instance types, plans, pools."""

from __future__ import annotations

import click

from privend.cli import env_option, format_option, pass_app
from privend.cli.render import emit_json, emit_table
from privend.service import catalog as catalog_service
from privend.service.app import App


@click.group()
def catalog() -> None:
    """Models, GPU instance types, subscription plans and an environment's GPU pools."""


@catalog.command("models")
@format_option
def models(fmt) -> None:
    """Open models sized automatically (others need --gpus-per-replica and token limits)."""
    rows = catalog_service.models()
    if fmt == "json":
        emit_json(rows)
        return
    emit_table("models in the catalog", ["id", "parameters", "max context", "dtype"],
               [(m["id"], f"{m['parameters'] / 1e9:.1f}B", m["max_context"], m["default_dtype"]) for m in rows],
               drop=["dtype", "max context"])


@catalog.command("gpus")
@format_option
def gpus(fmt) -> None:
    """GPU instance types, with their on-demand prices and the date those were read."""
    data = catalog_service.gpus()
    if fmt == "json":
        emit_json(data)
        return
    emit_table(f"GPU instance types ({data['region']}, {data['currency']}, prices read {data['prices_read_on']})",
               ["name", "GPUs", "GPU", "GPU memory GiB", "vCPUs", "memory GiB", "on-demand / h"],
               [(i["name"], i["gpus"], i["gpu_model"], i["gpu_memory_gib"], i["vcpus"], i["memory_gib"],
                 f"${i['on_demand_hourly']}") for i in data["instances"]],
               drop=["memory GiB", "vCPUs", "GPU memory GiB"])


@catalog.command("plans")
@format_option
@pass_app
def plans(app: App, fmt) -> None:
    """Subscription plans (stacks/plans.yaml, or PRIVEND_PLANS)."""
    rows = catalog_service.plans(app)
    if fmt == "json":
        emit_json(rows)
        return
    emit_table("subscription plans", ["plan", "monthly fee", "included tokens", "overage / M", "overage cap", "cap"],
               [(p["name"], f"{p['monthly_fee']} {p['currency']}", f"{p['included_tokens']:,}",
                 p["overage_per_million_tokens"], p["max_overage"] if p["max_overage"] is not None else "none",
                 p["cap"]) for p in rows],
               drop=["overage / M", "included tokens"])


@catalog.command("pools")
@env_option
@format_option
@pass_app
def pools(app: App, env, fmt) -> None:
    """The environment's GPU pools, as its stack file configures them."""
    rows = catalog_service.pools(app, env)
    if fmt == "json":
        emit_json(rows)
        return
    emit_table(f"GPU pools of env {env}", ["pool", "instance types", "capacity", "min..max"],
               [(p["name"], ", ".join(p["instance_types"]), p["capacity_type"], f"{p['min_size']}..{p['max_size']}")
                for p in rows])
