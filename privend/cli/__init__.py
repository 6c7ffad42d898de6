"""The `privend` command line: thin commands over the control plane.

Errors the control plane raises on purpose (privend.errors) become one line on
stderr with their exit code: 1 operation failed, 2 bad input, 3 policy violation.
"""

from __future__ import annotations

import os
import sys

import click

from privend.errors import PrivendError

DEFAULT_ENV = "dev"
AWS_SETUP_ERRORS = {"NoRegionError", "NoCredentialsError", "PartialCredentialsError", "EndpointConnectionError",
                    "ProfileNotFound", "TokenRetrievalError", "SSOTokenLoadError", "UnauthorizedSSOTokenError"}


def env_option(func):
    return click.option(
        "--env", "env", default=lambda: os.environ.get("PRIVEND_ENV", DEFAULT_ENV), show_default="PRIVEND_ENV or dev",
        help="Environment (stack file stacks/Pulumi.<env>.yaml).",
    )(func)


def format_option(func):
    return click.option(
        "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
        help="table for people, json for machines.",
    )(func)


class PrivendGroup(click.Group):
    """Turns PrivendError into one line and its exit code, never a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except PrivendError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except Exception as exc:
            # AWS set-up problems (no region, no credentials, no network) are the
            # operator's to fix, not bugs: one line, exit 1. Anything else is a bug.
            if type(exc).__module__.startswith("botocore") and type(exc).__name__ in AWS_SETUP_ERRORS:
                click.echo(f"error: AWS: {exc}", err=True)
                sys.exit(1)
            raise


@click.group(cls=PrivendGroup)
@click.version_option(package_name="private-endpoint")
def main() -> None:
    """Private Endpoint control plane: plan and run private LLM endpoints."""


def _register() -> None:
    from privend.cli import billing, capacity, demo, endpoint, export, plan, policy, quota, tenant, usage

    main.add_command(plan.plan)
    main.add_command(tenant.tenant)
    main.add_command(endpoint.endpoint)
    main.add_command(export.export)
    main.add_command(policy.policy)
    main.add_command(capacity.capacity)
    main.add_command(quota.quota)
    main.add_command(demo.demo)
    main.add_command(usage.usage)
    main.add_command(billing.billing)


_register()
