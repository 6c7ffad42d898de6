"""The endpoint program: one stack per customer endpoint, `<env>-<endpoint>`.

The CLI runs it through the Automation API (inline program) and the offline
engine runs it under mocks; both read the platform through a StackReference.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from privend.components.endpoint import Endpoint, EndpointArgs
from privend.config import EnvironmentConfig
from privend.settings import DEFAULT_PULUMI_ORG
from privend.spec import EndpointSpec

PROJECT = "private-endpoint"


def platform_stack_ref(env: str, org: str = DEFAULT_PULUMI_ORG) -> str:
    """Fully qualified name of the platform stack (`organization` is the file backend's org)."""
    return f"{org}/{PROJECT}/{env}"


def endpoint_tags(cfg: EnvironmentConfig, spec: EndpointSpec) -> dict[str, str]:
    return {**cfg.tags(), "privend.io/tenant": spec.tenant, "privend.io/endpoint": spec.name}


def endpoint_program(spec: EndpointSpec, cfg: EnvironmentConfig, hf_token: pulumi.Input[str] | None = None,
                     org: str = DEFAULT_PULUMI_ORG, api_key_secrets: pulumi.Input[dict] | None = None) -> dict:
    """`api_key_secrets`: {key name: secret}, a Pulumi secret (the stack's `privend:apiKeys`)."""
    platform = pulumi.StackReference(platform_stack_ref(cfg.environment, org))
    aws_provider = aws.Provider("aws", region=cfg.region)
    k8s_provider = k8s.Provider("k8s", kubeconfig=platform.require_output("kubeconfig"),
                                enable_server_side_apply=True)
    endpoint = Endpoint(spec.name, EndpointArgs(
        spec=spec, cfg=cfg,
        cluster_name=platform.require_output("clusterName"),
        vpc_id=platform.require_output("vpcId"),
        load_balancer_subnet_ids=platform.require_output("loadBalancerSubnetIds"),
        private_subnet_ids=platform.require_output("privateSubnetIds"),
        cluster_security_group_id=platform.require_output("clusterSecurityGroupId"),
        alert_topic_arn=platform.require_output("alertTopicArn"),
        certificate_arn=platform.require_output("endpointCertificateArn"),
        tenant_account=spec.tenant_account,
        hf_token=hf_token,
        api_key_secrets=api_key_secrets,
        tags=endpoint_tags(cfg, spec),
    ), pulumi.ResourceOptions(providers={"aws": aws_provider, "kubernetes": k8s_provider}))
    return {
        "tenant": spec.tenant,
        "endpoint": spec.name,
        "namespace": endpoint.namespace,
        "serviceName": endpoint.service_name,
        "loadBalancerDns": endpoint.load_balancer_dns,
        "hostname": endpoint.hostname,
    }
