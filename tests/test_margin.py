"""`privend billing margin`: invoiced revenue against simulated compute and network, per endpoint and in total.

The world: tenant acme (UTC) in dev, whose one L4 pool keeps one warm GPU (warmHeadroomGpus: 1), with
- chat: Llama 3.1 8B, one GPU, replicas 1:1, plan basic (310.00 a month, 3,100,000 tokens included,
  2.00 per million beyond) since 2025-02-01; February finalized with 3,100,000 tokens, then 1,000,000
  more February tokens arrive late; 4,100,000 tokens in March;
- code: the same model, replicas 0:1, plan pro (620.00, 6,200,000 included) since 2025-03-11, no usage.

By hand, for March 2025 (31 days, 744 hours; g6.xlarge $0.8048/h, one L4 GPU, from the GPU catalog):
- revenue: chat 310.00 + overage 1,000,000 x 2.00/M = 2.00 + adjustment for February 2.00 = 314.00;
  code 620.00 x 21/31 = 420.00.
- compute: chat's one replica holds its GPU all month: 744 x 0.8048 = 598.7712 -> 598.77; code never
  runs a replica (no usage, minimum 0): 0.00. Overhead: the warm GPU, one more g6.xlarge all month: 598.77.
- network per hour: NLB 0.0225 + 1 NLCU x 0.006 + interface endpoint 0.01 x 2 AZs = 0.0485;
  chat 744 h x 0.0485 = 36.084 -> 36.08; code from March 11, 504 h x 0.0485 = 24.444 -> 24.44.
- margin: chat 314.00 - 598.77 - 36.08 = -320.85 (-102.18 % -> -102.2); code 420.00 - 0.00 - 24.44 =
  395.56 (94.18 % -> 94.2).
- totals: revenue 734.00; compute 598.77 + 0.00 + 598.77 = 1197.54; network 60.52;
  margin 734.00 - 1197.54 - 60.52 = -524.06 (-71.40 % -> -71.4).
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from privend.errors import PrivendError
from privend.margin import Compute, margin_report, network_cost
from tests.billing_support import event
from tests.cli_support import assert_one_line_error, ok, open_registry, private_stacks, run

MODEL_8B = "meta-llama/Llama-3.1-8B-Instruct"
HOUR_US = 3_600_000_000

pytestmark = pytest.mark.usefixtures("no_aws_credentials", "plans")


@pytest.fixture
def stacks(monkeypatch, tmp_path) -> Path:
    stacks = private_stacks(monkeypatch, tmp_path)
    path = stacks / "Pulumi.dev.yaml"
    path.write_text(path.read_text().replace("      instanceTypes:", "      warmHeadroomGpus: 1\n      instanceTypes:", 1))
    return stacks


def import_events(tmp_path: Path, name: str, *lines: str) -> None:
    path = tmp_path / f"{name}.jsonl"
    path.write_text("\n".join(lines) + "\n")
    ok("usage", "import", str(path))


@pytest.fixture
def world(stacks, tmp_path):
    ok("tenant", "create", "acme", "--aws-account", "111122223333")
    ok("endpoint", "create", "chat", "--tenant", "acme", "--model", MODEL_8B, "--replicas", "1:1", "--plan", "basic",
       "--start", "2025-02-01T00:00:00Z", "--no-deploy")
    ok("endpoint", "create", "code", "--tenant", "acme", "--model", MODEL_8B, "--replicas", "0:1", "--plan", "pro",
       "--start", "2025-03-11T00:00:00Z", "--no-deploy")
    import_events(tmp_path, "february", event("f1", "chat", "2025-02-10T10:00:00Z", 3_000_000, 100_000))
    ok("billing", "reconcile", "--period", "2025-02", "--finalize")
    import_events(tmp_path, "late-and-march", event("f2", "chat", "2025-02-20T10:00:00Z", 1_000_000),
                  event("m1", "chat", "2025-03-05T12:00:00Z", 4_000_000, 100_000))


def test_margin_json_matches_the_hand_computed_invoice_compute_and_network(world):
    ok("billing", "reconcile", "--period", "2025-03")

    data = json.loads(ok("billing", "margin", "--period", "2025-03", "--format", "json").stdout)

    assert data["endpoints"] == [
        {"endpoint": "chat", "tenant": "acme", "plans": ["basic"], "revenue": "314.00", "compute": "598.77",
         "network": "36.08", "margin": "-320.85", "margin_percent": "-102.2"},
        {"endpoint": "code", "tenant": "acme", "plans": ["pro"], "revenue": "420.00", "compute": "0.00",
         "network": "24.44", "margin": "395.56", "margin_percent": "94.2"},
    ]
    assert data["platform_overhead"] == "598.77"
    assert data["totals"] == {"revenue": "734.00", "compute": "1197.54", "network": "60.52", "margin": "-524.06",
                              "margin_percent": "-71.4"}
    assert (data["period"], data["finalized"], data["currency"]) == ("2025-03", False, "USD")
    assert data["window"] == {"start": "2025-03-01T00:00:00+00:00", "end": "2025-04-01T00:00:00+00:00"}


def test_margin_table_ends_with_the_overhead_row_and_the_totals(world):
    ok("billing", "reconcile", "--period", "2025-03")

    out = ok("billing", "margin", "--period", "2025-03").stdout

    assert "margin of env dev, 2025-03 (open), USD" in out
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in out.splitlines() if "│" in line]
    assert rows == [
        ["chat", "acme", "basic", "$314.00", "$598.77", "$36.08", "-$320.85", "-102.2"],
        ["code", "acme", "pro", "$420.00", "$0.00", "$24.44", "$395.56", "94.2"],
        ["platform overhead", "", "", "", "$598.77", "", "-$598.77", ""],
        ["total", "", "", "$734.00", "$1,197.54", "$60.52", "-$524.06", "-71.4"],
    ]
    assert "for the hours of the UTC month it was subscribed" in out


def test_margin_of_a_period_not_reconciled_names_the_command_and_stores_nothing(world):
    result = run("billing", "margin", "--period", "2025-03")

    assert_one_line_error(result, 2, "period 2025-03 in env dev has not been reconciled; run "
                                     "`privend billing reconcile --env dev --period 2025-03` first")
    with open_registry() as registry:
        assert registry.get_billing_period("dev", "2025-03") is None
        assert registry.list_invoices("dev", "2025-03") == []


def test_a_month_before_any_subscription_has_compute_but_no_revenue_network_or_margin_percent(world):
    # January 2025: reconciled with no invoice (nothing was subscribed yet). The simulation knows the
    # endpoints as registered now, so chat's minimum replica is priced all month: 744 h x 0.8048 = 598.77;
    # neither endpoint was subscribed, so no network.
    ok("billing", "reconcile", "--period", "2025-01")

    data = json.loads(ok("billing", "margin", "--period", "2025-01", "--format", "json").stdout)

    assert [(e["endpoint"], e["plans"], e["revenue"], e["compute"], e["network"], e["margin"], e["margin_percent"])
            for e in data["endpoints"]] == [("chat", [], "0.00", "598.77", "0.00", "-598.77", None),
                                            ("code", [], "0.00", "0.00", "0.00", "0.00", None)]
    assert data["totals"]["margin_percent"] is None
    table = ok("billing", "margin", "--period", "2025-01").stdout
    assert [line.split("│")[-2].strip() for line in table.splitlines() if "│" in line] == ["n/a", "n/a", "", "n/a"]


@pytest.mark.parametrize("period, message", [
    ("2025-3", "--period '2025-3' must be a month as YYYY-MM, like 2026-03"),
    ("1999-12", "--period '1999-12' is outside the billing periods 2000-01 to 2999-12"),
])
def test_margin_refuses_a_bad_period_in_one_line(world, period, message):
    assert_one_line_error(run("billing", "margin", "--period", period), 2, message)


def test_network_rounds_once_half_even_to_cents():
    # 10 h x 0.0485 = 0.485 -> 0.48 (half to even); 30 h x 0.0485 = 1.455 -> 1.46; 1 µs short of 10 h: 0.48.
    assert network_cost(10 * HOUR_US) == Decimal("0.48")
    assert network_cost(30 * HOUR_US) == Decimal("1.46")
    assert network_cost(10 * HOUR_US - 1) == Decimal("0.48")
    # Three AZs and 2 NLCU: 0.0225 + 2 x 0.006 + 3 x 0.01 = 0.0645 per hour; 720 h = 46.44.
    assert network_cost(720 * HOUR_US, availability_zones=3, nlcu_per_hour=Decimal(2)) == Decimal("46.44")


def _report(invoices, compute, overhead=Decimal("0")):
    return margin_report(env="dev", period="2025-03", finalized=True, invoices=invoices, compute=compute,
                         overhead=overhead, subscribed={"idle": 744 * HOUR_US}, simulation_window=("a", "b"),
                         prices_read_on="2026-11-26")


def test_an_endpoint_without_revenue_has_no_margin_percent():
    report = _report([], {"idle": Compute("acme", Decimal("12.345"))}, overhead=Decimal("1.005"))

    row = report.to_dict()["endpoints"][0]
    # compute 12.345 -> 12.34 and overhead 1.005 -> 1.00 (half to even); network 744 h x 0.0485 = 36.08.
    assert row == {"endpoint": "idle", "tenant": "acme", "plans": [], "revenue": "0.00", "compute": "12.34",
                   "network": "36.08", "margin": "-48.42", "margin_percent": None}
    assert report.to_dict()["totals"] == {"revenue": "0.00", "compute": "13.34", "network": "36.08",
                                          "margin": "-49.42", "margin_percent": None}


def test_revenue_sums_every_line_of_an_endpoint_across_plans_and_adjustments():
    invoices = [{"tenant": "acme", "currency": "USD", "total": "30.01", "lines": [
        {"endpoint": "idle", "kind": "base_fee", "plan": "basic", "quantity": "0.5", "amount": "155.00"},
        {"endpoint": "idle", "kind": "base_fee", "plan": "pro", "quantity": "0.5", "amount": "310.00"},
        {"endpoint": "idle", "kind": "adjustment", "plan": "basic", "quantity": -1, "amount": "-434.99",
         "original_period": "2025-02"}]}]

    row = _report(invoices, {}).endpoints[0]

    assert (row.plans, row.revenue, row.compute, row.network) == (("basic", "pro"), Decimal("30.01"),
                                                                  Decimal("0.00"), Decimal("36.08"))
    assert row.margin == Decimal("-6.07")
    assert row.margin_percent == Decimal("-20.2")  # -6.07 / 30.01 = -20.226... %


def test_revenue_in_another_currency_than_the_prices_is_refused():
    invoices = [{"tenant": "acme", "currency": "EUR", "total": "1.00", "lines": []}]
    with pytest.raises(PrivendError, match="tenant 'acme' is invoiced in EUR, but compute and network are "
                                           "priced in USD"):
        _report(invoices, {})
