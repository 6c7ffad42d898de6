"""`privend quota check`: are the account's EC2 GPU vCPU quotas enough for the pools at their maxSize?"""

from __future__ import annotations

import click

from privend.cli import env_option, format_option, pass_app
from privend.cli.render import emit_json, emit_table
from privend.errors import PrivendError
from privend.service import capacity
from privend.service.app import App


@click.group()
def quota() -> None:
    """EC2 vCPU quotas for the environment's GPU pools (needs AWS credentials)."""


@quota.command("check")
@env_option
@format_option
@click.option("--request-increase", is_flag=True,
              help="File Service Quotas increase requests for the shortfall (never while one is open).")
@pass_app
def check(app: App, env, fmt, request_increase) -> None:
    """Per quota code: vCPUs every pool needs at maxSize, the quota, current usage, verdict.

    Each pool counts maxSize nodes of its largest type (by vCPUs): that is as far
    as the cluster autoscaler may scale it. Exit 1 when a quota falls short, or
    when there are no AWS credentials.
    """
    report = capacity.check_quotas(app, env, request_increase)
    cfg, basis, verdicts, requests, short = report.cfg, report.basis, report.verdicts, report.requests, report.short

    if fmt == "json":
        emit_json({
            "env": env, "region": cfg.region, "ok": not short,
            "basis": [b.to_dict() for b in basis],
            "verdicts": [v.to_dict() for v in verdicts],
            "requests": [r.to_dict() for r in requests],
        })
    else:
        emit_table(f"EC2 vCPU quotas for env {env} ({cfg.region}), every pool at maxSize",
                   ["quota code", "quota", "pools", "vCPUs needed", "quota value", "in use", "shortfall", "verdict"],
                   [(v.quota_code, v.quota_name, ", ".join(v.pools), v.vcpus_needed, f"{v.quota} ({v.quota_source})",
                     v.usage, v.shortfall, v.status) for v in verdicts],
                   drop=["quota", "pools", "in use"])
        click.echo("needed: " + "; ".join(f"pool {b.pool} {b.max_size}x {b.instance_type} ({b.capacity_type}) = "
                                          f"{b.vcpus} vCPUs on {b.quota_code}" for b in basis))
        for v in verdicts:
            click.echo(v.message)
        for r in requests:
            action = "filed" if r.filed else "already open, not filed again"
            click.echo(f"increase request {r.request_id} for {r.quota_code} to {r.desired_value} vCPUs: "
                       f"{r.status} ({action})")
    if short:
        codes = ", ".join(f"{v.quota_code} short by {v.shortfall}" for v in short)
        hint = "increase requested" if requests else "rerun with --request-increase to ask for it"
        raise PrivendError(f"{len(short)} EC2 vCPU quota(s) too low for env {env} at maxSize: {codes}; {hint}")
