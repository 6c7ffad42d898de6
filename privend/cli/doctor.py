"""`privend doctor`: is this machine ready for real use? One line per check, with the fix."""

from __future__ import annotations

import click

from privend.cli import format_option, pass_app
from privend.cli.render import emit_json
from privend.errors import PrivendError
from privend.service import doctor as doctor_service
from privend.service.app import App


@click.command()
@format_option
@pass_app
def doctor(app: App, fmt) -> None:
    """Check what real use needs: Pulumi CLI, AWS, state backend, registry, stack files, kubeconfig.

    One line per check, with the fix when it fails; AWS credentials and region are
    looked up, never used. Exit 1 when a check fails.
    """
    findings = doctor_service.run_checks(app)
    if fmt == "json":
        emit_json([f.__dict__ for f in findings])
    else:
        for f in findings:
            click.echo(f"{'ok  ' if f.ok else 'FAIL'} {f.check}: {f.detail}" + ("" if f.ok else f"; fix: {f.fix}"))
    failed = [f.check for f in findings if not f.ok]
    if failed:
        raise PrivendError(f"{len(failed)} check(s) failed: {', '.join(failed)}")
