"""IAM policy documents the platform attaches, as plain dicts.

Kept out of the components so tests can check the exact statements (who may
assume a role, on which resources an action is allowed) with no Pulumi.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

CRDS_DIR = Path(__file__).parent / "crds"


def service_trust_policy(service: str) -> dict:
    """Trust policy letting an AWS service (e.g. eks.amazonaws.com) assume a role."""
    return {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}],
    }


def irsa_trust_policy(oidc_provider_arn: str, oidc_issuer_url: str, namespace: str, service_account: str) -> dict:
    """Trust policy for IAM Roles for Service Accounts, bound to one service account."""
    issuer = oidc_issuer_url.removeprefix("https://")
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Federated": oidc_provider_arn},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {
                    "StringEquals": {
                        f"{issuer}:sub": f"system:serviceaccount:{namespace}:{service_account}",
                        f"{issuer}:aud": "sts.amazonaws.com",
                    }
                },
            }
        ],
    }


def cluster_autoscaler_policy(cluster_name: str) -> dict:
    """Cluster Autoscaler permissions: read everywhere, scale only this cluster's groups."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "Describe",
                "Effect": "Allow",
                "Action": [
                    "autoscaling:DescribeAutoScalingGroups",
                    "autoscaling:DescribeAutoScalingInstances",
                    "autoscaling:DescribeLaunchConfigurations",
                    "autoscaling:DescribeScalingActivities",
                    "autoscaling:DescribeTags",
                    "ec2:DescribeImages",
                    "ec2:DescribeInstanceTypes",
                    "ec2:DescribeLaunchTemplateVersions",
                    "ec2:GetInstanceTypesFromInstanceRequirements",
                    "eks:DescribeNodegroup",
                ],
                "Resource": "*",
            },
            {
                "Sid": "ScaleOwnNodeGroups",
                "Effect": "Allow",
                "Action": [
                    "autoscaling:SetDesiredCapacity",
                    "autoscaling:TerminateInstanceInAutoScalingGroup",
                ],
                "Resource": "*",
                "Condition": {
                    "StringEquals": {f"aws:ResourceTag/k8s.io/cluster-autoscaler/{cluster_name}": "owned"}
                },
            },
        ],
    }


@lru_cache(maxsize=1)
def load_balancer_controller_policy() -> dict:
    """The AWS Load Balancer Controller's published IAM policy (shipped in privend/crds)."""
    return json.loads((CRDS_DIR / "aws-load-balancer-controller-iam-policy.json").read_text())


def kms_key_policy(account_id: str, partition: str = "aws", service_principals: list[str] | None = None) -> dict:
    """Key policy that keeps the account root in control, so the key is never orphaned."""
    statements = []
    if service_principals:
        statements.append({
            "Sid": "AwsServices",
            "Effect": "Allow",
            "Principal": {"Service": sorted(service_principals)},
            "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
            "Resource": "*",
            "Condition": {"StringEquals": {"aws:SourceAccount": account_id}},
        })
    return {
        "Version": "2012-10-17",
        "Statement": statements + [
            {
                "Sid": "AccountAdmin",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:{partition}:iam::{account_id}:root"},
                "Action": "kms:*",
                "Resource": "*",
            }
        ],
    }
