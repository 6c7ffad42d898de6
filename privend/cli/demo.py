"""`privend demo`: a realistic sample environment planned end to end, offline.

Runs the same commands an operator would, against a throwaway registry (unless
--home is given): two tenants, three endpoints recorded with --no-deploy, the
offline plan of the platform and endpoint stacks with the guardrails, the
capacity plan with costs, and what one customer needs to connect.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import click

from privend.cli import env_option

SAMPLE_TENANTS = [
    ("acme", "111122223333", ["arn:aws:iam::111122223333:role/inference-clients"], "shared"),
    ("globex", "444455556666", [], "dedicated"),
]
SAMPLE_ENDPOINTS = [
    ("chat", "acme", "meta-llama/Llama-3.1-8B-Instruct", "tgi", "1:3"),
    ("batch", "acme", "Qwen/Qwen2.5-7B-Instruct", "vllm", "0:2"),
    ("assist", "globex", "mistralai/Mistral-7B-Instruct-v0.3", "tgi", "1:2"),
]


def _step(title: str) -> None:
    click.echo()
    click.secho(f"== {title}", bold=True)


@click.command()
@env_option
@click.option("--home", type=click.Path(file_okay=False, path_type=Path),
              help="Registry directory to use (default: a temporary one, removed afterwards).")
@click.pass_context
def demo(ctx: click.Context, env: str, home: Path | None) -> None:
    """Plan a sample environment end to end, offline: tenants, endpoints, plan, guardrails, capacity."""
    from privend.cli.capacity import plan as capacity_plan
    from privend.cli.endpoint import connect_info, create as endpoint_create, list_ as endpoint_list
    from privend.cli.plan import plan
    from privend.cli.tenant import create as tenant_create

    with tempfile.TemporaryDirectory(prefix="privend-demo-") as scratch:
        previous = os.environ.get("PRIVEND_HOME")
        os.environ["PRIVEND_HOME"] = str(home or scratch)
        try:
            _step(f"tenants of env {env}")
            for name, account, principals, tier in SAMPLE_TENANTS:
                ctx.invoke(tenant_create, name=name, aws_account=account, principals=principals,
                           billing_timezone="UTC", tier=tier, env=env)
            _step("endpoints, recorded without deploying")
            for name, tenant, model, engine, replicas in SAMPLE_ENDPOINTS:
                ctx.invoke(endpoint_create, name=name, tenant=tenant, start=None, no_deploy=True, env=env,
                           model=model, revision=None, engine=engine, pool=None, replicas=replicas,
                           plan_name=None, quantize=None, max_input_tokens=None, max_total_tokens=None,
                           gpus_per_replica=None, image=None, strict_quota=False)
            ctx.invoke(endpoint_list, tenant=None, env=env, fmt="table")
            _step("offline plan of the platform stack and every endpoint stack, with the guardrails")
            ctx.invoke(plan, env=env, endpoint=None, fmt="table")
            _step("capacity and cost")
            ctx.invoke(capacity_plan, env=env, fmt="table")
            _step("what the customer of endpoint 'chat' needs")
            ctx.invoke(connect_info, name="chat", env=env)
        finally:
            if previous is None:
                os.environ.pop("PRIVEND_HOME", None)
            else:
                os.environ["PRIVEND_HOME"] = previous
