"""Reconcile: a period's usage and subscriptions into invoices, alerts and suspensions.

One run reads (subscriptions, usage sums, earlier finalized invoices), computes
everything in memory, and hands the registry one `ReconcileCommit`, which it
applies all at once: a crash anywhere leaves the registry as before the run or
as after it. Usage is summed in the registry (in SQL on SQLite), per endpoint and
segment window, never event by event here.

Late usage (rule 8): a finalized invoice keeps its rating basis (each window's
plan terms, share of the period and the usage it counted). When the tenant's
first open period after it is reconciled, each finalized window is re-rated
with the usage stored now; the difference from what was billed for it (its
finalized lines plus finalized adjustments) becomes an `adjustment` line.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from privend.billing.periods import check_period, period_bounds, period_of, previous_period
from privend.billing.plans import Plan, load_plans
from privend.billing.rating import (
    Line,
    Rated,
    Window,
    format_cents,
    parse_cents,
    rate_window,
    windows_in_period,
)
from privend.billing.suspension import SUSPENDED
from privend.errors import InputError, PrivendError
from privend.registry import Endpoint, Registry
from privend.registry.billing import (
    Alert,
    BillingSubscription,
    InvoiceRecord,
    ReconcileCommit,
    StatusChange,
    from_us,
    to_us,
)

KIND_ORDER = {"base_fee": 0, "overage": 1, "adjustment": 2}


@dataclass
class ReconcileResult:
    period: str
    finalized: bool
    invoices: list[dict[str, Any]]
    changed: bool
    message: str
    new_alerts: list[Alert] = field(default_factory=list)
    suspended: list[str] = field(default_factory=list)
    lifted: list[str] = field(default_factory=list)
    published: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"period": self.period, "finalized": self.finalized, "invoices": self.invoices}


def invoice_json(document: dict[str, Any]) -> dict[str, Any]:
    """The customer-facing part of a stored invoice document (without its rating basis)."""
    return {key: document[key] for key in ("tenant", "currency", "lines", "total")}


def dumps(data: Any) -> str:
    """The one JSON encoding of billing output: sorted keys, so equal inputs give equal bytes."""
    return json.dumps(data, indent=2, sort_keys=True)


def reconcile(
    registry: Registry,
    env: str,
    period: str,
    *,
    now: datetime,
    finalize: bool = False,
    plans: dict[str, Plan] | None = None,
    publish: Any = None,
    force: bool = False,
) -> ReconcileResult:
    """Reconcile `period` of `env` as of `now`; `publish(alert)` sends an outbox entry (SNS), if given.

    Finalizing a period that has not ended in every tenant's time zone is refused unless `force`:
    usage still to come would only be billed later, as adjustments.
    """
    check_period(period)
    stored = registry.get_billing_period(env, period)
    if stored is not None and stored.finalized:
        stored_invoices = [invoice_json(record.document) for record in registry.list_invoices(env, period)]
        return ReconcileResult(period, True, stored_invoices, False,
                               f"period {period} in env {env} is finalized; nothing changed")
    catalog = load_plans() if plans is None else plans
    subscriptions = registry.list_billing_subscriptions(env)
    if finalize and not force:
        zones = {s.billing_timezone for s in subscriptions} or {"UTC"}
        ends = max(period_bounds(period, zone)[1] for zone in zones)
        if ends > to_us(now):
            raise InputError(f"period {period} has not ended (it ends {from_us(ends).isoformat()} in the last "
                             f"tenant time zone): finalize it after that, or give --force")
    endpoints = {endpoint.name: endpoint for endpoint in registry.list_endpoints(env)}

    windows = [w for subscription in subscriptions for w in windows_in_period(subscription, period, catalog)]
    chain = _finalized_chain(registry, env, period)
    late_windows, billed = _finalized_basis(registry, env, chain)
    live = _current_windows(subscriptions, endpoints, now, catalog)
    live_windows = [window for _, window, _ in live if window is not None]
    usage = registry.usage_totals(
        env, [(w.endpoint, w.start_us, w.end_us)
              for w in [*windows, *(w for _, w in late_windows), *live_windows]]
    )
    period_usage, usage = usage[:len(windows)], usage[len(windows):]
    late_usage, live_usage = usage[:len(late_windows)], usage[len(late_windows):]

    rated = [rate_window(window, used) for window, used in zip(windows, period_usage, strict=True)]
    # Sort keys: per endpoint, its windows in time order (base fee, then overage), then adjustments.
    lines: dict[str, list[tuple[tuple[Any, ...], Line]]] = defaultdict(list)
    basis: dict[str, list[dict[str, Any]]] = defaultdict(list)
    currencies: dict[str, set[str]] = defaultdict(set)
    for window, rating in zip(windows, rated, strict=True):
        lines[window.tenant].extend(((window.endpoint, 0, window.start_us, KIND_ORDER[line.kind]), line)
                                    for line in rating.lines)
        basis[window.tenant].append(window.basis(rating.usage))
        currencies[window.tenant].add(window.plan.currency)
    for tenant, line, currency in _adjustments(late_windows, late_usage, billed):
        lines[tenant].append(((line.endpoint, 1, line.original_period, 0), line))
        currencies[tenant].add(currency)

    invoices: list[InvoiceRecord] = []
    for tenant in sorted(lines):
        if len(currencies[tenant]) != 1:
            raise PrivendError(f"tenant '{tenant}' has plans in several currencies in {period} "
                               f"({', '.join(sorted(currencies[tenant]))}); one invoice needs one currency")
        ordered = [line for _, line in sorted(lines[tenant], key=lambda keyed: keyed[0])]
        document = {
            "tenant": tenant,
            "currency": currencies[tenant].pop(),
            "lines": [line.to_json() for line in ordered],
            "total": format_cents(sum(line.cents for line in ordered)),
            "basis": basis[tenant],
        }
        invoices.append(InvoiceRecord(period, tenant, document))

    alerts = _alerts(period, windows, rated, now)
    changes, suspended, lifted = _suspension_changes(live, live_usage)
    new_alerts = registry.commit_reconcile(ReconcileCommit(
        env=env, period=period, at=now, finalize=finalize, invoices=tuple(invoices),
        alerts=tuple(alerts), status_changes=tuple(changes),
    ))
    published = publish_outbox(registry, env, publish, now) if publish is not None else 0
    verb = "finalized" if finalize else "reconciled (open)"
    return ReconcileResult(period, finalize, [invoice_json(i.document) for i in invoices], True,
                           f"period {period} in env {env} {verb}: {len(invoices)} invoice(s)",
                           new_alerts, suspended, lifted, published)


def _finalized_chain(registry: Registry, env: str, period: str) -> list[str]:
    """Finalized periods whose late usage lands in `period`: every finalized one just before it."""
    finalized = {p.period for p in registry.list_billing_periods(env) if p.finalized}
    chain = []
    previous = previous_period(period)
    while previous in finalized:
        chain.append(previous)
        previous = previous_period(previous)
    return sorted(chain)


def _finalized_basis(
    registry: Registry, env: str, chain: list[str]
) -> tuple[list[tuple[str, Window]], dict[tuple[str, str], list[int]]]:
    """The windows of every period in `chain`, tagged with their period, and what was billed
    for each (endpoint, period): [cents, tokens], from its invoice and later adjustments."""
    windows: list[tuple[str, Window]] = []
    billed: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for period in chain:
        for record in registry.list_invoices(env, period):
            for data in record.document.get("basis", []):
                window = Window.from_basis(record.tenant, data)
                windows.append((period, window))
                billed[(window.endpoint, period)][1] += data["usage"]
            for line in record.document["lines"]:
                if line["kind"] == "adjustment":
                    key = (line["endpoint"], line["original_period"])
                    billed[key][0] += parse_cents(line["amount"])
                    billed[key][1] += line["quantity"]
                else:
                    billed[(line["endpoint"], period)][0] += parse_cents(line["amount"])
    return windows, billed


def _adjustments(
    late_windows: list[tuple[str, Window]], usage: list[int], billed: dict[tuple[str, str], list[int]]
) -> list[tuple[str, Line, str]]:
    """Rule 8: per endpoint and finalized period, its re-rating now minus what was billed."""
    rerated: dict[tuple[str, str], list[Any]] = {}
    for (period, window), used in zip(late_windows, usage, strict=True):
        rating = rate_window(window, used)
        entry = rerated.setdefault((window.endpoint, period), [0, 0, window])
        entry[0] += rating.cents
        entry[1] += used
        entry[2] = window  # the last window names the plan on the line
    result = []
    for (endpoint, period), (cents, tokens, window) in sorted(rerated.items()):
        billed_cents, billed_tokens = billed[(endpoint, period)]
        if cents != billed_cents or tokens != billed_tokens:
            line = Line(endpoint, "adjustment", window.plan.name, tokens - billed_tokens,
                        cents - billed_cents, original_period=period)
            result.append((window.tenant, line, window.plan.currency))
    return result


def _alerts(period: str, windows: list[Window], rated: list[Rated], now: datetime) -> list[Alert]:
    """80 % and 100 % of an endpoint's included tokens in the period, and its overage cap reached."""
    per_endpoint: dict[str, dict[str, Any]] = {}
    for window, rating in zip(windows, rated, strict=True):
        entry = per_endpoint.setdefault(window.endpoint, {"tenant": window.tenant, "included": 0, "usage": 0,
                                                          "capped": [], "plan": window.plan.name})
        entry["included"] += window.included
        entry["usage"] += rating.usage
        entry["plan"] = window.plan.name
        if rating.cap_reached:
            entry["capped"].append(window)
    alerts = []
    for endpoint, entry in sorted(per_endpoint.items()):
        included, used, tenant = entry["included"], entry["usage"], entry["tenant"]
        details = {"included_tokens": included, "usage_tokens": used, "plan": entry["plan"]}
        for kind, percent in (("usage_80", 80), ("usage_100", 100)):
            if included > 0 and used * 100 >= included * percent:
                alerts.append(Alert(period, endpoint, kind, tenant,
                                    f"endpoint '{endpoint}' of tenant '{tenant}' used {percent}% of its included "
                                    f"tokens in {period}: {used:,} of {included:,}", now, details))
        if entry["capped"]:
            capped = entry["capped"][-1]
            plan = capped.plan
            if plan.cap != "hard":
                consequence = "it keeps serving (soft cap)"
            elif capped.end_us > to_us(now):
                consequence = "it is suspended (hard cap)"
            else:
                # Reconciled after the plan's time in the period ended: there is nothing left to suspend.
                consequence = "the period was over when it was reconciled, so it was not suspended (hard cap)"
            alerts.append(Alert(period, endpoint, "overage_cap", tenant,
                                f"endpoint '{endpoint}' of tenant '{tenant}' reached the overage protection of "
                                f"plan '{plan.name}' in {period}; {consequence}", now,
                                {**details, "cap": plan.cap}))
    return alerts


def _current_windows(
    subscriptions: list[BillingSubscription], endpoints: dict[str, Endpoint], now: datetime,
    plans: dict[str, Plan],
) -> list[tuple[Endpoint, Window | None, str]]:
    """For live endpoints on a hard plan now, or suspended: the running segment's window in the
    current period (the tenant's month containing `now`)."""
    now_us = to_us(now)
    result: list[tuple[Endpoint, Window | None, str]] = []
    for subscription in subscriptions:
        endpoint = endpoints.get(subscription.endpoint)
        if subscription.retired_at is not None or endpoint is None:
            continue
        current = period_of(now, subscription.billing_timezone)
        running = [w for w in windows_in_period(subscription, current, plans) if w.start_us <= now_us < w.end_us]
        if running and (running[0].plan.cap == "hard" or endpoint.status == SUSPENDED):
            result.append((endpoint, running[0], current))
        elif not running and endpoint.status == SUSPENDED:
            result.append((endpoint, None, current))
    return result


def _suspension_changes(
    live: list[tuple[Endpoint, Window | None, str]], usage: list[int]
) -> tuple[list[StatusChange], list[str], list[str]]:
    """Hard cap: suspend where the running hard plan's protection is used up this period; lift where not."""
    changes: list[StatusChange] = []
    suspended: list[str] = []
    lifted: list[str] = []
    usage_iter = iter(usage)
    for endpoint, window, current in live:
        used = next(usage_iter) if window is not None else 0
        reached = (window is not None and window.plan.cap == "hard"
                   and rate_window(window, used).cap_reached)
        if endpoint.status in ("deleting", "deploying"):
            continue  # another operation owns it now; the next reconcile decides
        if reached and window is not None and endpoint.status != SUSPENDED:
            message = (f"hard cap: the overage protection of plan '{window.plan.name}' is used up for "
                       f"{current}; serving resumes in a new period or on a plan with room")
            changes.append(StatusChange(endpoint.name, endpoint.version, SUSPENDED, message))
            suspended.append(endpoint.name)
        elif not reached and endpoint.status == SUSPENDED:
            changes.append(StatusChange(endpoint.name, endpoint.version, "pending",
                                        "suspension lifted: the current period has room; sync redeploys it"))
            lifted.append(endpoint.name)
    return changes, suspended, lifted


def publish_outbox(registry: Registry, env: str, publish: Any, now: datetime) -> int:
    """Send every unpublished outbox entry of `env`, marking each one sent right after it is."""
    sent = 0
    for alert in registry.list_alerts(env):
        if alert.published_at is None:
            publish(alert)
            registry.mark_alerts_published(env, [alert.key], now)
            sent += 1
    return sent
