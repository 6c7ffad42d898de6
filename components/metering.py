"""MeteringCollector: the CloudWatch agents that scrape the engines and publish usage and engine metrics.

Thin wiring: the Kubernetes objects and the IAM policy come from privend.metering;
this component creates them with the platform's providers and gives the
collector's service account an IRSA role.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from privend.components.cluster import Cluster
from privend import metering
from privend.config import EnvironmentConfig


@dataclass(frozen=True)
class MeteringCollectorArgs:
    cfg: EnvironmentConfig
    cluster: Cluster
    cluster_name: str
    account_id: pulumi.Input[str]


class MeteringCollector(pulumi.ComponentResource):
    """Namespace privend-metering: one single-replica CloudWatch agent per metrics namespace."""

    namespace: str
    role_arn: pulumi.Output[str]
    deployments: list[str]

    def __init__(self, name: str, args: MeteringCollectorArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("private-endpoint:metering:MeteringCollector", name, None, opts)
        self._args = args
        self._name = name
        self._rendered = metering.agent_configs(args.cfg, args.cluster_name)
        self.namespace = metering.NAMESPACE

        self._create_namespace()
        self._create_identity()
        self._create_agents()

        self.register_outputs({
            "namespace": self.namespace,
            "roleArn": self.role_arn,
            "deployments": self.deployments,
        })

    def _opts(self, **kwargs) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, **kwargs)

    def _create_namespace(self) -> None:
        ns = metering.namespace()
        self._ns = k8s.core.v1.Namespace(f"{self._name}-namespace", metadata=ns["metadata"], opts=self._opts())
        deny = metering.ingress_deny()
        k8s.networking.v1.NetworkPolicy(f"{self._name}-{deny['metadata']['name']}", metadata=deny["metadata"],
                                        spec=deny["spec"], opts=self._opts(depends_on=[self._ns]))

    def _create_identity(self) -> None:
        args, rendered = self._args, self._rendered
        policy = pulumi.Output.from_input(args.account_id).apply(
            lambda account: json.dumps(metering.agent_policy(rendered, region=args.cfg.region, account_id=account))
        )
        role = args.cluster.irsa_role(f"{self._name}-agent", metering.NAMESPACE, metering.SERVICE_ACCOUNT,
                                      inline_policy=policy, parent=self)
        self.role_arn = role.arn
        sa = role.arn.apply(metering.service_account)
        self._service_account = k8s.core.v1.ServiceAccount(
            f"{self._name}-service-account", metadata=sa.apply(lambda o: o["metadata"]),
            opts=self._opts(depends_on=[self._ns]),
        )
        cr, crb = metering.cluster_role(), metering.cluster_role_binding()
        self._cluster_role = k8s.rbac.v1.ClusterRole(f"{self._name}-cluster-role", metadata=cr["metadata"],
                                                     rules=cr["rules"], opts=self._opts())
        self._binding = k8s.rbac.v1.ClusterRoleBinding(
            f"{self._name}-cluster-role-binding", metadata=crb["metadata"], role_ref=crb["roleRef"],
            subjects=crb["subjects"], opts=self._opts(depends_on=[self._cluster_role, self._service_account]),
        )

    def _create_agents(self) -> None:
        maps = [
            k8s.core.v1.ConfigMap(f"{self._name}-configmap-{obj['metadata']['name']}", metadata=obj["metadata"],
                                  data=obj["data"], opts=self._opts(depends_on=[self._ns]))
            for obj in metering.config_maps(self._rendered)
        ]
        self.deployments = []
        for agent in sorted(self._rendered["agents"]):
            obj = metering.deployment(agent, self._rendered)
            k8s.apps.v1.Deployment(
                f"{self._name}-{obj['metadata']['name']}", metadata=obj["metadata"], spec=obj["spec"],
                opts=self._opts(depends_on=[*maps, self._service_account, self._binding]),
            )
            self.deployments.append(obj["metadata"]["name"])
