"""`privend plan`: what an environment would provision, computed offline."""

from __future__ import annotations

import click

from privend.cli import env_option, format_option, pass_app
from privend.cli.policy import exit_for, report
from privend.cli import render
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


def render_plan(result: stacks.PlanReport, fmt: str, verbose: bool = True) -> None:
    """The plan as JSON, as resource trees (`verbose`) or as one summary per stack; then the guardrails."""
    from privend.plan import plan_json, render_table  # the offline engine imports the Pulumi SDKs

    if fmt == "json":
        click.echo(plan_json(result.plans))
    elif verbose:
        render_table(result.plans, render.console())
    else:
        render_summary(result)
    # Violations (and, for JSON, the verdict) go to stderr so the JSON on stdout stays a clean resource list.
    report(result.violations)
    click.echo(result.verdict, err=fmt == "json")
    exit_for(result)


def render_summary(result: stacks.PlanReport) -> None:
    """One line per stack: its resources by kind (AWS, Kubernetes, components, ...) and its own guardrail verdict."""
    from collections import Counter

    for plan in result.plans:
        counts = Counter(_kind(r.type) for r in plan.resources)
        found = [v for v in result.violations if v.stack == plan.stack]
        verdict = "guardrails passed" if not found else f"{len(found)} guardrail violation(s)"
        kinds = ", ".join(f"{count} {kind}" for kind, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
        click.echo(f"stack {plan.stack} ({len(plan.resources)} resources): {kinds}; {verdict}")
    click.echo("(--verbose shows every stack's resource tree and its resources by type)")


def _kind(resource_type: str) -> str:
    """`aws:ec2/vpc:Vpc` -> aws; a component of this project -> component; a provider -> provider."""
    package = resource_type.split(":", 1)[0]
    if package == "pulumi":
        return "provider"
    return "component" if package == "private-endpoint" else package
