"""Subnet arithmetic for the platform VPC.

The VPC is cut into eight equal blocks. Each AZ gets one block for its node
subnet (the VPC CNI gives every pod a VPC address, so node subnets must be
large). Block 6 is cut into small private subnets for internal load balancers
and block 7 holds tiny public /28 subnets (AWS's smallest) that exist only to
hold NAT gateways.
Eight blocks leave room for six AZs, the most any AWS region offers to EKS.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

MAX_AZS = 6
MIN_VPC_PREFIX = 16  # the largest VPC AWS allows
MAX_VPC_PREFIX = 19  # below this, node subnets run out of pod addresses (VPC CNI) too soon
_BLOCKS_BITS = 3
_SLOT_BITS = 3
NAT_PREFIX = 28


@dataclass(frozen=True)
class AzSubnets:
    az_index: int
    nodes: ipaddress.IPv4Network
    load_balancers: ipaddress.IPv4Network
    nat: ipaddress.IPv4Network


def plan_subnets(vpc_cidr: str, az_count: int) -> list[AzSubnets]:
    """Return the node, load balancer and NAT subnets of each AZ, in AZ order."""
    vpc = ipaddress.IPv4Network(vpc_cidr, strict=True)
    if not MIN_VPC_PREFIX <= vpc.prefixlen <= MAX_VPC_PREFIX:
        raise ValueError(f"VPC CIDR must be a /{MIN_VPC_PREFIX} to /{MAX_VPC_PREFIX}, got /{vpc.prefixlen}")
    if not 1 <= az_count <= MAX_AZS:
        raise ValueError(f"AZ count must be between 1 and {MAX_AZS}, got {az_count}")
    blocks = list(vpc.subnets(prefixlen_diff=_BLOCKS_BITS))
    lb_slots = list(blocks[6].subnets(prefixlen_diff=_SLOT_BITS))
    nat_slots = list(blocks[7].subnets(new_prefix=NAT_PREFIX))
    return [
        AzSubnets(az_index=i, nodes=blocks[i], load_balancers=lb_slots[i], nat=nat_slots[i])
        for i in range(az_count)
    ]
