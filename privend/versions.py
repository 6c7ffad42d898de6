"""Pinned versions of everything the platform installs into a cluster.

One place for these facts: environment config may override a pin (to roll a
new version out to dev first), but the defaults live only here.
"""

from __future__ import annotations

KUBERNETES_VERSION = "1.34"

# EKS managed add-ons (aws eks describe-addon-versions --kubernetes-version 1.34); re-check
# these pins with that command before rolling a new Kubernetes version out.
ADDON_VERSIONS: dict[str, str] = {
    "vpc-cni": "v1.20.0-eksbuild.1",
    "coredns": "v1.12.1-eksbuild.2",
    "kube-proxy": "v1.34.0-eksbuild.2",
    "aws-ebs-csi-driver": "v1.45.0-eksbuild.2",
    "amazon-cloudwatch-observability": "v4.1.0-eksbuild.1",
}

# Helm charts. The load balancer controller and KEDA pins match the CRD schemas
# and IAM policy shipped in privend/crds (copied from the same releases).
CHART_REPOSITORIES: dict[str, str] = {
    "nvidia-device-plugin": "https://nvidia.github.io/k8s-device-plugin",
    "aws-load-balancer-controller": "https://aws.github.io/eks-charts",
    "keda": "https://kedacore.github.io/charts",
    "cluster-autoscaler": "https://kubernetes.github.io/autoscaler",
}

CHART_VERSIONS: dict[str, str] = {
    "nvidia-device-plugin": "0.17.2",
    "aws-load-balancer-controller": "3.5.0",
    "keda": "2.20.1",
    "cluster-autoscaler": "9.50.1",
}
