"""`privend plan`: what an environment would provision, computed offline."""

from __future__ import annotations

import click
from rich.console import Console

from privend.cli import env_option, format_option


@click.command()
@env_option
@format_option
def plan(env: str, fmt: str) -> None:
    """Plan an environment offline: no Pulumi CLI, no credentials, no network."""
    from privend.plan import plan_environment, plan_json, render_table

    plans = plan_environment(env)
    if fmt == "json":
        click.echo(plan_json(plans))
    else:
        render_table(plans, Console())
