"""The platform program: one stack per environment.

`__main__.py` runs it under the Pulumi engine; the offline engine runs it under
mocks. Both hand it the same validated EnvironmentConfig.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from privend.components.addons import PlatformAddons, PlatformAddonsArgs
from privend.components.cluster import Cluster, ClusterArgs
from privend.components.control_plane_data import ControlPlaneData, ControlPlaneDataArgs
from privend.components.endpoint_certificate import EndpointCertificate, EndpointCertificateArgs
from privend.components.gpu_pool import GpuPool, GpuPoolArgs
from privend.components.metering import MeteringCollector, MeteringCollectorArgs
from privend.components.network import Network, NetworkArgs
from privend.components.system_pool import SystemPool, SystemPoolArgs
from privend.components.warm_headroom import WarmHeadroom, WarmHeadroomArgs
from privend.config import EnvironmentConfig
from privend.naming import bounded_name
from privend.naming import cluster_name as make_cluster_name

# Outputs endpoint stacks read through a StackReference.
OUTPUT_NAMES = (
    "environment", "region", "clusterName", "clusterEndpoint", "oidcProviderArn", "oidcIssuer", "kubeconfig",
    "vpcId", "vpcCidr", "privateSubnetIds", "privateSubnetCidrs", "loadBalancerSubnetIds", "loadBalancerSubnetCidrs",
    "gpuPools", "registryTableName", "alertTopicArn", "repositoryUrls", "nodeRoleArn", "clusterSecurityGroupId",
)


def observability_addon_config() -> dict:
    """Configuration of the amazon-cloudwatch-observability add-on: Container Insights' default agent only.

    Metering does not run here: the add-on's chart runs every agent host-networked, and the
    endpoints' NetworkPolicies cannot admit node addresses (see components/metering.py). The
    configuration is spelled out rather than left unset so that the update overwrites the one
    that declared the former privend-usage and privend-engine agents: an unset configuration
    is not guaranteed to reset an add-on's previous one, and a leftover agent would be a second
    writer to the metering namespaces wherever its scrapes got through.
    """
    return {"agents": [{"name": "cloudwatch-agent"}]}


def platform_program(cfg: EnvironmentConfig) -> dict[str, pulumi.Input]:
    """Declare the environment's platform resources and return the stack outputs."""
    tags = cfg.tags()
    cluster_name = make_cluster_name(cfg.environment)
    aws_provider = aws.Provider("aws", region=cfg.region)
    aws_opts = pulumi.ResourceOptions(providers={"aws": aws_provider})
    invoke_opts = pulumi.InvokeOutputOptions(provider=aws_provider)

    azs = aws.get_availability_zones_output(state="available", opts=invoke_opts).names.apply(
        lambda names: sorted(names)[: cfg.az_count]
    )
    identity = aws.get_caller_identity_output(opts=invoke_opts)

    network = Network("network", NetworkArgs(
        environment=cfg.environment, region=cfg.region, cluster_name=cluster_name, vpc_cidr=cfg.vpc_cidr,
        availability_zones=azs, az_count=cfg.az_count, nat_gateways=cfg.nat_gateways, tags=tags,
    ), aws_opts)

    addon_versions = {
        "vpc-cni": cfg.addon_versions.vpc_cni,
        "coredns": cfg.addon_versions.coredns,
        "kube-proxy": cfg.addon_versions.kube_proxy,
        "aws-ebs-csi-driver": cfg.addon_versions.ebs_csi_driver,
        "amazon-cloudwatch-observability": cfg.addon_versions.cloudwatch_observability,
    }
    cluster = Cluster("cluster", ClusterArgs(
        environment=cfg.environment, cluster_name=cluster_name, kubernetes_version=cfg.kubernetes_version,
        subnet_ids=network.private_subnet_ids, public_access_cidrs=cfg.api_access.public_cidrs,
        account_id=identity.account_id, addon_versions=addon_versions, tags=tags,
    ), aws_opts)

    sp = cfg.system_pool
    system = SystemPool("system", SystemPoolArgs(
        environment=cfg.environment, cluster_name=cluster.name, node_role_arn=cluster.node_role_arn,
        subnet_ids=network.private_subnet_ids, instance_types=sp.instance_types, min_size=sp.min_size,
        max_size=sp.max_size, desired_size=sp.desired, disk_size_gib=sp.disk_size_gib, tags=tags,
    ), aws_opts)

    pools: dict[str, GpuPool] = {}
    for pool in cfg.gpu_pools:
        pools[pool.name] = GpuPool(f"gpu-{pool.name}", GpuPoolArgs(
            environment=cfg.environment, pool=pool.name, cluster_name=cluster.name,
            node_role_arn=cluster.node_role_arn, subnet_ids=network.private_subnet_ids,
            instance_types=pool.instance_types, capacity_type=pool.capacity_type, min_size=pool.min_size,
            max_size=pool.max_size, desired_size=pool.desired, disk_size_gib=pool.disk_size_gib,
            labels=pool.labels, tags={**tags, "privend.io/pool": pool.name},
        ), aws_opts)

    cluster.install_workload_addons([system.node_group], observability_addon_config())

    k8s_provider = k8s.Provider("k8s", kubeconfig=cluster.kubeconfig, opts=pulumi.ResourceOptions(depends_on=[system]))
    cv = cfg.chart_versions
    PlatformAddons("addons", PlatformAddonsArgs(
        environment=cfg.environment, region=cfg.region, cluster=cluster, cluster_name=cluster_name,
        vpc_id=network.vpc_id,
        gpu_pools=[(bounded_name("node-group", "privend", cfg.environment, p.name), list(p.instance_types))
                   for p in cfg.gpu_pools],
        chart_versions={
            "nvidia-device-plugin": cv.nvidia_device_plugin,
            "aws-load-balancer-controller": cv.aws_load_balancer_controller,
            "keda": cv.keda,
            "cluster-autoscaler": cv.cluster_autoscaler,
        },
    ), pulumi.ResourceOptions(providers={"aws": aws_provider, "kubernetes": k8s_provider}))

    # The shared pools' warm GPU buffer: placeholder pods the Cluster Autoscaler keeps nodes for.
    WarmHeadroom("headroom", WarmHeadroomArgs(cfg=cfg), pulumi.ResourceOptions(providers={"kubernetes": k8s_provider}))

    MeteringCollector("metering", MeteringCollectorArgs(
        cfg=cfg, cluster=cluster, cluster_name=cluster_name, account_id=identity.account_id,
    ), pulumi.ResourceOptions(providers={"aws": aws_provider, "kubernetes": k8s_provider}))

    data = ControlPlaneData("data", ControlPlaneDataArgs(
        environment=cfg.environment, account_id=identity.account_id, tags=tags,
    ), aws_opts)

    outputs: dict[str, pulumi.Input] = {}
    if cfg.endpoint_zone is not None and cfg.hosted_zone_id is not None:
        certificate = EndpointCertificate("endpoints", EndpointCertificateArgs(
            zone=cfg.endpoint_zone, hosted_zone_id=cfg.hosted_zone_id, tags=tags), aws_opts)
        outputs["endpointCertificateArn"] = certificate.certificate_arn

    return {
        **outputs,
        "environment": cfg.environment,
        "region": cfg.region,
        "clusterName": cluster.name,
        "clusterEndpoint": cluster.endpoint,
        "oidcProviderArn": cluster.oidc_provider_arn,
        "oidcIssuer": cluster.oidc_issuer,
        "kubeconfig": cluster.kubeconfig,
        "nodeRoleArn": cluster.node_role_arn,
        "clusterSecurityGroupId": cluster.security_group_id,
        "vpcId": network.vpc_id,
        "vpcCidr": cfg.vpc_cidr,
        "privateSubnetIds": network.private_subnet_ids,
        "privateSubnetCidrs": network.private_subnet_cidrs,
        "loadBalancerSubnetIds": network.load_balancer_subnet_ids,
        "loadBalancerSubnetCidrs": network.load_balancer_subnet_cidrs,
        "gpuPools": {
            name: {"gpuModel": pool.gpu_model, "nodeGroupName": pool.node_group_name,
                   "instanceTypes": list(cfg.pool(name).instance_types)}
            for name, pool in pools.items()
        },
        "registryTableName": data.registry_table_name,
        "alertTopicArn": data.alert_topic_arn,
        "repositoryUrls": data.repository_urls,
    }
