import ipaddress
import itertools

import pytest

from privend.netplan import MAX_AZS, NAT_PREFIX, plan_subnets


@pytest.mark.parametrize("cidr", ["10.0.0.0/16", "10.30.0.0/16", "172.16.0.0/17", "192.168.0.0/18", "10.8.32.0/19"])
@pytest.mark.parametrize("az_count", [1, 2, 3, 4, 6])
def test_subnets_lie_inside_the_vpc_and_never_overlap(cidr, az_count):
    vpc = ipaddress.IPv4Network(cidr)
    azs = plan_subnets(cidr, az_count)
    assert [a.az_index for a in azs] == list(range(az_count))
    subnets = [s for a in azs for s in (a.nodes, a.load_balancers, a.nat)]
    assert all(s.subnet_of(vpc) for s in subnets)
    for a, b in itertools.combinations(subnets, 2):
        assert not a.overlaps(b), f"{a} overlaps {b}"


def test_node_subnets_get_an_eighth_of_the_vpc_each_and_nat_subnets_are_minimal():
    azs = plan_subnets("10.30.0.0/16", 3)
    assert [str(a.nodes) for a in azs] == ["10.30.0.0/19", "10.30.32.0/19", "10.30.64.0/19"]
    assert [str(a.load_balancers) for a in azs] == ["10.30.192.0/22", "10.30.196.0/22", "10.30.200.0/22"]
    assert [a.nat.prefixlen for a in azs] == [NAT_PREFIX] * 3
    assert str(azs[0].nat) == "10.30.224.0/28"


@pytest.mark.parametrize(
    "cidr,az_count,message",
    [
        ("10.0.0.0/20", 2, "VPC CIDR must be a /16 to /19, got /20"),
        ("10.0.0.0/15", 2, "VPC CIDR must be a /16 to /19, got /15"),
        ("10.0.0.0/16", 0, "AZ count must be between 1 and 6, got 0"),
        ("10.0.0.0/16", MAX_AZS + 1, "AZ count must be between 1 and 6, got 7"),
    ],
)
def test_impossible_layouts_are_refused(cidr, az_count, message):
    with pytest.raises(ValueError, match=message):
        plan_subnets(cidr, az_count)
