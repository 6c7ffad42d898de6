"""Cluster: the EKS control plane, its OIDC provider for IRSA, and managed add-ons."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import pulumi
import pulumi_aws as aws

from privend.iam import irsa_trust_policy, kms_key_policy, service_trust_policy

CONTROL_PLANE_LOG_TYPES = ["api", "audit", "authenticator", "controllerManager", "scheduler"]
LOG_RETENTION_DAYS = 90
MANAGED_POLICY = "arn:aws:iam::aws:policy/"


@dataclass(frozen=True)
class ClusterArgs:
    environment: str
    cluster_name: str
    kubernetes_version: str
    subnet_ids: pulumi.Input[Sequence[str]]
    public_access_cidrs: Sequence[str]  # empty: the API server is private only
    account_id: pulumi.Input[str]
    addon_versions: Mapping[str, str]
    tags: Mapping[str, str] = field(default_factory=dict)


class Cluster(pulumi.ComponentResource):
    """EKS cluster with KMS-encrypted secrets, control-plane logging and IRSA."""

    name: pulumi.Output[str]
    endpoint: pulumi.Output[str]
    certificate_authority: pulumi.Output[str]
    oidc_provider_arn: pulumi.Output[str]
    oidc_issuer: pulumi.Output[str]
    node_role_arn: pulumi.Output[str]
    kubeconfig: pulumi.Output[str]
    security_group_id: pulumi.Output[str]

    def __init__(self, name: str, args: ClusterArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("private-endpoint:cluster:Cluster", name, None, opts)
        self._args = args
        self._name = name
        self._child = pulumi.ResourceOptions(parent=self)

        self._create_control_plane()
        self._create_oidc_provider()
        self._create_node_role()
        self._create_network_addons()

        self.name = self.cluster.name
        self.endpoint = self.cluster.endpoint
        self.certificate_authority = self.cluster.certificate_authority.apply(lambda ca: ca["data"])
        self.oidc_provider_arn = self.oidc_provider.arn
        self.node_role_arn = self.node_role.arn
        self.security_group_id = self.cluster.vpc_config.cluster_security_group_id
        self.kubeconfig = pulumi.Output.secret(
            pulumi.Output.all(self.cluster.name, self.endpoint, self.certificate_authority).apply(
                lambda v: kubeconfig_document(v[0], v[1], v[2])
            )
        )
        self.register_outputs(
            {
                "clusterName": self.name,
                "endpoint": self.endpoint,
                "oidcProviderArn": self.oidc_provider_arn,
                "oidcIssuer": self.oidc_issuer,
                "kubeconfig": self.kubeconfig,
            }
        )

    def _create_control_plane(self) -> None:
        args = self._args
        self.secrets_key = aws.kms.Key(
            f"{self._name}-secrets",
            description=f"EKS secrets encryption for {args.cluster_name}",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            policy=pulumi.Output.from_input(args.account_id).apply(lambda a: json.dumps(kms_key_policy(a))),
            tags=dict(args.tags),
            opts=self._child,
        )
        self.role = aws.iam.Role(
            f"{self._name}-control-plane",
            assume_role_policy=json.dumps(service_trust_policy("eks.amazonaws.com")),
            tags=dict(args.tags),
            opts=self._child,
        )
        attachment = aws.iam.RolePolicyAttachment(
            f"{self._name}-control-plane",
            role=self.role.name,
            policy_arn=MANAGED_POLICY + "AmazonEKSClusterPolicy",
            opts=self._child,
        )
        # Created before the cluster so retention is ours, not the default "never expire".
        log_group = aws.cloudwatch.LogGroup(
            f"{self._name}-control-plane",
            name=f"/aws/eks/{args.cluster_name}/cluster",
            retention_in_days=LOG_RETENTION_DAYS,
            tags=dict(args.tags),
            opts=self._child,
        )
        public = bool(args.public_access_cidrs)
        self.cluster = aws.eks.Cluster(
            f"{self._name}-eks",
            name=args.cluster_name,
            version=args.kubernetes_version,
            role_arn=self.role.arn,
            vpc_config={
                "subnet_ids": args.subnet_ids,
                "endpoint_private_access": True,
                "endpoint_public_access": public,
                "public_access_cidrs": list(args.public_access_cidrs) if public else None,
            },
            encryption_config={"provider": {"key_arn": self.secrets_key.arn}, "resources": ["secrets"]},
            enabled_cluster_log_types=CONTROL_PLANE_LOG_TYPES,
            access_config={"authentication_mode": "API", "bootstrap_cluster_creator_admin_permissions": True},
            tags=dict(args.tags),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[attachment, log_group]),
        )

    def _create_oidc_provider(self) -> None:
        self.oidc_issuer = self.cluster.identities.apply(lambda ids: ids[0]["oidcs"][0]["issuer"])
        self.oidc_provider = aws.iam.OpenIdConnectProvider(
            f"{self._name}-oidc",
            url=self.oidc_issuer,
            client_id_lists=["sts.amazonaws.com"],
            tags=dict(self._args.tags),
            opts=self._child,
        )

    def _create_node_role(self) -> None:
        self.node_role = aws.iam.Role(
            f"{self._name}-nodes",
            assume_role_policy=json.dumps(service_trust_policy("ec2.amazonaws.com")),
            tags=dict(self._args.tags),
            opts=self._child,
        )
        # The CNI policy is not here: the VPC CNI gets it through its own IRSA role.
        for policy in ("AmazonEKSWorkerNodePolicy", "AmazonEC2ContainerRegistryReadOnly", "AmazonSSMManagedInstanceCore"):
            aws.iam.RolePolicyAttachment(
                f"{self._name}-nodes-{policy}",
                role=self.node_role.name,
                policy_arn=MANAGED_POLICY + policy,
                opts=self._child,
            )

    def irsa_role(self, name: str, namespace: str, service_account: str, policy_arns: Sequence[str] = (),
                  inline_policy: pulumi.Input[str] | None = None,
                  parent: pulumi.Resource | None = None) -> aws.iam.Role:
        """An IAM role only the given Kubernetes service account can assume."""
        opts = pulumi.ResourceOptions(parent=parent or self)
        role = aws.iam.Role(
            name,
            assume_role_policy=pulumi.Output.all(self.oidc_provider.arn, self.oidc_issuer).apply(
                lambda v: json.dumps(irsa_trust_policy(v[0], v[1], namespace, service_account))
            ),
            tags=dict(self._args.tags),
            opts=opts,
        )
        for policy_arn in policy_arns:
            aws.iam.RolePolicyAttachment(
                f"{name}-{policy_arn.rsplit('/', 1)[-1]}", role=role.name, policy_arn=policy_arn, opts=opts
            )
        if inline_policy is not None:
            aws.iam.RolePolicy(f"{name}-inline", role=role.id, policy=inline_policy, opts=opts)
        return role

    def _addon(self, addon_name: str, *, role: aws.iam.Role | None = None, configuration: dict | None = None,
               depends_on: Sequence[pulumi.Resource] = ()) -> aws.eks.Addon:
        return aws.eks.Addon(
            f"{self._name}-{addon_name}",
            cluster_name=self.cluster.name,
            addon_name=addon_name,
            addon_version=self._args.addon_versions[addon_name],
            service_account_role_arn=role.arn if role else None,
            configuration_values=json.dumps(configuration, sort_keys=True) if configuration else None,
            resolve_conflicts_on_create="OVERWRITE",
            resolve_conflicts_on_update="OVERWRITE",
            tags=dict(self._args.tags),
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(depends_on)),
        )

    def _create_network_addons(self) -> None:
        cni_role = self.irsa_role(
            f"{self._name}-vpc-cni", "kube-system", "aws-node", [MANAGED_POLICY + "AmazonEKS_CNI_Policy"]
        )
        # Network-policy enforcement is what makes the tenants' default-deny policies real.
        self._addon("vpc-cni", role=cni_role, configuration={"enableNetworkPolicy": "true"})
        self._addon("kube-proxy")

    def install_workload_addons(self, node_groups: Sequence[pulumi.Resource],
                                observability_config: dict | None = None) -> None:
        """Add-ons that run as Deployments: they need nodes, so they wait for the node groups."""
        ebs_role = self.irsa_role(
            f"{self._name}-ebs-csi", "kube-system", "ebs-csi-controller-sa",
            [MANAGED_POLICY + "service-role/AmazonEBSCSIDriverPolicy"],
        )
        cw_role = self.irsa_role(
            f"{self._name}-cloudwatch", "amazon-cloudwatch", "cloudwatch-agent",
            [MANAGED_POLICY + "CloudWatchAgentServerPolicy"],
        )
        self._addon("coredns", depends_on=node_groups)
        self._addon("aws-ebs-csi-driver", role=ebs_role, depends_on=node_groups)
        self._addon("amazon-cloudwatch-observability", role=cw_role, configuration=observability_config,
                    depends_on=node_groups)


def kubeconfig_document(cluster_name: str, endpoint: str, ca_data: str) -> str:
    """A kubeconfig that authenticates with `aws eks get-token` (no long-lived credentials)."""
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": cluster_name, "cluster": {"server": endpoint, "certificate-authority-data": ca_data}}],
            "contexts": [{"name": cluster_name, "context": {"cluster": cluster_name, "user": cluster_name}}],
            "current-context": cluster_name,
            "users": [
                {
                    "name": cluster_name,
                    "user": {
                        "exec": {
                            "apiVersion": "client.authentication.k8s.io/v1beta1",
                            "command": "aws",
                            "args": ["eks", "get-token", "--cluster-name", cluster_name, "--output", "json"],
                        }
                    },
                }
            ],
        },
        sort_keys=True,
    )
