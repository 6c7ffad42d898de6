"""Cost estimates: Decimal arithmetic against hand-computed values.

Prices are fixed by the tests (a 4-GPU L4 node at $4.00/h, a 1-GPU one at
$1.50/h), so every expected figure below can be checked with pencil and paper:
730 h/month; NLB (0.0225 + 0.006 x 1 NLCU) x 730 = 20.805 -> 20.80 (cents, half
even); PrivateLink 0.01 x 2 AZ x 730 = 14.60; network per endpoint 35.40.
"""

from __future__ import annotations

import json
from decimal import Decimal
from fractions import Fraction

from privend.capacity import Demand, PoolSpec, plan_capacity
from privend.catalog import GpuCatalog, gpu_catalog
from privend.cost import (
    HOURS_PER_MONTH,
    INTERFACE_ENDPOINT_HOURLY_PER_AZ,
    NLB_HOURLY,
    NLB_NLCU_HOURLY,
    SPOT_PRICE_FACTOR,
    estimate_costs,
)


def priced_catalog(prices: dict[str, str]) -> GpuCatalog:
    base = gpu_catalog()
    instances = {
        name: base.instances[name].model_copy(update={"on_demand_hourly": Decimal(price)})
        for name, price in prices.items()
    }
    return base.model_copy(update={"instances": instances})


CATALOG = priced_catalog({"g6.xlarge": "1.50", "g6.12xlarge": "4.00", "g6.48xlarge": "12.00"})


def estimate(demands, *, types=("g6.12xlarge",), capacity_type="on-demand", min_size=0, catalog=CATALOG, **kwargs):
    pools = {"l4": PoolSpec("l4", types, capacity_type, min_size, 20)}
    return estimate_costs(plan_capacity(demands, pools, catalog), catalog=catalog, **kwargs)


def d(endpoint, gpus=1, min_replicas=1, tier="shared", tenant=None, pool="l4"):
    return Demand(endpoint, tenant or endpoint.upper(), pool, gpus, min_replicas, max(1, min_replicas), tier)


def test_published_prices_are_the_us_east_1_list_prices():
    assert HOURS_PER_MONTH == Decimal("730")
    assert NLB_HOURLY == Decimal("0.0225")
    assert NLB_NLCU_HOURLY == Decimal("0.006")
    assert INTERFACE_ENDPOINT_HOURLY_PER_AZ == Decimal("0.01")
    assert SPOT_PRICE_FACTOR == Decimal("0.60")


def test_endpoints_pay_their_gpus_and_share_idle_gpus_pro_rata():
    # One 4-GPU node at 4.00/h: a has 2 GPUs, b has 1, one GPU idle ($1.00/h).
    # a: 2.00 + 1.00 x 2/3 = 2.6666.. /h x 730 = 1946.666.. -> 1946.67
    # b: 1.00 + 1.00 x 1/3 = 1.3333.. /h x 730 =  973.333.. ->  973.33
    result = estimate([d("a", min_replicas=2), d("b")])

    assert result.endpoint("a").compute_monthly == Decimal("1946.67")
    assert result.endpoint("b").compute_monthly == Decimal("973.33")
    (pool,) = result.pools
    assert (pool.hourly, pool.monthly) == (Decimal("4.00"), Decimal("2920.00"))
    assert result.endpoint("a").compute_monthly + result.endpoint("b").compute_monthly == pool.monthly


def test_endpoint_total_adds_its_nlb_and_privatelink_charges():
    a = estimate([d("a", min_replicas=2), d("b")]).endpoint("a")

    assert a.nlb_monthly == Decimal("20.80")
    assert a.privatelink_monthly == Decimal("14.60")
    assert a.total_monthly == Decimal("1982.07")  # 1946.67 + 20.80 + 14.60


def test_network_charges_follow_availability_zones_and_nlcu_usage():
    # NLB 0.0225 x 730 = 16.425 -> 16.42; PrivateLink 0.01 x 3 x 730 = 21.90.
    a = estimate([d("a")], availability_zones=3, nlcu_per_hour=Decimal(0)).endpoint("a")

    assert (a.nlb_monthly, a.privatelink_monthly) == (Decimal("16.42"), Decimal("21.90"))


def test_dedicated_baseline_is_one_cheapest_fitting_instance_per_replica():
    # a: 2 replicas x g6.xlarge 1.50 x 730 = 2190.00; with network 2225.40.
    # c: 2-GPU replicas: g6.12xlarge (4.00) beats g6.48xlarge; 3 x 4.00 x 730 = 8760.00.
    result = estimate([d("a", min_replicas=2), d("c", gpus=2, min_replicas=3)])

    a, c = result.endpoint("a"), result.endpoint("c")
    assert (a.baseline_instance_type, a.baseline_instances) == ("g6.xlarge", 2)
    assert a.baseline_compute_monthly == Decimal("2190.00")
    assert a.baseline_total_monthly == Decimal("2225.40")
    assert (c.baseline_instance_type, c.baseline_instances) == ("g6.12xlarge", 3)
    assert c.baseline_compute_monthly == Decimal("8760.00")


def test_dedicated_baseline_keeps_the_pools_gpu_model_even_when_another_is_cheaper():
    catalog = priced_catalog({"g6.xlarge": "0.50", "g6e.xlarge": "2.00", "g6e.12xlarge": "8.00"})
    result = estimate([d("a")], types=("g6e.12xlarge",), catalog=catalog)

    assert result.endpoint("a").baseline_instance_type == "g6e.xlarge"
    assert result.endpoint("a").baseline_compute_monthly == Decimal("1460.00")  # 2.00 x 730


def test_environment_totals_compare_pooled_with_the_dedicated_baseline():
    # Pooled: 2920.00 compute + 2 x 35.40 network = 2990.80.
    # Baseline: (2190.00 + 35.40) + (1095.00 + 35.40) = 3355.80.
    result = estimate([d("a", min_replicas=2), d("b")])

    assert result.pooled_monthly == Decimal("2990.80")
    assert result.baseline_monthly == Decimal("3355.80")
    assert result.endpoint("b").savings_monthly == Decimal("1130.40") - Decimal("1008.73")
    assert result.savings_fraction == Fraction(36500, 335580)  # 365.00 / 3355.80, exact


def test_spot_pools_are_priced_at_the_assumed_fraction_of_on_demand_and_say_so():
    # 4.00 x 0.60 = 2.40/h x 730 = 1752.00; a 2/3 of it, b 1/3.
    result = estimate([d("a", min_replicas=2), d("b")], capacity_type="spot")

    assert result.pools[0].monthly == Decimal("1752.00")
    assert result.endpoint("a").compute_monthly == Decimal("1168.00")
    assert result.endpoint("b").compute_monthly == Decimal("584.00")
    # The baseline is what managed products sell: on-demand.
    assert result.endpoint("a").baseline_compute_monthly == Decimal("2190.00")
    assert "spot capacity priced at 60 % of on-demand (assumption; spot prices vary)" in result.assumptions


def test_floor_nodes_kept_by_min_size_are_shared_pro_rata():
    # min_size 2 keeps a second 4.00/h node: idle is 1.00 + 4.00 = 5.00/h.
    # a: (2 + 5 x 2/3) x 730 = 3893.333.. -> 3893.33; b: (1 + 5/3) x 730 = 1946.666.. -> 1946.67
    result = estimate([d("a", min_replicas=2), d("b")], min_size=2)

    assert result.pools[0].floor_nodes == 1
    assert result.pools[0].monthly == Decimal("5840.00")
    assert result.endpoint("a").compute_monthly == Decimal("3893.33")
    assert result.endpoint("b").compute_monthly == Decimal("1946.67")


def test_idle_gpus_of_a_dedicated_tenants_node_stay_with_that_tenant():
    # Each is alone on a 4.00/h node: both pay the whole node, 2920.00.
    result = estimate([d("a"), d("z", tier="dedicated", tenant="bank")])

    assert result.endpoint("a").compute_monthly == Decimal("2920.00")
    assert result.endpoint("z").compute_monthly == Decimal("2920.00")


def test_rounded_shares_still_add_up_to_the_pool_total():
    # 1.00/h split three ways: 243.333.. each; the spare cent goes to the first by name.
    catalog = priced_catalog({"g6.xlarge": "1.00", "g6.12xlarge": "1.00"})
    result = estimate([d("a"), d("b"), d("c")], catalog=catalog)

    shares = [result.endpoint(name).compute_monthly for name in "abc"]
    assert shares == [Decimal("243.34"), Decimal("243.33"), Decimal("243.33")]
    assert sum(shares) == result.pools[0].monthly == Decimal("730.00")


def test_an_endpoint_scaled_to_zero_pays_network_only():
    result = estimate([d("a"), d("z", min_replicas=0)])

    z = result.endpoint("z")
    assert (z.compute_monthly, z.baseline_instances) == (Decimal("0.00"), 0)
    assert z.baseline_compute_monthly == Decimal("0.00")
    assert z.total_monthly == Decimal("35.40")
    assert result.endpoint("a").compute_monthly == Decimal("2920.00")


def test_floor_nodes_of_a_pool_with_nothing_running_are_reported_unattributed():
    result = estimate([d("z", min_replicas=0)], min_size=1)

    assert result.pools[0].monthly == Decimal("2920.00")
    assert result.pools[0].unattributed_monthly == Decimal("2920.00")
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
    result = estimate([d("a", min_replicas=2), d("b")])
    a = result.endpoint("a")

    for value in (a.compute_monthly, a.nlb_monthly, a.privatelink_monthly, a.total_monthly,
                  a.baseline_compute_monthly, result.pooled_monthly, result.pools[0].hourly):
        assert isinstance(value, Decimal)
    rendered = json.loads(json.dumps(result.to_dict()))
    assert rendered["pooled_monthly"] == "2990.80"
    assert rendered["endpoints"][0]["total_monthly"] == "1982.07"
    assert rendered["hours_per_month"] == 730
