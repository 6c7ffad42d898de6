"""The pool simulator: hand-checked scenarios and properties."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from privend.autoscaling import scaling_policy
from privend.capacity import Demand, PoolSpec
from privend.catalog import gpu_catalog
from privend.errors import InputError
from privend.simulator import ColdStartModel, SimEndpoint, desired_replicas, simulate
from privend.traffic import Traffic

STEP = 60
START = datetime(2026, 11, 2, tzinfo=UTC)
PREFILL = 1000.0  # tokens/s: a step's prompt tokens / (PREFILL x STEP) is its work in replicas
WEIGHTS = 16_000_000_000  # 32 s to load at 500 MB/s
G6 = PoolSpec("l4", ("g6.xlarge",), "on-demand", 0, 20)
G6_PRICE = Decimal("0.8048")
G6_TYPE = gpu_catalog().get("g6.xlarge")
# 10 s scan + 180 s boot, 35 s pull, 32 s weights, 30 s engine start.
NODE_WAIT, START_ON_NEW_NODE, START_ON_WARM_NODE = 190, 287, 97


def traffic(**work: list[float]) -> Traffic:
    steps = len(next(iter(work.values())))
    return Traffic(START, STEP, steps, {e: np.array(w) * PREFILL * STEP for e, w in work.items()},
                   {e: np.zeros(steps) for e in work})


def endpoint(name: str = "a", tenant: str = "t1", pool: str = "l4", min_replicas: int = 1, max_replicas: int = 8,
             gpus: int = 1, tier: str = "shared") -> SimEndpoint:
    return SimEndpoint(Demand(name, tenant, pool, gpus, min_replicas, max_replicas, tier), PREFILL, 100.0, WEIGHTS)


def test_work_counts_prompt_and_generated_tokens_at_their_own_rates():
    e = endpoint()
    t = Traffic(START, STEP, 1, {"a": np.array([60_000.0])}, {"a": np.array([3_000.0])})
    result = simulate([e], {"l4": G6}, t)
    # 60,000 / (1,000 x 60) + 3,000 / (100 x 60) = 1.5 replicas of work for one minute.
    assert result.endpoints[0].work_replica_hours == pytest.approx(1.5 * 60 / 3600)


def test_a_step_up_is_seen_late_waits_for_nodes_and_serves_after_the_cold_start():
    work = [1.0] * 10 + [3.0] * 20 + [1.0] * 30
    result = simulate([endpoint()], {"l4": G6}, traffic(a=work))
    e = result.endpoints[0]
    # KEDA sees the step 90 s late (two 60 s steps): two replicas wanted at 720 s, on two new nodes.
    assert e.cold_start_waits.count == 2
    assert e.cold_start_waits.waited_for_node == 2
    assert e.cold_start_waits.max_seconds == START_ON_NEW_NODE
    # Serving from 1,007 s (step 17): steps 10 to 16 leave two replicas of work unserved.
    assert e.unserved_replica_hours == pytest.approx(7 * 2 * 60 / 3600)
    assert e.peak_replicas == 3


def test_scale_down_waits_for_the_stabilisation_window_and_nodes_for_their_unneeded_time():
    work = [1.0] * 10 + [3.0] * 20 + [1.0] * 30
    result = simulate([endpoint()], {"l4": G6}, traffic(a=work))
    pool = result.pools[0]
    # Two extra nodes from step 12; the replicas go at step 37 (300 s after KEDA last saw 3),
    # the empty nodes 600 s later (step 47): 35 steps each, and the first node all 60.
    assert pool.node_hours_by_type == {"g6.xlarge": pytest.approx((60 + 2 * 35) / 60)}
    assert pool.cost == (Decimal(130 * 60) * G6_PRICE / 3600).quantize(Decimal("0.01"))
    assert result.endpoints[0].replica_hours == pytest.approx((60 + 2 * (37 - 12)) / 60)


def test_scale_to_zero_keeps_the_last_replica_for_the_cooldown():
    policy = scaling_policy(0, 4)
    desired = desired_replicas(np.array([1.0] + [0.0] * 30), policy, STEP)
    # Seen 2 steps late, then held 900 s (15 steps) after the last work.
    assert list(desired[:2]) == [1, 1]
    assert desired[17] == 1 and desired[18] == 0


def test_warm_headroom_lets_a_scale_up_start_without_waiting_for_a_node():
    work = [1.0] * 5 + [2.0] * 25
    cold = simulate([endpoint()], {"l4": G6}, traffic(a=work), {"l4": 0})
    warm = simulate([endpoint()], {"l4": G6}, traffic(a=work), {"l4": 1})
    assert cold.endpoints[0].cold_start_waits.max_seconds == START_ON_NEW_NODE
    assert warm.endpoints[0].cold_start_waits.max_seconds == START_ON_WARM_NODE  # a fresh warm node: pull too
    assert warm.endpoints[0].cold_start_waits.waited_for_node == 0
    # The warm node costs money: pooled costs more, and the overhead line shows it.
    assert warm.pooled_cost > cold.pooled_cost
    assert warm.pools[0].headroom_cost > 0


def test_two_endpoints_in_opposite_time_zones_share_one_node_in_turn():
    # a's users stop at step 30, b's start at step 50: a's last replica goes at step 47 (seen 2 steps late,
    # 900 s cooldown), and b, seen at step 52, lands on a's node within its 10 unneeded minutes.
    a = [1.0] * 30 + [0.0] * 70
    b = [0.0] * 50 + [1.0] * 50
    result = simulate([endpoint("a", "t1", min_replicas=0), endpoint("b", "t2", min_replicas=0)], {"l4": G6},
                      traffic(a=a, b=b))
    assert result.pools[0].peak_nodes == 1
    assert result.pools[0].node_hours_by_type == {"g6.xlarge": pytest.approx(100 / 60)}
    b_waits = result.endpoints[1].cold_start_waits
    assert (b_waits.count, b_waits.waited_for_node) == (1, 0)
    assert b_waits.max_seconds == START_ON_WARM_NODE - 35  # the node has the engine image already
    # On instances of their own, each waits for a node and pays its own idle tail.
    assert result.dedicated_autoscaled_waits.waited_for_node == 1
    assert result.pooled_cost < result.dedicated_autoscaled_cost < result.dedicated_at_peak_cost


def test_a_gpu_is_never_shared_and_dedicated_tenants_get_their_own_nodes():
    four = PoolSpec("l4x4", ("g6.12xlarge",), "on-demand", 0, 20)
    eps = [endpoint("a", "t1", "l4x4", gpus=1), endpoint("b", "t2", "l4x4", gpus=2),
           endpoint("c", "t3", "l4x4", gpus=1, tier="dedicated")]
    result = simulate(eps, {"l4x4": four}, traffic(a=[1.0] * 5, b=[1.0] * 5, c=[1.0] * 5))
    # a and b share one 4-GPU node (3 GPUs held); c, dedicated, has a node of its own.
    assert result.pools[0].peak_nodes == 2
    assert result.pools[0].gpu_hours_held == pytest.approx(4 * 5 / 60)


def test_an_endpoint_without_traffic_or_pool_is_refused():
    with pytest.raises(InputError, match="endpoint 'b' has no traffic in the window"):
        simulate([endpoint("b")], {"l4": G6}, traffic(a=[1.0]))
    with pytest.raises(InputError, match="pool 'h100' is not configured"):
        simulate([endpoint("a", pool="h100")], {"l4": G6}, traffic(a=[1.0]))


def test_attributed_plus_overhead_is_the_pool_cost():
    result = simulate([endpoint("a"), endpoint("b", "t2")], {"l4": G6}, traffic(a=[1.0, 2.0, 0.5] * 10,
                                                                                  b=[0.2] * 30), {"l4": 1})
    pool = result.pools[0]
    assert abs(pool.attributed_cost + pool.overhead_cost - pool.cost) <= Decimal("0.01")


def test_cold_start_grows_with_the_weights():
    model = ColdStartModel()
    assert model.replica_start_seconds(140_000_000_000, True) > model.replica_start_seconds(16_000_000_000, True)


fleets = st.lists(
    st.tuples(st.integers(0, 2), st.integers(1, 4), st.lists(st.floats(0, 4), min_size=30, max_size=30)),
    min_size=1, max_size=4)


def _run(fleet, scale: float = 1.0, headroom: int = 0):
    eps = [endpoint(f"e{i}", f"t{i}", min_replicas=mn, max_replicas=mn + mx) for i, (mn, mx, _) in enumerate(fleet)]
    t = traffic(**{f"e{i}": [w * scale for w in work] for i, (_, _, work) in enumerate(fleet)})
    return simulate(eps, {"l4": G6}, t, {"l4": headroom})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fleet=fleets, headroom=st.integers(0, 2))
def test_pooled_never_beats_the_lower_bound(fleet, headroom):
    result = _run(fleet, headroom=headroom)
    assert result.pooled_cost >= result.lower_bound_cost


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fleet=fleets)
def test_without_headroom_pooled_never_costs_more_than_dedicated_at_peak(fleet):
    result = _run(fleet)
    assert result.pooled_cost <= result.dedicated_at_peak_cost


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fleet=fleets, factor=st.floats(1.0, 3.0))
def test_more_traffic_never_lowers_the_lower_bound_or_the_peak_baseline(fleet, factor):
    base, more = _run(fleet), _run(fleet, scale=factor)
    assert more.dedicated_at_peak_cost >= base.dedicated_at_peak_cost
    assert more.lower_bound_cost >= base.lower_bound_cost


def test_replicas_removed_while_starting_leave_the_serving_count_right():
    # Short bursts and slow nodes (15 minutes): KEDA adds replicas and drops them before they serve.
    # Afterwards a steady 3 replicas of work at MAX must be served in full once the last start is over.
    slow = ColdStartModel(g_family_node_ready_seconds=900)
    rng = np.random.default_rng(5)
    bursts: list[float] = []
    while len(bursts) < 600:
        bursts += [3.0, 3.0] + [0.0] * int(rng.integers(8, 14))
    eps = [endpoint(f"e{i}", f"t{i}", min_replicas=1, max_replicas=3) for i in range(6)]
    before = simulate(eps, {"l4": G6}, traffic(**{f"e{i}": bursts for i in range(6)}), cold_start=slow)
    after = simulate(eps, {"l4": G6}, traffic(**{f"e{i}": bursts + [3.0] * 200 for i in range(6)}),
                     cold_start=slow)
    start = slow.node_ready_seconds(G6_TYPE) + slow.replica_start_seconds(WEIGHTS, False)
    settle_steps = 3 + start // STEP + 1
    for b, a in zip(before.endpoints, after.endpoints, strict=True):
        assert b.cold_start_waits.count > 20
        assert a.unserved_replica_hours - b.unserved_replica_hours <= 2 * settle_steps * STEP / 3600 + 1e-9


MIXED = PoolSpec("l4", ("g6.xlarge", "g6.12xlarge"), "on-demand", 0, 40)
tenant_fleets = st.lists(
    st.tuples(st.integers(0, 2),  # tenant
              st.sampled_from(["shared", "shared", "dedicated"]),
              st.sampled_from([1, 1, 2, 4]),  # GPUs per replica
              st.integers(0, 1), st.integers(1, 4),  # min replicas, extra to max
              st.lists(st.floats(0, 4), min_size=40, max_size=40)),
    min_size=1, max_size=5)


def _tenant_run(fleet, headroom: int, scale: float = 1.0, audit=None):
    tiers = {}
    for t, tier, *_ in fleet:
        tiers.setdefault(t, tier)  # one tier per tenant, as the registry keeps it
    eps = [endpoint(f"e{i}", f"t{t}", min_replicas=mn, max_replicas=mn + mx, gpus=g, tier=tiers[t])
           for i, (t, _, g, mn, mx, _) in enumerate(fleet)]
    work = {f"e{i}": [w * scale for w in ws] for i, (*_, ws) in enumerate(fleet)}
    return eps, simulate(eps, {"l4": MIXED}, traffic(**work), {"l4": 4 * headroom}, audit=audit)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fleet=tenant_fleets, headroom=st.integers(0, 2))
def test_no_placement_shares_a_gpu_between_tenants_or_puts_anyone_on_a_dedicated_tenants_node(fleet, headroom):
    events = []
    eps, _ = _tenant_run(fleet, headroom, audit=events.append)
    tier = {e.name: e.demand.tier for e in eps}
    used: dict[int, int] = {}
    holders: dict[int, dict[str, int]] = {}
    for p in events:
        used[p.node] = used.get(p.node, 0) + p.gpus
        # Whole GPUs, never more than the node has: no GPU ever holds two replicas, so never two tenants.
        assert 0 <= used[p.node] <= p.node_gpus
        if p.gpus > 0:
            if p.node_tenant is None:
                assert tier[p.endpoint] == "shared"
            else:
                assert p.node_tenant == p.tenant and tier[p.endpoint] == "dedicated"
        mine = holders.setdefault(p.node, {})
        mine[p.endpoint] = mine.get(p.endpoint, 0) + (1 if p.gpus > 0 else -1)
        assert mine[p.endpoint] >= 0


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fleet=fleets, factor=st.floats(1.0, 3.0))
def test_more_traffic_never_lowers_the_pooled_cost_of_single_gpu_replicas(fleet, factor):
    # Replicas of one size on one node type. With replicas of several sizes on several types it does not
    # hold: placement is online, and more traffic can pack better (see the next test; README).
    assert _run(fleet, scale=factor).pooled_cost >= _run(fleet).pooled_cost


def test_more_traffic_can_pack_better_when_replicas_of_two_sizes_arrive_in_another_order():
    # a (2-GPU replicas) and b (1 GPU) share a pool of 1- and 4-GPU nodes. At the base traffic a's first
    # replica opens a 4-GPU node, b joins it, and a's second replica a minute later finds 1 GPU free:
    # a second 4-GPU node. At twice the traffic a's two replicas arrive together and fill one 4-GPU
    # node, and b gets a 1-GPU node: cheaper for more work.
    idle = [0.0] * 36
    eps = [endpoint("a", "t0", min_replicas=0, max_replicas=2, gpus=2),
           endpoint("b", "t0", min_replicas=0, max_replicas=1)]

    def pooled(scale: float) -> Decimal:
        work = traffic(a=[w * scale for w in idle + [1.0, 2.0, 0.0, 0.0]], b=[w * scale for w in idle + [1.0, 0, 0, 0]])
        return simulate(eps, {"l4": MIXED}, work).pooled_cost

    assert pooled(2.0) < pooled(1.0)


def test_the_baseline_in_a_second_process_gives_the_same_result():
    eps = [endpoint("a", "t1", min_replicas=0, max_replicas=4), endpoint("b", "t2", max_replicas=3, gpus=2),
           endpoint("c", "t3", tier="dedicated")]
    t = traffic(a=[0.0, 2.5, 3.0, 0.4] * 10, b=[1.0, 2.0] * 20, c=[0.5] * 40)
    one = simulate(eps, {"l4": MIXED}, t, {"l4": 2}, workers=1)
    two = simulate(eps, {"l4": MIXED}, t, {"l4": 2}, workers=2)
    assert two.to_dict() == one.to_dict()
    assert one.dedicated_autoscaled_cost > 0
