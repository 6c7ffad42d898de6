"""Invoices for finance: the stored result of a period's last reconcile, as JSON or CSV."""

from __future__ import annotations

import csv
import io
from typing import Any

from privend.billing.periods import check_period
from privend.billing.reconcile import invoice_json
from privend.errors import InputError
from privend.registry import Registry

CSV_COLUMNS = ["period", "finalized", "tenant", "currency", "endpoint", "kind", "plan", "quantity", "amount",
               "original_period"]


def stored_invoices(registry: Registry, env: str, period: str) -> dict[str, Any]:
    """What `billing reconcile --format json` printed last for `period` (same shape, same bytes)."""
    check_period(period)
    record = registry.get_billing_period(env, period)
    if record is None:
        raise InputError(f"period {period} in env {env} has not been reconciled; run "
                         f"`privend billing reconcile --env {env} --period {period}` first")
    return {"period": period, "finalized": record.finalized,
            "invoices": [invoice_json(i.document) for i in registry.list_invoices(env, period)]}


def invoices_csv(data: dict[str, Any]) -> str:
    """One row per line, then one `total` row per invoice."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    base = [data["period"], str(data["finalized"]).lower()]
    for invoice in data["invoices"]:
        for line in invoice["lines"]:
            writer.writerow([*base, invoice["tenant"], invoice["currency"], line["endpoint"], line["kind"],
                             line["plan"], line["quantity"], line["amount"], line.get("original_period", "")])
        writer.writerow([*base, invoice["tenant"], invoice["currency"], "", "total", "", "", invoice["total"], ""])
    return out.getvalue()
