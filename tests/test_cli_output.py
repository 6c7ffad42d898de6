"""Output that fits: tables at 80 and 120 columns never cut a figure, a status or a model id, and the
plan and the demo say what the guardrails found."""

from __future__ import annotations

import re

import pytest
from rich.console import Console

import privend.cli.render as render
from privend.values import EndpointStatus
from tests.cli_support import MODEL_8B, ok, open_registry

pytestmark = pytest.mark.usefixtures("no_aws_credentials")

MONEY = re.compile(r"-?\$[0-9][0-9,]*\.[0-9]{2}")


@pytest.fixture(params=[80, 120])
def width(request, monkeypatch) -> int:
    monkeypatch.setattr(render, "console", lambda: Console(width=request.param, color_system=None))
    return request.param


def _lines_fit(text: str, width: int) -> None:
    for line in text.splitlines():
        if line[:1] in "┏┃┡│└":  # a table's own lines: prose lines may be longer, the terminal wraps them
            assert len(line) <= width, line
    assert "…" not in text


def test_emit_table_keeps_every_word_whole_and_drops_the_named_columns_first(width, capsys):
    rows = [("chat", "acme", MODEL_8B, "pool-with-a-long-name", "1..3", 1, "suspended", "$12,345.67")]
    render.emit_table("t", ["name", "tenant", "model", "pool", "replicas", "gpus", "status", "amount"], rows,
                      drop=["pool", "gpus", "replicas", "tenant"])
    out = capsys.readouterr().out
    _lines_fit(out, width)
    for word in ("chat", "acme", MODEL_8B, "suspended", "$12,345.67"):
        assert word in out
    if width == 80:
        assert "(left out at 80 columns: pool" in out
    else:
        assert "left out" not in out and "pool-with-a-long-name" in out


def test_a_two_column_table_folds_a_hash_rather_than_losing_the_value_column(capsys, monkeypatch):
    monkeypatch.setattr(render, "console", lambda: Console(width=80, color_system=None))
    render.emit_table("t", ["field", "value"], [("spec_hash", "a" * 64), ("status", "suspended")])
    out = capsys.readouterr().out
    assert "left out" not in out
    assert "a" * 40 in out and "suspended" in out
    _lines_fit(out, 80)


def test_endpoint_list_shows_whole_model_ids_and_statuses(world, width):
    with open_registry() as registry:
        endpoint = registry.get_endpoint("dev", "chat-bot")
        registry.update_endpoint("dev", "chat-bot", expected_version=endpoint.version,
                                 status=EndpointStatus.SUSPENDED, status_message="hard cap")
    out = ok("endpoint", "list").stdout
    _lines_fit(out, width)
    assert MODEL_8B in out and "suspended" in out


def test_capacity_plan_never_cuts_a_dollar_figure(world, width):
    out = ok("capacity", "plan").stdout
    _lines_fit(out, width)
    assert MONEY.search(out)
    for table_line in (line for line in out.splitlines() if line.startswith("│")):
        for cell in table_line.split("│"):
            assert not re.search(r"\$[0-9,.]*$", cell.strip()) or MONEY.fullmatch(cell.strip()), cell


def test_tenant_list_and_billing_tables_fit(world, width):
    _lines_fit(ok("tenant", "list").stdout, width)
    out = ok("billing", "reconcile", "--period", "2025-03").stdout
    _lines_fit(out, width)
    assert "998.00" in out and "2499.00" in out


def test_plan_says_how_many_guardrails_passed(world):
    out = ok("plan").stdout
    assert re.search(r"^1[0-9] guardrails, 0 violations: the plan passes$", out, re.M)


def test_plan_json_keeps_stdout_clean_and_says_the_verdict_on_stderr(world):
    import json

    result = ok("plan", "--format", "json")
    json.loads(result.stdout)
    assert "guardrails, 0 violations" in result.stderr


def test_demo_summarises_each_stack_and_keeps_the_trees_behind_verbose(tmp_path, width):
    out = ok("demo").stdout
    assert "├──" not in out
    for stack in ("dev", "dev-chat", "dev-batch", "dev-assist"):
        assert re.search(rf"^stack {stack} \([0-9]+ resources\): .*; guardrails passed$", out, re.M)
    assert re.search(r"^1[0-9] guardrails, 0 violations", out, re.M)
    _lines_fit(out, width)
    # Two screens of an 80x50 terminal for the plan, capacity and connect steps (120 lines), and the
    # closing margin table (20 more), prose lines wrapped as the terminal wraps them.
    if width == 80:
        wrapped = sum(max(1, -(-len(line) // 80)) for line in out.splitlines())
        assert wrapped <= 140, wrapped
    verbose = ok("demo", "--verbose").stdout
    assert "├──" in verbose and "resources by type" in verbose
    assert "resource \"aws_vpc_endpoint\"" in verbose and "resource \"aws_vpc_endpoint\"" not in out
