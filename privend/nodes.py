"""What a node group promises the scheduler: labels, taints and autoscaler hints.

Pure functions so the same facts drive the node groups, the Cluster Autoscaler's
scale-from-zero tags, the device plugin's tolerations and the engines' pod specs.
"""

from __future__ import annotations

from dataclasses import dataclass

from privend.catalog import gpu_catalog

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


def autoscaler_node_template_tags(labels: dict[str, str], taints: list[Taint], instance_types: list[str]) -> dict[str, str]:
    """ASG tags that let the Cluster Autoscaler scale a GPU pool up from zero nodes.

    With no node to look at, the autoscaler learns labels, taints and GPU count from these.
    Mixed instance types advertise the smallest GPU count, so a pod is never promised GPUs a node lacks.
    """
    gpus = min(gpu_catalog().get(t).gpus for t in instance_types)
    tags = {f"{CA_TEMPLATE}/label/{k}": v for k, v in labels.items()}
    tags.update({f"{CA_TEMPLATE}/taint/{t.key}": f"{t.value}:{t.effect}" for t in taints})
    tags[f"{CA_TEMPLATE}/resources/{GPU_RESOURCE}"] = str(gpus)
    return tags
