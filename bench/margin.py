"""Margin per plan: bench/pooling.py's fleet, billed on the plans catalog, against what serving it costs.

    python bench/margin.py [--seed N] [--size 100] [--days 2] [--headroom N] [--plans stacks/plans.yaml]

The fleet, its pools and its traffic are bench/pooling.py's (`fleet()`, `POOLS`, the synthetic traffic
from `MONDAY`), simulated pooled for `--days` with the warm headroom per pool that `capacity apply`
would choose on that traffic (99 % of scale-ups on a warm node; `--headroom N` sets N GPUs per pool instead). Everything the window measures is scaled to a month of
730 hours (privend.cost.HOURS_PER_MONTH): tokens, attributed compute and the pools' overhead alike.

Plans per endpoint, two fixed assignments (`--assign`, default both):
- sized: the plan with the smallest bundled quota that covers the endpoint's monthly tokens (ties:
  the lower monthly fee); an endpoint no quota covers gets the plan with the largest quota. That is
  the plan a customer sizing the subscription to the traffic picks.
- round-robin: endpoint i gets the catalog's plan i mod the number of plans. The fleet's endpoints are
  drawn independently, so each plan sees a like sample of the same traffic mix: every plan is priced
  against it, also those the sized rule never picks.
The month is then rated by privend.billing.rating as billed, one window of the whole month (fraction
1): base fee, overage at the plan's rate, capped at its protection (`max_overage`). "capped" counts
endpoints whose overage reached the protection: a hard-cap plan would suspend them, so the compute
priced for them is what serving all their traffic costs, not what a suspended endpoint costs.

Costs per endpoint: its attributed compute in the simulation (GPU-hours its replicas hold, at the
per-GPU on-demand price of their nodes), and network for the whole month (privend.margin.network_cost:
NLB, one NLCU, PrivateLink in two AZs). The pools' overhead (warm headroom, floors, fragmentation) is
one row of its own, never spread over plans. Prints the figures and the seed; never asserts.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from datetime import timedelta
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pooling import MONDAY, POOLS, fleet  # noqa: E402  (bench/pooling.py, this script's folder)

from privend.billing.plans import Plan, load_plans  # noqa: E402
from privend.billing.rating import Window, cents_to_decimal, rate_window  # noqa: E402
from privend.catalog import gpu_catalog  # noqa: E402
from privend.cost import HOURS_PER_MONTH, cents  # noqa: E402
from privend.margin import network_cost, percent  # noqa: E402
from privend.simulator import choose_headroom, simulate  # noqa: E402
from privend.traffic import synthetic  # noqa: E402

US_PER_HOUR = 3_600_000_000


def plan_for(monthly_tokens: int, plans: list[Plan]) -> Plan:
    """The smallest bundled quota covering `monthly_tokens`, else the largest quota there is."""
    covering = [p for p in plans if p.included_tokens >= monthly_tokens]
    if covering:
        return min(covering, key=lambda p: (p.included_tokens, p.monthly_fee, p.name))
    return max(plans, key=lambda p: (p.included_tokens, -p.monthly_fee, p.name))


ASSIGNMENTS = {
    "sized": "the smallest bundled quota covering the endpoint's monthly tokens, else the largest quota",
    "round-robin": "endpoint i gets the catalog's plan i mod the number of plans",
}


def print_table(rows: dict[str, dict[str, Decimal]], plans: list[Plan], overhead: Decimal) -> None:
    print(f"{'plan':<17}{'endpoints':>10}{'capped':>8}{'tokens/month':>20}{'revenue':>15}{'compute':>15}"
          f"{'network':>12}{'margin':>15}{'margin %':>12}")
    totals: dict[str, Decimal] = defaultdict(Decimal)
    order = {p.name: i for i, p in enumerate(plans)}
    for name in sorted(rows, key=lambda n: order[n]):
        row = rows[name]
        margin = row["revenue"] - row["compute"] - row["network"]
        for key in ("endpoints", "capped", "tokens", "revenue", "compute", "network"):
            totals[key] += row[key]
        print(f"{name:<17}{row['endpoints']:>10}{row['capped']:>8}{row['tokens']:>20,}{money(row['revenue']):>15}"
              f"{money(row['compute']):>15}{money(row['network']):>12}{money(margin):>15}"
              f"{share_text(margin, row['revenue']):>12}" + ("   LOSES MONEY" if margin < 0 else ""))
    print(f"{'platform overhead':<17}{'':>10}{'':>8}{'':>20}{'':>15}{money(overhead):>15}{'':>12}"
          f"{money(-overhead):>15}")
    margin = totals["revenue"] - totals["compute"] - overhead - totals["network"]
    print(f"{'total':<17}{totals['endpoints']:>10}{totals['capped']:>8}{totals['tokens']:>20,}"
          f"{money(totals['revenue']):>15}{money(totals['compute'] + overhead):>15}{money(totals['network']):>12}"
          f"{money(margin):>15}{share_text(margin, totals['revenue']):>12}")


def share_text(margin: Decimal, revenue: Decimal) -> str:
    share = percent(margin, revenue)
    return "n/a" if share is None else f"{share} %"


def money(amount: Decimal) -> str:
    return f"-${-amount:,.2f}" if amount < 0 else f"${amount:,.2f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--days", type=int, default=2)
    parser.add_argument("--headroom", type=int, help="warm GPUs per pool (default: chosen for 99 %% ready scale-ups)")
    parser.add_argument("--assign", choices=["sized", "round-robin", "both"], default="both",
                        help="how endpoints get plans (module docstring)")
    parser.add_argument("--plans", type=Path, default=Path(__file__).resolve().parent.parent / "stacks" / "plans.yaml")
    args = parser.parse_args()

    plans = list(load_plans(args.plans).values())
    endpoints, profiles = fleet(args.size, args.seed)
    end = MONDAY + timedelta(days=args.days)
    traffic = synthetic(profiles, args.seed, MONDAY, end, 60)
    began = time.perf_counter()
    if args.headroom is None:
        choices = choose_headroom(endpoints, POOLS, traffic)
        headroom, pod_gpus = {n: c.gpus for n, c in choices.items()}, {n: c.pod_gpus for n, c in choices.items()}
    else:
        headroom, pod_gpus = dict.fromkeys(POOLS, args.headroom), dict.fromkeys(POOLS, 1)
    result = simulate(endpoints, POOLS, traffic, headroom, headroom_pod_gpus=pod_gpus)
    seconds = time.perf_counter() - began
    window_hours = Fraction(args.days * 24)
    month_us = int(HOURS_PER_MONTH) * US_PER_HOUR
    to_month = Fraction(HOURS_PER_MONTH) / window_hours

    print(f"seed {args.seed}, {args.size} endpoints, {args.days} days from {MONDAY:%Y-%m-%d} at 60 s steps, "
          f"scaled to a month of {HOURS_PER_MONTH} h; warm headroom {', '.join(f'{n} {g} GPUs' for n, g in headroom.items())}; "
          f"prices read {gpu_catalog().prices_read_on}; plans from {args.plans.name}")

    network = network_cost(int(HOURS_PER_MONTH) * US_PER_HOUR)
    monthly_tokens = {}
    for e in result.endpoints:
        tokens = float(traffic.context_tokens[e.name].sum() + traffic.generated_tokens[e.name].sum()) \
            if e.name in traffic.context_tokens else 0.0
        monthly_tokens[e.name] = round(Fraction(tokens) * to_month)
    overhead = cents(Fraction(result.overhead_cost) * to_month)
    assignments = {
        "sized": lambda i, name: plan_for(monthly_tokens[name], plans),
        "round-robin": lambda i, name: plans[i % len(plans)],
    }
    for label in (["sized", "round-robin"] if args.assign == "both" else [args.assign]):
        assign = assignments[label]
        rows: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
        for i, e in enumerate(result.endpoints):
            plan = assign(i, e.name)
            rated = rate_window(Window(e.name, e.tenant, plan, 0, month_us, Fraction(1)), monthly_tokens[e.name])
            row = rows[plan.name]
            row["endpoints"] += 1
            row["capped"] += rated.cap_reached
            row["tokens"] += monthly_tokens[e.name]
            row["revenue"] += cents_to_decimal(rated.cents)
            row["compute"] += cents(Fraction(e.attributed_cost) * to_month)
            row["network"] += network
        print(f"\nplans {'sized to each endpoint' if label == 'sized' else 'round-robin over the catalog'} "
              f"({ASSIGNMENTS[label]}), USD a month")
        print_table(rows, plans, overhead)
    print(f"\npooled cost of the window ${result.pooled_cost:,.2f} (attributed "
          f"${result.attributed_cost:,.2f}, overhead ${result.overhead_cost:,.2f}); simulation {seconds:.1f} s")


if __name__ == "__main__":
    main()
