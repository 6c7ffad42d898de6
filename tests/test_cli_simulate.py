"""`privend capacity simulate`: traffic from traces, the ledger or the generator, through the pools."""

from __future__ import annotations

import json
import shutil
from decimal import Decimal
from pathlib import Path

import pytest

from tests.cli_support import assert_one_line_error, ok, private_stacks, run

ACME, GLOBEX = "111122223333", "444455556666"
MODEL_8B = "meta-llama/Llama-3.1-8B-Instruct"
TRACE = Path(__file__).parent / "data" / "AzureLLMInferenceTrace_code.csv"

pytestmark = pytest.mark.usefixtures("no_aws_credentials")


@pytest.fixture(autouse=True)
def stacks(monkeypatch, tmp_path) -> Path:
    return private_stacks(monkeypatch, tmp_path)


@pytest.fixture
def fleet():
    ok("tenant", "create", "acme", "--aws-account", ACME)
    ok("tenant", "create", "globex", "--aws-account", GLOBEX, "--billing-timezone", "Asia/Singapore")
    ok("endpoint", "create", "chat", "--tenant", "acme", "--model", MODEL_8B, "--replicas", "1:3", "--no-deploy")
    ok("endpoint", "create", "code", "--tenant", "globex", "--model", MODEL_8B, "--replicas", "0:2",
       "--no-deploy")


def test_simulate_a_trace_directory_reports_the_keys_scripts_rely_on(fleet, tmp_path):
    traces = tmp_path / "traces"
    traces.mkdir()
    shutil.copy(TRACE, traces / "chat.csv")
    data = json.loads(ok("capacity", "simulate", "--traffic", str(traces), "--format", "json").stdout)
    by_name = {e["name"]: e for e in data["endpoints"]}
    assert set(by_name) == {"chat", "code"}
    chat = by_name["chat"]
    assert chat["replica_prefill_tokens_per_second"] > 0 and chat["replica_decode_tokens_per_second"] > 0
    assert chat["replica_hours"] > 0
    assert set(chat["cold_start_waits"]) >= {"count", "p95_seconds", "max_seconds"}
    # code had no trace: no traffic, and it scales to zero.
    assert by_name["code"]["work_replica_hours"] == 0
    fleet_ = data["fleet"]
    for key in ("pooled", "dedicated_at_peak", "dedicated_autoscaled", "lower_bound"):
        assert Decimal(fleet_[key]["cost"]) >= 0
    assert Decimal(fleet_["pooled"]["cost"]) >= Decimal(fleet_["lower_bound"]["cost"])
    Decimal(fleet_["saving_vs_dedicated_at_peak_percent"])
    assert data["window"]["start"].startswith("2023-11-16T18:17")


def test_simulate_synthetic_traffic_is_repeatable_and_prints_a_table(fleet):
    args = ("capacity", "simulate", "--synthetic", "4", "--start", "2026-11-02T00:00:00Z", "--end",
            "2026-11-03T00:00:00Z")
    first = json.loads(ok(*args, "--format", "json").stdout)
    second = json.loads(ok(*args, "--format", "json").stdout)
    assert first["fleet"] == second["fleet"]
    table = ok(*args).stdout
    assert "dedicated at peak" in table and "pooled" in table


def test_simulate_the_ledger_of_an_empty_period_costs_only_what_minimums_hold(fleet):
    data = json.loads(ok("capacity", "simulate", "--period", "2026-10", "--format", "json").stdout)
    assert data["window"]["start"] == "2026-10-01T00:00:00+00:00"
    chat = next(e for e in data["endpoints"] if e["name"] == "chat")
    assert chat["replica_hours"] == pytest.approx(31 * 24)  # its one minimum replica, all month
    assert chat["work_replica_hours"] == 0


@pytest.mark.parametrize("args, message", [
    ((), "give exactly one of --traffic DIR, --period YYYY-MM, --synthetic SEED"),
    (("--synthetic", "1", "--period", "2026-10"), "(got --period, --synthetic)"),
])
def test_simulate_needs_exactly_one_traffic_source(fleet, args, message):
    result = run("capacity", "simulate", *args)
    assert result.exit_code == 2
    assert message in result.stderr


def test_simulate_a_missing_trace_directory_is_one_line(fleet, tmp_path):
    assert_one_line_error(run("capacity", "simulate", "--traffic", str(tmp_path / "nope")), 2,
                          "no such traffic directory")


def test_simulate_keeps_the_warm_headroom_the_stack_file_asks_for(fleet, stacks):
    path = stacks / "Pulumi.dev.yaml"
    text = path.read_text()
    assert "warmHeadroomGpus" not in text
    args = ("capacity", "simulate", "--synthetic", "2", "--start", "2026-11-02T00:00:00Z", "--end",
            "2026-11-02T06:00:00Z", "--format", "json")
    cold = json.loads(ok(*args).stdout)
    path.write_text(text.replace("      instanceTypes:", "      warmHeadroomGpus: 2\n      instanceTypes:", 1))
    warm = json.loads(ok(*args).stdout)
    assert [p["warm_headroom_gpus"] for p in cold["pools"]] == [0]
    assert [p["warm_headroom_gpus"] for p in warm["pools"]] == [2]
    assert Decimal(warm["fleet"]["pooled"]["cost"]) > Decimal(cold["fleet"]["pooled"]["cost"])
