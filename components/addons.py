"""PlatformAddons: pinned Helm releases every GPU cluster needs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Mapping, Sequence

import pulumi
import pulumi_kubernetes as k8s

from privend.components.cluster import Cluster
from privend.headroom import AUTOSCALER_EXPENDABLE_CUTOFF
from privend.iam import cluster_autoscaler_policy, load_balancer_controller_policy
from privend.nodes import (
    GPU_MODEL_LABEL,
    GPU_TAINT_KEY,
    POOL_LABEL,
    SYSTEM_POOL,
    TENANT_TAINT_KEY,
    expander_priorities,
)
from privend.versions import CHART_REPOSITORIES

SYSTEM_NODE_SELECTOR = {POOL_LABEL: SYSTEM_POOL}


@dataclass(frozen=True)
class PlatformAddonsArgs:
    environment: str
    region: str
    cluster: Cluster
    cluster_name: str
    vpc_id: pulumi.Input[str]
    chart_versions: Mapping[str, str]
    # (base node group name, instance types) of each shared GPU pool, for the priority expander.
    gpu_pools: Sequence[tuple[str, list[str]]] = ()


def device_plugin_values() -> dict:
    """The NVIDIA device plugin must run on every GPU node, whatever tenant taint it carries."""
    return {
        "tolerations": [
            {"key": GPU_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"},
            {"key": TENANT_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"},
        ],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": [{"key": GPU_MODEL_LABEL, "operator": "Exists"}]}]
                }
            }
        },
    }


def cluster_autoscaler_values(cluster_name: str, region: str, role_arn: str,
                              gpu_pools: Sequence[tuple[str, list[str]]] = ()) -> dict:
    return {
        "autoDiscovery": {"clusterName": cluster_name},
        "awsRegion": region,
        "rbac": {"serviceAccount": {"name": "cluster-autoscaler", "annotations": {"eks.amazonaws.com/role-arn": role_arn}}},
        "extraArgs": {
            "balance-similar-node-groups": "true",
            # Cheapest GPU first among the groups that fit (privend.nodes.expander_priorities).
            "expander": "priority,least-waste",
            "skip-nodes-with-system-pods": "false",
            # Spelled out, not left to the default: the warm headroom's placeholders sit exactly at the
            # cutoff, and a pod below it never makes the autoscaler add a node (privend/headroom.py).
            "expendable-pods-priority-cutoff": str(AUTOSCALER_EXPENDABLE_CUTOFF),
        },
        "expanderPriorities": expander_priorities(list(gpu_pools)),
        "nodeSelector": SYSTEM_NODE_SELECTOR,
    }


def load_balancer_controller_values(cluster_name: str, region: str, vpc_id: str, role_arn: str) -> dict:
    # Region and VPC are given explicitly: nodes block pods from the metadata service.
    return {
        "clusterName": cluster_name,
        "region": region,
        "vpcId": vpc_id,
        "serviceAccount": {"name": "aws-load-balancer-controller", "annotations": {"eks.amazonaws.com/role-arn": role_arn}},
        "nodeSelector": SYSTEM_NODE_SELECTOR,
    }


def keda_cloudwatch_policy() -> dict:
    """KEDA scales endpoints on CloudWatch metrics (queue depth, load balancer flows): read-only access."""
    return {
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Action": ["cloudwatch:GetMetricData", "cloudwatch:GetMetricStatistics", "cloudwatch:ListMetrics"],
            "Resource": "*",
        }],
    }


def keda_values(role_arn: str) -> dict:
    # Triggers use identityOwner: operator, so the operator's own IRSA role reads the metrics.
    return {
        "nodeSelector": SYSTEM_NODE_SELECTOR,
        "podIdentity": {"aws": {"irsa": {"enabled": True, "roleArn": role_arn}}},
        "serviceAccount": {"operator": {"name": "keda-operator"}},
    }


class PlatformAddons(pulumi.ComponentResource):
    """NVIDIA device plugin, AWS Load Balancer Controller, KEDA and the Cluster Autoscaler."""

    releases: dict[str, k8s.helm.v3.Release]

    def __init__(self, name: str, args: PlatformAddonsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("private-endpoint:addons:PlatformAddons", name, None, opts)
        self._args = args
        self._name = name
        self.releases = {}
        cluster = args.cluster

        lbc_role = cluster.irsa_role(
            f"{name}-lb-controller", "kube-system", "aws-load-balancer-controller",
            inline_policy=json.dumps(load_balancer_controller_policy()), parent=self,
        )
        ca_role = cluster.irsa_role(
            f"{name}-cluster-autoscaler", "kube-system", "cluster-autoscaler",
            inline_policy=json.dumps(cluster_autoscaler_policy(args.cluster_name)), parent=self,
        )
        self._release("nvidia-device-plugin", "kube-system", device_plugin_values())
        self._release(
            "aws-load-balancer-controller", "kube-system",
            pulumi.Output.all(args.vpc_id, lbc_role.arn).apply(
                lambda v: load_balancer_controller_values(args.cluster_name, args.region, v[0], v[1])
            ),
        )
        keda_role = cluster.irsa_role(
            f"{name}-keda", "keda", "keda-operator",
            inline_policy=json.dumps(keda_cloudwatch_policy()), parent=self,
        )
        self._release("keda", "keda", keda_role.arn.apply(keda_values), create_namespace=True)
        self._release(
            "cluster-autoscaler", "kube-system",
            ca_role.arn.apply(lambda arn: cluster_autoscaler_values(args.cluster_name, args.region, arn,
                                                                    args.gpu_pools)),
        )
        self.register_outputs({"releases": {k: r.name for k, r in self.releases.items()}})

    def _release(self, chart: str, namespace: str, values, create_namespace: bool = False) -> None:
        self.releases[chart] = k8s.helm.v3.Release(
            f"{self._name}-{chart}",
            name=chart,
            chart=chart,
            version=self._args.chart_versions[chart],
            repository_opts={"repo": CHART_REPOSITORIES[chart]},
            namespace=namespace,
            create_namespace=create_namespace,
            values=values,
            atomic=True,
            cleanup_on_fail=True,
            opts=pulumi.ResourceOptions(parent=self),
        )
