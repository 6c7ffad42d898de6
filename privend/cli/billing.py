"""`privend billing ...`: reconcile a period into invoices, export them, list alerts, show the margin."""

from __future__ import annotations

import click

from privend.cli import env_option, format_option, pass_app
from privend.cli.capacity import money
from privend.cli.render import emit_json, emit_table
from privend.errors import InputError
from privend.margin import MarginReport
from privend.service import billing as billing_service
from privend.service.app import App


@click.group()
def billing() -> None:
    """Invoices, alerts, hard caps and margins from metered usage."""


@billing.command("reconcile")
@click.option("--period", required=True, help="Month to reconcile, YYYY-MM (in each tenant's billing time zone).")
@click.option("--finalize", is_flag=True, help="Freeze the period: its invoices never change afterwards.")
@click.option("--force", is_flag=True, help="With --finalize: freeze a period that has not ended yet.")
@click.option("--alert-topic", "topic_arn", help="SNS topic for alerts (default PRIVEND_ALERT_TOPIC_ARN).")
@env_option
@format_option
@pass_app
def reconcile_(app: App, period, finalize, force, topic_arn, env, fmt) -> None:
    """Compute the period's invoices; record alerts and hard-cap suspensions.

    --finalize is refused (exit 2) for a period that has not ended in every tenant's
    billing time zone, unless --force is given.
    """
    reconciled = billing_service.reconcile_period(app, env, period, finalize, topic_arn, force=force)
    result, topic = reconciled.result, reconciled.topic
    if fmt == "json":
        emit_json(result.to_json())
        if not result.changed:
            click.echo(result.message, err=True)
        return
    _invoice_tables(result.to_json())
    click.echo(result.message)
    for alert in result.new_alerts:
        click.echo(f"alert: {alert.message}")
    if result.new_alerts and not topic:
        click.echo(f"alerts recorded, not published: {billing_service.NO_TOPIC}")
    for name in result.suspended:
        click.echo(f"suspended endpoint '{name}' (hard cap): the next `privend endpoint sync --env {env}` "
                   "scales it to zero")
    for name in result.lifted:
        click.echo(f"lifted the suspension of endpoint '{name}': the next sync redeploys it")
    if result.published:
        click.echo(f"published {result.published} alert(s) to {topic}")


def _invoice_tables(data: dict) -> None:
    state = "finalized" if data["finalized"] else "open"
    if not data["invoices"]:
        click.echo(f"no invoices for {data['period']} ({state})")
    for invoice in data["invoices"]:
        rows = [(line["endpoint"], line["kind"] + (f" ({line['original_period']})" if "original_period" in line
                                                   else ""), line["plan"], line["quantity"], line["amount"])
                for line in invoice["lines"]]
        rows.append(("", "total", "", "", invoice["total"]))
        emit_table(f"invoice {invoice['tenant']} {data['period']} ({state}, {invoice['currency']})",
                   ["endpoint", "kind", "plan", "quantity", "amount"], rows, drop=["plan", "quantity"])


@billing.command("export")
@click.option("--period", required=True, help="YYYY-MM.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True,
              help="table for people, json for machines, csv for spreadsheets.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), help="File to write (default stdout).")
@env_option
@pass_app
def export(app: App, period, fmt, output, env) -> None:
    """Write the period's invoices (as last reconciled) for finance."""
    if fmt == "table":
        if output:
            raise click.UsageError("--output writes json or csv: give --format json or --format csv")
        _invoice_tables(billing_service.stored_period(app, env, period))
        return
    text, count = billing_service.export_invoices(app, env, period, fmt)
    if output:
        try:
            with open(output, "w", encoding="utf-8", newline="") as handle:
                handle.write(text)
        except OSError as exc:
            raise InputError(f"--output {output} cannot be written ({exc.strerror or exc})") from None
        click.echo(f"wrote {count} invoice(s) of {period} to {output}", err=True)
    else:
        click.echo(text, nl=False)


@billing.command("alerts")
@click.option("--period", required=True, help="YYYY-MM.")
@env_option
@format_option
@pass_app
def alerts(app: App, period, env, fmt) -> None:
    """List the period's alerts (each fires once) and whether they were published."""
    listed = billing_service.list_alerts(app, env, period)
    entries, reason = listed.alerts, listed.unpublished_reason
    if fmt == "json":
        emit_json([{"period": a.period, "tenant": a.tenant, "endpoint": a.endpoint, "kind": a.kind,
                    "message": a.message, "created_at": a.created_at.isoformat(),
                    "published_at": a.published_at.isoformat() if a.published_at else None,
                    "not_published_because": None if a.published_at else reason} for a in entries])
        return
    emit_table(f"alerts {period} in {env}", ["endpoint", "tenant", "kind", "created", "published", "message"],
               [(a.endpoint, a.tenant, a.kind, a.created_at.isoformat(timespec="seconds"),
                 a.published_at.isoformat(timespec="seconds") if a.published_at else "no", a.message)
                for a in entries],
               drop=["created", "tenant"])
    waiting = sum(a.published_at is None for a in entries)
    if waiting:
        click.echo(f"{waiting} alert(s) not published: {reason}")


@billing.command("margin")
@click.option("--period", required=True, help="YYYY-MM, reconciled first with `privend billing reconcile`.")
@env_option
@format_option
@pass_app
def margin(app: App, period, env, fmt) -> None:
    """Per endpoint: invoiced revenue, simulated compute, network and margin; the platform overhead; totals.

    Revenue is the period's invoices as last reconciled (exit 2 when the period has not been
    reconciled); compute is the simulation of the period's usage ledger (`capacity simulate --period`).
    """
    render_margin(billing_service.margin_of_period(app, env, period), fmt)


def render_margin(report: MarginReport, fmt: str, assumptions: bool = True) -> None:
    if fmt == "json":
        emit_json(report.to_dict())
        return
    state = "finalized" if report.finalized else "open"
    rows = [(e.endpoint, e.tenant, ", ".join(e.plans), money(e.revenue), money(e.compute), money(e.network),
             money(e.margin), _percent(e.margin_percent)) for e in report.endpoints]
    rows.append(("platform overhead", "", "", "", money(report.overhead), "", money(-report.overhead), ""))
    rows.append(("total", "", "", money(report.revenue), money(report.compute), money(report.network),
                 money(report.margin), _percent(report.margin_percent)))
    emit_table(f"margin of env {report.env}, {report.period} ({state}), USD",
               ["endpoint", "tenant", "plan", "revenue", "compute", "network", "margin", "margin %"], rows,
               drop=["plan", "tenant"])
    if not assumptions:
        return
    click.echo("assumptions:")
    for assumption in report.assumptions:
        click.echo(f"  - {assumption}")


def _percent(value) -> str:
    # No space before a percent sign here: the column says "margin %", and a cell is never split.
    return "n/a" if value is None else str(value)
