"""Billing use cases: usage in (import, pull), invoices out (reconcile, export), alerts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

from privend import aws
from privend.billing.alerts import sns_publisher, topic_region
from privend.billing.export import invoices_csv, stored_invoices
from privend.billing.periods import check_period, period_bounds
from privend.billing.pull import PullResult, pull_usage
from privend.billing.reconcile import ReconcileResult, dumps, reconcile
from privend.billing.usage import ImportSummary, import_usage
from privend.margin import Compute, MarginReport, margin_report, subscribed_us
from privend.registry.billing import Alert, QuarantinedEvent
from privend.service.app import App
from privend.service.capacity import TrafficSource, simulate_capacity


def now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Reconciled:
    result: ReconcileResult
    topic: str | None  # where alerts were published; None when no topic is configured


def import_events(app: App, env: str, stream: TextIO, source: str,
                  on_batch: Callable[[ImportSummary], None] | None = None) -> ImportSummary:
    """Import usage events from JSON lines; idempotent by event id, bad lines quarantined with the reason."""
    with app.registry() as registry:
        return import_usage(registry, env, stream, now=now(), source=source, on_batch=on_batch)


def pull_events(app: App, env: str, period: str, settle: timedelta, region: str | None = None) -> PullResult:
    """Read hourly token sums from CloudWatch and import them as events (idempotent)."""
    check_period(period)
    with app.registry() as registry:
        return pull_usage(registry, env, period, now=now(), settle=settle, client=aws.client("cloudwatch", region))


def list_quarantine(app: App, env: str) -> list[QuarantinedEvent]:
    with app.registry() as registry:
        return registry.list_quarantine(env)


def reconcile_period(app: App, env: str, period: str, finalize: bool = False,
                     topic_arn: str | None = None, force: bool = False) -> Reconciled:
    """Compute the period's invoices; record alerts and hard-cap suspensions; publish alerts to the topic, if any.

    The topic is `topic_arn`, else the PRIVEND_ALERT_TOPIC_ARN setting.
    """
    topic = topic_arn or app.settings.alert_topic_arn
    publish: Any = None
    if topic:
        publish = sns_publisher(env, topic, aws.client("sns", topic_region(topic)))
    with app.registry() as registry:
        result = reconcile(registry, env, period, now=now(), finalize=finalize, plans=app.plans(), publish=publish,
                           force=force)
    return Reconciled(result, topic)


def stored_period(app: App, env: str, period: str) -> dict:
    """The period's invoices as last reconciled, as the JSON export holds them."""
    with app.registry() as registry:
        return stored_invoices(registry, env, period)


def export_invoices(app: App, env: str, period: str, fmt: str) -> tuple[str, int]:
    """The period's invoices as last reconciled, as CSV or JSON text, and how many there are."""
    with app.registry() as registry:
        data = stored_invoices(registry, env, period)
    text = invoices_csv(data) if fmt == "csv" else dumps(data) + "\n"
    return text, len(data["invoices"])


NO_TOPIC = ("no alert topic is configured (set PRIVEND_ALERT_TOPIC_ARN, or pass --alert-topic to "
            "`privend billing reconcile`, which publishes what is waiting)")
WAITING = "waiting in the outbox: the next `privend billing reconcile` publishes it to {topic}"


@dataclass(frozen=True)
class AlertList:
    alerts: list[Alert]
    unpublished_reason: str | None  # why an alert without published_at was not sent; None when all were


def unpublished_reason(app: App, topic_arn: str | None = None) -> str:
    topic = topic_arn or app.settings.alert_topic_arn
    return WAITING.format(topic=topic) if topic else NO_TOPIC


def list_alerts(app: App, env: str, period: str) -> AlertList:
    check_period(period)
    with app.registry() as registry:
        alerts = registry.list_alerts(env, period)
    waiting = any(a.published_at is None for a in alerts)
    return AlertList(alerts, unpublished_reason(app) if waiting else None)


def margin_of_period(app: App, env: str, period: str) -> MarginReport:
    """Per endpoint, the period's invoiced revenue against its simulated compute and its network; the overhead.

    Reads the invoices `billing reconcile` stored (InputError, naming the command to run, when the
    period has not been reconciled), then simulates the period's usage ledger (`capacity simulate
    --period`) for the compute and the pools' overhead. Nothing is written.
    """
    check_period(period)
    cfg = app.environment(env)
    stored = stored_period(app, env, period)  # before the simulation, which takes a while
    with app.registry() as registry:
        subscriptions = registry.list_billing_subscriptions(env)
    start_us, end_us = period_bounds(period, "UTC")  # the simulation's window
    subscribed: dict[str, int] = {}
    for subscription in subscriptions:
        subscribed[subscription.endpoint] = (subscribed.get(subscription.endpoint, 0)
                                             + subscribed_us(subscription.segments, start_us, end_us))
    result = simulate_capacity(app, env, TrafficSource(period=period)).result
    return margin_report(
        env=env, period=period, finalized=stored["finalized"], invoices=stored["invoices"],
        compute={e.name: Compute(e.tenant, e.attributed_cost) for e in result.endpoints},
        overhead=result.overhead_cost, subscribed=subscribed,
        simulation_window=(result.start, result.end), prices_read_on=result.prices_read_on,
        availability_zones=cfg.az_count,
    )
