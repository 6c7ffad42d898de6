"""`privend usage ...`: import metered usage, pull it from CloudWatch, inspect the quarantine."""

from __future__ import annotations

import io
import sys
from typing import TextIO
from datetime import timedelta

import click
from rich.console import Console
from rich.progress import Progress

from privend.cli import env_option, format_option, pass_app
from privend.cli.render import Count, emit_json, emit_table
from privend.errors import InputError
from privend.service import billing
from privend.service.app import App


def _print_summary(summary, fmt: str, what: str) -> None:
    data = summary.to_json()
    if fmt == "json":
        emit_json(data)
        return
    reasons = ", ".join(f"{reason} {count}" for reason, count in data["reasons"].items())
    click.echo(f"{what}: {data['accepted']} accepted, {data['duplicate']} duplicate, "
               f"{data['quarantined']} quarantined" + (f" ({reasons})" if reasons else ""))
    if data["quarantined"]:
        click.echo("see them with `privend usage quarantine`")


@click.group()
def usage() -> None:
    """Metered token usage: import, pull from CloudWatch, quarantine."""


@usage.command("import")
@click.argument("source", metavar="FILE|-")
@env_option
@format_option
@pass_app
def import_(app: App, source, env, fmt) -> None:
    """Import usage events from JSON lines (FILE, or - for stdin); idempotent by event id."""
    stream: TextIO
    if source == "-":
        # Read as a file is: UTF-8, a byte that is not becomes U+FFFD (and the line malformed
        # or kept as it reads), never an error that stops the import halfway.
        stream = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace") \
            if hasattr(sys.stdin, "buffer") else sys.stdin
        name = "stdin"
    else:
        try:
            stream = open(source, encoding="utf-8", errors="replace")
        except OSError as exc:
            raise InputError(f"cannot read {source}: {exc.strerror}") from None
        name = source
    try:
        # Progress on stderr, and only for a person at a terminal: stdout stays the counts alone.
        progress_console = Console(stderr=True)
        with Progress(console=progress_console, transient=True,
                      disable=fmt == "json" or not progress_console.is_terminal) as progress:
            task = progress.add_task(f"importing {name}", total=None)
            summary = billing.import_events(
                app, env, stream, name,
                on_batch=lambda s: progress.update(task, completed=s.accepted + s.duplicate + s.quarantined),
            )
    finally:
        if source != "-":
            stream.close()
        elif isinstance(stream, io.TextIOWrapper) and stream is not sys.stdin:
            stream.detach()  # stdin itself stays open
    _print_summary(summary, fmt, f"imported {name}")


@usage.command("pull")
@click.option("--period", required=True, help="YYYY-MM.")
@click.option("--settle-minutes", type=Count(min=0), default=60, show_default=True,
              help="Only hours that ended at least this long ago (CloudWatch data still arrives before).")
@click.option("--region", help="AWS region of the CloudWatch metrics (default: the AWS configuration).")
@env_option
@format_option
@pass_app
def pull(app: App, period, settle_minutes, region, env, fmt) -> None:
    """Read hourly token sums from CloudWatch and import them as events (idempotent)."""
    result = billing.pull_events(app, env, period, timedelta(minutes=settle_minutes), region)
    if fmt == "json":
        emit_json({**result.summary.to_json(), "calls": result.calls, "hours": result.hours,
                   "skipped_outside_subscription": result.skipped})
        return
    _print_summary(result.summary, fmt, f"pulled {period} ({result.hours} hour(s) settled, "
                                        f"{result.calls} GetMetricData call(s))")


@usage.command("quarantine")
@env_option
@format_option
@pass_app
def quarantine(app: App, env, fmt) -> None:
    """List usage input that was not accepted, with the reason."""
    records = billing.list_quarantine(app, env)
    if fmt == "json":
        emit_json([{"reason": q.reason, "detail": q.detail, "line": q.line, "event_id": q.event_id,
                    "endpoint": q.endpoint, "quarantined_at": q.quarantined_at.isoformat()} for q in records])
        return
    emit_table(f"quarantined usage in {env}", ["when", "reason", "id", "endpoint", "detail"],
               [(q.quarantined_at.isoformat(timespec="seconds"), q.reason, q.event_id, q.endpoint, q.detail)
                for q in records],
               drop=["when", "detail"])
