"""`privend endpoint create|list|show|update|scale|delete`, recorded without deploying (--no-deploy).

Every test runs against its own registry (conftest's PRIVEND_HOME); `world`
(conftest) holds two tenants and three recorded endpoints in dev. What happens
when these commands deploy at once, and `endpoint sync`, are in
test_cli_sync.py; the one-line rejections in test_cli_rejections.py.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from tests.cli_support import (
    APP_ROLE,
    ENDPOINT_FIELDS,
    MODEL_1B,
    MODEL_8B,
    MODEL_QWEN,
    OTHER_ACCOUNT,
    START,
    assert_no_error_lines,
    assert_one_line_error,
    by_name,
    endpoints_json,
    ok,
    registry_state,
    run,
    show_json,
)


# `endpoint create` checks EC2 quotas where AWS credentials exist: keep every test away from AWS.
pytestmark = pytest.mark.usefixtures("no_aws_credentials")


# -- create, list and show --


def test_endpoint_create_no_deploy_prints_the_sized_spec_and_how_to_deploy(world):
    result = ok("endpoint", "create", "support", "--tenant", "acme", "--model", MODEL_8B, "--replicas", "2:4",
                "--no-deploy")
    lines = result.stdout.splitlines()
    assert lines[0] == (
        "created endpoint 'support' for tenant 'acme' in env dev: meta-llama/Llama-3.1-8B-Instruct on pool l4, "
        "1 GPU(s) per replica, replicas 2..4, tokens 7168 in / 8192 total")
    assert lines[-1] == "recorded; not deployed (--no-deploy): deploy with `privend endpoint sync --env dev`"
    assert_no_error_lines(result)
    support = by_name("support")
    assert support["status"] == "pending"
    assert support["deployed_hash"] is None
    assert support["in_sync"] is False


def test_endpoint_list_json_has_stable_field_names_and_values(world):
    endpoints = endpoints_json()
    assert [e["name"] for e in endpoints] == ["chat-bot", "coder", "tiny"]
    assert all(set(e) == ENDPOINT_FIELDS for e in endpoints)
    chat, coder, tiny = endpoints
    assert chat == {**chat, "env": "dev", "tenant": "acme", "status": "pending", "status_message": "",
                    "model": MODEL_8B, "engine": "tgi", "pool": "l4", "replicas": {"min": 1, "max": 1},
                    "gpus_per_replica": 1, "plan": "standard", "deployed_hash": None, "in_sync": False,
                    "version": 1}
    assert (coder["engine"], coder["plan"], coder["tenant"]) == ("vllm", "scale", "globex")
    assert tiny["replicas"] == {"min": 1, "max": 3}
    assert tiny["model"] == MODEL_1B
    assert len({e["spec_hash"] for e in endpoints}) == 3
    assert all(len(e["spec_hash"]) == 64 for e in endpoints)
    only_acme = json.loads(ok("endpoint", "list", "--tenant", "acme", "--format", "json").stdout)
    assert [e["name"] for e in only_acme] == ["chat-bot", "tiny"]


def test_endpoint_list_table_shows_one_row_per_endpoint(world):
    out = ok("endpoint", "list").stdout
    assert "endpoints in dev" in out
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.startswith("│")}
    assert set(rows) == {"chat-bot", "coder", "tiny"}
    assert MODEL_QWEN in rows["coder"]
    assert "globex" in rows["coder"]
    assert "pending" in rows["coder"]
    assert "1..3" in rows["tiny"]
    assert "│ no " in rows["tiny"]


def test_endpoint_show_json_has_spec_and_one_open_subscription_segment(world):
    data = show_json("chat-bot")
    assert set(data) == ENDPOINT_FIELDS | {"spec", "subscription"}
    assert data["subscription"] == [{"plan": "standard", "start": START, "end": None}]
    spec = data["spec"]
    assert (spec["name"], spec["tenant"], spec["env"]) == ("chat-bot", "acme", "dev")
    assert spec["allowed_principals"] == [APP_ROLE]
    assert (spec["max_input_tokens"], spec["max_total_tokens"]) == (7168, 8192)
    assert (spec["revision"], spec["image"], spec["tier"]) == ("main", "stock", "shared")
    # The dedicated tier and the default principals (account root) come from the tenant.
    coder = show_json("coder")["spec"]
    assert coder["tier"] == "dedicated"
    assert coder["allowed_principals"] == [f"arn:aws:iam::{OTHER_ACCOUNT}:root"]


def test_endpoint_create_without_start_opens_the_subscription_now(world):
    ok("endpoint", "create", "fresh", "--tenant", "acme", "--model", MODEL_1B, "--no-deploy")
    (segment,) = show_json("fresh")["subscription"]
    start = datetime.fromisoformat(segment["start"])
    assert abs(datetime.now(timezone.utc) - start) < timedelta(minutes=5)
    assert segment["end"] is None


def test_endpoint_show_table_shows_replicas_spec_and_subscription(world):
    out = ok("endpoint", "show", "tiny").stdout
    assert "endpoint tiny" in out
    assert "1..3" in out
    assert "spec.max_total_tokens" in out
    assert MODEL_1B in out
    assert f"standard: {START} .. open" in out


def test_endpoint_name_of_exactly_24_characters_is_accepted(world):
    name = "e" * 24
    ok("endpoint", "create", name, "--tenant", "acme", "--model", MODEL_1B, "--no-deploy")
    assert by_name(name)["tenant"] == "acme"


def test_model_outside_the_catalog_is_accepted_with_explicit_gpus_and_token_limits(world):
    ok("endpoint", "create", "custom", "--tenant", "acme", "--model", "acme-ai/custom-13b", "--gpus-per-replica", "2",
       "--max-input-tokens", "3000", "--max-total-tokens", "4096", "--no-deploy")
    spec = show_json("custom")["spec"]
    assert (spec["gpus_per_replica"], spec["max_input_tokens"], spec["max_total_tokens"]) == (2, 3000, 4096)
    assert spec["dtype"] is None


# -- update and scale --


def test_plan_change_with_effective_ends_the_old_plan_and_opens_a_second_segment(world):
    before = show_json("chat-bot")
    result = ok("endpoint", "update", "chat-bot", "--plan", "scale", "--effective", "2025-06-01T00:00:00Z",
                "--no-deploy")
    assert result.stdout.splitlines()[0] == "updated endpoint 'chat-bot' in env dev"
    after = show_json("chat-bot")
    assert after["subscription"] == [
        {"plan": "standard", "start": START, "end": "2025-06-01T00:00:00+00:00"},
        {"plan": "scale", "start": "2025-06-01T00:00:00+00:00", "end": None},
    ]
    assert after["plan"] == "scale"
    assert after["spec"]["plan"] == "scale"
    assert after["spec_hash"] != before["spec_hash"]
    assert after["version"] == before["version"] + 1
    # Nothing else about the endpoint moved.
    assert {k: v for k, v in after["spec"].items() if k != "plan"} == \
        {k: v for k, v in before["spec"].items() if k != "plan"}


def test_plan_change_effective_before_the_current_plan_started_is_refused(world):
    before = registry_state()
    result = run("endpoint", "update", "chat-bot", "--plan", "scale", "--effective", "2024-12-31T00:00:00Z",
                 "--no-deploy")
    assert_one_line_error(result, 2, "plan change at 2024-12-31T00:00:00+00:00 is not after the current plan's start "
                                     f"{START}")
    assert registry_state() == before


def test_update_of_spec_fields_keeps_the_subscription(world):
    ok("endpoint", "update", "tiny", "--max-input-tokens", "3000", "--max-total-tokens", "4096",
       "--revision", "v1.0", "--no-deploy")
    data = show_json("tiny")
    assert (data["spec"]["max_input_tokens"], data["spec"]["max_total_tokens"]) == (3000, 4096)
    assert data["spec"]["revision"] == "v1.0"
    assert data["subscription"] == [{"plan": "standard", "start": START, "end": None}]


def test_update_lowering_only_max_total_tokens_rederives_max_input_tokens(world):
    # `create --max-total-tokens 4096` alone works; `update` with the same option should too.
    ok("endpoint", "update", "tiny", "--max-total-tokens", "4096", "--no-deploy")
    spec = show_json("tiny")["spec"]
    # Derived as on create: the reply keeps min(1024, 4096 // 2) tokens, so 4096 - 1024 in.
    assert (spec["max_total_tokens"], spec["max_input_tokens"]) == (4096, 3072)


def test_update_of_model_resizes_the_endpoint(world):
    before = show_json("tiny")["spec"]
    assert before["gpus_per_replica"] == 1  # Llama 3.2 1B fits one L4
    # Qwen2.5-14B: 14.8B x 2 B = 27.5 GiB of weights > 19.07 usable on one L4; two (38.14) hold it
    # with 4 x 8192 tokens of KV (6 GiB); 2 divides its 40 heads and 8 KV heads.
    ok("endpoint", "update", "tiny", "--model", "Qwen/Qwen2.5-14B-Instruct", "--no-deploy")
    after = show_json("tiny")["spec"]
    assert after["model"] == "Qwen/Qwen2.5-14B-Instruct"
    assert (after["gpus_per_replica"], after["max_input_tokens"], after["max_total_tokens"]) == (2, 7168, 8192)
    assert (after["min_replicas"], after["max_replicas"]) == (before["min_replicas"], 3)


def test_update_to_the_current_values_says_unchanged_and_keeps_the_spec_hash(world):
    before = by_name("tiny")
    result = ok("endpoint", "update", "tiny", "--replicas", "1:3", "--no-deploy")
    assert result.stdout == "endpoint 'tiny' unchanged\n"
    assert by_name("tiny")["spec_hash"] == before["spec_hash"]


def test_update_to_the_current_values_leaves_the_record_untouched(world):
    before = by_name("tiny")
    ok("endpoint", "update", "tiny", "--replicas", "1:3", "--no-deploy")
    assert by_name("tiny") == before


def test_scale_changes_the_replica_bounds(world):
    before = by_name("chat-bot")
    result = ok("endpoint", "scale", "chat-bot", "--replicas", "2:5", "--no-deploy")
    assert result.stdout.splitlines() == [
        "scaled endpoint 'chat-bot' to 2..5 replicas",
        "recorded; not deployed (--no-deploy): deploy with `privend endpoint sync --env dev`",
    ]
    after = by_name("chat-bot")
    assert after["replicas"] == {"min": 2, "max": 5}
    assert after["spec_hash"] != before["spec_hash"]
    ok("endpoint", "scale", "chat-bot", "--replicas", "3", "--no-deploy")
    assert by_name("chat-bot")["replicas"] == {"min": 3, "max": 3}


def test_scale_to_zero_is_accepted_on_create_and_scale(world):
    result = ok("endpoint", "create", "nightly", "--tenant", "acme", "--model", MODEL_1B, "--replicas", "0:2",
                "--no-deploy")
    assert "replicas 0..2" in result.stdout
    assert by_name("nightly")["replicas"] == {"min": 0, "max": 2}
    ok("endpoint", "scale", "tiny", "--replicas", "0:2", "--no-deploy")
    assert by_name("tiny")["replicas"] == {"min": 0, "max": 2}


# -- delete --


def test_delete_with_yes_and_no_deploy_marks_deleting_and_ends_the_subscription(world):
    result = ok("endpoint", "delete", "tiny", "--yes", "--no-deploy", "--effective", "2025-09-01T00:00:00Z")
    assert result.stdout.splitlines() == [
        "endpoint 'tiny' marked for deletion",
        "recorded; not deployed (--no-deploy): deploy with `privend endpoint sync --env dev`",
    ]
    data = show_json("tiny")
    assert data["status"] == "deleting"
    assert data["status_message"] == "delete requested"
    assert data["subscription"] == [{"plan": "standard", "start": START, "end": "2025-09-01T00:00:00+00:00"}]
    # The other endpoints are untouched.
    assert by_name("chat-bot")["status"] == "pending"
    assert by_name("chat-bot")["version"] == 1


def test_endpoint_whose_subscription_has_not_started_can_be_deleted(world):
    start = (datetime.now(timezone.utc) + timedelta(days=30)).isoformat()  # starts are at most a year ahead
    ok("endpoint", "create", "later", "--tenant", "acme", "--model", MODEL_1B, "--start", start, "--no-deploy")
    ok("endpoint", "delete", "later", "--yes", "--no-deploy")
    assert by_name("later")["status"] == "deleting"


def test_delete_without_effective_ends_the_subscription_now(world):
    ok("endpoint", "delete", "tiny", "--yes", "--no-deploy")
    (segment,) = show_json("tiny")["subscription"]
    assert abs(datetime.now(timezone.utc) - datetime.fromisoformat(segment["end"])) < timedelta(minutes=5)


def test_endpoint_being_deleted_cannot_be_updated_or_scaled(world):
    ok("endpoint", "delete", "tiny", "--yes", "--no-deploy")
    before = registry_state()
    assert_one_line_error(run("endpoint", "scale", "tiny", "--replicas", "2", "--no-deploy"), 2,
                          "endpoint 'tiny' is being deleted in env dev")
    assert_one_line_error(run("endpoint", "update", "tiny", "--plan", "scale", "--no-deploy"), 2,
                          "endpoint 'tiny' is being deleted in env dev")
    assert registry_state() == before


def test_delete_without_yes_asks_and_answer_no_aborts_without_change(world):
    before = registry_state()
    result = run("endpoint", "delete", "tiny", "--no-deploy", input="n\n")
    assert result.exit_code == 1
    assert "Delete endpoint 'tiny' in env dev, destroying its load balancer and workload? [y/N]" in result.stdout
    assert "Aborted!" in result.stderr
    assert registry_state() == before


def test_delete_without_yes_answer_yes_marks_deleting(world):
    result = run("endpoint", "delete", "tiny", "--no-deploy", input="y\n")
    assert result.exit_code == 0, result.stderr
    assert "endpoint 'tiny' marked for deletion" in result.stdout
    assert by_name("tiny")["status"] == "deleting"
