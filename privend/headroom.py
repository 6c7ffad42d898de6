"""Shared warm headroom: placeholder pods that keep GPUs of a pool's shared nodes free for scale-ups.

The Cluster Autoscaler's documented over-provisioning pattern, one buffer per GPU pool:

- a PriorityClass with a negative value (`privend-warm-headroom`), never the global default and
  never preempting anything itself (`preemptionPolicy: Never`);
- per pool with `warmHeadroomGpus` N > 0, a Deployment of N pause containers in the namespace
  `privend-headroom`, each requesting and limiting exactly one GPU, on the pool's shared nodes only.

How it pays: endpoint replicas run at the default priority 0. When a replica scales up and finds
no free GPU, the scheduler preempts a placeholder, and the replica starts at once on the warm GPU
the placeholder held (the node is up, its driver loaded) instead of waiting minutes for a node.
The evicted placeholder is recreated by its Deployment and goes Pending; the Cluster Autoscaler
sees an unschedulable pod and launches a node for it, so the buffer refills behind the scale-up.
When replicas scale down, the placeholders take the freed GPUs back and the autoscaler removes
the nodes nobody needs.

Why -10: the Cluster Autoscaler treats pods below `--expendable-pods-priority-cutoff` (default
-10, pinned in the autoscaler's values) as expendable, and an expendable pod never makes it add a
node: a lower value (the Kubernetes docs' example uses -1000) would keep the buffer from refilling.

Tenant isolation: the placeholders tolerate only the GPU taint every pool node carries, never the
tenant taint of a dedicated-tier node group, and a required node affinity excludes every node with
a tenant label besides. Dedicated node groups carry the same pool label as the shared pool, so the
pool selector alone would admit them; with the exclusion the shared buffer can neither land on a
tenant's own nodes nor make the autoscaler grow a tenant's node group. The guardrail
`warm-headroom-placeholders` (privend.policies.rules) checks both on every plan.

Pure functions: the WarmHeadroom component turns these into resources, and the tests validate
them against the real OpenAPI schemas with no Pulumi.
"""

from __future__ import annotations

from typing import Any

from privend.config import EnvironmentConfig
from privend.nodes import GPU_RESOURCE, GPU_TAINT_KEY, GPU_TAINT_VALUE, POOL_LABEL, TENANT_LABEL, Taint
from privend.render import RESTRICTED_POD_SECURITY, restricted_container_security
from privend.versions import PAUSE_IMAGE

NAMESPACE = "privend-headroom"
PRIORITY_CLASS = "privend-warm-headroom"
# The Cluster Autoscaler's default --expendable-pods-priority-cutoff: pods below it never trigger a scale-up.
AUTOSCALER_EXPENDABLE_CUTOFF = -10
PRIORITY = AUTOSCALER_EXPENDABLE_CUTOFF
DEPLOYMENT_PREFIX = "warm-headroom-"
HEADROOM_POOL_LABEL = "privend.io/headroom-pool"  # which pool's buffer a placeholder belongs to
LABELS = {"app.kubernetes.io/managed-by": "privend", "app.kubernetes.io/name": "warm-headroom"}
# The conventional "nobody" uid the pause image is built to run as, spelled out so runAsNonRoot
# never depends on the user the image declares.
RUN_AS = 65535
# A placeholder holds a GPU, not the node's CPU and memory: a preempting replica needs those too.
def resources(pod_gpus: int = 1) -> dict[str, dict[str, str]]:
    """One placeholder's requests and limits: `pod_gpus` GPUs and next to no CPU or memory."""
    return {"requests": {"cpu": "10m", "memory": "16Mi", GPU_RESOURCE: str(pod_gpus)},
            "limits": {"cpu": "50m", "memory": "32Mi", GPU_RESOURCE: str(pod_gpus)}}


# pulumi-kubernetes waits for a Deployment to become available; placeholders may stay Pending until
# the autoscaler has a node for them (a pool may start at zero nodes), which is their normal state.
SKIP_AWAIT = {"pulumi.com/skipAwait": "true"}


def deployment_name(pool: str) -> str:
    return f"{DEPLOYMENT_PREFIX}{pool}"


def pod_labels(pool: str) -> dict[str, str]:
    return {**LABELS, HEADROOM_POOL_LABEL: pool}


def headroom_gpus(cfg: EnvironmentConfig) -> dict[str, int]:
    """Pool -> warm GPUs, for the pools that keep a warm buffer (warmHeadroomGpus > 0)."""
    return {p.name: p.warm_headroom_gpus for p in cfg.gpu_pools if p.warm_headroom_gpus > 0}


def placeholder_pods(cfg: EnvironmentConfig) -> dict[str, tuple[int, int]]:
    """Pool -> (placeholder pods, GPUs per pod), for the pools that keep a warm buffer.

    A pod holds warmHeadroomPodGpus GPUs, the pool's largest replica, so that any replica that preempts
    one finds all its GPUs on one node.
    """
    return {p.name: (p.warm_headroom_gpus // p.warm_headroom_pod_gpus, p.warm_headroom_pod_gpus)
            for p in cfg.gpu_pools if p.warm_headroom_gpus > 0}


def namespace() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": NAMESPACE, "labels": {**LABELS, **RESTRICTED_POD_SECURITY}}}


def deny_all() -> dict[str, Any]:
    """A pause container neither serves nor calls anything."""
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "default-deny", "namespace": NAMESPACE, "labels": dict(LABELS)},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}}


def priority_class() -> dict[str, Any]:
    return {
        "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
        "metadata": {"name": PRIORITY_CLASS, "labels": dict(LABELS)},
        "value": PRIORITY,
        "globalDefault": False,
        "preemptionPolicy": "Never",
        "description": ("Warm headroom placeholders of the shared GPU pools: any endpoint replica preempts them; "
                        "they never preempt anything."),
    }


def shared_node_affinity() -> dict[str, Any]:
    """Required: no node with a tenant label, that is, no dedicated-tier node."""
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": TENANT_LABEL, "operator": "DoesNotExist"}]}]}}}


def placeholder_deployment(pool: str, pods: int, image: str = PAUSE_IMAGE, pod_gpus: int = 1) -> dict[str, Any]:
    """`pods` placeholder pods of `pod_gpus` GPUs each on the shared nodes of `pool`."""
    if pods < 1:
        raise ValueError(f"pool {pool}: a placeholder Deployment needs at least one pod, got {pods}")
    labels = pod_labels(pool)
    affinity = shared_node_affinity()
    # Packed onto as few nodes as will hold them: a replica of several GPUs needs them on one node.
    affinity["podAffinity"] = {"preferredDuringSchedulingIgnoredDuringExecution": [{
        "weight": 100,
        "podAffinityTerm": {"labelSelector": {"matchLabels": labels}, "topologyKey": "kubernetes.io/hostname"},
    }]}
    container = {
        "name": "pause",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "resources": resources(pod_gpus),
        "securityContext": restricted_container_security(),
    }
    pod = {
        "priorityClassName": PRIORITY_CLASS,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {"runAsNonRoot": True, "runAsUser": RUN_AS, "runAsGroup": RUN_AS,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "nodeSelector": {POOL_LABEL: pool},
        "affinity": affinity,
        # The GPU taint every pool node carries, and nothing else: never a tenant's taint.
        "tolerations": [Taint(GPU_TAINT_KEY, GPU_TAINT_VALUE).toleration()],
        # A preempted placeholder must hand its GPU over at once.
        "terminationGracePeriodSeconds": 0,
        "containers": [container],
    }
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": deployment_name(pool), "namespace": NAMESPACE, "labels": labels,
                     "annotations": dict(SKIP_AWAIT)},
        "spec": {
            "replicas": pods,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": pod},
        },
    }


def render_headroom(cfg: EnvironmentConfig) -> list[dict[str, Any]]:
    """All Kubernetes objects of the warm headroom, in apply order; no Deployment for a pool with N == 0."""
    objects = [priority_class(), namespace(), deny_all()]
    objects += [placeholder_deployment(pool, pods, pod_gpus=pod_gpus)
                for pool, (pods, pod_gpus) in sorted(placeholder_pods(cfg).items())]
    return objects
