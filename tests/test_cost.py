"""Cost estimates: Decimal arithmetic against hand-computed values.

Prices are fixed by the tests (a 4-GPU L4 node at $4.00/h, so $1.00 per GPU-hour;
a 1-GPU one at $1.50/h; an 8-GPU one at $12.00/h), so every expected figure below
can be checked with pencil and paper: 730 h/month; NLB (0.0225 + 0.006 x 1 NLCU)
x 730 = 20.805 -> 20.80 (cents, half even); PrivateLink 0.01 x 2 AZ x 730 = 14.60;
network per endpoint 35.40.
"""

from __future__ import annotations

import json
from decimal import Decimal
from fractions import Fraction

import pytest

from privend.capacity import Demand, PoolSpec, plan_capacity
from privend.catalog import GpuCatalog, gpu_catalog
from privend.cost import (
    HOURS_PER_MONTH,
    INTERFACE_ENDPOINT_HOURLY_PER_AZ,
    NLB_HOURLY,
    NLB_NLCU_HOURLY,
    SPOT_PRICE_FACTOR,
    dedicated_at_peak,
    estimate_costs,
)
from privend.errors import InputError


def priced_catalog(prices: dict[str, str]) -> GpuCatalog:
    base = gpu_catalog()
    instances = {
        name: base.instances[name].model_copy(update={"on_demand_hourly": Decimal(price)})
        for name, price in prices.items()
    }
    return base.model_copy(update={"instances": instances})


CATALOG = priced_catalog({"g6.xlarge": "1.50", "g6.12xlarge": "4.00", "g6.48xlarge": "12.00"})


def estimate(demands, *, types=("g6.12xlarge",), capacity_type="on-demand", min_size=0, catalog=CATALOG,
             headroom=None, **kwargs):
    pools = {"l4": PoolSpec("l4", types, capacity_type, min_size, 20)}
    warm = {"l4": headroom} if headroom is not None else None
    return estimate_costs(plan_capacity(demands, pools, catalog), catalog=catalog, warm_headroom=warm, **kwargs)


def d(endpoint, gpus=1, min_replicas=1, tier="shared", tenant=None, pool="l4", max_replicas=None):
    return Demand(endpoint, tenant or endpoint.upper(), pool, gpus, min_replicas,
                  max_replicas or max(1, min_replicas), tier)


def test_published_prices_are_the_us_east_1_list_prices():
    assert HOURS_PER_MONTH == Decimal("730")
    assert NLB_HOURLY == Decimal("0.0225")
    assert NLB_NLCU_HOURLY == Decimal("0.006")
    assert INTERFACE_ENDPOINT_HOURLY_PER_AZ == Decimal("0.01")
    assert SPOT_PRICE_FACTOR == Decimal("0.60")


def test_endpoints_pay_the_gpus_they_hold_and_idle_gpus_are_platform_overhead():
    # One 4-GPU node at 4.00/h: a holds 2 GPUs (2.00/h x 730 = 1460.00), b 1 (730.00);
    # the idle GPU (1.00/h, 730.00) is the pool's overhead, on no endpoint's bill.
    result = estimate([d("a", min_replicas=2), d("b")])

    assert result.endpoint("a").compute_monthly == Decimal("1460.00")
    assert result.endpoint("b").compute_monthly == Decimal("730.00")
    (pool,) = result.pools
    assert (pool.hourly, pool.monthly) == (Decimal("4.00"), Decimal("2920.00"))
    assert pool.min.attributed_monthly == Decimal("2190.00")
    assert (pool.min.idle_gpus_monthly, pool.min.floor_nodes_monthly, pool.min.warm_headroom_monthly) == (
        Decimal("730.00"), Decimal("0.00"), Decimal("0.00"))
    assert pool.platform_overhead_monthly == pool.unattributed_monthly == Decimal("730.00")


def test_endpoint_total_adds_its_nlb_and_privatelink_charges():
    a = estimate([d("a", min_replicas=2), d("b")]).endpoint("a")

    assert a.nlb_monthly == Decimal("20.80")
    assert a.privatelink_monthly == Decimal("14.60")
    assert a.total_monthly == Decimal("1495.40")  # 1460.00 + 20.80 + 14.60


def test_network_charges_follow_availability_zones_and_nlcu_usage():
    # NLB 0.0225 x 730 = 16.425 -> 16.42; PrivateLink 0.01 x 3 x 730 = 21.90.
    a = estimate([d("a")], availability_zones=3, nlcu_per_hour=Decimal(0)).endpoint("a")

    assert (a.nlb_monthly, a.privatelink_monthly) == (Decimal("16.42"), Decimal("21.90"))


def test_dedicated_at_peak_buys_the_cheapest_instances_that_hold_the_replicas_max():
    # a: 1-GPU replicas, MAX 2: 2 x g6.xlarge 1.50 x 730 = 2190.00; with network 2225.40.
    # c: 2-GPU replicas, MAX 3: g6.12xlarge (4.00) holds two of them and beats g6.48xlarge (12.00):
    #    ceil(3 / 2) = 2 instances x 4.00 x 730 = 5840.00.
    # e: MIN 1, MAX 5: the peak is MAX, 5 x 1.50 x 730 = 5475.00, whatever MIN is.
    result = estimate([d("a", min_replicas=2), d("c", gpus=2, min_replicas=3), d("e", max_replicas=5)])

    a, c, e = result.endpoint("a"), result.endpoint("c"), result.endpoint("e")
    assert (a.baseline_instance_type, a.baseline_instances, a.baseline_peak_replicas) == ("g6.xlarge", 2, 2)
    assert a.baseline_compute_monthly == Decimal("2190.00")
    assert a.baseline_total_monthly == Decimal("2225.40")
    assert (c.baseline_instance_type, c.baseline_instances) == ("g6.12xlarge", 2)
    assert c.baseline_compute_monthly == Decimal("5840.00")
    assert (e.baseline_instances, e.baseline_peak_replicas) == (5, 5)
    assert e.baseline_compute_monthly == Decimal("5475.00")


def test_dedicated_at_peak_keeps_the_pools_gpu_model_even_when_another_is_cheaper():
    catalog = priced_catalog({"g6.xlarge": "0.50", "g6e.xlarge": "2.00", "g6e.12xlarge": "8.00"})
    result = estimate([d("a")], types=("g6e.12xlarge",), catalog=catalog)

    assert result.endpoint("a").baseline_instance_type == "g6e.xlarge"
    assert result.endpoint("a").baseline_compute_monthly == Decimal("1460.00")  # 2.00 x 730


def test_dedicated_at_peak_refuses_a_replica_no_instance_of_the_gpu_model_holds():
    catalog = priced_catalog({"g6.xlarge": "1.50", "g6.12xlarge": "4.00"})
    with pytest.raises(InputError, match="endpoint 'a': no L4 instance type holds 8 GPUs"):
        dedicated_at_peak(d("a", gpus=8), PoolSpec("l4", ("g6.12xlarge",)), catalog)


def test_environment_totals_compare_pooled_with_dedicated_at_peak_overhead_included():
    # Pooled at min: the whole node, 2920.00 (730.00 of it overhead), + 2 x 35.40 network = 2990.80.
    # Dedicated at peak: (2190.00 + 35.40) + (1095.00 + 35.40) = 3355.80.
    result = estimate([d("a", min_replicas=2), d("b")])

    assert result.pooled_monthly == Decimal("2990.80")
    assert result.platform_overhead_monthly == Decimal("730.00")
    assert result.baseline_monthly == Decimal("3355.80")
    assert result.endpoint("b").savings_monthly == Decimal("1130.40") - Decimal("765.40")
    assert result.savings_fraction == Fraction(36500, 335580)  # 365.00 / 3355.80, exact


def test_pooled_cost_at_max_scale_is_what_the_replicas_max_hold():
    # a, MIN 1 and MAX 3, alone on 4-GPU nodes. At min it holds 1 GPU (730.00), 3 idle (2190.00 overhead);
    # at max 3 GPUs (2190.00), 1 idle (730.00). Dedicated at peak: 3 x g6.xlarge 1.50 x 730 = 3285.00.
    result = estimate([d("a", max_replicas=3)])

    a, (pool,) = result.endpoint("a"), result.pools
    assert (a.gpus_at_min, a.gpus_at_max) == (1, 3)
    assert (a.compute_monthly, a.compute_at_max_monthly) == (Decimal("730.00"), Decimal("2190.00"))
    assert a.total_at_max_monthly == Decimal("2225.40")
    assert a.savings_at_max_monthly == Decimal("3320.40") - Decimal("2225.40")
    assert (pool.min.platform_overhead_monthly, pool.max.platform_overhead_monthly) == (
        Decimal("2190.00"), Decimal("730.00"))
    assert result.pooled_monthly == Decimal("2955.40")  # 2920.00 + 35.40
    assert result.pooled_at_max_monthly == Decimal("2955.40")  # the same node, fuller
    assert result.savings_at_max_fraction == Fraction(36500, 332040)  # (3320.40 - 2955.40) / 3320.40


def test_spot_is_a_line_of_its_own_and_never_enters_a_saving():
    # On-demand figures as in the on-demand pool; spot at 0.60: the pool 2920.00 -> 1752.00,
    # a's compute 1460.00 -> 876.00 (+ 35.40 network = 911.40), the environment 1752.00 + 70.80.
    on_demand = estimate([d("a", min_replicas=2), d("b")])
    spot = estimate([d("a", min_replicas=2), d("b")], capacity_type="spot")

    assert spot.pools[0].monthly == Decimal("2920.00")
    assert spot.pools[0].spot_monthly == Decimal("1752.00")
    a = spot.endpoint("a")
    assert (a.compute_monthly, a.spot_compute_monthly, a.spot_total_monthly) == (
        Decimal("1460.00"), Decimal("876.00"), Decimal("911.40"))
    assert spot.spot_pooled_monthly == Decimal("1822.80")
    assert spot.pooled_monthly == on_demand.pooled_monthly == Decimal("2990.80")
    assert spot.savings_fraction == on_demand.savings_fraction
    assert (on_demand.pools[0].spot_monthly, on_demand.endpoint("a").spot_compute_monthly,
            on_demand.spot_pooled_monthly) == (None, None, None)
    assert any("spot capacity priced at 60 % of on-demand (assumption; spot prices vary)" in line
               for line in spot.assumptions)


def test_floor_nodes_kept_by_min_size_are_platform_overhead_not_spread_over_endpoints():
    # min_size 2 keeps a second 4.00/h node: 2920.00 of floor, beside the 730.00 idle GPU.
    result = estimate([d("a", min_replicas=2), d("b")], min_size=2)

    (pool,) = result.pools
    assert pool.floor_nodes == 1
    assert pool.monthly == Decimal("5840.00")
    assert (pool.min.idle_gpus_monthly, pool.min.floor_nodes_monthly) == (Decimal("730.00"), Decimal("2920.00"))
    assert pool.platform_overhead_monthly == Decimal("3650.00")
    assert result.endpoint("a").compute_monthly == Decimal("1460.00")
    assert result.endpoint("b").compute_monthly == Decimal("730.00")


def test_idle_gpus_of_a_dedicated_tenants_nodes_are_that_tenants_cost():
    # a (shared) holds 1 GPU of a shared node: 730.00, its 3 idle GPUs are overhead (2190.00).
    # z (dedicated tenant bank) alone on bank's node: 730.00 held + 2190.00 of its own idle GPUs.
    result = estimate([d("a"), d("z", tier="dedicated", tenant="bank")])

    a, z = result.endpoint("a"), result.endpoint("z")
    assert (a.compute_monthly, a.own_nodes_idle_monthly) == (Decimal("730.00"), Decimal("0.00"))
    assert (z.compute_monthly, z.own_nodes_idle_monthly) == (Decimal("2920.00"), Decimal("2190.00"))
    assert result.pools[0].min.idle_gpus_monthly == Decimal("2190.00")  # the shared node's only
    assert result.pools[0].monthly == Decimal("5840.00")


def test_a_dedicated_tenants_idle_gpus_are_shared_by_its_endpoints_pro_rata_to_gpus():
    # bank's node: y holds 2 GPUs, x 1, one idle (1.00/h).
    # y: (2.00 + 1.00 x 2/3) x 730 = 1946.666.. -> 1946.67; x: (1.00 + 1/3) x 730 = 973.333.. -> 973.33.
    result = estimate([d("y", gpus=2, tier="dedicated", tenant="bank"), d("x", tier="dedicated", tenant="bank")])

    assert result.endpoint("y").compute_monthly == Decimal("1946.67")
    assert result.endpoint("x").compute_monthly == Decimal("973.33")
    assert result.endpoint("x").own_nodes_idle_monthly == Decimal("243.33")
    assert result.platform_overhead_monthly == Decimal("0.00")


def test_warm_headroom_buys_only_the_gpus_idle_ones_do_not_cover_on_the_cheapest_nodes():
    # a's 1-GPU replica is cheapest on a g6.xlarge (1.50), which leaves no GPU free.
    # 2 GPUs of headroom: 2 x g6.xlarge (3.00/h) beat one g6.12xlarge (4.00): 2190.00.
    # 3 GPUs: one g6.12xlarge (4.00/h) beats 3 x g6.xlarge (4.50): 2920.00.
    mixed = ("g6.xlarge", "g6.12xlarge")
    two = estimate([d("a")], types=mixed, headroom=2).pools[0]
    three = estimate([d("a")], types=mixed, headroom=3).pools[0]

    assert (two.min.headroom_nodes, two.min.warm_headroom_monthly) == ({"g6.xlarge": 2}, Decimal("2190.00"))
    assert (three.min.headroom_nodes, three.min.warm_headroom_monthly) == ({"g6.12xlarge": 1}, Decimal("2920.00"))
    assert three.warm_headroom_gpus == 3
    assert three.monthly == Decimal("4015.00")  # a's g6.xlarge 1095.00 + the headroom node 2920.00
    assert estimate([d("a")], types=mixed, headroom=3).endpoint("a").compute_monthly == Decimal("1095.00")


def test_idle_gpus_and_floor_nodes_count_towards_the_warm_headroom():
    # a on a g6.12xlarge leaves 3 GPUs free, the floor node (min_size 2) 4 more: 7 GPUs of headroom
    # cost nothing extra; the 8th buys another 4.00/h node.
    seven = estimate([d("a")], min_size=2, headroom=7).pools[0]
    eight = estimate([d("a")], min_size=2, headroom=8).pools[0]

    assert (seven.min.headroom_nodes, seven.min.warm_headroom_monthly) == ({}, Decimal("0.00"))
    assert (eight.min.headroom_nodes, eight.min.warm_headroom_monthly) == ({"g6.12xlarge": 1}, Decimal("2920.00"))
    assert eight.platform_overhead_monthly == Decimal("8030.00")  # 2190.00 idle + 2920.00 floor + 2920.00


def test_each_figure_is_rounded_on_its_own_and_the_pool_is_the_sum_of_its_parts():
    # 1.01/h for 4 GPUs: 0.2525 per GPU-hour x 730 = 184.325 -> 184.32 (half even), for each of a, b, c
    # and for the idle GPU: 737.28 in all (1.01 x 730 = 737.30 before rounding the parts).
    catalog = priced_catalog({"g6.xlarge": "1.50", "g6.12xlarge": "1.01"})
    result = estimate([d("a"), d("b"), d("c")], catalog=catalog)

    assert [result.endpoint(name).compute_monthly for name in "abc"] == [Decimal("184.32")] * 3
    assert result.pools[0].min.idle_gpus_monthly == Decimal("184.32")
    assert result.pools[0].monthly == Decimal("737.28")


def test_an_endpoint_scaled_to_zero_pays_network_only_at_min_and_its_replica_at_max():
    # z (MIN 0, MAX 1) holds nothing at min; at max it holds one GPU of a's node, 730.00.
    # Dedicated at peak it needs an always-on g6.xlarge: 1.50 x 730 = 1095.00.
    result = estimate([d("a"), d("z", min_replicas=0)])

    z = result.endpoint("z")
    assert (z.compute_monthly, z.total_monthly) == (Decimal("0.00"), Decimal("35.40"))
    assert z.compute_at_max_monthly == Decimal("730.00")
    assert (z.baseline_instances, z.baseline_compute_monthly) == (1, Decimal("1095.00"))
    assert result.endpoint("a").compute_monthly == Decimal("730.00")


def test_floor_nodes_of_a_pool_with_nothing_running_are_overhead():
    result = estimate([d("z", min_replicas=0)], min_size=1)

    (pool,) = result.pools
    assert pool.monthly == pool.min.floor_nodes_monthly == Decimal("2920.00")
    assert pool.unattributed_monthly == Decimal("2920.00")
    assert result.endpoint("z").compute_monthly == Decimal("0.00")


def test_every_estimate_carries_the_date_prices_were_read():
    result = estimate([d("a"), d("b")])

    assert result.prices_read_on == CATALOG.prices_read_on
    assert {e.prices_read_on for e in result.endpoints} == {CATALOG.prices_read_on}
    rendered = result.to_dict()
    assert rendered["prices_read_on"] == CATALOG.prices_read_on
    assert rendered["network_prices_read_on"] == result.network_prices_read_on
    assert all(e["prices_read_on"] == CATALOG.prices_read_on for e in rendered["endpoints"])


def test_money_is_decimal_and_renders_as_exact_strings():
    result = estimate([d("a", min_replicas=2), d("b")], capacity_type="spot")
    a = result.endpoint("a")

    for value in (a.compute_monthly, a.compute_at_max_monthly, a.nlb_monthly, a.privatelink_monthly,
                  a.total_monthly, a.baseline_compute_monthly, result.pooled_monthly, result.pools[0].hourly):
        assert isinstance(value, Decimal)
    rendered = json.loads(json.dumps(result.to_dict()))
    assert rendered["baseline_name"] == "dedicated at peak"
    assert (rendered["pooled_monthly"], rendered["spot_pooled_monthly"]) == ("2990.80", "1822.80")
    assert rendered["platform_overhead_monthly"] == "730.00"
    endpoint = rendered["endpoints"][0]
    assert (endpoint["total_monthly"], endpoint["baseline"]["name"]) == ("1495.40", "dedicated at peak")
    assert endpoint["spot"] == {"price_factor": "0.60", "compute_monthly": "876.00", "total_monthly": "911.40"}
    pool = rendered["pools"][0]
    assert pool["platform_overhead"] == {"monthly": "730.00", "idle_gpus_monthly": "730.00",
                                         "floor_nodes_monthly": "0.00", "warm_headroom_monthly": "0.00"}
    assert (pool["monthly"], pool["spot_monthly"], pool["at_max"]["monthly"]) == ("2920.00", "1752.00", "2920.00")
    assert rendered["hours_per_month"] == 730
