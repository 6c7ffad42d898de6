"""The `usage` and `billing` commands end to end on the embedded registry, and the plans catalog."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from privend.billing.plans import load_plans, validate_plan_name
from privend.cli import main
from privend.errors import InputError
from tests.billing_support import PLANS_YAML, add_endpoint, add_tenant, event, utc
from tests.cli_support import open_registry


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The CLI with the usage and billing groups registered (as `_register()` will), test plans."""
    from privend.cli import billing, usage

    plans = tmp_path / "plans.yaml"
    plans.write_text(PLANS_YAML)
    monkeypatch.setenv("PRIVEND_PLANS", str(plans))
    monkeypatch.delenv("PRIVEND_ALERT_TOPIC_ARN", raising=False)
    monkeypatch.setitem(main.commands, "usage", usage.usage)
    monkeypatch.setitem(main.commands, "billing", billing.billing)
    with open_registry() as registry:
        add_tenant(registry)
        add_endpoint(registry, "chat", [("basic", utc(2025, 3, 11), None)])
    runner = CliRunner()
    return lambda *args, **kw: runner.invoke(main, list(args), catch_exceptions=False, **kw)


def write_usage(tmp_path: Path) -> Path:
    path = tmp_path / "usage.jsonl"
    path.write_text("\n".join([
        event("e1", "chat", "2025-03-12T10:00:00Z", 2_000_000, 600_000),
        event("e1", "chat", "2025-03-12T10:00:00Z", 2_000_000, 600_000),
        "{broken",
        event("e2", "ghost", "2025-03-12T10:00:00Z", 1),
    ]) + "\n")
    return path


def test_usage_import_prints_counts_as_json(cli, tmp_path: Path) -> None:
    result = cli("usage", "import", str(write_usage(tmp_path)), "--format", "json")

    assert result.exit_code == 0
    assert json.loads(result.output) == {"accepted": 1, "duplicate": 1, "quarantined": 2,
                                         "reasons": {"malformed": 1, "unknown_endpoint": 1}}


def test_usage_import_reads_stdin_and_table_output_is_one_line(cli, tmp_path: Path) -> None:
    result = cli("usage", "import", "-", input=write_usage(tmp_path).read_text())

    assert result.exit_code == 0
    assert result.output.splitlines() == [
        "imported stdin: 1 accepted, 1 duplicate, 2 quarantined (malformed 1, unknown_endpoint 1)",
        "see them with `privend usage quarantine`",
    ]


def test_usage_quarantine_lists_reasons(cli, tmp_path: Path) -> None:
    cli("usage", "import", str(write_usage(tmp_path)))

    result = cli("usage", "quarantine", "--format", "json")

    assert sorted(r["reason"] for r in json.loads(result.output)) == ["malformed", "unknown_endpoint"]


def test_missing_import_file_is_one_line_exit_2(cli, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["usage", "import", str(tmp_path / "nope.jsonl")])

    assert result.exit_code == 2
    assert result.output == f"error: cannot read {tmp_path / 'nope.jsonl'}: No such file or directory\n"


def test_reconcile_json_is_byte_identical_and_export_writes_the_same(cli, tmp_path: Path) -> None:
    cli("usage", "import", str(write_usage(tmp_path)))

    first = cli("billing", "reconcile", "--period", "2025-03", "--format", "json")
    second = cli("billing", "reconcile", "--period", "2025-03", "--format", "json")
    exported = cli("billing", "export", "--period", "2025-03", "--format", "json")

    assert first.exit_code == 0
    assert first.output == second.output == exported.output
    data = json.loads(first.output)
    assert data == {"period": "2025-03", "finalized": False, "invoices": [{
        "tenant": "acme", "currency": "USD", "total": "211.00", "lines": [
            {"endpoint": "chat", "kind": "base_fee", "plan": "basic", "quantity": "0.677419", "amount": "210.00"},
            {"endpoint": "chat", "kind": "overage", "plan": "basic", "quantity": 500000, "amount": "1.00"}]}]}


def test_export_csv_has_a_row_per_line_and_a_total(cli, tmp_path: Path) -> None:
    cli("usage", "import", str(write_usage(tmp_path)))
    cli("billing", "reconcile", "--period", "2025-03", "--finalize")

    result = cli("billing", "export", "--period", "2025-03", "--format", "csv")

    assert result.output.splitlines() == [
        "period,finalized,tenant,currency,endpoint,kind,plan,quantity,amount,original_period",
        "2025-03,true,acme,USD,chat,base_fee,basic,0.677419,210.00,",
        "2025-03,true,acme,USD,chat,overage,basic,500000,1.00,",
        "2025-03,true,acme,USD,,total,,,211.00,",
    ]


def test_reconcile_table_is_readable_and_finalized_rerun_says_so(cli, tmp_path: Path) -> None:
    cli("usage", "import", str(write_usage(tmp_path)))

    final = cli("billing", "reconcile", "--period", "2025-03", "--finalize")
    again = cli("billing", "reconcile", "--period", "2025-03")

    assert "invoice acme 2025-03 (finalized, USD)" in final.output
    assert "211.00" in final.output
    assert "period 2025-03 in env dev finalized: 1 invoice(s)" in final.output
    assert "period 2025-03 in env dev is finalized; nothing changed" in again.output


def test_export_of_a_period_never_reconciled_is_one_line_exit_2(cli) -> None:
    result = CliRunner().invoke(main, ["billing", "export", "--period", "2025-01"])

    assert result.exit_code == 2
    assert result.output == ("error: period 2025-01 in env dev has not been reconciled; run "
                             "`privend billing reconcile --env dev --period 2025-01` first\n")


def test_bad_period_is_exit_2_with_one_line(cli) -> None:
    result = CliRunner().invoke(main, ["billing", "reconcile", "--period", "2025-3"])

    assert result.exit_code == 2
    assert result.output == "error: --period '2025-3' must be a month as YYYY-MM, like 2026-03\n"


def test_billing_alerts_lists_each_alert_once(cli, tmp_path: Path) -> None:
    cli("usage", "import", str(write_usage(tmp_path)))
    cli("billing", "reconcile", "--period", "2025-03")
    cli("billing", "reconcile", "--period", "2025-03")

    result = cli("billing", "alerts", "--period", "2025-03", "--format", "json")

    assert [(a["endpoint"], a["kind"], a["published_at"]) for a in json.loads(result.output)] == [
        ("chat", "usage_100", None), ("chat", "usage_80", None)]


# -- the plans catalog --


def test_project_plans_catalog_loads_and_has_the_default_plan() -> None:
    plans = load_plans(Path(__file__).resolve().parent.parent / "stacks" / "plans.yaml")

    assert "standard" in plans
    assert {plan.cap for plan in plans.values()} == {"soft", "hard"}
    assert all(plan.currency == "USD" for plan in plans.values())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("plans:\n  - {name: a, monthly_fee: 1.5, included_tokens: 1, overage_per_million_tokens: '1',"
         " max_overage: null, cap: soft}", "plans[0].monthly_fee: write amounts as quoted decimal strings, like \"49.00\""),
        ("plans:\n  - {name: a, monthly_fee: '-1', included_tokens: 1, overage_per_million_tokens: '1',"
         " max_overage: null, cap: soft}", "plans[0].monthly_fee: Input should be greater than or equal to 0"),
        ("plans:\n  - {name: a, monthly_fee: '1', included_tokens: 1, overage_per_million_tokens: '1',"
         " max_overage: null, cap: firm}", "plans[0].cap: Input should be 'soft' or 'hard'"),
        ("plans:\n  - {name: a, monthly_fee: '1', included_tokens: 1, overage_per_million_tokens: 'x',"
         " max_overage: null, cap: soft}", "plans[0].overage_per_million_tokens: 'x' is not a decimal amount"),
        ("plans:\n  - {name: a, monthly_fee: '1', included_tokens: 1, overage_per_million_tokens: '1',"
         " max_overage: null, cap: soft, colour: red}", "plans[0].colour: unknown key"),
        ("plans:\n  - {name: a, monthly_fee: '1', included_tokens: 1, overage_per_million_tokens: '1', max_overage: null, cap: soft}\n"
         "  - {name: a, monthly_fee: '2', included_tokens: 1, overage_per_million_tokens: '1', max_overage: null, cap: soft}",
         "plans[1].name: plan 'a' is defined twice (first at plans[0])"),
        ("plans: []", "plans: List should have at least 1 item after validation, not 0"),
    ],
)
def test_bad_plans_catalog_names_file_key_and_reason(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "plans.yaml"
    path.write_text(text)

    with pytest.raises(InputError) as raised:
        load_plans(path)

    assert str(raised.value) == f"{path}: {message}"


def test_unknown_plan_name_is_refused_with_the_known_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "plans.yaml"
    path.write_text(PLANS_YAML)
    plans = load_plans(path)

    assert validate_plan_name("pro", plans) == "pro"
    with pytest.raises(InputError) as raised:
        validate_plan_name("gold", plans)
    assert str(raised.value) == "unknown plan 'gold' (plans: basic, capped, pro, tiny)"


def test_unstorable_and_deeply_nested_lines_are_quarantined_and_the_rest_imported(cli, tmp_path: Path) -> None:
    path = tmp_path / "usage.jsonl"
    path.write_text("\n".join([
        event("e1", "chat", "2025-03-12T10:00:00Z", 5),
        '{"id": "\\ud800", "endpoint": "chat", "timestamp": "2025-03-12T10:00:00Z", "input_tokens": 1, '
        '"output_tokens": 0}',
        '{"id": "e3", "endpoint": "ch\\udfffat", "timestamp": "2025-03-12T10:00:00Z", "input_tokens": 1, '
        '"output_tokens": 0}',
        '{"id": "\\udc00", "endpoint": "chat"}',
        "[" * 100_000 + "]" * 100_000,
        event("e2", "chat", "2025-03-12T11:00:00Z", 7),
    ]) + "\n")

    result = cli("usage", "import", str(path), "--format", "json")

    assert result.exit_code == 0
    assert json.loads(result.output) == {"accepted": 2, "duplicate": 0, "quarantined": 4,
                                         "reasons": {"malformed": 3, "missing_field": 1}}
    quarantined = json.loads(cli("usage", "quarantine", "--format", "json").output)
    assert sorted(q["detail"].split(": ", 1)[1] for q in quarantined) == sorted([
        "id holds a lone surrogate, which cannot be stored",
        "endpoint holds a lone surrogate, which cannot be stored",
        "missing field(s): timestamp, input_tokens, output_tokens",
        "JSON nested too deeply",
    ])
    assert all(q["event_id"] in (None, "e3") for q in quarantined)


def test_usage_import_from_stdin_survives_bytes_that_are_not_utf8(cli, tmp_path: Path) -> None:
    data = (event("e1", "chat", "2025-03-12T10:00:00Z", 5) + "\n").encode() + b'{"id": "\xff\xfe"}\n'

    result = cli("usage", "import", "-", "--format", "json", input=data)

    assert result.exit_code == 0
    assert json.loads(result.output) == {"accepted": 1, "duplicate": 0, "quarantined": 1,
                                         "reasons": {"missing_field": 1}}
