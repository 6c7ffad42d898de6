"""SystemPool: the CPU node group that runs cluster add-ons, never tenant workloads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import pulumi

from privend.components.node_group import launch_template, node_group
from privend.naming import bounded_name
from privend.nodes import POOL_LABEL, STANDARD_AMI_TYPE, SYSTEM_POOL


@dataclass(frozen=True)
class SystemPoolArgs:
    environment: str
    cluster_name: pulumi.Input[str]
    node_role_arn: pulumi.Input[str]
    subnet_ids: pulumi.Input[Sequence[str]]
    instance_types: Sequence[str]
    min_size: int
    max_size: int
    desired_size: int
    disk_size_gib: int
    tags: Mapping[str, str] = field(default_factory=dict)


class SystemPool(pulumi.ComponentResource):
    node_group_name: pulumi.Output[str]

    def __init__(self, name: str, args: SystemPoolArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("private-endpoint:compute:SystemPool", name, None, opts)
        template = launch_template(f"{name}-lt", args.disk_size_gib, args.tags, self)
        self.node_group = node_group(
            f"{name}-ng",
            cluster_name=args.cluster_name,
            node_group_name=bounded_name("node-group", "privend", args.environment, SYSTEM_POOL),
            node_role_arn=args.node_role_arn,
            subnet_ids=args.subnet_ids,
            instance_types=args.instance_types,
            capacity_type="on-demand",
            ami_type=STANDARD_AMI_TYPE,
            min_size=args.min_size,
            max_size=args.max_size,
            desired_size=args.desired_size,
            labels={POOL_LABEL: SYSTEM_POOL},
            taints=[],
            template=template,
            tags=args.tags,
            parent=self,
        )
        self.node_group_name = self.node_group.node_group_name
        self.register_outputs({"nodeGroupName": self.node_group_name})
