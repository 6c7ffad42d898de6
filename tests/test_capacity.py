"""Capacity planner: hand-checked placements, input errors, and properties of every plan."""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from privend.capacity import (
    CapacityPlan,
    Demand,
    PoolSpec,
    ScalePlan,
    fits_within_pool,
    plan_capacity,
)
from privend.catalog import GpuCatalog, gpu_catalog
from privend.errors import InputError


def priced_catalog(prices: dict[str, str]) -> GpuCatalog:
    """The real catalog's hardware facts for just these types, at fixed prices.

    Tests choose their own prices so that refining the real catalog's numbers
    cannot change what they expect.
    """
    base = gpu_catalog()
    instances = {
        name: base.instances[name].model_copy(update={"on_demand_hourly": Decimal(price)})
        for name, price in prices.items()
    }
    return base.model_copy(update={"instances": instances})


# L4 shapes: 1, 4 and 8 GPUs; the 4-GPU node is the cheapest per GPU, as in the real catalog.
L4 = priced_catalog({"g6.xlarge": "1.50", "g6.12xlarge": "4.00", "g6.48xlarge": "12.00"})


def pool(name: str = "l4", types: tuple[str, ...] = ("g6.12xlarge",), *, min_size: int = 0, max_size: int = 50,
         capacity_type: str = "on-demand") -> dict[str, PoolSpec]:
    return {name: PoolSpec(name, types, capacity_type, min_size, max_size)}


def demand(endpoint: str, gpus: int = 1, min_replicas: int = 1, max_replicas: int | None = None, *,
           tenant: str | None = None, pool: str = "l4", tier: str = "shared") -> Demand:
    return Demand(endpoint, tenant or f"tenant-{endpoint}", pool, gpus, min_replicas,
                  max_replicas if max_replicas is not None else max(1, min_replicas), tier)


def endpoints_on(node) -> list[str]:
    return sorted(r.endpoint for r in node.replicas)


# ---------------------------------------------------------------------------
# Hand-checked cases


def test_three_one_gpu_replicas_and_one_four_gpu_replica_fill_two_four_gpu_nodes():
    demands = [demand("a"), demand("b"), demand("c"), demand("big", gpus=4)]
    plan = plan_capacity(demands, pool(), L4).pools["l4"].min

    assert plan.node_count == 2
    assert sorted(endpoints_on(n) for n in plan.nodes) == [["a", "b", "c"], ["big"]]
    assert plan.lower_bound == 2
    assert plan.gap == 0
    assert plan.gpu_utilisation == Decimal(7) / 8
    assert plan.on_demand_hourly == Decimal("8.00")


def test_dedicated_tenant_gets_its_own_node_even_when_a_shared_node_has_room():
    demands = [demand("shared-a", tenant="acme"), demand("private-b", tenant="bank", tier="dedicated")]
    plan = plan_capacity(demands, pool(), L4).pools["l4"].min

    assert plan.node_count == 2
    by_tenant = {n.dedicated_tenant: endpoints_on(n) for n in plan.nodes}
    assert by_tenant == {None: ["shared-a"], "bank": ["private-b"]}
    # The bound counts the dedicated tenant separately: one node each.
    assert plan.lower_bound == 2


def test_dedicated_endpoints_of_one_tenant_share_that_tenants_nodes():
    demands = [demand(f"bank-{i}", tenant="bank", tier="dedicated") for i in range(3)]
    plan = plan_capacity(demands, pool(), L4).pools["l4"].min

    assert [(n.dedicated_tenant, endpoints_on(n)) for n in plan.nodes] == [("bank", ["bank-0", "bank-1", "bank-2"])]


def test_shared_nodes_hold_replicas_of_several_tenants():
    demands = [demand("a", tenant="acme"), demand("b", tenant="bank")]
    plan = plan_capacity(demands, pool(), L4).pools["l4"].min

    assert plan.node_count == 1
    assert sorted(r.tenant for r in plan.nodes[0].replicas) == ["acme", "bank"]


def test_two_gpu_replica_cannot_span_two_one_gpu_nodes():
    with pytest.raises(InputError) as error:
        plan_capacity([demand("big", gpus=2)], pool(types=("g6.xlarge",)), L4)
    assert str(error.value) == (
        "endpoint 'big' needs 2 GPUs per replica, but the largest node type in pool 'l4' "
        "(g6.xlarge) has 1; a replica cannot span nodes"
    )


def test_min_and_max_scale_are_planned_from_min_and_max_replicas():
    plan = plan_capacity([demand("a", gpus=2, min_replicas=1, max_replicas=5)], pool(), L4).pools["l4"]

    assert (plan.min.node_count, plan.max.node_count) == (1, 3)
    assert (plan.min.allocated_gpus, plan.max.allocated_gpus) == (2, 10)
    assert (plan.min.lower_bound, plan.max.lower_bound) == (1, 3)


def test_replicas_larger_than_half_a_node_raise_the_bound_above_the_gpu_count_bound():
    # Five 5-GPU replicas: 25 GPUs fit 4 eight-GPU nodes by volume, but no two share one.
    plan = plan_capacity([demand("a", gpus=5, min_replicas=5)], pool(types=("g6.48xlarge",)), L4).pools["l4"].min

    assert plan.lower_bound == 5  # not ceil(25 / 8) = 4
    assert plan.node_count == 5
    assert plan.gap == 0


def test_small_replicas_that_fit_no_gap_left_by_large_ones_raise_the_bound_further():
    # Three 6-GPU replicas leave 2 free GPUs each, where no 3-GPU replica fits;
    # the three 3-GPU replicas need two more nodes: 5, where volume says 4 and
    # counting replicas over half a node says 3.
    demands = [demand("big", gpus=6, min_replicas=3), demand("mid", gpus=3, min_replicas=3)]
    plan = plan_capacity(demands, pool(types=("g6.48xlarge",)), L4).pools["l4"].min

    assert (plan.lower_bound, plan.node_count, plan.gap) == (5, 5, 0)  # not ceil(27 / 8) = 4


def test_price_bound_charges_a_whole_node_to_replicas_that_cannot_share_one():
    # A 6-GPU replica needs an 8-GPU node (12.00); no 3-GPU replica fits its 2
    # free GPUs and no two share a 4-GPU node, so three of them cost 3 x 4.00.
    # GPU volume alone (15 GPUs: one 8-GPU and two 4-GPU nodes) would say 20.00.
    demands = [demand("big", gpus=6), demand("mid", gpus=3, min_replicas=3)]
    plan = plan_capacity(demands, pool(types=("g6.12xlarge", "g6.48xlarge")), L4).pools["l4"].min

    assert plan.on_demand_hourly == Decimal("24.00")
    assert plan.cost_lower_bound == Decimal("24.00")
    assert plan.gap == 0


def test_mixed_pool_puts_eight_gpu_replicas_on_eight_gpu_nodes_and_the_rest_on_cheaper_four_gpu_nodes():
    demands = [demand("llama-70b", gpus=8), demand("a"), demand("b"), demand("c", gpus=2)]
    plan = plan_capacity(demands, pool(types=("g6.12xlarge", "g6.48xlarge")), L4).pools["l4"].min

    assert plan.nodes_by_type() == {"g6.12xlarge": 1, "g6.48xlarge": 1}
    assert {n.instance_type: endpoints_on(n) for n in plan.nodes} == {
        "g6.48xlarge": ["llama-70b"],
        "g6.12xlarge": ["a", "b", "c"],
    }
    assert plan.on_demand_hourly == Decimal("16.00")
    assert plan.cost_lower_bound == Decimal("16.00")


def test_mixed_pool_prefers_one_eight_gpu_node_to_three_four_gpu_nodes_for_three_plus_three_plus_two():
    # 3+3+2 fills one 8-GPU node at 12.00; on 4-GPU nodes it needs three (a 3 and a 3
    # never share one), at 12.00 too: equal price, so fewer nodes wins.
    demands = [demand("a", gpus=3), demand("b", gpus=3), demand("c", gpus=2)]
    plan = plan_capacity(demands, pool(types=("g6.12xlarge", "g6.48xlarge")), L4).pools["l4"].min

    assert plan.nodes_by_type() == {"g6.48xlarge": 1}
    assert plan.on_demand_hourly == Decimal("12.00")


def test_mixed_pool_with_cheaper_single_gpu_nodes_runs_single_gpu_replicas_there():
    catalog = priced_catalog({"g6.xlarge": "0.80", "g6.12xlarge": "4.60"})
    demands = [demand("a"), demand("b"), demand("c")]
    plan = plan_capacity(demands, pool(types=("g6.xlarge", "g6.12xlarge")), catalog).pools["l4"].min

    assert plan.nodes_by_type() == {"g6.xlarge": 3}
    assert plan.on_demand_hourly == Decimal("2.40")


def test_single_gpu_replicas_fill_the_free_gpus_of_a_node_already_paid_for():
    # The 2-GPU replica forces a 4-GPU node; its two free GPUs cost nothing more,
    # so the 1-GPU replicas go there rather than onto cheaper 1-GPU nodes (6.20).
    catalog = priced_catalog({"g6.xlarge": "0.80", "g6.12xlarge": "4.60"})
    demands = [demand("a"), demand("b"), demand("c", gpus=2)]
    plan = plan_capacity(demands, pool(types=("g6.xlarge", "g6.12xlarge")), catalog).pools["l4"].min

    assert plan.nodes_by_type() == {"g6.12xlarge": 1}
    assert plan.on_demand_hourly == Decimal("4.60")


def test_equal_price_per_gpu_prefers_fewer_larger_nodes():
    catalog = priced_catalog({"p5.4xlarge": "6.88", "p5.48xlarge": "55.04"})
    demands = [demand(f"e{i}", pool="h100") for i in range(8)]
    plan = plan_capacity(demands, pool("h100", ("p5.4xlarge", "p5.48xlarge")), catalog).pools["h100"].min

    assert plan.nodes_by_type() == {"p5.48xlarge": 1}


def test_a_remainder_too_small_for_a_large_node_goes_on_small_nodes():
    catalog = priced_catalog({"p5.4xlarge": "6.88", "p5.48xlarge": "55.04"})
    demands = [demand(f"e{i}", pool="h100") for i in range(10)]
    plan = plan_capacity(demands, pool("h100", ("p5.4xlarge", "p5.48xlarge")), catalog).pools["h100"].min

    assert plan.nodes_by_type() == {"p5.48xlarge": 1, "p5.4xlarge": 2}
    assert plan.on_demand_hourly == Decimal("68.80")


def test_replicas_of_one_endpoint_spread_over_nodes_when_it_costs_nothing():
    demands = [demand(name, min_replicas=2) for name in "abcd"]
    plan = plan_capacity(demands, pool(), L4).pools["l4"].min

    assert plan.node_count == 2
    for node in plan.nodes:
        assert len({r.endpoint for r in node.replicas}) == 4


def test_gpu_slots_name_the_endpoint_replica_and_tenant_of_each_gpu():
    demands = [demand("big", gpus=2, tenant="acme"), demand("small", tenant="bank")]
    node = plan_capacity(demands, pool(), L4).pools["l4"].min.nodes[0]

    assert [(s.endpoint, s.replica, s.tenant) if s else None for s in node.slots()] == [
        ("big", 0, "acme"), ("big", 0, "acme"), ("small", 0, "bank"), None,
    ]
    assert node.to_dict()["gpu_slots"][3] == {"gpu": 3, "endpoint": None, "replica": None, "tenant": None}


def test_endpoints_scaled_to_zero_need_no_node_at_minimum_scale():
    plan = plan_capacity([demand("idle", min_replicas=0, max_replicas=2)], pool(), L4).pools["l4"]

    assert (plan.min.node_count, plan.min.lower_bound, plan.min.gap) == (0, 0, 0)
    assert plan.min.gpu_utilisation == 0
    assert plan.max.node_count == 1


def test_floor_nodes_count_what_min_size_keeps_beyond_minimum_scale():
    plan = plan_capacity([demand("a")], pool(min_size=3), L4).pools["l4"]

    assert plan.min.node_count == 1
    assert plan.floor_nodes == 2


def test_pools_without_demands_are_planned_empty():
    plan = plan_capacity([demand("a")], {**pool(), **pool("spare", ("g6.xlarge",))}, L4)

    assert list(plan.pools) == ["l4", "spare"]
    assert plan.pools["spare"].max.node_count == 0


# ---------------------------------------------------------------------------
# fits_within_pool, placements_for, rendering


def test_fits_within_pool_refuses_with_the_numbers_when_max_scale_exceeds_max_size():
    demands = [demand("a", gpus=4), demand("x", gpus=4, min_replicas=1, max_replicas=2)]
    plan = plan_capacity(demands, pool(max_size=2), L4)

    fit = fits_within_pool(plan, "l4", endpoint="x")
    assert not fit
    assert (fit.nodes_needed, fit.max_size) == (3, 2)
    assert fit.message == (
        "endpoint 'x' needs 3 nodes (3x g6.12xlarge) in pool 'l4' at max scale; pool 'l4' allows at most 2 (max_size)"
    )


def test_fits_within_pool_accepts_a_plan_at_max_size_exactly():
    plan = plan_capacity([demand("x", gpus=4, max_replicas=2)], pool(max_size=2), L4)

    assert fits_within_pool(plan, "l4", endpoint="x")


def test_fits_within_pool_rejects_an_unknown_pool():
    plan = plan_capacity([demand("x")], pool(), L4)
    with pytest.raises(InputError, match="pool 'h100' is not in this capacity plan"):
        fits_within_pool(plan, "h100")


def test_placements_for_lists_each_replica_with_its_node_at_both_scales():
    demands = [demand("big", gpus=4), demand("x", min_replicas=1, max_replicas=2)]
    plan = plan_capacity(demands, pool(), L4)

    placements = plan.placements_for("x")
    assert [p.replica for p in placements["min"]] == [0]
    assert [p.replica for p in placements["max"]] == [0, 1]
    for scale, found in placements.items():
        for p in found:
            node = plan.pools["l4"].scale(scale).nodes[p.node_index]
            assert node.instance_type == p.instance_type
            assert any(r.endpoint == "x" and r.replica == p.replica and r.gpu_indices == p.gpu_indices
                       for r in node.replicas)


def test_placements_for_an_unknown_endpoint_is_an_input_error():
    plan = plan_capacity([demand("x")], pool(), L4)
    with pytest.raises(InputError, match="endpoint 'nope' is not in this capacity plan"):
        plan.placements_for("nope")


def test_plan_renders_as_json_identically_whatever_the_order_of_demands():
    demands = [demand(f"e{i}", gpus=random.Random(i).choice([1, 2, 4]), min_replicas=1, max_replicas=3,
                      tenant=f"t{i % 4}", tier="dedicated" if i % 7 == 0 else "shared") for i in range(40)]
    pools = {**pool(types=("g6.12xlarge", "g6.48xlarge")), **pool("solo", ("g6.xlarge",))}
    shuffled = list(demands)
    random.Random(1).shuffle(shuffled)

    first = json.dumps(plan_capacity(demands, pools, L4).to_dict(), sort_keys=True)
    second = json.dumps(plan_capacity(shuffled, pools, L4).to_dict(), sort_keys=True)
    assert first == second
    rendered = json.loads(first)["pools"]["l4"]["max"]
    assert {"node_count", "lower_bound", "gap", "gpu_utilisation", "on_demand_hourly",
            "cost_lower_bound_hourly", "nodes_by_type", "nodes"} <= set(rendered)


# ---------------------------------------------------------------------------
# Input errors


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: plan_capacity([demand("a", pool="h100")], pool(), L4),
         "endpoint 'a' asks for pool 'h100', which is not configured (pools: l4)"),
        (lambda: plan_capacity([demand("a"), demand("a")], pool(), L4),
         "endpoint 'a' appears twice in the demands"),
        (lambda: demand("a", min_replicas=3, max_replicas=2),
         "endpoint 'a': replicas must satisfy 0 <= min <= max and max >= 1, got min 3, max 2"),
        (lambda: demand("a", gpus=0),
         "endpoint 'a': gpus_per_replica must be at least 1, got 0"),
        (lambda: demand("a", tier="exclusive"),
         "endpoint 'a': tier 'exclusive' is not one of shared, dedicated"),
        (lambda: PoolSpec("l4", (), "on-demand", 0, 1),
         "pool 'l4': instance_types is empty"),
        (lambda: PoolSpec("l4", ("g6.xlarge",), "reserved", 0, 1),
         "pool 'l4': capacity_type 'reserved' is not one of on-demand, spot"),
        (lambda: PoolSpec("l4", ("g6.xlarge",), "on-demand", 3, 2),
         "pool 'l4': sizes must satisfy 0 <= min_size <= max_size, got min_size 3, max_size 2"),
        (lambda: plan_capacity([demand("a")], {"gpu": PoolSpec("l4", ("g6.xlarge",))}, L4),
         "pool 'gpu' is configured with the name 'l4'"),
        (lambda: plan_capacity([demand("a")], pool(types=("g9.huge",)), L4),
         "instance type 'g9.huge' is not in the GPU catalog"),
    ],
)
def test_bad_input_is_one_line_naming_the_problem(make, message):
    with pytest.raises(InputError) as error:
        make()
    assert str(error.value).startswith(message)
    assert "\n" not in str(error.value)


# ---------------------------------------------------------------------------
# Properties


POOL_SHAPES = [
    ("g6.xlarge",),
    ("g6.12xlarge",),
    ("g6.48xlarge",),
    ("g6.12xlarge", "g6.48xlarge"),
    ("g6.xlarge", "g6.12xlarge"),
    ("g6.xlarge", "g6.12xlarge", "g6.48xlarge"),
]
TENANTS = ["acme", "bank", "corp", "dept"]


ANY_SIZE = st.integers(1, 8)
ANY_SHAPE = st.sampled_from(POOL_SHAPES)


@st.composite
def fleets(draw, sizes=ANY_SIZE, shapes=ANY_SHAPE, max_endpoints=25):
    types = draw(shapes)
    largest = max(L4.get(t).gpus for t in types)
    count = draw(st.integers(0, max_endpoints))
    demands = []
    for i in range(count):
        low = draw(st.integers(0, 3))
        demands.append(Demand(
            endpoint=f"e{i}",
            tenant=draw(st.sampled_from(TENANTS)),
            pool="l4",
            gpus_per_replica=min(draw(sizes), largest),
            min_replicas=low,
            max_replicas=max(1, low + draw(st.integers(0, 3))),
            tier=draw(st.sampled_from(["shared", "shared", "dedicated"])),
        ))
    return demands, pool(types=types)


def assert_valid_placement(plan: CapacityPlan, demands: list[Demand], scale: str) -> ScalePlan:
    scale_plan = plan.pools["l4"].scale(scale)
    by_name = {d.endpoint: d for d in demands}
    placed = Counter()
    for node in scale_plan.nodes:
        assert node.instance_type in plan.pools["l4"].pool.instance_types
        assert node.gpus == L4.get(node.instance_type).gpus
        gpus_used = [g for r in node.replicas for g in r.gpu_indices]
        # No GPU oversubscribed, none shared by two replicas (so never by two tenants).
        assert len(gpus_used) == len(set(gpus_used)) <= node.gpus
        assert all(0 <= g < node.gpus for g in gpus_used)
        for replica in node.replicas:
            d = by_name[replica.endpoint]
            # All of a replica's GPUs sit on this one node.
            assert len(replica.gpu_indices) == d.gpus_per_replica
            assert replica.tenant == d.tenant
            if d.tier == "dedicated":
                assert node.dedicated_tenant == d.tenant
            else:
                assert node.dedicated_tenant is None
            placed[(replica.endpoint, replica.replica)] += 1
        if node.dedicated_tenant is not None:
            assert {r.tenant for r in node.replicas} == {node.dedicated_tenant}
    expected = Counter((d.endpoint, r) for d in demands for r in range(d.replicas(scale)))
    assert placed == expected  # every replica placed exactly once
    return scale_plan


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fleets())
def test_every_placement_is_valid_and_never_beats_its_lower_bounds(fleet):
    demands, pools = fleet
    plan = plan_capacity(demands, pools, L4)
    for scale in ("min", "max"):
        scale_plan = assert_valid_placement(plan, demands, scale)
        assert scale_plan.node_count >= scale_plan.lower_bound
        assert scale_plan.on_demand_hourly >= scale_plan.cost_lower_bound
        assert scale_plan.gap >= 0


@settings(max_examples=150, deadline=None)
@given(fleets(sizes=st.sampled_from([1, 2, 4, 8]),
              shapes=st.sampled_from([("g6.xlarge",), ("g6.12xlarge",), ("g6.48xlarge",)])))
def test_power_of_two_replicas_on_one_node_type_use_the_fewest_nodes_possible(fleet):
    # Divisible sizes: best-fit decreasing leaves at most one node per group part
    # empty, so the plan meets the GPU-count bound exactly.
    demands, pools = fleet
    plan = plan_capacity(demands, pools, L4)
    capacity = L4.get(pools["l4"].instance_types[0]).gpus
    for scale in ("min", "max"):
        groups = Counter()
        for d in demands:
            groups[d.tenant if d.tier == "dedicated" else None] += d.gpus_per_replica * d.replicas(scale)
        fewest = sum(math.ceil(gpus / capacity) for gpus in groups.values())
        assert plan.pools["l4"].scale(scale).node_count == fewest


def _cheapest_packing(sizes: list[int], catalog: GpuCatalog, types: tuple[str, ...]) -> Decimal:
    """The true optimum by brute force: every partition of the replicas into nodes."""
    def partitions(items):
        if not items:
            yield []
            return
        first, rest = items[0], items[1:]
        for p in partitions(rest):
            for i in range(len(p)):
                yield p[:i] + [[first] + p[i]] + p[i + 1:]
            yield [[first]] + p

    best = None
    for partition in partitions(sizes):
        cost = Decimal(0)
        for node in partition:
            fitting = [catalog.get(t).on_demand_hourly for t in types if catalog.get(t).gpus >= sum(node)]
            if not fitting:
                break
            cost += min(fitting)
        else:
            best = cost if best is None else min(best, cost)
    return best


@settings(max_examples=120, deadline=None)
@given(st.sampled_from(POOL_SHAPES), st.lists(st.integers(1, 8), min_size=1, max_size=6))
def test_cost_lower_bound_never_exceeds_the_true_optimum(types, sizes):
    largest = max(L4.get(t).gpus for t in types)
    sizes = [min(s, largest) for s in sizes]
    demands = [demand(f"e{i}", gpus=s) for i, s in enumerate(sizes)]
    scale_plan = plan_capacity(demands, pool(types=types), L4).pools["l4"].min

    optimum = _cheapest_packing(sizes, L4, types)
    assert scale_plan.cost_lower_bound <= optimum <= scale_plan.on_demand_hourly
