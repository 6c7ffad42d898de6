"""The CrossGuard policy pack: `pulumi preview --policy-pack policies` runs this.

Thin: the rules live in rules.py, next to this file, imported as
privend.policies.rules (the pack's requirements.txt installs the project into
the pack's virtualenv). The facts they check against (GPU instance types,
allowed image registries) are read from the project's catalogs through the
privend package; the cost tags `required-tags` demands come from its config key
`costTags` (policy-config.json, or --policy-pack-config).
"""

from __future__ import annotations

from dataclasses import replace
from importlib.resources import files

import yaml
from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    Policy,
    PolicyPack,
    ResourceValidationPolicy,
    StackValidationPolicy,
)

from privend.policies import rules

# The catalog data files, read as resources of the privend package: the pack needs
# two plain lists from them, not the validated catalog models (and their imports).
CATALOG = files("privend").joinpath("catalog")
LEVELS = {rules.MANDATORY: EnforcementLevel.MANDATORY, rules.ADVISORY: EnforcementLevel.ADVISORY}


def load_context(cost_tags: tuple[str, ...] = ()) -> rules.Context:
    gpus = yaml.safe_load((CATALOG / "gpu_instances.yaml").read_text())["instances"]
    engines = yaml.safe_load((CATALOG / "engines.yaml").read_text())
    return rules.Context(gpu_instance_types=frozenset(gpus), allowed_registries=tuple(engines["allowedRegistries"]),
                         cost_tags=cost_tags)


def _resource(args) -> rules.Resource:
    return rules.Resource(type=args.resource_type, name=args.name, urn=args.urn, props=args.props,
                          id=args.props.get("id") if hasattr(args.props, "get") else None)


COST_TAGS_SCHEMA = PolicyConfigSchema(properties={"costTags": {"type": "array", "items": {"type": "string"}}})


def resource_policy(rule: rules.Rule, ctx: rules.Context) -> ResourceValidationPolicy:
    def validate(args, report_violation):
        local = replace(ctx, cost_tags=tuple(args.get_config().get("costTags") or ())) if rule.name == "required-tags" else ctx
        for message in rule.check(_resource(args), local):
            report_violation(message)
    return ResourceValidationPolicy(name=rule.name, description=rule.description, validate=validate,
                                    enforcement_level=LEVELS[rule.enforcement],
                                    config_schema=COST_TAGS_SCHEMA if rule.name == "required-tags" else None)


def stack_policy(rule: rules.Rule, ctx: rules.Context) -> StackValidationPolicy:
    def validate(args, report_violation):
        resources = [_resource(r) for r in args.resources]
        for resource, message in rule.stack_check(resources, ctx):
            report_violation(message, resource.urn if resource else None)
    return StackValidationPolicy(name=rule.name, description=rule.description, validate=validate,
                                 enforcement_level=LEVELS[rule.enforcement])


def build_pack(ctx: rules.Context) -> PolicyPack:
    policies: list[Policy] = []
    for rule in rules.RULES:
        if rule.check:
            policies.append(resource_policy(rule, ctx))
        elif rule.stack_check:
            policies.append(stack_policy(rule, ctx))
        # plan_check rules span many stacks; the engine evaluates one stack at a time,
        # so they run offline (privend plan / privend policy check) only.
    return PolicyPack(name="private-endpoint-guardrails", policies=policies)


if __name__ == "__main__":
    build_pack(load_context())
