"""GpuPool: managed node groups of GPU instances, one per GPU count, tainted so only GPU workloads land there.

A pool of one GPU count is one node group (`<name>-ng`). A pool that mixes counts (single-GPU types,
the cheapest per GPU, beside 4- or 8-GPU types for sharded replicas) gets one node group per count,
the first as `<name>-ng` with the pool's minSize and desiredSize, the others as `<name>-<n>gpu-ng`
from zero; each may grow to the pool's maxSize (`privend.nodes.node_group_types`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import pulumi
import pulumi_aws as aws

from privend.components.node_group import launch_template, node_group
from privend.naming import bounded_name
from privend.nodes import (
    NVIDIA_AMI_TYPE,
    autoscaler_node_template_tags,
    gpu_pool_labels,
    gpu_pool_taints,
    node_group_names,
    node_group_types,
)


@dataclass(frozen=True)
class GpuPoolArgs:
    environment: str
    pool: str
    cluster_name: pulumi.Input[str]
    node_role_arn: pulumi.Input[str]
    subnet_ids: pulumi.Input[Sequence[str]]  # private node subnets only
    instance_types: Sequence[str]
    capacity_type: str
    min_size: int
    max_size: int
    desired_size: int
    disk_size_gib: int
    labels: Mapping[str, str] = field(default_factory=dict)
    tenant: str | None = None  # set for a dedicated-tier tenant's own pool
    node_group_name: str | None = None  # default: privend-<env>-<pool>
    tags: Mapping[str, str] = field(default_factory=dict)


class GpuPool(pulumi.ComponentResource):
    node_group_name: pulumi.Output[str]
    gpu_model: str

    def __init__(self, name: str, args: GpuPoolArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("private-endpoint:compute:GpuPool", name, None, opts)
        labels = gpu_pool_labels(args.pool, list(args.instance_types), args.tenant, dict(args.labels))
        taints = gpu_pool_taints(args.tenant)
        self.gpu_model = labels["privend.io/gpu-model"]
        template = launch_template(f"{name}-lt", args.disk_size_gib, args.tags, self)
        base_name = args.node_group_name or bounded_name("node-group", "privend", args.environment, args.pool)
        names = node_group_names(base_name, list(args.instance_types))
        self.node_groups = []
        for i, (gpus, types) in enumerate(node_group_types(list(args.instance_types))):
            suffix = "" if i == 0 else f"-{gpus}gpu"
            group = node_group(
                f"{name}{suffix}-ng",
                cluster_name=args.cluster_name,
                node_group_name=names[i],
                node_role_arn=args.node_role_arn,
                subnet_ids=args.subnet_ids,
                instance_types=types,
                capacity_type=args.capacity_type,
                ami_type=NVIDIA_AMI_TYPE,
                min_size=args.min_size if i == 0 else 0,
                max_size=args.max_size,
                desired_size=args.desired_size if i == 0 else 0,
                labels=labels,
                taints=[t.eks() for t in taints],
                template=template,
                tags=args.tags,
                parent=self,
            )
            self._tag_autoscaling_group(f"{name}{suffix}", group, labels, taints, types)
            self.node_groups.append(group)
        self.node_group = self.node_groups[0]
        self.node_group_name = self.node_group.node_group_name
        self.register_outputs({"nodeGroupName": self.node_group_name, "gpuModel": self.gpu_model})

    def _tag_autoscaling_group(self, name: str, group, labels, taints, types: list[str]) -> None:
        # Managed node groups do not copy their tags to the Auto Scaling group, where
        # the Cluster Autoscaler reads them; tag the group directly.
        asg_name = group.resources.apply(lambda r: r[0]["autoscaling_groups"][0]["name"])
        for i, (key, value) in enumerate(sorted(autoscaler_node_template_tags(labels, taints, types).items())):
            aws.autoscaling.Tag(
                f"{name}-ca-{i}",
                autoscaling_group_name=asg_name,
                tag={"key": key, "value": value, "propagate_at_launch": False},
                opts=pulumi.ResourceOptions(parent=self),
            )
