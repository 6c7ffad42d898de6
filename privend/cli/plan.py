"""`privend plan`: what an environment would provision, computed offline."""

from __future__ import annotations

import click

from privend.cli import env_option, format_option, pass_app
from privend.cli.policy import exit_for, report
from privend.cli.render import console
from privend.service import stacks
from privend.service.app import App


@click.command()
@env_option
@click.option("--endpoint", help="Plan only this endpoint's stack.")
@format_option
@pass_app
def plan(app: App, env: str, endpoint: str | None, fmt: str) -> None:
    """Plan an environment (platform and endpoint stacks) offline: no Pulumi CLI, no credentials."""
    render_plan(stacks.plan_environment(app, env, endpoint), fmt)


def render_plan(result: stacks.PlanReport, fmt: str) -> None:
    from privend.plan import plan_json, render_table  # the offline engine imports the Pulumi SDKs

    if fmt == "json":
        click.echo(plan_json(result.plans))
    else:
        render_table(result.plans, console())
    # Violations go to stderr so the JSON on stdout stays a clean resource list.
    report(result.violations)
    exit_for(result)
