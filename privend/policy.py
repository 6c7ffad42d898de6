"""Evaluate the guardrail rules (privend.policies.rules) on offline plans.

This is what `privend plan`, `privend policy check` and `endpoint create/update`
run. Offline, the rules see more than a policy pack under the engine does: which
inputs are Pulumi secrets, the stack config file, and all stacks of a plan at
once, so the secret and cross-stack rules are enforced here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Iterable

import yaml

from privend.catalog import engine_catalog, gpu_catalog
from privend.config import SECRET_KEYS, EnvironmentConfig, display_path, namespace_values, stack_file
from privend.files import read_text
from privend.offline import StackPlan
from privend.policies import rules

# The pack config as installed with the pack (privend.policies), for an editable install and a wheel alike.
PACK_CONFIG = files("privend.policies").joinpath("policy-config.json")


@dataclass(frozen=True)
class Violation:
    stack: str
    resource: str  # URN, or the stack file for config violations
    rule: str
    level: str
    message: str
    fix: str

    def to_json(self) -> dict:
        return self.__dict__.copy()


def context_for(cfg: EnvironmentConfig) -> rules.Context:
    return rules.Context(
        gpu_instance_types=frozenset(gpu_catalog().instances),
        allowed_registries=tuple(engine_catalog().allowed_registries) + tuple(cfg.allowed_image_registries),
        cost_tags=tuple(sorted(cfg.cost_tags)),
    )


def enforcement_levels(path: Path | Traversable | None = None) -> dict[str, str]:
    """Per-rule enforcement from the pack config (the same file `pulumi up --policy-pack-config` reads)."""
    path = path or PACK_CONFIG
    levels = {r.name: r.enforcement for r in rules.RULES}
    if path.is_file():
        for name, value in json.loads(path.read_text()).items():
            level = value if isinstance(value, str) else value.get("enforcementLevel")
            if name in levels and level in (rules.MANDATORY, rules.ADVISORY, "disabled"):
                levels[name] = level
    return levels


def _resources(plan: StackPlan) -> list[rules.Resource]:
    return [rules.Resource(type=r.type, name=r.name, urn=r.urn, props=r.inputs, stack=plan.stack, id=r.id,
                           secret_paths=frozenset(r.secret_paths)) for r in plan.resources]


def config_violations(env: str, stacks_dir: Path | None = None) -> list[Violation]:
    """Secrets stored as plain text in the stack file (the engine never shows a pack the config)."""
    path = stack_file(env, stacks_dir)
    document = yaml.safe_load(read_text(path, display_path(path))) or {}
    raw = namespace_values(document.get("config") or {})
    found = []
    for key, what in SECRET_KEYS.items():
        value = raw.get(key)
        if value is not None and not (isinstance(value, dict) and set(value) == {"secure"}):
            found.append(Violation(env, str(path), "no-plaintext-credentials", rules.MANDATORY,
                                   f"privend:{key} ({what}) is stored in plain text in the stack config",
                                   f"remove it and run `pulumi config set --secret privend:{key} -s {env}`"))
    return found


def rules_checked() -> int:
    """How many guardrails `evaluate` runs: every rule the pack config does not disable."""
    return sum(level != "disabled" for level in enforcement_levels().values())


def evaluate(plans: Iterable[StackPlan], cfg: EnvironmentConfig, include_config: bool = True,
             stacks_dir: Path | None = None) -> list[Violation]:
    plans = list(plans)
    ctx = context_for(cfg)
    levels = enforcement_levels()
    found: list[Violation] = config_violations(cfg.environment, stacks_dir) if include_config else []
    by_stack = {plan.stack: _resources(plan) for plan in plans}
    for rule in rules.RULES:
        level = levels[rule.name]
        if level == "disabled":
            continue

        def add(stack: str, resource: rules.Resource | None, message: str,
                rule: rules.Rule = rule, level: str = level) -> None:
            found.append(Violation(stack, resource.urn if resource else stack, rule.name, level, message,
                                   rule.description))

        for stack, resources in by_stack.items():
            if rule.check:
                for resource in resources:
                    for message in rule.check(resource, ctx):
                        add(stack, resource, message)
            if rule.stack_check:
                for flagged, message in rule.stack_check(resources, ctx):
                    add(stack, flagged, message)
        if rule.plan_check:
            for flagged, message in rule.plan_check(by_stack, ctx):
                add(flagged.stack if flagged else "", flagged, message)
    return sorted(found, key=lambda v: (v.level != rules.MANDATORY, v.stack, v.rule, v.resource, v.message))


def mandatory(violations: Iterable[Violation]) -> list[Violation]:
    return [v for v in violations if v.level == rules.MANDATORY]
