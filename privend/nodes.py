"""What a node group promises the scheduler: labels, taints and autoscaler hints.

Pure functions so the same facts drive the node groups, the Cluster Autoscaler's
scale-from-zero tags, the device plugin's tolerations and the engines' pod specs.
"""

from __future__ import annotations

import re

from dataclasses import dataclass

from privend.catalog import gpu_catalog
from privend.naming import bounded_name

POOL_LABEL = "privend.io/pool"
GPU_MODEL_LABEL = "privend.io/gpu-model"
TENANT_LABEL = "privend.io/tenant"
GPU_TAINT_KEY = "nvidia.com/gpu"
GPU_TAINT_VALUE = "present"
TENANT_TAINT_KEY = "privend.io/tenant"
GPU_RESOURCE = "nvidia.com/gpu"
SYSTEM_POOL = "system"
NVIDIA_AMI_TYPE = "AL2023_x86_64_NVIDIA"
STANDARD_AMI_TYPE = "AL2023_x86_64_STANDARD"
CA_TEMPLATE = "k8s.io/cluster-autoscaler/node-template"

# EKS node group taint effects are spelled differently from Kubernetes ones.
EKS_EFFECT = {"NoSchedule": "NO_SCHEDULE", "NoExecute": "NO_EXECUTE", "PreferNoSchedule": "PREFER_NO_SCHEDULE"}


@dataclass(frozen=True)
class Taint:
    key: str
    value: str
    effect: str = "NoSchedule"

    def eks(self) -> dict[str, str]:
        return {"key": self.key, "value": self.value, "effect": EKS_EFFECT[self.effect]}

    def toleration(self) -> dict[str, str]:
        return {"key": self.key, "operator": "Equal", "value": self.value, "effect": self.effect}


def gpu_pool_labels(pool: str, instance_types: list[str], tenant: str | None = None,
                    extra: dict[str, str] | None = None) -> dict[str, str]:
    labels = dict(extra or {})
    labels[POOL_LABEL] = pool
    labels[GPU_MODEL_LABEL] = gpu_catalog().get(instance_types[0]).gpu_model
    if tenant:
        labels[TENANT_LABEL] = tenant
    return labels


def gpu_pool_taints(tenant: str | None = None) -> list[Taint]:
    taints = [Taint(GPU_TAINT_KEY, GPU_TAINT_VALUE)]
    if tenant:
        # Only the dedicated tenant's pods tolerate this, so no other tenant lands here.
        taints.append(Taint(TENANT_TAINT_KEY, tenant))
    return taints


def node_group_types(instance_types: list[str]) -> list[tuple[int, list[str]]]:
    """A pool's instance types split into node groups of one GPU count each, in the order listed.

    The Cluster Autoscaler treats every node of a node group as alike: from a group mixing 1- and
    4-GPU types it would promise pods the smaller node, and never scale up for a replica of several
    GPUs. One group per GPU count lets it choose, with the `price` expander, the type a scale-up
    fills best (what `privend.simulator` models).
    """
    groups: dict[int, list[str]] = {}
    for t in instance_types:
        groups.setdefault(gpu_catalog().get(t).gpus, []).append(t)
    return list(groups.items())


def node_group_names(base: str, instance_types: list[str]) -> list[str]:
    """The EKS names of a pool's node groups (`node_group_types` order): `base`, then `base-<n>gpu`."""
    return [base if i == 0 else bounded_name("node-group", base, f"{gpus}gpu")
            for i, (gpus, _) in enumerate(node_group_types(instance_types))]


def expander_priorities(pools: list[tuple[str, list[str]]]) -> dict[str, list[str]]:
    """The Cluster Autoscaler's priority expander: the shared pools' node groups, cheapest GPU first.

    `pools` holds (base node group name, instance types) per pool. A scale-up goes to the highest
    priority among the node groups whose nodes fit the pending pod, so a single-GPU replica gets the
    single-GPU group (the cheapest per GPU) and a sharded one the cheapest group that holds it; ties
    fall through to least-waste. Groups listed nowhere (dedicated tenants' own) rank last (`.*`).
    Managed node groups' Auto Scaling groups are named `eks-<node group>-<uuid>`.
    """
    ranked = []
    for base, types in pools:
        for name, (_, group) in zip(node_group_names(base, types), node_group_types(types), strict=True):
            per_gpu = min(gpu_catalog().get(t).on_demand_hourly / gpu_catalog().get(t).gpus for t in group)
            ranked.append((per_gpu, name))
    out: dict[str, list[str]] = {"1": [".*"]}  # the chart's values: priority (as text) -> name patterns
    for rank, (_, name) in enumerate(sorted(ranked, key=lambda item: (-item[0], item[1]))):
        # `-<8 hex>`: the id EKS appends, so `...-l4-` does not also match `...-l4-4gpu-`.
        out.setdefault(str(10 * (rank + 2)), []).append(f"^eks-{re.escape(name)}-[0-9a-f]{{8}}(-.*)?$")
    return out


def autoscaler_node_template_tags(labels: dict[str, str], taints: list[Taint], instance_types: list[str]) -> dict[str, str]:
    """ASG tags that let the Cluster Autoscaler scale a GPU pool up from zero nodes.

    With no node to look at, the autoscaler learns labels, taints and GPU count from these. The types of
    one node group have one GPU count (`node_group_types`); were they mixed, the smallest count would
    be advertised, so a pod is never promised GPUs a node lacks.
    """
    gpus = min(gpu_catalog().get(t).gpus for t in instance_types)
    tags = {f"{CA_TEMPLATE}/label/{k}": v for k, v in labels.items()}
    tags.update({f"{CA_TEMPLATE}/taint/{t.key}": f"{t.value}:{t.effect}" for t in taints})
    tags[f"{CA_TEMPLATE}/resources/{GPU_RESOURCE}"] = str(gpus)
    return tags
