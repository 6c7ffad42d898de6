"""`privend policy check`: the guardrails on an environment's offline plan, for CI and operators."""

from __future__ import annotations

from collections.abc import Iterable

import click

from privend.cli import env_option, format_option, pass_app
from privend.cli.render import emit_json
from privend.errors import PolicyViolation
from privend.service import stacks
from privend.service.app import App


def report(violations: Iterable, err: bool = True) -> None:
    """One line per violation: level, stack, rule, message, then the fix."""
    for v in violations:
        click.echo(f"[{v.level}] {v.stack}: {v.rule}: {v.message} ({v.resource})", err=err)
        click.echo(f"    fix: {v.fix}", err=err)


def exit_for(result: stacks.PlanReport) -> None:
    """Exit 3 when the plan has a mandatory violation."""
    blocking = result.blocking
    if blocking:
        raise PolicyViolation(f"{len(blocking)} mandatory guardrail violation(s); first: "
                              f"{blocking[0].rule}: {blocking[0].message}")


@click.group()
def policy() -> None:
    """Guardrails (the CrossGuard pack in policies/), evaluated offline."""


@policy.command("check")
@env_option
@click.option("--endpoint", help="Check only this endpoint's stack.")
@format_option
@pass_app
def check(app: App, env, endpoint, fmt) -> None:
    """Evaluate every rule on the offline plan; exit 3 on a mandatory violation."""
    result = stacks.plan_environment(app, env, endpoint)
    violations = result.violations
    if fmt == "json":
        emit_json({"env": env, "violations": [v.to_json() for v in violations], "ok": not result.blocking})
    else:
        report(violations, err=False)
        if not violations:
            click.echo(f"no guardrail violations in env {env}")
    exit_for(result)
