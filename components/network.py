"""Network: the platform VPC, its subnets, NAT and the VPC endpoints nodes need."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Mapping, Sequence

import pulumi
import pulumi_aws as aws

from privend.netplan import plan_subnets

# Interface endpoints keep image pulls, IRSA token exchange and log shipping off the NAT.
INTERFACE_ENDPOINT_SERVICES = ("ecr.api", "ecr.dkr", "sts", "logs")


@dataclass(frozen=True)
class NetworkArgs:
    environment: str
    region: str
    cluster_name: str
    vpc_cidr: str
    availability_zones: pulumi.Input[Sequence[str]]
    az_count: int
    nat_gateways: Literal["single", "per-az"]
    tags: Mapping[str, str] = field(default_factory=dict)


class Network(pulumi.ComponentResource):
    """VPC with private node and load balancer subnets in every AZ; public subnets only hold NAT."""

    vpc_id: pulumi.Output[str]
    private_subnet_ids: pulumi.Output[list[str]]
    private_subnet_cidrs: list[str]
    load_balancer_subnet_ids: pulumi.Output[list[str]]
    load_balancer_subnet_cidrs: list[str]

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("private-endpoint:network:Network", name, None, opts)
        self._args = args
        self._child = pulumi.ResourceOptions(parent=self)
        self._plan = plan_subnets(args.vpc_cidr, args.az_count)

        self.vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=args.vpc_cidr,
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags=self._tags(f"{args.cluster_name}-vpc"),
            opts=self._child,
        )
        self._create_subnets(name)
        self._create_nat(name)
        self._create_private_routing(name)
        self._create_endpoints(name)

        self.vpc_id = self.vpc.id
        self.private_subnet_ids = pulumi.Output.all(*[s.id for s in self.node_subnets])
        self.private_subnet_cidrs = [str(s.nodes) for s in self._plan]
        self.load_balancer_subnet_ids = pulumi.Output.all(*[s.id for s in self.lb_subnets])
        self.load_balancer_subnet_cidrs = [str(s.load_balancers) for s in self._plan]
        self.register_outputs(
            {
                "vpcId": self.vpc_id,
                "privateSubnetIds": self.private_subnet_ids,
                "privateSubnetCidrs": self.private_subnet_cidrs,
                "loadBalancerSubnetIds": self.load_balancer_subnet_ids,
                "loadBalancerSubnetCidrs": self.load_balancer_subnet_cidrs,
            }
        )

    def _tags(self, name: str, **extra: str) -> dict[str, str]:
        return {**self._args.tags, "Name": name, **extra}

    def _az(self, index: int) -> pulumi.Output[str]:
        return pulumi.Output.from_input(self._args.availability_zones).apply(lambda names: names[index])

    def _create_subnets(self, name: str) -> None:
        cluster_tag = f"kubernetes.io/cluster/{self._args.cluster_name}"
        self.node_subnets: list[aws.ec2.Subnet] = []
        self.lb_subnets: list[aws.ec2.Subnet] = []
        self.nat_subnets: list[aws.ec2.Subnet] = []
        for az in self._plan:
            i = az.az_index
            self.node_subnets.append(aws.ec2.Subnet(
                f"{name}-nodes-{i}",
                vpc_id=self.vpc.id,
                cidr_block=str(az.nodes),
                availability_zone=self._az(i),
                map_public_ip_on_launch=False,
                tags=self._tags(f"{self._args.cluster_name}-nodes-{i}", **{cluster_tag: "shared", "privend.io/subnet-role": "nodes"}),
                opts=self._child,
            ))
            # The AWS Load Balancer Controller picks internal NLB subnets by this role tag.
            self.lb_subnets.append(aws.ec2.Subnet(
                f"{name}-lb-{i}",
                vpc_id=self.vpc.id,
                cidr_block=str(az.load_balancers),
                availability_zone=self._az(i),
                map_public_ip_on_launch=False,
                tags=self._tags(
                    f"{self._args.cluster_name}-lb-{i}",
                    **{cluster_tag: "shared", "kubernetes.io/role/internal-elb": "1", "privend.io/subnet-role": "load-balancers"},
                ),
                opts=self._child,
            ))
            self.nat_subnets.append(aws.ec2.Subnet(
                f"{name}-nat-{i}",
                vpc_id=self.vpc.id,
                cidr_block=str(az.nat),
                availability_zone=self._az(i),
                map_public_ip_on_launch=False,
                tags=self._tags(f"{self._args.cluster_name}-nat-{i}", **{"privend.io/subnet-role": "nat"}),
                opts=self._child,
            ))

    def _create_nat(self, name: str) -> None:
        igw = aws.ec2.InternetGateway(
            f"{name}-igw", vpc_id=self.vpc.id, tags=self._tags(f"{self._args.cluster_name}-igw"), opts=self._child
        )
        public_rt = aws.ec2.RouteTable(
            f"{name}-public",
            vpc_id=self.vpc.id,
            routes=[{"cidr_block": "0.0.0.0/0", "gateway_id": igw.id}],
            tags=self._tags(f"{self._args.cluster_name}-public"),
            opts=self._child,
        )
        for i, subnet in enumerate(self.nat_subnets):
            aws.ec2.RouteTableAssociation(
                f"{name}-nat-{i}", subnet_id=subnet.id, route_table_id=public_rt.id, opts=self._child
            )
        count = len(self.nat_subnets) if self._args.nat_gateways == "per-az" else 1
        self.nat_gateways: list[aws.ec2.NatGateway] = []
        for i in range(count):
            eip = aws.ec2.Eip(
                f"{name}-nat-{i}", domain="vpc", tags=self._tags(f"{self._args.cluster_name}-nat-{i}"), opts=self._child
            )
            self.nat_gateways.append(aws.ec2.NatGateway(
                f"{name}-nat-{i}",
                allocation_id=eip.id,
                subnet_id=self.nat_subnets[i].id,
                tags=self._tags(f"{self._args.cluster_name}-nat-{i}"),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[igw]),
            ))

    def _create_private_routing(self, name: str) -> None:
        self.private_route_tables: list[aws.ec2.RouteTable] = []
        for i in range(len(self._plan)):
            # With a single NAT gateway every AZ routes through it; with one per AZ, an AZ outage stays local.
            nat = self.nat_gateways[i] if len(self.nat_gateways) > 1 else self.nat_gateways[0]
            table = aws.ec2.RouteTable(
                f"{name}-private-{i}",
                vpc_id=self.vpc.id,
                routes=[{"cidr_block": "0.0.0.0/0", "nat_gateway_id": nat.id}],
                tags=self._tags(f"{self._args.cluster_name}-private-{i}"),
                opts=self._child,
            )
            self.private_route_tables.append(table)
            for role, subnet in (("nodes", self.node_subnets[i]), ("lb", self.lb_subnets[i])):
                aws.ec2.RouteTableAssociation(
                    f"{name}-{role}-{i}", subnet_id=subnet.id, route_table_id=table.id, opts=self._child
                )

    def _create_endpoints(self, name: str) -> None:
        region = self._args.region
        aws.ec2.VpcEndpoint(
            f"{name}-s3",
            vpc_id=self.vpc.id,
            service_name=f"com.amazonaws.{region}.s3",
            vpc_endpoint_type="Gateway",
            route_table_ids=[t.id for t in self.private_route_tables],
            tags=self._tags(f"{self._args.cluster_name}-s3"),
            opts=self._child,
        )
        endpoint_sg = aws.ec2.SecurityGroup(
            f"{name}-endpoints",
            vpc_id=self.vpc.id,
            description="HTTPS from inside the VPC to AWS interface endpoints",
            ingress=[{"protocol": "tcp", "from_port": 443, "to_port": 443, "cidr_blocks": [self._args.vpc_cidr]}],
            tags=self._tags(f"{self._args.cluster_name}-endpoints"),
            opts=self._child,
        )
        for service in INTERFACE_ENDPOINT_SERVICES:
            aws.ec2.VpcEndpoint(
                f"{name}-{service.replace('.', '-')}",
                vpc_id=self.vpc.id,
                service_name=f"com.amazonaws.{region}.{service}",
                vpc_endpoint_type="Interface",
                private_dns_enabled=True,
                subnet_ids=[s.id for s in self.node_subnets],
                security_group_ids=[endpoint_sg.id],
                tags=self._tags(f"{self._args.cluster_name}-{service}"),
                opts=self._child,
            )
