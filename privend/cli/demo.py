"""`privend demo`: a realistic sample environment planned end to end, offline.

Runs the same use cases an operator's commands run, against a throwaway registry
(unless --home is given): two tenants, three endpoints recorded without deploying,
the offline plan of the platform and endpoint stacks with the guardrails, the
capacity plan with costs, and what one customer needs to connect. The registry is
redirected by the demo's own settings; the process environment is left alone.
"""

from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path

import click

from privend.cli import env_option, pass_app
from privend.cli.billing import render_margin as render_billing_margin
from privend.cli.capacity import render_capacity
from privend.cli.endpoint import render_created as render_endpoint
from privend.cli.endpoint import render_list
from privend.cli.plan import render_plan
from privend.cli.tenant import render_created as render_tenant
from privend.service import billing, capacity, endpoints, stacks, tenants
from privend.service.app import App
from privend.service.endpoints import SpecChanges

SAMPLE_TENANTS = [
    tenants.CreateTenant(env="", name="acme", aws_account="111122223333",
                         principals=("arn:aws:iam::111122223333:role/inference-clients",), tier="shared"),
    tenants.CreateTenant(env="", name="globex", aws_account="444455556666", tier="dedicated"),
]
SAMPLE_ENDPOINTS = [
    ("chat", "acme", SpecChanges(model="meta-llama/Llama-3.1-8B-Instruct", engine="tgi", min_replicas=1,
                                 max_replicas=3)),
    ("batch", "acme", SpecChanges(model="Qwen/Qwen2.5-7B-Instruct", engine="vllm", min_replicas=0, max_replicas=2)),
    ("assist", "globex", SpecChanges(model="mistralai/Mistral-7B-Instruct-v0.3", engine="tgi", min_replicas=1,
                                     max_replicas=2)),
]


def _step(title: str) -> None:
    click.echo()
    click.secho(f"== {title}", bold=True)


@click.command()
@env_option
@click.option("--home", type=click.Path(file_okay=False, path_type=Path),
              help="Registry directory to use (default: a temporary one, removed afterwards).")
@click.option("--verbose", is_flag=True, help="Show every stack's full resource tree, not one summary per stack.")
@pass_app
def demo(app: App, env: str, home: Path | None, verbose: bool) -> None:
    """Plan a sample environment end to end, offline: tenants, endpoints, plan, guardrails, capacity."""
    with tempfile.TemporaryDirectory(prefix="privend-demo-") as scratch:
        sample = App(app.settings.replace(home=home or Path(scratch), registry_url=None))
        _step(f"tenants of env {env}")
        for request in SAMPLE_TENANTS:
            render_tenant(tenants.create_tenant(sample, tenants.CreateTenant(**{**request.__dict__, "env": env})))
        _step("endpoints, recorded without deploying")
        for name, tenant, changes in SAMPLE_ENDPOINTS:
            created = endpoints.create_endpoint(sample, endpoints.CreateEndpoint(
                env=env, name=name, tenant=tenant, changes=changes, deploy=False, check_quota=False))
            render_endpoint(created, costs=verbose, deployment=False)
        click.echo(f"recorded, not deployed: `privend endpoint sync --env {env}` deploys them")
        render_list(endpoints.list_endpoints(sample, env), env, "table")
        _step("offline plan of the platform stack and every endpoint stack, with the guardrails")
        planned = stacks.plan_environment(sample, env)
        render_plan(planned, "table", verbose=verbose)
        _step("capacity and cost")
        render_capacity(capacity.plan_capacity(sample, env), "table", detail=verbose)
        _step("what the customer of endpoint 'chat' needs")
        info = endpoints.connect_info(sample, env, "chat")
        click.echo(info if verbose else _cli_recipe_only(info), nl=False)
        _margin_step(sample, env)


def _cli_recipe_only(info: str) -> str:
    """connect-info without its Terraform and Pulumi recipes (sections 2 and 3), which say the same again."""
    sections = info.split("\n## ")
    kept = [s for s in sections if not s.startswith(("2. ", "3. "))]
    note = "(`privend endpoint connect-info chat` also prints the Terraform and Pulumi recipes)\n"
    return "\n## ".join(kept) + ("" if len(kept) == len(sections) else note)

# Tokens each sample endpoint used so far this month: chat past its plan's included tokens, the others within.
SAMPLE_USAGE = {"chat": (118_000_000, 2_000_000), "batch": (29_000_000, 1_000_000), "assist": (59_500_000, 500_000)}


def _margin_step(sample: App, env: str) -> None:
    """The last step: sample usage imported, the running month reconciled (open, alerts never published) and
    its margin, per endpoint and in total, as `privend billing margin` shows it."""
    now = billing.now()
    period = f"{now:%Y-%m}"
    _step(f"margin of {period} so far, after sample usage")
    lines = [json.dumps({"id": f"demo-{name}", "endpoint": name, "timestamp": now.isoformat(),
                         "input_tokens": tokens_in, "output_tokens": tokens_out})
             for name, (tokens_in, tokens_out) in SAMPLE_USAGE.items()]
    imported = billing.import_events(sample, env, io.StringIO("\n".join(lines) + "\n"), source="demo sample")
    quiet = App(sample.settings.replace(alert_topic_arn=None))  # the demo's alerts stay in its registry
    reconciled = billing.reconcile_period(quiet, env, period)
    click.echo(f"{imported.accepted} sample usage event(s) imported; {reconciled.result.message}")
    render_billing_margin(billing.margin_of_period(quiet, env, period), "table", assumptions=False)
