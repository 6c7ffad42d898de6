"""Endpoint: one customer's inference endpoint, from namespace to PrivateLink service.

Thin wiring: the Kubernetes objects come from privend.render, names from
privend.naming; this component only turns them into resources and connects
them to the load balancer and the VPC endpoint service.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Mapping, Sequence, TypedDict

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import yaml

from privend.components.gpu_pool import GpuPool, GpuPoolArgs
from privend import gateway, render
from privend.config import EnvironmentConfig
from privend.iam import service_trust_policy
from privend.spec import EndpointSpec

LISTENER_PORT = render.LISTENER_PORT
GATEWAY_PORT = render.GATEWAY_PORT
# TLS 1.3 only, as the NLB names it.
TLS_POLICY = "ELBSecurityPolicy-TLS13-1-3-2021-06"
ALARM_QUEUE_DEPTH = 32
ALARM_FAILURES_PER_5_MIN = 10
NODE_POLICIES = ("AmazonEKSWorkerNodePolicy", "AmazonEC2ContainerRegistryReadOnly", "AmazonSSMManagedInstanceCore")

_KINDS = {
    "Namespace": k8s.core.v1.Namespace,
    "NetworkPolicy": k8s.networking.v1.NetworkPolicy,
    "ResourceQuota": k8s.core.v1.ResourceQuota,
    "LimitRange": k8s.core.v1.LimitRange,
    "ServiceAccount": k8s.core.v1.ServiceAccount,
    "Deployment": k8s.apps.v1.Deployment,
    "Service": k8s.core.v1.Service,
    "PodDisruptionBudget": k8s.policy.v1.PodDisruptionBudget,
}
_DATA_KINDS = {"ConfigMap": k8s.core.v1.ConfigMap}


class _AlarmCommon(TypedDict):
    """The arguments every alarm of an endpoint shares."""
    alarm_actions: Sequence[pulumi.Input[str]]
    ok_actions: Sequence[pulumi.Input[str]]
    tags: Mapping[str, str]


@dataclass(frozen=True)
class EndpointArgs:
    spec: EndpointSpec
    cfg: EnvironmentConfig
    cluster_name: pulumi.Input[str]
    vpc_id: pulumi.Input[str]
    load_balancer_subnet_ids: pulumi.Input[Sequence[str]]
    private_subnet_ids: pulumi.Input[Sequence[str]]
    cluster_security_group_id: pulumi.Input[str]
    alert_topic_arn: pulumi.Input[str]
    certificate_arn: pulumi.Input[str] = ""  # the environment's wildcard certificate (platform stack)
    tenant_account: str = ""
    hf_token: pulumi.Input[str] | None = None  # a Pulumi secret
    api_key_secrets: pulumi.Input[dict] | None = None  # {API key name: secret}, a Pulumi secret
    tags: Mapping[str, str] = field(default_factory=dict)


class Endpoint(pulumi.ComponentResource):
    namespace: str
    service_name: pulumi.Output[str]
    load_balancer_dns: pulumi.Output[str]
    hostname: str

    def __init__(self, name: str, args: EndpointArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("private-endpoint:endpoint:Endpoint", name, None, opts)
        self._args = args
        self._name = name
        self._ctx = render.context(args.spec, args.cfg)
        self.namespace = self._ctx.names.namespace
        hostname = args.cfg.endpoint_hostname(args.spec.name)
        if hostname is None:
            raise ValueError(f"env {args.cfg.environment} has no privend:endpointDomain: endpoints are served only "
                             "over TLS on a private DNS name")
        self.hostname = hostname

        if args.spec.tier == "dedicated":
            self._create_dedicated_pool()
        self._create_load_balancer()
        self._create_endpoint_service()
        self._create_workload()
        self._create_alarms()

        self.register_outputs({
            "namespace": self.namespace,
            "serviceName": self.service_name,
            "loadBalancerDns": self.load_balancer_dns,
            "hostname": self.hostname,
        })

    def _opts(self, **kwargs) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, **kwargs)

    def _create_dedicated_pool(self) -> None:
        """Dedicated tier: a node group (and node role) of the endpoint's own, tainted for its tenant."""
        args, names = self._args, self._ctx.names
        role = aws.iam.Role(
            f"{self._name}-nodes", name=names.node_role,
            assume_role_policy=json.dumps(service_trust_policy("ec2.amazonaws.com")),
            tags=dict(args.tags), opts=self._opts(),
        )
        for policy in NODE_POLICIES:
            aws.iam.RolePolicyAttachment(f"{self._name}-nodes-{policy}", role=role.name,
                                         policy_arn=f"arn:aws:iam::aws:policy/{policy}", opts=self._opts())
        pool = args.cfg.pool(args.spec.pool)
        nodes = max(1, -(-args.spec.max_replicas * args.spec.gpus_per_replica // pool.gpus_per_node_max))
        GpuPool(f"{self._name}-dedicated", GpuPoolArgs(
            environment=args.cfg.environment, pool=args.spec.pool, cluster_name=args.cluster_name,
            node_role_arn=role.arn, subnet_ids=args.private_subnet_ids, instance_types=pool.instance_types,
            capacity_type=pool.capacity_type, min_size=0, max_size=nodes, desired_size=0,
            disk_size_gib=pool.disk_size_gib, tenant=args.spec.tenant, tags=dict(args.tags),
            node_group_name=names.node_group,
        ), self._opts())

    def _create_load_balancer(self) -> None:
        args, names = self._args, self._ctx.names
        port = GATEWAY_PORT
        self.security_group = aws.ec2.SecurityGroup(
            f"{self._name}-nlb", name=names.security_group,
            description=f"Load balancer of endpoint {args.spec.name} (tenant {args.spec.tenant})",
            vpc_id=args.vpc_id,
            # PrivateLink traffic is exempt below; this only admits the VPC itself (health checks, operators).
            ingress=[{"protocol": "tcp", "from_port": LISTENER_PORT, "to_port": LISTENER_PORT,
                      "cidr_blocks": [args.cfg.vpc_cidr], "description": "listener, from inside the VPC"}],
            egress=[{"protocol": "tcp", "from_port": port, "to_port": port,
                     "cidr_blocks": [args.cfg.vpc_cidr], "description": "to the gateway pods"}],
            tags=dict(args.tags), opts=self._opts(),
        )
        self.load_balancer = aws.lb.LoadBalancer(
            f"{self._name}-nlb", name=names.load_balancer, internal=True, load_balancer_type="network",
            subnets=args.load_balancer_subnet_ids, security_groups=[self.security_group.id],
            enforce_security_group_inbound_rules_on_private_link_traffic="off",
            enable_cross_zone_load_balancing=True, tags=dict(args.tags), opts=self._opts(),
        )
        self.target_group = aws.lb.TargetGroup(
            f"{self._name}-tg", name=names.target_group, port=port, protocol="TCP", target_type="ip",
            vpc_id=args.vpc_id, deregistration_delay=60,
            # The gateway answers its own readiness: the door stays open while the engine is at zero.
            health_check={"protocol": "HTTP", "path": gateway.READY_PATH, "port": "traffic-port",
                          "healthy_threshold": 2, "unhealthy_threshold": 2, "interval": 10},
            tags=dict(args.tags), opts=self._opts(),
        )
        # TLS ends at the load balancer with the environment's wildcard certificate; never plain TCP.
        aws.lb.Listener(
            f"{self._name}-listener", load_balancer_arn=self.load_balancer.arn, port=LISTENER_PORT, protocol="TLS",
            certificate_arn=args.certificate_arn, ssl_policy=TLS_POLICY, alpn_policy="HTTP1Only",
            default_actions=[{"type": "forward", "target_group_arn": self.target_group.arn}],
            tags=dict(args.tags), opts=self._opts(),
        )
        # Pods share the nodes' cluster security group; admit only this load balancer, only on the serving port.
        aws.vpc.SecurityGroupIngressRule(
            f"{self._name}-nlb-to-pods", security_group_id=args.cluster_security_group_id,
            referenced_security_group_id=self.security_group.id, ip_protocol="tcp", from_port=port, to_port=port,
            description=f"endpoint {args.spec.name} load balancer to its gateway pods",
            tags=dict(args.tags), opts=self._opts(),
        )
        self.load_balancer_dns = self.load_balancer.dns_name

    def _create_endpoint_service(self) -> None:
        args = self._args
        self.endpoint_service = aws.ec2.VpcEndpointService(
            f"{self._name}-service",
            acceptance_required=False,
            network_load_balancer_arns=[self.load_balancer.arn],
            # Only the tenant's own AWS principals may create endpoints to this service.
            allowed_principals=list(args.spec.allowed_principals),
            supported_ip_address_types=["ipv4"],
            # Consumers' interface endpoints resolve this name to themselves (private DNS on).
            private_dns_name=self.hostname,
            tags={**args.tags, "Name": f"{args.cfg.environment}-{args.spec.name}",
                  # Lets the policy pack check every allowed principal against the tenant's account.
                  "privend.io/tenant-account": args.tenant_account},
            opts=self._opts(),
        )
        self.service_name = self.endpoint_service.service_name
        # AWS verifies that the service owner holds the domain through this TXT record.
        verification = self.endpoint_service.private_dns_name_configurations.apply(lambda c: c[0])
        aws.route53.Record(
            f"{self._name}-dns-verification", zone_id=args.cfg.hosted_zone_id or "",
            name=verification.apply(lambda c: c["name"] if isinstance(c, dict) else c.name),
            type="TXT", ttl=300,
            records=[verification.apply(lambda c: c["value"] if isinstance(c, dict) else c.value)],
            allow_overwrite=True, opts=self._opts(),
        )

    def _create_workload(self) -> None:
        args, ctx = self._args, self._ctx
        spec = args.spec
        # Baked images carry their weights: only a hub download needs the token.
        hf_token = args.hf_token if not spec.baked else None
        objects = render.render_endpoint(spec, args.cfg, with_hf_token=hf_token is not None)
        ns_object, rest = objects[0], objects[1:]
        ns = k8s.core.v1.Namespace(f"{self._name}-namespace", metadata=ns_object["metadata"], opts=self._opts())
        after_ns = self._opts(depends_on=[ns])

        # The key routes hold key material: built from the stack's secret config, only ever a Pulumi secret.
        spec_ = spec
        key_secrets = pulumi.Output.from_input(args.api_key_secrets or {})
        # (_secret wraps it in Output.secret: the routes file is a secret even when no key exists yet.)
        routes: pulumi.Output[str] = key_secrets.apply(
            lambda found: yaml.safe_dump(render.gateway_key_routes(spec_, dict(found or {})), sort_keys=True))
        secrets = [self._secret(render.GATEWAY_KEYS_SECRET, gateway.ROUTES_FILE, routes, after_ns)]
        if hf_token is not None:
            secrets.append(self._secret(render.HF_TOKEN_SECRET, "HF_TOKEN", hf_token, after_ns))

        for obj in rest:
            kind, meta = obj["kind"], obj["metadata"]
            resource_name = f"{self._name}-{kind.lower()}-{meta['name']}"
            if kind == "Secret":
                continue  # created above, with their values
            if kind in _DATA_KINDS:
                _DATA_KINDS[kind](resource_name, metadata=meta, data=obj["data"], opts=after_ns)
            elif kind == "ServiceAccount":
                k8s.core.v1.ServiceAccount(resource_name, metadata=meta, automount_service_account_token=False,
                                           opts=after_ns)
            elif kind == "Deployment":
                k8s.apps.v1.Deployment(resource_name, metadata=meta, spec=obj["spec"],
                                       opts=self._opts(depends_on=[ns, *secrets]))
            elif kind == "ScaledObject":
                suffix = self.load_balancer.arn_suffix
                k8s.apiextensions.CustomResource(
                    resource_name, api_version=obj["apiVersion"], kind=kind, metadata=meta,
                    spec=suffix.apply(lambda s: render.scaled_object(ctx, s)["spec"]), opts=after_ns)
            elif kind == "TargetGroupBinding":
                k8s.apiextensions.CustomResource(
                    resource_name, api_version=obj["apiVersion"], kind=kind, metadata=meta,
                    spec=self.target_group.arn.apply(lambda arn: render.target_group_binding(ctx, arn)["spec"]),
                    opts=after_ns)
            else:
                _KINDS[kind](resource_name, metadata=meta, spec=obj["spec"], opts=after_ns)

    def _secret(self, name: str, key: str, value: pulumi.Input[str], opts: pulumi.ResourceOptions) -> k8s.core.v1.Secret:
        shell = render.secret_shell(self._ctx, name, key)
        return k8s.core.v1.Secret(
            f"{self._name}-secret-{name}", metadata=shell["metadata"], type="Opaque",
            string_data={key: pulumi.Output.secret(value)}, opts=opts,
        )

    def _create_alarms(self) -> None:
        args = self._args
        spec = args.spec
        dims = {"Environment": args.cfg.environment, "Tenant": spec.tenant, "Endpoint": spec.name}
        common: _AlarmCommon = {"alarm_actions": [args.alert_topic_arn], "ok_actions": [args.alert_topic_arn],
                                "tags": dict(args.tags)}
        prefix = f"privend-{args.cfg.environment}-{spec.name}"
        aws.cloudwatch.MetricAlarm(
            f"{self._name}-queue-depth", name=f"{prefix}-queue-depth",
            alarm_description=f"Requests waiting in endpoint {spec.name}'s engine queue",
            namespace=render.ENGINE_NAMESPACE, metric_name="QueueSize", dimensions=dims, statistic="Average",
            period=60, evaluation_periods=5, threshold=ALARM_QUEUE_DEPTH, comparison_operator="GreaterThanThreshold",
            treat_missing_data="notBreaching", opts=self._opts(), **common,
        )
        aws.cloudwatch.MetricAlarm(
            f"{self._name}-errors", name=f"{prefix}-errors",
            alarm_description=f"Failed requests of endpoint {spec.name}",
            namespace=render.ENGINE_NAMESPACE, metric_name="RequestFailures", dimensions=dims, statistic="Sum",
            period=300, evaluation_periods=1, threshold=ALARM_FAILURES_PER_5_MIN,
            comparison_operator="GreaterThanThreshold", treat_missing_data="notBreaching", opts=self._opts(), **common,
        )
        if spec.min_replicas >= 1:
            # Scale-to-zero endpoints have no ready replica by design while idle.
            aws.cloudwatch.MetricAlarm(
                f"{self._name}-no-ready-replica", name=f"{prefix}-no-ready-replica",
                alarm_description=f"Endpoint {spec.name} has no healthy replica behind its load balancer",
                namespace="AWS/NetworkELB", metric_name="HealthyHostCount", statistic="Minimum",
                dimensions={"TargetGroup": self.target_group.arn_suffix, "LoadBalancer": self.load_balancer.arn_suffix},
                period=60, evaluation_periods=3, threshold=1, comparison_operator="LessThanThreshold",
                treat_missing_data="breaching", opts=self._opts(), **common,
            )
