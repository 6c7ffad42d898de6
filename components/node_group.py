"""Launch template and managed node group wiring shared by the system and GPU pools.

Not a component: plain functions the SystemPool and GpuPool components call so
both get the same hardening (IMDSv2 only, encrypted gp3 root volumes).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import pulumi
import pulumi_aws as aws

# Hop limit 1: pods cannot reach the instance metadata service, so a tenant's
# container can never borrow the node's IAM role.
IMDS_HOP_LIMIT = 1


def launch_template(name: str, disk_size_gib: int, tags: Mapping[str, str], parent: pulumi.Resource) -> aws.ec2.LaunchTemplate:
    return aws.ec2.LaunchTemplate(
        name,
        metadata_options={
            "http_endpoint": "enabled",
            "http_tokens": "required",
            "http_put_response_hop_limit": IMDS_HOP_LIMIT,
        },
        block_device_mappings=[
            {
                "device_name": "/dev/xvda",
                "ebs": {
                    "volume_size": disk_size_gib,
                    "volume_type": "gp3",
                    "encrypted": "true",
                    "delete_on_termination": "true",
                },
            }
        ],
        tag_specifications=[
            {"resource_type": "instance", "tags": dict(tags)},
            {"resource_type": "volume", "tags": dict(tags)},
        ],
        update_default_version=True,
        tags=dict(tags),
        opts=pulumi.ResourceOptions(parent=parent),
    )


def node_group(name: str, *, cluster_name: pulumi.Input[str], node_group_name: str, node_role_arn: pulumi.Input[str],
               subnet_ids: pulumi.Input[Sequence[str]], instance_types: Sequence[str], capacity_type: str,
               ami_type: str, min_size: int, max_size: int, desired_size: int, labels: Mapping[str, str],
               taints: Sequence[Mapping[str, str]], template: aws.ec2.LaunchTemplate, tags: Mapping[str, str],
               parent: pulumi.Resource) -> aws.eks.NodeGroup:
    return aws.eks.NodeGroup(
        name,
        cluster_name=cluster_name,
        node_group_name=node_group_name,
        node_role_arn=node_role_arn,
        subnet_ids=subnet_ids,
        instance_types=list(instance_types),
        capacity_type="SPOT" if capacity_type == "spot" else "ON_DEMAND",
        ami_type=ami_type,
        scaling_config={"min_size": min_size, "max_size": max_size, "desired_size": desired_size},
        update_config={"max_unavailable": 1},
        launch_template={"id": template.id, "version": template.latest_version.apply(str)},
        labels=dict(labels),
        # An EKS taint is exactly these three fields (privend.nodes.Taint.eks spells them for EKS).
        taints=[{"key": t["key"], "value": t["value"], "effect": t["effect"]} for t in taints] or None,
        tags=dict(tags),
        # The Cluster Autoscaler owns desired size once the group exists.
        opts=pulumi.ResourceOptions(parent=parent, ignore_changes=["scalingConfig.desiredSize"]),
    )
