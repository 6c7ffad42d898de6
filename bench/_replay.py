"""A bare program that registers a plan's resources again, flat and without logic.

The baseline the plan benchmarks compare against: the same SDK classes with the
same inputs under the same mock runtime, but no components' logic, no config,
no applies and no lookups.
"""

from __future__ import annotations

import inspect

import pulumi
from pydantic.alias_generators import to_camel


def _sdk_class(token: str):
    """The SDK class behind a type token, e.g. aws:ec2/subnet:Subnet -> pulumi_aws.ec2.Subnet."""
    import pulumi_aws
    import pulumi_kubernetes
    import pulumi_random

    package, module, name = token.split(":")
    if package == "pulumi":  # pulumi:providers:aws
        return {"aws": pulumi_aws.Provider, "kubernetes": pulumi_kubernetes.Provider}[name]
    if package == "random":
        return getattr(pulumi_random, name)
    if package == "kubernetes":
        group_version = module.split("/")
        if token == "kubernetes:helm.sh/v3:Release":
            return pulumi_kubernetes.helm.v3.Release
        group = {"core": "core", "apps": "apps", "policy": "policy", "networking.k8s.io": "networking"}.get(group_version[0])
        if group is None:
            return None  # custom resources: generic CustomResource
        return getattr(getattr(getattr(pulumi_kubernetes, group), group_version[1]), name)
    return getattr(getattr(pulumi_aws, module.split("/")[0]), name)


def _kwargs(cls, inputs: dict) -> dict:
    params = inspect.signature(cls._internal_init).parameters
    by_camel = {to_camel(p): p for p in params}
    kwargs = {}
    for key, value in inputs.items():
        if key in ("apiVersion", "kind") and key not in by_camel:
            continue  # typed Kubernetes classes set these themselves
        if key not in by_camel:
            raise SystemExit(f"bench: cannot map input {key!r} of {cls.__name__}")
        kwargs[by_camel[key]] = value
    return kwargs


def replay_program(plans):
    """A program registering every resource of `plans` flat; returns (program, resource count)."""
    import pulumi_kubernetes

    entries = []
    for plan in plans:
        for r in plan.resources:
            if r.type == "pulumi:pulumi:StackReference":
                continue
            if not r.custom:
                entries.append(("component", r.type, f"{plan.stack}-{r.name}", None))
                continue
            cls = _sdk_class(r.type)
            if cls is None:
                inputs = dict(r.inputs)
                entries.append(("custom", r.type, f"{plan.stack}-{r.name}", inputs))
            else:
                entries.append((cls, r.type, f"{plan.stack}-{r.name}", _kwargs(cls, r.inputs)))

    def program():
        for cls, type_, name, kwargs in entries:
            if cls == "component":
                pulumi.ComponentResource(type_, name)
            elif cls == "custom":
                pulumi_kubernetes.apiextensions.CustomResource(
                    name, api_version=kwargs["apiVersion"], kind=kwargs["kind"], metadata=kwargs.get("metadata"),
                    spec=kwargs.get("spec"))
            else:
                cls(name, **kwargs)
        return {}
    return program, len(entries)
