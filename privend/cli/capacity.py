"""`privend capacity ...`: GPU nodes per pool for the registered endpoints, their cost, and the pools' bounds."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import click

from privend.cli import env_option, format_option, pass_app
from privend.cli.render import emit_json, emit_table
from privend.cost import HOURS_PER_MONTH, SPOT_PRICE_FACTOR, CostEstimate, PoolCost, PoolScaleCost
from privend.errors import InputError
from privend.service import capacity as capacity_service
from privend.service.app import App
from privend.traffic import parse_time


def money(amount: Decimal) -> str:
    return f"-${-amount:,.2f}" if amount < 0 else f"${amount:,.2f}"


def percent(value: Fraction | float) -> str:
    return f"{float(value) * 100:.1f} %"


def saving(fraction: Fraction) -> str:
    return f"saves {percent(fraction)}" if fraction >= 0 else f"costs {percent(-fraction)} more"


def node_mix(nodes_by_type: dict[str, int]) -> str:
    return ", ".join(f"{count}x {name}" for name, count in nodes_by_type.items()) or "none"


def where(placements) -> str:
    """Replicas of one endpoint at one scale: `r0 #0 g6.12xlarge GPU 0-1, r1 #1 ...`."""
    if not placements:
        return "none (0 replicas)"
    parts = []
    for p in placements:
        gpus = p.gpu_indices
        span = str(gpus[0]) if len(gpus) == 1 else f"{gpus[0]}-{gpus[-1]}"
        parts.append(f"r{p.replica} #{p.node_index} {p.instance_type} GPU {span}")
    return ", ".join(parts)


def placements_json(capacity_plan, endpoint: str) -> dict:
    return {scale: [p.to_dict() for p in placed] for scale, placed in capacity_plan.placements_for(endpoint).items()}


def _headroom(pool: PoolCost) -> str:
    added = pool.min.headroom_nodes
    return f"{pool.warm_headroom_gpus}" + (f" (adds {node_mix(added)})" if added else "")


def _overhead(scale: PoolScaleCost) -> str:
    return money(scale.platform_overhead_monthly)


@click.group()
def capacity() -> None:
    """GPU capacity of an environment's pools: plan it, price it, and write the pools' bounds."""


@capacity.command("plan")
@env_option
@format_option
@pass_app
def plan(app: App, env, fmt) -> None:
    """Nodes per pool at min and max scale, where replicas land, and the monthly cost."""
    render_capacity(capacity_service.plan_capacity(app, env), fmt)


def render_capacity(report: capacity_service.CapacityReport, fmt: str, detail: bool = True) -> None:
    """The capacity plan and its costs; without `detail` (the demo's summary) the per-replica placements
    and the list of assumptions are left out."""
    env, capacity_plan, fits, estimate = report.env, report.plan, report.fits, report.estimate

    if fmt == "json":
        emit_json({
            "env": env,
            "prices_read_on": capacity_plan.prices_read_on,
            "pools": [{"name": name, **pool_plan.to_dict(), "fit": fits[name].to_dict()}
                      for name, pool_plan in capacity_plan.pools.items()],
            "endpoints": [{**d.to_dict(), "placements": placements_json(capacity_plan, d.endpoint)}
                          for d in capacity_plan.demands],
            "cost": estimate.to_dict(),
        })
        return

    rows = []
    for name, pool_plan in capacity_plan.pools.items():
        spec, low, high, fit = pool_plan.pool, pool_plan.min, pool_plan.max, fits[name]
        if fit.cheapest:
            fits_text = "yes"
        elif fit.fits:
            fits_text = f"yes, as {fit.fewest_nodes}x {fit.largest_type}"
        else:
            fits_text = f"NO: needs {fit.fewest_nodes}"
        rows.append((
            f"{name} ({spec.capacity_type})", f"{spec.min_size}..{spec.max_size}",
            f"{low.node_count} ({node_mix(low.nodes_by_type())})",
            f"{high.node_count} ({node_mix(high.nodes_by_type())})",
            f"{percent(low.gpu_utilisation)} / {percent(high.gpu_utilisation)}",
            f"{low.lower_bound} / {high.lower_bound}",
            f"{percent(low.gap)} / {percent(high.gap)}",
            fits_text,
        ))
    emit_table(f"capacity plan of env {env}: GPU nodes per pool",
               ["pool", "min..max", "nodes at min", "nodes at max", "GPU use min / max", "lower bound min / max",
                "gap min / max", "fits maxSize"], rows,
               drop=["gap min / max", "lower bound min / max", "GPU use min / max", "min..max"])
    click.echo("min..max: the pool's configured minSize..maxSize; lower bound: fewest nodes any placement needs; "
               "gap: the plan's hourly price over the lowest price any placement could reach (a proven bound). "
               "GPUs are never shared; dedicated-tier tenants get nodes of their own.")

    if capacity_plan.demands:
        if detail:
            emit_table("where replicas land (r<replica> #<node> <type> GPU <indices>)",
                       ["endpoint", "tenant", "pool", "tier", "GPUs/replica", "replicas", "at min scale",
                        "at max scale"],
                       [(d.endpoint, d.tenant, d.pool, d.tier, d.gpus_per_replica,
                         f"{d.min_replicas}..{d.max_replicas}", where(placed["min"]), where(placed["max"]))
                        for d in capacity_plan.demands
                        for placed in [capacity_plan.placements_for(d.endpoint)]],
                       drop=["tier", "GPUs/replica", "tenant", "pool", "replicas"])
        spot = any(c.capacity_type == "spot" for c in estimate.endpoints)
        emit_table(f"monthly cost per endpoint, USD, on-demand (prices read {estimate.prices_read_on})",
                   ["endpoint", "pool", "GPUs min..max", "compute at min", "compute at max", "NLB", "PrivateLink",
                    "pooled at min", "pooled at max", *(["on spot at min"] if spot else []), "dedicated at peak",
                    "dedicated total", "saves at min"],
                   [(c.endpoint, f"{c.pool} ({c.capacity_type})", f"{c.gpus_at_min}..{c.gpus_at_max}",
                     money(c.compute_monthly), money(c.compute_at_max_monthly), money(c.nlb_monthly),
                     money(c.privatelink_monthly), money(c.total_monthly), money(c.total_at_max_monthly),
                     *([money(c.spot_total_monthly) if c.spot_total_monthly is not None else "-"] if spot else []),
                     f"{c.baseline_instances}x {c.baseline_instance_type}", money(c.baseline_total_monthly),
                     money(c.savings_monthly))
                    for c in estimate.endpoints],
                   drop=["compute at min", "compute at max", "NLB", "PrivateLink", "GPUs min..max", "pool",
                         *(["on spot at min"] if spot else []), "dedicated at peak"])
        if detail:
            click.echo("an endpoint pays for the GPU-hours its replicas hold (a dedicated-tier tenant also for the idle "
                       "GPUs of its own nodes); platform overhead stays with the pool. dedicated at peak: on-demand "
                       "instances of its own for its replicas MAX (no traffic here, so the peak is taken as MAX), "
                       "always on, plus the same network.")
    else:
        click.echo(f"no endpoints registered in env {env}: every pool needs 0 nodes (beyond its minSize)")
    if detail:
        render_pool_costs(estimate)
    click.echo(f"env {env}, on-demand, USD / month: pooled {money(estimate.pooled_monthly)} at min scale, "
               f"{money(estimate.pooled_at_max_monthly)} at max scale (platform overhead "
               f"{money(estimate.platform_overhead_monthly)} at min, {money(estimate.platform_overhead_at_max_monthly)} "
               "at max); "
               f"dedicated at peak (peak taken as replicas MAX) {money(estimate.baseline_monthly)}: pooled "
               f"{saving(estimate.savings_fraction)} at min scale, {saving(estimate.savings_at_max_fraction)} at max "
               f"scale (prices read {estimate.prices_read_on})")
    if estimate.spot_pooled_monthly is not None:
        click.echo(f"on spot (assumed {SPOT_PRICE_FACTOR} x on-demand): pooled "
                   f"{money(estimate.spot_pooled_monthly)} / month at min scale, not in any saving")
    if not detail:
        click.echo("(`privend capacity plan`: each pool's overhead, where replicas land, the assumptions; "
                   "`privend capacity simulate`: costs over traffic)")
        return
    click.echo(f"what a month really costs depends on how long endpoints run above MIN: `privend capacity simulate "
               f"--env {env} --synthetic SEED` (or --traffic, --period) prices pooled and dedicated at peak over "
               "traffic")
    click.echo("assumptions:")
    for assumption in estimate.assumptions:
        click.echo(f"  - {assumption}")


def render_pool_costs(estimate: CostEstimate) -> None:
    """Per pool, on-demand: its cost at min and max scale, what endpoints are attributed, the platform overhead."""
    any_spot = any(p.capacity_type == "spot" for p in estimate.pools)
    emit_table("monthly cost per pool, USD, on-demand",
               ["pool", "capacity", "nodes min / max", "floor nodes (minSize)", "warm headroom GPUs",
                "at min", "attributed at min", "platform overhead at min", "at max", "platform overhead at max",
                *(["on spot at min"] if any_spot else [])],
               [(p.pool, p.capacity_type, f"{p.min.nodes} / {p.max.nodes}", p.floor_nodes,
                 _headroom(p), money(p.min.monthly), money(p.min.attributed_monthly),
                 _overhead(p.min), money(p.max.monthly), _overhead(p.max),
                 *([money(p.spot_monthly) if p.spot_monthly is not None else "-"] if any_spot else []))
                for p in estimate.pools],
               drop=["floor nodes (minSize)", "warm headroom GPUs", "capacity", "attributed at min",
                     "platform overhead at max", "nodes min / max"])
    click.echo("platform overhead: idle GPUs of shared nodes, floor nodes kept by minSize, nodes added for warm "
               "headroom; paid by the platform, not spread over endpoints.")


@capacity.command("apply")
@env_option
@click.option("--traffic", "traces", type=click.Path(path_type=Path), help="Size warm headroom on a directory "
              "of <endpoint>.csv traces.")
@click.option("--period", help="Size warm headroom on the usage ledger of billing period YYYY-MM "
              "(default: the last full period).")
@click.option("--synthetic", "seed", type=int, help="Size warm headroom on generated traffic of this seed.")
@click.option("--target", "target_percent", type=click.FloatRange(0, 100), show_default=True,
              default=capacity_service.DEFAULT_READY_TARGET_PERCENT,
              help="Scale-ups that must not wait for a node, in percent.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_app
def apply(app: App, env, traces, period, seed, target_percent, yes) -> None:
    """Write the planned GPU pool bounds and warm headroom into stacks/Pulumi.<env>.yaml.

    A bound is never lowered below what running endpoints (ready, deploying,
    suspended) need at their maximum scale. The warm headroom per pool
    (warmHeadroomGpus, in placeholders of warmHeadroomPodGpus) is the least with
    which --target percent of the simulated scale-ups start on a warm node.
    Shows the diff and the headroom's cost, and asks first.
    """
    given = _sources_given(traces, period, seed)
    if len(given) > 1:
        raise click.UsageError(f"give at most one of --traffic, --period, --synthetic (got {', '.join(given)})")
    source = (capacity_service.TrafficSource(traces=traces, period=period, seed=seed) if given else None)

    def show(change: capacity_service.BoundsChange) -> None:
        for b in change.bounds:
            desired = "" if b.new_desired is None else f", desiredSize {b.desired_size} -> {b.new_desired}"
            click.echo(f"pool {b.pool}: minSize {b.min_size} -> {b.new_min}, maxSize {b.max_size} -> {b.new_max}"
                       f"{desired} (plan: {b.planned_min} nodes at min, {b.planned_max} at max; running endpoints "
                       f"need {b.running_need} at max)")
        for line in headroom_lines(change):
            click.echo(line)

    def confirm(change: capacity_service.BoundsChange) -> None:
        show(change)
        click.echo(change.diff, nl=False)
        if not yes:
            click.confirm(f"Write these pool bounds and headroom to {change.path.name}?", abort=True)

    change = capacity_service.apply_capacity(app, env, confirm=confirm, source=source, target_percent=target_percent)
    if not change.diff:
        show(change)
        click.echo(f"nothing to change in {change.path.name}: the pool bounds and headroom already follow the plan")
        return
    click.echo(f"wrote {change.path.name}; `pulumi up -s {env}` applies the bounds to the node groups and the "
               "placeholders to the pools")


def _sources_given(traces, period, seed) -> list[str]:
    """The traffic-source options given (--traffic, --period, --synthetic), in that order."""
    return [name for name, value in (("--traffic", traces), ("--period", period), ("--synthetic", seed))
            if value is not None]


def headroom_lines(change: capacity_service.BoundsChange) -> list[str]:
    """One line per pool: the warm headroom chosen, the share of ready scale-ups, and what it costs."""
    lines = [f"warm headroom sized on {change.traffic} ({change.window_hours:,.0f} h simulated, on-demand prices)"]
    if change.unsimulated:
        lines.append(f"not simulated (model outside the catalog, throughput unknown): {', '.join(change.unsimulated)}")
    month = HOURS_PER_MONTH / Decimal(str(change.window_hours)) if change.window_hours else Decimal(0)
    for name, choice in change.headroom.items():
        chosen, without = choice.chosen, choice.without
        verdict = ("meets" if choice.met else "misses") + f" the {choice.target_percent:g} % target"
        extra = choice.extra_cost
        lines.append(
            f"pool {name}: warmHeadroomGpus {choice.gpus} in {choice.gpus // choice.pod_gpus} placeholders of "
            f"{choice.pod_gpus} GPU{'s' if choice.pod_gpus > 1 else ''}: {chosen.ready_percent:.2f} % of "
            f"{chosen.scale_ups} scale-ups start on a warm node ({verdict}; {without.ready_percent:.2f} % without "
            f"headroom); pool cost {money(chosen.pool_cost)} against {money(without.pool_cost)} without: "
            f"{'+' if extra >= 0 else '-'}{money(abs(extra))} for the window, about "
            f"{money((abs(extra) * month).quantize(Decimal('0.01')))} a month")
    return lines


def _instant(ctx, param, value):
    if value is None:
        return None
    try:
        return parse_time(value)
    except InputError as error:
        raise click.BadParameter(str(error)) from None


@capacity.command("simulate")
@env_option
@click.option("--traffic", "traces", type=click.Path(path_type=Path), help="Directory of <endpoint>.csv traces "
              "(TIMESTAMP,ContextTokens,GeneratedTokens).")
@click.option("--period", help="Billing period YYYY-MM: the usage ledger's hourly sums.")
@click.option("--synthetic", "seed", type=int, help="Seed of generated traffic.")
@click.option("--start", callback=_instant, help="Window start, ISO 8601 (UTC without an offset).")
@click.option("--end", callback=_instant, help="Window end, ISO 8601.")
@click.option("--step", "step_seconds", type=click.IntRange(1, 3600), default=60, show_default=True,
              help="Simulation step in seconds.")
@format_option
@pass_app
def simulate(app: App, env, traces, period, seed, start, end, step_seconds, fmt) -> None:
    """Replay traffic through the pools: autoscaling, cold starts, and cost against dedicated baselines."""
    given = _sources_given(traces, period, seed)
    if len(given) != 1:
        raise click.UsageError("give exactly one of --traffic DIR, --period YYYY-MM, --synthetic SEED"
                               + (f" (got {', '.join(given)})" if given else ""))
    source = capacity_service.TrafficSource(traces=traces, period=period, seed=seed)
    report = capacity_service.simulate_capacity(app, env, source, start=start, end=end, step_seconds=step_seconds)
    render_simulation(report, fmt)


def render_simulation(report: capacity_service.SimulationReport, fmt: str) -> None:
    result = report.result
    data = result.to_dict()
    if fmt == "json":
        emit_json({"env": report.env, "traffic": report.source, **data})
        return
    fleet = data["fleet"]
    emit_table(f"simulated endpoints of env {report.env} ({report.source}, {result.start} to {result.end}, "
               f"{result.step_seconds} s steps)",
               ["endpoint", "pool", "prefill tok/s", "decode tok/s", "replica-h", "peak", "GPU-h",
                "waits (n, node, p50, p95, max s)", "unserved replica-h", "attributed"],
               [(e.name, e.pool, f"{e.replica_prefill_tokens_per_second:,.0f}",
                 f"{e.replica_decode_tokens_per_second:,.0f}", f"{e.replica_hours:,.1f}", e.peak_replicas,
                 f"{e.gpu_hours:,.1f}",
                 f"{w.count}, {w.waited_for_node}, {w.p50_seconds:.0f}, {w.p95_seconds:.0f}, {w.max_seconds:.0f}",
                 f"{e.unserved_replica_hours:,.2f}", money(e.attributed_cost))
                for e in result.endpoints for w in [e.cold_start_waits]])
    emit_table("pools", ["pool", "warm headroom GPUs", "node-hours by type", "GPU-h held / all", "cost",
                         "attributed", "platform overhead", "lower bound"],
               [(p.name, p.warm_headroom_gpus,
                 ", ".join(f"{h:,.1f} {t}" for t, h in p.node_hours_by_type.items()) or "none",
                 f"{p.gpu_hours_held:,.1f} / {p.gpu_hours:,.1f}", money(p.cost), money(p.attributed_cost),
                 money(p.overhead_cost), money(p.lower_bound_cost))
                for p in result.pools])
    click.echo(f"fleet, on-demand, USD for the window (prices read {result.prices_read_on}): "
               f"pooled {money(result.pooled_cost)}, dedicated at peak {money(result.dedicated_at_peak_cost)}, "
               f"dedicated autoscaled {money(result.dedicated_autoscaled_cost)}, lower bound "
               f"{money(result.lower_bound_cost)}; pooled saves {fleet['saving_vs_dedicated_at_peak_percent']} % "
               f"against dedicated at peak; {fleet['scale_ups_without_waiting_for_a_node_percent']} % of scale-ups "
               "did not wait for a node")
