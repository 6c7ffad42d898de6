"""The `privend` command line: thin commands over the application layer (`privend.service`).

Each command parses its options, calls one use case and renders the result. The
settings are read from the process environment once, here, into the `App` that
click's context carries to every command; a caller (a test, `privend demo`) may
pass its own `App` as the context object instead.

Errors the control plane raises on purpose (privend.errors) become one line on
stderr with their exit code: 1 operation failed, 2 bad input, 3 policy violation.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
from typing import TYPE_CHECKING, Any

import click

from privend.errors import PrivendError
from privend.settings import DEFAULT_ENV, Settings

if TYPE_CHECKING:
    from privend.service.app import App

AWS_SETUP_ERRORS = {"NoRegionError", "NoCredentialsError", "PartialCredentialsError", "EndpointConnectionError",
                    "ProfileNotFound", "TokenRetrievalError", "SSOTokenLoadError", "UnauthorizedSSOTokenError"}

# The top-level commands: module, attribute and the one-line help `privend --help` shows.
# A command's module is imported only when the command runs (or its own --help is asked
# for), so `privend --help` and each command load only what they use.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "plan": ("privend.cli.plan", "plan",
             "Plan an environment (platform and endpoint stacks) offline: no Pulumi CLI, no credentials."),
    "tenant": ("privend.cli.tenant", "tenant", "Create, list, show and delete tenants."),
    "endpoint": ("privend.cli.endpoint", "endpoint", "Create, change, deploy and inspect customer endpoints."),
    "export": ("privend.cli.export", "export", "Export rendered artefacts."),
    "policy": ("privend.cli.policy", "policy", "Guardrails (the CrossGuard pack in policies/), evaluated offline."),
    "capacity": ("privend.cli.capacity", "capacity",
                 "GPU capacity of an environment's pools: plan it, price it, and write the pools' bounds."),
    "quota": ("privend.cli.quota", "quota", "EC2 vCPU quotas for the environment's GPU pools (needs AWS credentials)."),
    "demo": ("privend.cli.demo", "demo",
             "Plan a sample environment end to end, offline: tenants, endpoints, plan, guardrails, capacity."),
    "usage": ("privend.cli.usage", "usage", "Metered token usage: import, pull from CloudWatch, quarantine."),
    "billing": ("privend.cli.billing", "billing", "Invoices, alerts, hard caps and margins from metered usage."),
    "doctor": ("privend.cli.doctor", "doctor",
               "Check what real use needs: Pulumi CLI, AWS, state backend, registry, stack files, kubeconfig."),
    "catalog": ("privend.cli.catalog", "catalog",
                "Models, GPU instance types, subscription plans and an environment's GPU pools."),
}


def current_app() -> App:
    """The `App` of the running command (made by `main` from the environment, or given by the caller)."""
    return click.get_current_context().find_root().obj


def pass_app(func):
    """Pass the running command's `App` as its first argument."""
    def with_app(*args, **kwargs):
        return func(current_app(), *args, **kwargs)
    return functools.update_wrapper(with_app, func)


def _known_environment(ctx: click.Context, param: click.Parameter, value: str) -> str:
    # Every command refuses an environment without a stack file, listing the ones there are,
    # rather than answering an empty list for a typo.
    return current_app().check_environment(value)


def env_option(func):
    return click.option(
        "--env", "env", default=lambda: current_app().settings.env, show_default=f"PRIVEND_ENV or {DEFAULT_ENV}",
        callback=_known_environment, help="Environment (stack file stacks/Pulumi.<env>.yaml).",
    )(func)


def format_option(func):
    return click.option(
        "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
        help="table for people, json for machines.",
    )(func)


def _short_help(name: str, limit: int) -> str:
    """The one-line help of a command not loaded yet, shortened as click shortens a loaded command's."""
    return click.Command(name, help=COMMANDS[name][2]).get_short_help_str(limit)


def _suggestion(ctx: click.Context, exc: PrivendError) -> str:
    """A close match for a tenant or endpoint that was not found, from the registry the command used."""
    kind, env, name = (getattr(exc, attr, None) for attr in ("kind", "env", "name"))
    if kind is None or env is None or name is None:
        return ""
    from privend.service.tenants import close_name

    try:
        return close_name(ctx.find_root().obj, kind, env, name)
    except PrivendError:
        return ""


class PrivendGroup(click.Group):
    """Loads its commands on demand, and turns PrivendError into one line and its exit code, never a traceback."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            module, attribute, _ = COMMANDS[cmd_name]
            self.add_command(getattr(importlib.import_module(module), attribute), cmd_name)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # The one-line help of each command, without importing every command's module.
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max((len(name) for name in names), default=0)
        rows = [(name, _short_help(name, limit) if name not in self.commands
                 else self.commands[name].get_short_help_str(limit))
                for name in names]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PrivendError as exc:
            click.echo(f"error: {exc}{_suggestion(ctx, exc)}", err=True)
            sys.exit(exc.exit_code)
        except Exception as exc:
            # AWS set-up problems (no region, no credentials, no network) are the
            # operator's to fix, not bugs: one line, exit 1. Anything else is a bug.
            if type(exc).__module__.startswith("botocore") and type(exc).__name__ in AWS_SETUP_ERRORS:
                click.echo(f"error: AWS: {exc}", err=True)
                sys.exit(1)
            # A registry file damaged after it was opened (opening one checks it): the
            # transaction was rolled back, so nothing changed.
            if type(exc).__module__ == "sqlite3" and type(exc).__name__ == "DatabaseError":
                click.echo(f"error: registry: {exc}", err=True)
                sys.exit(1)
            raise


@click.group(cls=PrivendGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="private-endpoint")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Private Endpoint control plane: plan and run private LLM endpoints."""
    from privend.service.app import App  # the services import pydantic and the catalogs: not for --help

    if not isinstance(ctx.obj, App):
        ctx.obj = App(Settings.from_environ(os.environ))
