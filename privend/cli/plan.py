"""`privend plan`: what an environment would provision, computed offline."""

from __future__ import annotations

import click
from rich.console import Console

from privend.cli import env_option, format_option


@click.command()
@env_option
@click.option("--endpoint", help="Plan only this endpoint's stack.")
@format_option
def plan(env: str, endpoint: str | None, fmt: str) -> None:
    """Plan an environment (platform and endpoint stacks) offline: no Pulumi CLI, no credentials."""
    from privend.plan import plan_environment, plan_json, render_table

    from privend.cli.policy import exit_for, report
    from privend.config import load_environment
    from privend.policy import evaluate

    plans = plan_environment(env, endpoint)
    violations = evaluate(plans, load_environment(env))
    if fmt == "json":
        click.echo(plan_json(plans))
    else:
        from privend.cli.render import console

        render_table(plans, console())
    # Violations go to stderr so the JSON on stdout stays a clean resource list.
    report(violations)
    exit_for(violations)
