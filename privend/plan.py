"""Offline plans: run the platform and endpoint programs under the mock runtime and render what they declare.

This module imports the Pulumi SDKs and the programs; the services and the CLI import
it only in the commands that plan, so the others never pay for them.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any, Iterable

from rich.console import Console
from rich.table import Table
from rich.tree import Tree

import pulumi

from privend.config import EnvironmentConfig
from privend.endpoint_program import endpoint_program, platform_stack_ref
from privend.errors import PolicyViolation
from privend.naming import endpoint_names
from privend.offline import OfflineCloud, StackPlan, run_program
from privend.platform import platform_program
from privend.policy import evaluate, mandatory
from privend.spec import EndpointSpec


def plan_platform(cfg: EnvironmentConfig) -> StackPlan:
    return run_program(lambda: platform_program(cfg), stack=cfg.environment, cloud=OfflineCloud(cfg.region))


_platform_cache: dict[str, StackPlan] = {}


def cached_platform_plan(cfg: EnvironmentConfig) -> StackPlan:
    """The platform plan of `cfg`, computed once per process and config (endpoint checks reuse it)."""
    key = cfg.model_dump_json()
    if key not in _platform_cache:
        _platform_cache.clear()
        _platform_cache[key] = plan_platform(cfg)
    return _platform_cache[key]


def check_endpoint_policy(spec: EndpointSpec, cfg: EnvironmentConfig) -> None:
    """Refuse a spec whose endpoint stack would violate a mandatory guardrail (exit code 3)."""
    plan = plan_endpoint(spec, cfg, cached_platform_plan(cfg))
    blocking = mandatory(evaluate([plan], cfg, include_config=False))
    if blocking:
        first = blocking[0]
        more = f" (and {len(blocking) - 1} more)" if len(blocking) > 1 else ""
        raise PolicyViolation(f"endpoint {spec.name!r} violates {first.rule}: {first.message}{more}; fix: {first.fix}")


def plan_environment(cfg: EnvironmentConfig, specs: Iterable[EndpointSpec], *,
                     platform: bool = True) -> list[StackPlan]:
    """The platform stack (unless `platform` is False) and the endpoint stack of each spec, offline."""
    platform_plan = plan_platform(cfg)
    plans = [platform_plan] if platform else []
    plans += [plan_endpoint(spec, cfg, platform_plan) for spec in specs]
    return plans


def plan_json(plans: Iterable[StackPlan]) -> str:
    """Deterministic JSON: resources sorted by stack and URN, keys sorted."""
    resources = [r.to_json() for plan in plans for r in plan.resources]
    resources.sort(key=lambda r: (r["stack"], r["urn"]))
    return json.dumps(resources, indent=2, sort_keys=True, default=str)


def _label(resource: Any) -> str:
    return f"[bold]{resource.name}[/bold] [dim]{resource.type}[/dim]"


def _add_children(parent_node: Tree, parent_urn: str | None, children: dict[str | None, list]) -> None:
    """The resources parented by `parent_urn` under `parent_node`, components first, then by type and name."""
    for resource in sorted(children.get(parent_urn, []), key=lambda r: (r.custom, r.type, r.name)):
        _add_children(parent_node.add(_label(resource)), resource.urn, children)


def render_table(plans: list[StackPlan], console: Console) -> None:
    for plan in plans:
        tree = Tree(f"[bold cyan]stack {plan.stack}[/bold cyan] ({len(plan.resources)} resources)")
        children: dict[str | None, list] = {}
        for resource in plan.resources:
            children.setdefault(resource.parent, []).append(resource)
        _add_children(tree, None, children)
        console.print(tree)
        counts = Table(title=f"{plan.stack}: resources by type", show_lines=False)
        counts.add_column("type")
        counts.add_column("count", justify="right")
        for type_, count in sorted(Counter(r.type for r in plan.resources).items()):
            counts.add_row(type_, str(count))
        counts.add_row("[bold]total[/bold]", f"[bold]{len(plan.resources)}[/bold]")
        console.print(counts)


OFFLINE_HF_TOKEN = "offline-placeholder-token"


def plan_endpoint(spec: EndpointSpec, cfg: EnvironmentConfig, platform: StackPlan) -> StackPlan:
    """Plan one endpoint stack against an (offline) platform plan."""
    cloud = OfflineCloud(cfg.region, stack_outputs={platform_stack_ref(cfg.environment): platform.outputs})
    return run_program(
        lambda: endpoint_program(spec, cfg, hf_token=pulumi.Output.secret(OFFLINE_HF_TOKEN)),
        stack=endpoint_names(cfg.environment, spec.name).stack, cloud=cloud,
    )
