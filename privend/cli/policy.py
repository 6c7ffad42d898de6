"""`privend policy check`: the guardrails on an environment's offline plan, for CI and operators."""

from __future__ import annotations

import click

from privend.cli import env_option, format_option


def report(violations, err: bool = True) -> None:
    """One line per violation: level, stack, rule, message, then the fix."""
    for v in violations:
        click.echo(f"[{v.level}] {v.stack}: {v.rule}: {v.message} ({v.resource})", err=err)
        click.echo(f"    fix: {v.fix}", err=err)


def exit_for(violations) -> None:
    from privend.errors import PolicyViolation
    from privend.policy import mandatory

    blocking = mandatory(violations)
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
def check(env, endpoint, fmt) -> None:
    """Evaluate every rule on the offline plan; exit 3 on a mandatory violation."""
    from privend.cli.render import emit_json
    from privend.config import load_environment
    from privend.plan import plan_environment
    from privend.policy import evaluate

    cfg = load_environment(env)
    violations = evaluate(plan_environment(env, endpoint), cfg)
    if fmt == "json":
        emit_json({"env": env, "violations": [v.to_json() for v in violations],
                   "ok": not any(v.level == "mandatory" for v in violations)})
    else:
        report(violations, err=False)
        if not violations:
            click.echo(f"no guardrail violations in env {env}")
    exit_for(violations)
