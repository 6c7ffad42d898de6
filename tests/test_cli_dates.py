"""Dates that make sense: a period is finalized once it has ended (or with --force), subscription dates
lie between 2000 and a year ahead, and a plan change cannot be dated inside a finalized period."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.cli_support import MODEL_1B, assert_one_line_error, ok, run, show_json

pytestmark = pytest.mark.usefixtures("no_aws_credentials")


def _this_month() -> str:
    return datetime.now(UTC).strftime("%Y-%m")


def test_finalizing_a_period_that_has_not_ended_is_refused_and_changes_nothing(world):
    period = _this_month()
    result = run("billing", "reconcile", "--period", period, "--finalize")
    assert_one_line_error(result, 2, f"period {period} has not ended")
    assert "give --force" in result.stderr
    # Nothing was frozen: the period reconciles (and could finalize) later.
    assert "(open)" in ok("billing", "reconcile", "--period", period).stdout


def test_force_finalizes_a_period_that_has_not_ended(world):
    period = _this_month()
    assert "finalized" in ok("billing", "reconcile", "--period", period, "--finalize", "--force").stdout


def test_a_period_that_has_ended_finalizes_without_force(world):
    assert "finalized: 2 invoice(s)" in ok("billing", "reconcile", "--period", "2025-03", "--finalize").stdout


@pytest.mark.parametrize("days,message", [(None, "is before 2000-01-01"), (400, "is more than a year ahead")],
                         ids=["before-2000", "400-days-ahead"])
def test_a_subscription_start_out_of_range_is_refused(world, days, message):
    start = "1999-12-31T23:00:00Z" if days is None else (datetime.now(UTC) + timedelta(days=days)).isoformat()
    result = run("endpoint", "create", "extra", "--tenant", "acme", "--model", MODEL_1B, "--start", start,
                 "--no-deploy")
    assert_one_line_error(result, 2, f"--start {datetime.fromisoformat(start.replace('Z', '+00:00')).isoformat()}")
    assert message in result.stderr
    assert run("endpoint", "show", "extra").exit_code == 2


def test_a_plan_change_effective_a_year_and_more_ahead_is_refused(world):
    at = (datetime.now(UTC) + timedelta(days=400)).isoformat()
    result = run("endpoint", "update", "tiny", "--plan", "scale", "--effective", at, "--no-deploy")
    assert_one_line_error(result, 2, "is more than a year ahead")


def test_a_plan_change_inside_a_finalized_period_is_refused_and_changes_nothing(world):
    ok("billing", "reconcile", "--period", "2025-03", "--finalize")
    before = show_json("tiny")
    result = run("endpoint", "update", "tiny", "--plan", "scale", "--effective", "2025-03-15T00:00:00Z",
                 "--no-deploy")
    assert_one_line_error(result, 2, "falls in billing period 2025-03, which is finalized: "
                                     "a plan change can take effect from 2025-04 on")
    assert show_json("tiny") == before
    ok("endpoint", "update", "tiny", "--plan", "scale", "--effective", "2025-04-01T00:00:00Z", "--no-deploy")
    assert show_json("tiny")["plan"] == "scale"


def test_deleting_with_an_end_before_2000_is_refused(world):
    result = run("endpoint", "delete", "tiny", "--yes", "--no-deploy", "--effective", "1990-01-01T00:00:00Z")
    assert_one_line_error(result, 2, "is before 2000-01-01")
    assert show_json("tiny")["status"] != "deleting"
