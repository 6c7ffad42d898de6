"""`privend tenant ...`, `privend endpoint ...`, `export` and `plan` through the CLI, as an operator runs them.

Every test runs against its own registry (conftest's PRIVEND_HOME). Deploys go
either through the real deploy layer with the Pulumi CLI kept off PATH (what
this machine has) or through a fake deployer patched into `privend.deploy`.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import privend.deploy
from privend.connect import OFFLINE_SERVICE_NAME
from privend.deploy import DeployOutcome, DeployUnavailable
from tests.cli_support import assert_one_line_error, ok, run

ACCOUNT = "111122223333"
OTHER_ACCOUNT = "444455556666"
APP_ROLE = f"arn:aws:iam::{ACCOUNT}:role/app"
MODEL_8B = "meta-llama/Llama-3.1-8B-Instruct"
MODEL_1B = "meta-llama/Llama-3.2-1B-Instruct"
MODEL_QWEN = "Qwen/Qwen2.5-7B-Instruct"
MODEL_70B = "meta-llama/Llama-3.1-70B-Instruct"
START = "2025-01-01T00:00:00+00:00"
DIGEST = "sha256:" + "0123456789abcdef" * 4
ECR_IMAGE = f"123456789012.dkr.ecr.us-east-1.amazonaws.com/privend/tgi-baked@{DIGEST}"
FOREIGN_IMAGE = f"docker.io/someone/tgi@{DIGEST}"
ENDPOINT_FIELDS = {
    "name", "env", "tenant", "status", "status_message", "model", "engine", "pool", "replicas",
    "gpus_per_replica", "plan", "spec_hash", "deployed_hash", "in_sync", "updated_at", "version",
}
TENANT_FIELDS = {"name", "env", "aws_account", "principals", "billing_timezone", "tier", "created_at"}


def endpoints_json() -> list[dict]:
    return json.loads(ok("endpoint", "list", "--format", "json").stdout)


def show_json(name: str) -> dict:
    return json.loads(ok("endpoint", "show", name, "--format", "json").stdout)


def by_name(name: str) -> dict:
    return next(e for e in endpoints_json() if e["name"] == name)


def registry_state() -> tuple[str, str]:
    """All tenants and endpoints of dev as the CLI reports them (versions and timestamps included)."""
    return ok("tenant", "list", "--format", "json").stdout, ok("endpoint", "list", "--format", "json").stdout


def assert_no_error_lines(result) -> None:
    """stderr may carry notes and warnings (the EC2 quota check), never an error."""
    assert all(line.startswith(("note: ", "warning: ")) for line in result.stderr.splitlines()), result.stderr


# `endpoint create` checks EC2 quotas where AWS credentials exist: keep every test away from AWS.
pytestmark = pytest.mark.usefixtures("no_aws_credentials")


@pytest.fixture
def no_pulumi(monkeypatch, tmp_path):
    """The build machine as it is: no Pulumi CLI on PATH, whatever the developer's machine has."""
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


class FakeDeployer:
    """Records what it was asked to deploy and destroy; fails for the names in `fail`."""

    def __init__(self) -> None:
        self.deployed: list[str] = []
        self.destroyed: list[str] = []
        self.specs: dict = {}
        self.fail: set[str] = set()
        self.explode: set[str] = set()
        self.unavailable: str | None = None

    def check(self) -> None:
        if self.unavailable:
            raise DeployUnavailable(self.unavailable)

    def deploy(self, spec, cfg) -> DeployOutcome:
        self.deployed.append(spec.name)
        self.specs[spec.name] = spec
        if spec.name in self.explode:
            raise RuntimeError(f"stack {cfg.environment}-{spec.name} is locked")
        if spec.name in self.fail:
            return DeployOutcome(False, f"quota exceeded for {spec.name}", {})
        return DeployOutcome(True, "succeeded", {"serviceName": f"com.amazonaws.vpce.us-east-1.vpce-svc-{spec.name}",
                                                 "apiKey": "[secret]"})

    def destroy(self, spec, cfg) -> DeployOutcome:
        self.destroyed.append(spec.name)
        if spec.name in self.fail:
            return DeployOutcome(False, f"dependency violation in {spec.name}", {})
        return DeployOutcome(True, "succeeded", {})


@pytest.fixture
def deployer(monkeypatch) -> FakeDeployer:
    fake = FakeDeployer()
    # The CLI imports default_deployer from privend.deploy inside each command.
    monkeypatch.setattr(privend.deploy, "default_deployer", lambda: fake)
    return fake


@pytest.fixture(scope="session")
def _world_home(tmp_path_factory) -> Path:
    """The world's registry, built once through the CLI (each endpoint create runs an offline policy check)."""
    home = tmp_path_factory.mktemp("world-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PRIVEND_HOME", str(home))
        patch.delenv("PRIVEND_REGISTRY", raising=False)
        patch.delenv("PRIVEND_ENV", raising=False)
        ok("tenant", "create", "acme", "--aws-account", ACCOUNT, "--principal", APP_ROLE)
        ok("tenant", "create", "globex", "--aws-account", OTHER_ACCOUNT, "--billing-timezone", "Europe/Berlin",
           "--tier", "dedicated")
        ok("endpoint", "create", "chat-bot", "--tenant", "acme", "--model", MODEL_8B, "--start", START, "--no-deploy")
        ok("endpoint", "create", "tiny", "--tenant", "acme", "--model", MODEL_1B, "--replicas", "1:3",
           "--start", START, "--no-deploy")
        ok("endpoint", "create", "coder", "--tenant", "globex", "--model", MODEL_QWEN, "--engine", "vllm",
           "--plan", "scale", "--start", START, "--no-deploy")
    return home


@pytest.fixture
def world(_world_home):
    """Two tenants and three endpoints in dev, recorded only (--no-deploy); a fresh copy for each test."""
    shutil.copytree(_world_home, os.environ["PRIVEND_HOME"], dirs_exist_ok=True)


# -- tenants: happy paths --


def test_tenant_create_confirms_account_and_tier_and_list_json_has_stable_fields(world):
    result = ok("tenant", "create", "initech", "--aws-account", "777788889999")
    assert result.stdout == "created tenant 'initech' in env dev (account 777788889999, tier shared)\n"
    tenants = json.loads(ok("tenant", "list", "--format", "json").stdout)
    assert [t["name"] for t in tenants] == ["acme", "globex", "initech"]
    assert all(set(t) == TENANT_FIELDS for t in tenants)
    acme, globex, initech = tenants
    assert acme["principals"] == [APP_ROLE] and acme["aws_account"] == ACCOUNT and acme["tier"] == "shared"
    assert globex["billing_timezone"] == "Europe/Berlin" and globex["tier"] == "dedicated"
    assert globex["principals"] == []
    assert initech["billing_timezone"] == "UTC" and initech["env"] == "dev"
    assert datetime.fromisoformat(initech["created_at"]).tzinfo is not None


def test_tenant_list_table_shows_principal_count_or_account_root(world):
    out = ok("tenant", "list").stdout
    assert "tenants in dev" in out
    acme_row = next(line for line in out.splitlines() if " acme " in line)
    globex_row = next(line for line in out.splitlines() if " globex " in line)
    assert ACCOUNT in acme_row and "shared" in acme_row and "│ 1 " in acme_row
    assert OTHER_ACCOUNT in globex_row and "dedicated" in globex_row and "account root" in globex_row


def test_tenants_are_scoped_by_env(world):
    assert json.loads(ok("tenant", "list", "--env", "prod", "--format", "json").stdout) == []
    assert_one_line_error(run("tenant", "show", "acme", "--env", "prod"), 2, "tenant 'acme' not found in env prod")


def test_tenant_show_json_lists_its_endpoints_and_table_shows_fields(world):
    data = json.loads(ok("tenant", "show", "acme", "--format", "json").stdout)
    assert set(data) == TENANT_FIELDS | {"endpoints"}
    assert data["endpoints"] == ["chat-bot", "tiny"]
    assert data["principals"] == [APP_ROLE]
    out = ok("tenant", "show", "globex").stdout
    assert "tenant globex" in out and "Europe/Berlin" in out and "coder" in out and "chat-bot" not in out


def test_tenant_delete_is_refused_while_it_has_endpoints_and_allowed_once_they_are_destroyed(world, deployer):
    before = registry_state()
    assert_one_line_error(run("tenant", "delete", "acme"), 2,
                          "tenant 'acme' still has endpoints in env dev: chat-bot, tiny; delete them first")
    assert registry_state() == before
    ok("endpoint", "delete", "chat-bot", "--yes", "--no-deploy")
    ok("endpoint", "delete", "tiny", "--yes", "--no-deploy")
    # Marked for deletion is not gone: the stacks still exist until sync destroys them.
    assert_one_line_error(run("tenant", "delete", "acme"), 2, "still has endpoints in env dev: chat-bot, tiny")
    ok("endpoint", "sync")
    assert ok("tenant", "delete", "acme").stdout == "deleted tenant 'acme' in env dev\n"
    assert [t["name"] for t in json.loads(ok("tenant", "list", "--format", "json").stdout)] == ["globex"]


# -- endpoints: happy paths --


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
    assert support["status"] == "pending" and support["deployed_hash"] is None and support["in_sync"] is False


def test_endpoint_list_json_has_stable_field_names_and_values(world):
    endpoints = endpoints_json()
    assert [e["name"] for e in endpoints] == ["chat-bot", "coder", "tiny"]
    assert all(set(e) == ENDPOINT_FIELDS for e in endpoints)
    chat, coder, tiny = endpoints
    assert chat == {**chat, "env": "dev", "tenant": "acme", "status": "pending", "status_message": "",
                    "model": MODEL_8B, "engine": "tgi", "pool": "l4", "replicas": {"min": 1, "max": 1},
                    "gpus_per_replica": 1, "plan": "standard", "deployed_hash": None, "in_sync": False,
                    "version": 1}
    assert coder["engine"] == "vllm" and coder["plan"] == "scale" and coder["tenant"] == "globex"
    assert tiny["replicas"] == {"min": 1, "max": 3} and tiny["model"] == MODEL_1B
    assert len({e["spec_hash"] for e in endpoints}) == 3 and all(len(e["spec_hash"]) == 64 for e in endpoints)
    only_acme = json.loads(ok("endpoint", "list", "--tenant", "acme", "--format", "json").stdout)
    assert [e["name"] for e in only_acme] == ["chat-bot", "tiny"]


def test_endpoint_list_table_shows_one_row_per_endpoint(world):
    out = ok("endpoint", "list").stdout
    assert "endpoints in dev" in out
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.startswith("│")}
    assert set(rows) == {"chat-bot", "coder", "tiny"}
    assert MODEL_QWEN in rows["coder"] and "globex" in rows["coder"] and "pending" in rows["coder"]
    assert "1..3" in rows["tiny"] and "│ no " in rows["tiny"]


def test_endpoint_show_json_has_spec_and_one_open_subscription_segment(world):
    data = show_json("chat-bot")
    assert set(data) == ENDPOINT_FIELDS | {"spec", "subscription"}
    assert data["subscription"] == [{"plan": "standard", "start": START, "end": None}]
    spec = data["spec"]
    assert spec["name"] == "chat-bot" and spec["tenant"] == "acme" and spec["env"] == "dev"
    assert spec["allowed_principals"] == [APP_ROLE]
    assert (spec["max_input_tokens"], spec["max_total_tokens"]) == (7168, 8192)
    assert spec["revision"] == "main" and spec["image"] == "stock" and spec["tier"] == "shared"
    # The dedicated tier and the default principals (account root) come from the tenant.
    coder = show_json("coder")["spec"]
    assert coder["tier"] == "dedicated" and coder["allowed_principals"] == [f"arn:aws:iam::{OTHER_ACCOUNT}:root"]


def test_endpoint_create_without_start_opens_the_subscription_now(world):
    ok("endpoint", "create", "fresh", "--tenant", "acme", "--model", MODEL_1B, "--no-deploy")
    (segment,) = show_json("fresh")["subscription"]
    start = datetime.fromisoformat(segment["start"])
    assert abs(datetime.now(timezone.utc) - start) < timedelta(minutes=5)
    assert segment["end"] is None


def test_endpoint_show_table_shows_replicas_spec_and_subscription(world):
    out = ok("endpoint", "show", "tiny").stdout
    assert "endpoint tiny" in out
    assert "1..3" in out and "spec.max_total_tokens" in out and MODEL_1B in out
    assert f"standard: {START} .. open" in out


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
    assert after["plan"] == "scale" and after["spec"]["plan"] == "scale"
    assert after["spec_hash"] != before["spec_hash"] and after["version"] == before["version"] + 1
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
    assert after["replicas"] == {"min": 2, "max": 5} and after["spec_hash"] != before["spec_hash"]
    ok("endpoint", "scale", "chat-bot", "--replicas", "3", "--no-deploy")
    assert by_name("chat-bot")["replicas"] == {"min": 3, "max": 3}


def test_scale_to_zero_is_accepted_on_create_and_scale(world):
    result = ok("endpoint", "create", "nightly", "--tenant", "acme", "--model", MODEL_1B, "--replicas", "0:2",
                "--no-deploy")
    assert "replicas 0..2" in result.stdout
    assert by_name("nightly")["replicas"] == {"min": 0, "max": 2}
    ok("endpoint", "scale", "tiny", "--replicas", "0:2", "--no-deploy")
    assert by_name("tiny")["replicas"] == {"min": 0, "max": 2}


def test_endpoint_name_of_exactly_24_characters_is_accepted(world):
    name = "e" * 24
    ok("endpoint", "create", name, "--tenant", "acme", "--model", MODEL_1B, "--no-deploy")
    assert by_name(name)["tenant"] == "acme"


def test_tenant_name_of_exactly_20_characters_is_accepted():
    ok("tenant", "create", "t" * 20, "--aws-account", ACCOUNT)
    assert json.loads(ok("tenant", "show", "t" * 20, "--format", "json").stdout)["name"] == "t" * 20


def test_model_outside_the_catalog_is_accepted_with_explicit_gpus_and_token_limits(world):
    ok("endpoint", "create", "custom", "--tenant", "acme", "--model", "acme-ai/custom-13b", "--gpus-per-replica", "2",
       "--max-input-tokens", "3000", "--max-total-tokens", "4096", "--no-deploy")
    spec = show_json("custom")["spec"]
    assert (spec["gpus_per_replica"], spec["max_input_tokens"], spec["max_total_tokens"]) == (2, 3000, 4096)
    assert spec["dtype"] is None


def test_delete_with_yes_and_no_deploy_marks_deleting_and_ends_the_subscription(world):
    result = ok("endpoint", "delete", "tiny", "--yes", "--no-deploy", "--effective", "2025-09-01T00:00:00Z")
    assert result.stdout.splitlines() == [
        "endpoint 'tiny' marked for deletion",
        "recorded; not deployed (--no-deploy): deploy with `privend endpoint sync --env dev`",
    ]
    data = show_json("tiny")
    assert data["status"] == "deleting" and data["status_message"] == "delete requested"
    assert data["subscription"] == [{"plan": "standard", "start": START, "end": "2025-09-01T00:00:00+00:00"}]
    # The other endpoints are untouched.
    assert by_name("chat-bot")["status"] == "pending" and by_name("chat-bot")["version"] == 1


def test_endpoint_whose_subscription_has_not_started_can_be_deleted(world):
    ok("endpoint", "create", "later", "--tenant", "acme", "--model", MODEL_1B, "--start", "2099-01-01T00:00:00Z",
       "--no-deploy")
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


# -- the deploy layer missing (no Pulumi CLI) --


def test_create_without_no_deploy_records_and_says_it_was_not_deployed_and_how_to(world, no_pulumi):
    result = ok("endpoint", "create", "support", "--tenant", "acme", "--model", MODEL_1B)
    lines = result.stdout.splitlines()
    assert lines[0].startswith("created endpoint 'support'")
    assert [line for line in lines if "deploy" in line] == [
        "recorded but not deployed: the Pulumi CLI is not on PATH (install it: https://www.pulumi.com/docs/install/); "
        "deploy later with `privend endpoint sync --env dev`"]
    assert lines[-1].startswith("recorded but not deployed")
    assert_no_error_lines(result)
    assert by_name("support")["status"] == "pending"


def test_scale_and_delete_without_no_deploy_record_and_say_not_deployed(world, no_pulumi):
    scaled = ok("endpoint", "scale", "tiny", "--replicas", "2:4")
    assert "recorded but not deployed" in scaled.stdout and "`privend endpoint sync --env dev`" in scaled.stdout
    deleted = ok("endpoint", "delete", "chat-bot", "--yes")
    assert "recorded but not deployed" in deleted.stdout
    assert by_name("tiny")["replicas"] == {"min": 2, "max": 4}
    assert by_name("chat-bot")["status"] == "deleting"


def test_sync_without_pulumi_exits_1_saying_the_endpoints_are_recorded_but_not_deployed(world, no_pulumi):
    before = registry_state()
    result = run("endpoint", "sync")
    assert_one_line_error(result, 1, "3 endpoint(s) in env dev recorded but not deployed: "
                                     "the Pulumi CLI is not on PATH")
    assert "rerun `privend endpoint sync`" in result.stderr
    assert registry_state() == before  # nothing was marked deploying


def test_sync_with_nothing_pending_exits_0_and_says_all_in_sync(no_pulumi):
    result = ok("endpoint", "sync")
    assert result.stdout == "all endpoints in env dev are in sync\n"
    as_json = json.loads(ok("endpoint", "sync", "--format", "json").stdout)
    assert as_json == {"env": "dev", "results": [], "ok": True}


# -- sync through a fake deployer --


def test_sync_deploys_every_changed_endpoint_and_marks_it_ready(world, deployer):
    result = ok("endpoint", "sync")
    assert sorted(deployer.deployed) == ["chat-bot", "coder", "tiny"]
    assert "sync of dev" in result.stdout
    for endpoint in endpoints_json():
        assert endpoint["status"] == "ready" and endpoint["status_message"] == ""
        assert endpoint["deployed_hash"] == endpoint["spec_hash"] and endpoint["in_sync"] is True
    # The deployer was given the recorded spec.
    assert deployer.specs["coder"].engine == "vllm" and deployer.specs["tiny"].max_replicas == 3


def test_sync_after_a_change_deploys_only_the_changed_endpoint(world, deployer):
    ok("endpoint", "sync")
    deployer.deployed.clear()
    ok("endpoint", "scale", "tiny", "--replicas", "2:3", "--no-deploy")
    assert by_name("tiny")["in_sync"] is False and by_name("chat-bot")["in_sync"] is True
    out = json.loads(ok("endpoint", "sync", "--format", "json").stdout)
    assert deployer.deployed == ["tiny"]
    assert out == {"env": "dev", "ok": True,
                   "results": [{"endpoint": "tiny", "action": "deploy", "ok": True, "message": "succeeded"}]}
    assert deployer.specs["tiny"].min_replicas == 2
    assert by_name("tiny")["in_sync"] is True


def test_second_sync_deploys_nothing(world, deployer):
    ok("endpoint", "sync")
    deployer.deployed.clear()
    result = ok("endpoint", "sync")
    assert deployer.deployed == []
    assert result.stdout == "all endpoints in env dev are in sync\n"


def test_one_failed_deploy_does_not_stop_the_others_and_sync_exits_1(world, deployer):
    deployer.fail = {"chat-bot"}
    result = run("endpoint", "sync", "--parallel", "1")
    assert_one_line_error(result, 1, "1 of 3 endpoint(s) failed to sync")
    assert sorted(deployer.deployed) == ["chat-bot", "coder", "tiny"]
    failed_row = next(line for line in result.stdout.splitlines() if "chat-bot" in line)
    assert "FAILED" in failed_row and "quota exceeded for chat-bot" in failed_row
    chat = by_name("chat-bot")
    assert chat["status"] == "failed" and chat["status_message"] == "quota exceeded for chat-bot"
    assert chat["in_sync"] is False
    assert by_name("coder")["status"] == "ready" and by_name("tiny")["status"] == "ready"
    # A failed endpoint is retried by the next sync; the deployed ones are not.
    deployer.fail.clear()
    deployer.deployed.clear()
    ok("endpoint", "sync")
    assert deployer.deployed == ["chat-bot"]
    assert by_name("chat-bot")["status"] == "ready"


def test_sync_records_an_exception_from_the_deployer_as_a_failure(world, deployer):
    deployer.explode = {"coder"}
    result = run("endpoint", "sync", "--format", "json")
    assert_one_line_error(result, 1, "1 of 3 endpoint(s) failed to sync")
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert [r["ok"] for r in report["results"]] == [True, False, True]
    assert by_name("coder")["status_message"] == "RuntimeError: stack dev-coder is locked"
    assert by_name("coder")["status"] == "failed"


def test_sync_destroys_an_endpoint_marked_for_deletion_and_removes_it(world, deployer):
    ok("endpoint", "sync")
    ok("endpoint", "delete", "tiny", "--yes", "--no-deploy")
    deployer.deployed.clear()
    result = ok("endpoint", "sync")
    assert deployer.destroyed == ["tiny"] and deployer.deployed == []
    destroy_row = next(line for line in result.stdout.splitlines() if "tiny" in line)
    assert "destroy" in destroy_row and "ok" in destroy_row
    assert [e["name"] for e in endpoints_json()] == ["chat-bot", "coder"]
    assert_one_line_error(run("endpoint", "show", "tiny"), 2, "endpoint 'tiny' not found in env dev")


def test_failed_destroy_keeps_the_endpoint_marked_for_deletion_with_the_reason(world, deployer):
    ok("endpoint", "delete", "tiny", "--yes", "--no-deploy")
    deployer.fail = {"tiny"}
    assert_one_line_error(run("endpoint", "sync"), 1, "1 of 3 endpoint(s) failed to sync")
    tiny = by_name("tiny")
    assert tiny["status"] == "deleting"
    assert tiny["status_message"] == "destroy failed: dependency violation in tiny"


@pytest.mark.parametrize("pending", [True, False], ids=["work-pending", "nothing-pending"])
def test_sync_parallel_zero_is_rejected_with_exit_2_and_deploys_nothing(deployer, pending):
    if pending:
        ok("tenant", "create", "acme", "--aws-account", ACCOUNT)
        ok("endpoint", "create", "tiny", "--tenant", "acme", "--model", MODEL_1B, "--no-deploy")
    before = registry_state()
    result = run("endpoint", "sync", "--parallel", "0")
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert "Error: Invalid value for '--parallel': 0 is not in the range x>=1." in result.stderr
    assert deployer.deployed == []
    assert registry_state() == before


def test_create_without_no_deploy_deploys_at_once_when_the_deploy_layer_works(world, deployer):
    result = ok("endpoint", "create", "support", "--tenant", "acme", "--model", MODEL_1B)
    assert result.stdout.splitlines()[-1] == "deployed endpoint 'support'"
    assert deployer.deployed == ["support"]
    assert by_name("support")["status"] == "ready" and by_name("support")["in_sync"] is True


def test_create_whose_deploy_fails_exits_1_and_keeps_the_record_for_sync(world, deployer):
    deployer.fail = {"support"}
    result = run("endpoint", "create", "support", "--tenant", "acme", "--model", MODEL_1B)
    assert result.exit_code == 1, (result.stdout, result.stderr)
    errors = [line for line in result.stderr.splitlines() if not line.startswith(("note: ", "warning: "))]
    assert errors == ["error: deploy of endpoint 'support' failed: quota exceeded for support"]
    assert result.stderr.splitlines()[-1] == errors[0]
    assert by_name("support")["status"] == "failed"


def test_delete_without_no_deploy_destroys_at_once_when_the_deploy_layer_works(world, deployer):
    result = ok("endpoint", "delete", "tiny", "--yes")
    assert result.stdout.splitlines() == ["endpoint 'tiny' marked for deletion", "destroyed endpoint 'tiny'"]
    assert deployer.destroyed == ["tiny"]
    assert [e["name"] for e in endpoints_json()] == ["chat-bot", "coder"]


def test_change_recorded_while_its_stack_deploys_is_deployed_by_the_next_sync(world, deployer):
    from privend.registry import open_registry, spec_hash

    deploy = deployer.deploy

    def deploy_while_an_operator_scales(spec, cfg):
        if spec.name == "tiny" and spec.min_replicas == 1:
            # What `endpoint scale tiny --replicas 2:3` records, written from another process mid-deploy.
            with open_registry() as registry:
                current = registry.get_endpoint("dev", "tiny")
                scaled = {**current.spec, "min_replicas": 2}
                registry.update_endpoint("dev", "tiny", expected_version=current.version, spec=scaled,
                                         spec_hash=spec_hash(scaled))
        return deploy(spec, cfg)

    deployer.deploy = deploy_while_an_operator_scales
    run("endpoint", "sync")
    deployer.deployed.clear()
    ok("endpoint", "sync")
    assert deployer.deployed == ["tiny"] and deployer.specs["tiny"].min_replicas == 2
    assert by_name("tiny")["in_sync"] is True


def test_sync_that_cannot_deploy_starts_nothing(world, deployer):
    deployer.unavailable = "no AWS credentials found (configure a profile, SSO login or role)"
    before = registry_state()
    assert_one_line_error(run("endpoint", "sync"), 1,
                          "3 endpoint(s) in env dev recorded but not deployed: no AWS credentials found")
    assert deployer.deployed == []
    assert registry_state() == before


# -- rejections: one line on stderr, exit 2, nothing changed --

TENANT_REJECTIONS = {
    "uppercase-name": (["tenant", "create", "Acme2", "--aws-account", ACCOUNT],
                       "error: tenant name 'Acme2' must be lowercase letters, digits and '-', starting with a letter"),
    "name-too-long": (["tenant", "create", "t" * 21, "--aws-account", ACCOUNT],
                      f"error: tenant name '{'t' * 21}' is longer than 20 characters"),
    "account-11-digits": (["tenant", "create", "initech", "--aws-account", "12345678901"],
                          "error: AWS account id '12345678901' must be 12 digits"),
    "account-not-digits": (["tenant", "create", "initech", "--aws-account", "12345678901x"],
                           "error: AWS account id '12345678901x' must be 12 digits"),
    "principal-of-another-account": (
        ["tenant", "create", "initech", "--aws-account", ACCOUNT, "--principal", f"arn:aws:iam::{OTHER_ACCOUNT}:root"],
        f"error: tenant: principal 'arn:aws:iam::{OTHER_ACCOUNT}:root' is not in the tenant's account {ACCOUNT}"),
    "wildcard-principal": (["tenant", "create", "initech", "--aws-account", ACCOUNT, "--principal", "*"],
                           "error: tenant: principal '*': wildcards would let any AWS account connect"),
    "wildcard-in-role-arn": (
        ["tenant", "create", "initech", "--aws-account", ACCOUNT, "--principal", f"arn:aws:iam::{ACCOUNT}:role/*"],
        f"error: tenant: principal 'arn:aws:iam::{ACCOUNT}:role/*': wildcards would let any AWS account connect"),
    "malformed-principal": (
        ["tenant", "create", "initech", "--aws-account", ACCOUNT, "--principal", f"arn:aws:iam::{ACCOUNT}:group/ops"],
        f"error: tenant: principal 'arn:aws:iam::{ACCOUNT}:group/ops' is not an IAM root, role or user ARN"),
    "principal-not-an-arn": (["tenant", "create", "initech", "--aws-account", ACCOUNT, "--principal", "alice"],
                             "error: tenant: principal 'alice' is not an IAM root, role or user ARN"),
    "principal-twice": (["tenant", "create", "initech", "--aws-account", ACCOUNT, "--principal", APP_ROLE,
                         "--principal", APP_ROLE], "error: tenant: principals are listed twice"),
    "bad-timezone": (["tenant", "create", "initech", "--aws-account", ACCOUNT, "--billing-timezone", "Mars/Olympus"],
                     "error: 'Mars/Olympus' is not an IANA timezone (like Europe/Berlin)"),
    "duplicate-tenant": (["tenant", "create", "acme", "--aws-account", ACCOUNT],
                         "error: tenant 'acme' already exists in env dev"),
    "show-unknown-tenant": (["tenant", "show", "nobody"], "error: tenant 'nobody' not found in env dev"),
    "delete-unknown-tenant": (["tenant", "delete", "nobody"], "error: tenant 'nobody' not found in env dev"),
}

ENDPOINT_REJECTIONS = {
    "name-too-long": (["endpoint", "create", "e" * 25, "--tenant", "acme", "--model", MODEL_1B],
                      f"error: endpoint name '{'e' * 25}' is longer than 24 characters"),
    "name-invalid": (["endpoint", "create", "Chat_Bot", "--tenant", "acme", "--model", MODEL_1B],
                     "error: endpoint name 'Chat_Bot' must be lowercase letters, digits and '-', starting with a letter"),
    "name-starting-with-digit": (["endpoint", "create", "9lives", "--tenant", "acme", "--model", MODEL_1B],
                                 "error: endpoint name '9lives' must be lowercase letters"),
    "unknown-tenant": (["endpoint", "create", "support", "--tenant", "nobody", "--model", MODEL_1B],
                       "error: tenant 'nobody' not found in env dev"),
    "model-not-org-name": (["endpoint", "create", "support", "--tenant", "acme", "--model", "llama3"],
                           "error: model 'llama3' must be a hub id of the form org/name"),
    "model-outside-catalog": (
        ["endpoint", "create", "support", "--tenant", "acme", "--model", "acme-ai/custom-13b"],
        "error: model 'acme-ai/custom-13b' is not in the model catalog; give --gpus-per-replica, "
        "--max-input-tokens, --max-total-tokens explicitly"),
    "model-outside-catalog-gpus-only": (
        ["endpoint", "create", "support", "--tenant", "acme", "--model", "acme-ai/custom-13b",
         "--gpus-per-replica", "1"],
        "error: model 'acme-ai/custom-13b' is not in the model catalog; give --max-input-tokens, "
        "--max-total-tokens explicitly"),
    "unknown-pool": (["endpoint", "create", "support", "--tenant", "acme", "--model", MODEL_1B, "--pool", "h100"],
                     "error: pool 'h100' does not exist in env dev (pools: l4)"),
    "replicas-min-above-max": (
        ["endpoint", "create", "support", "--tenant", "acme", "--model", MODEL_1B, "--replicas", "3:1"],
        "error: --replicas '3:1': MIN (3) is larger than MAX (1)"),
    "replicas-not-a-number": (
        ["endpoint", "create", "support", "--tenant", "acme", "--model", MODEL_1B, "--replicas", "abc"],
        "error: --replicas 'abc' must be MIN or MIN:MAX, like 1 or 1:4"),
    "replicas-zero-max": (
        ["endpoint", "create", "support", "--tenant", "acme", "--model", MODEL_1B, "--replicas", "0:0"],
        "error: --replicas '0:0': MAX must be at least 1"),
    "replicas-above-limit": (
        ["endpoint", "create", "support", "--tenant", "acme", "--model", MODEL_1B, "--replicas", "1:65"],
        "error: --replicas '1:65': MAX (65) is above the limit of 64"),
    "model-too-big-for-pool": (
        ["endpoint", "create", "support", "--tenant", "acme", "--model", MODEL_70B],
        "error: model meta-llama/Llama-3.1-70B-Instruct in bfloat16 needs ~141 GiB (131 GiB weights + 10 GiB KV "
        "for 4 requests of 8192 tokens); pool l4 has 22.3 GiB per GPU (19.1 usable) and 4 GPUs per node at most"),
    "too-few-gpus": (
        ["endpoint", "create", "support", "--tenant", "acme", "--model", "Qwen/Qwen2.5-14B-Instruct",
         "--gpus-per-replica", "1"],
        "error: --gpus-per-replica 1 is too few for Qwen/Qwen2.5-14B-Instruct"),
    "start-without-offset": (
        ["endpoint", "create", "support", "--tenant", "acme", "--model", MODEL_1B, "--start", "2025-01-01T00:00:00"],
        "error: --start '2025-01-01T00:00:00' has no UTC offset (add Z or +01:00)"),
    "start-not-a-time": (
        ["endpoint", "create", "support", "--tenant", "acme", "--model", MODEL_1B, "--start", "next monday"],
        "error: --start 'next monday' is not an ISO 8601 time (like 2026-12-01T00:00:00Z)"),
    "duplicate-endpoint": (["endpoint", "create", "tiny", "--tenant", "globex", "--model", MODEL_1B],
                           "error: endpoint 'tiny' already exists in env dev"),
    "unknown-env": (["endpoint", "create", "support", "--tenant", "acme", "--model", MODEL_1B, "--env", "qa"],
                    "error: environment 'qa' has no stack file"),
    "show-unknown": (["endpoint", "show", "nope"], "error: endpoint 'nope' not found in env dev"),
    "update-unknown": (["endpoint", "update", "nope", "--plan", "scale"], "error: endpoint 'nope' not found in env dev"),
    "scale-unknown": (["endpoint", "scale", "nope", "--replicas", "2"], "error: endpoint 'nope' not found in env dev"),
    "scale-bad-replicas": (["endpoint", "scale", "tiny", "--replicas", "2:1"],
                           "error: --replicas '2:1': MIN (2) is larger than MAX (1)"),
    "delete-unknown": (["endpoint", "delete", "nope", "--yes"], "error: endpoint 'nope' not found in env dev"),
    "delete-unknown-asks-nothing": (["endpoint", "delete", "nope"], "error: endpoint 'nope' not found in env dev"),
    "delete-effective-before-start": (
        ["endpoint", "delete", "tiny", "--yes", "--no-deploy", "--effective", "2024-06-01T00:00:00Z"],
        f"error: end at 2024-06-01T00:00:00+00:00 is not after the subscription's start {START}"),
    "image-not-pinned": (["endpoint", "create", "support", "--tenant", "acme", "--model", MODEL_1B,
                          "--image", "latest"],
                         "error: image 'latest' must be 'stock' or a baked image pinned by digest"),
    "connect-info-unknown": (["endpoint", "connect-info", "nope"], "error: endpoint 'nope' not found in env dev"),
    "update-bad-model": (["endpoint", "update", "tiny", "--model", MODEL_70B],
                         "error: model meta-llama/Llama-3.1-70B-Instruct in bfloat16 needs ~141 GiB"),
}


# -- policy violations: one line, exit 3, nothing changed --


def test_create_with_a_baked_image_from_an_unallowed_registry_is_a_policy_violation(world):
    before = registry_state()
    result = run("endpoint", "create", "support", "--tenant", "acme", "--model", MODEL_1B, "--image", FOREIGN_IMAGE,
                 "--no-deploy")
    assert_one_line_error(result, 3, f"error: endpoint 'support' violates engine-containers: container "
                                     f"support-deployment-engine/engine image '{FOREIGN_IMAGE}' is not from an "
                                     "allowed registry; fix: ")
    assert result.stdout == ""
    assert registry_state() == before


def test_update_to_a_baked_image_from_an_unallowed_registry_is_a_policy_violation(world):
    before = registry_state()
    result = run("endpoint", "update", "tiny", "--image", FOREIGN_IMAGE, "--no-deploy")
    assert_one_line_error(result, 3, "error: endpoint 'tiny' violates engine-containers")
    assert registry_state() == before


def test_baked_image_from_the_platform_registry_is_accepted(world):
    ok("endpoint", "create", "support", "--tenant", "acme", "--model", MODEL_1B, "--image", ECR_IMAGE, "--no-deploy")
    assert show_json("support")["spec"]["image"] == ECR_IMAGE


@pytest.mark.parametrize("args,message", TENANT_REJECTIONS.values(), ids=TENANT_REJECTIONS.keys())
def test_tenant_rejection_is_one_line_exit_2_and_changes_nothing(world, args, message):
    before = registry_state()
    result = run(*args)
    assert_one_line_error(result, 2, message)
    assert result.stderr.startswith(message)
    assert result.stdout == ""
    assert registry_state() == before


@pytest.mark.parametrize("args,message", ENDPOINT_REJECTIONS.values(), ids=ENDPOINT_REJECTIONS.keys())
def test_endpoint_rejection_is_one_line_exit_2_and_changes_nothing(world, no_pulumi, args, message):
    before = registry_state()
    result = run(*args, "--no-deploy") if args[1] == "create" else run(*args)
    assert_one_line_error(result, 2, message)
    assert result.stderr.startswith(message)
    assert result.stdout == ""  # in particular, no confirmation prompt for an endpoint that does not exist
    assert registry_state() == before


def test_update_with_nothing_to_change_is_a_usage_error_exit_2(world):
    before = registry_state()
    result = run("endpoint", "update", "tiny")
    assert result.exit_code == 2
    assert "Error: nothing to change: give at least one option" in result.stderr
    assert registry_state() == before


def test_create_without_model_is_a_usage_error_exit_2(world):
    before = registry_state()
    result = run("endpoint", "create", "support", "--tenant", "acme", "--no-deploy")
    assert result.exit_code == 2
    assert "Missing option '--model'" in result.stderr
    assert registry_state() == before


# -- connect-info --


def test_connect_info_offline_prints_placeholder_service_name_and_every_recipe(world):
    out = ok("endpoint", "connect-info", "chat-bot").stdout
    assert "# Connect to endpoint chat-bot (acme, dev)" in out
    assert f"Service name:     {OFFLINE_SERVICE_NAME}" in out
    assert f"Allowed:          {APP_ROLE}" in out
    assert (
        "aws ec2 create-vpc-endpoint \\\n"
        "  --region us-east-1 \\\n"
        "  --vpc-endpoint-type Interface \\\n"
        "  --vpc-id <your-vpc-id> \\\n"
        f"  --service-name {OFFLINE_SERVICE_NAME} \\\n"
        "  --subnet-ids <subnet-id-az1> <subnet-id-az2> \\\n"
        "  --security-group-ids <sg-allowing-tcp-80-from-your-clients>\n"
    ) in out
    assert 'resource "aws_vpc_endpoint" "chat_bot" {' in out
    assert f'  service_name        = "{OFFLINE_SERVICE_NAME}"' in out
    assert 'chat_bot_endpoint = aws.ec2.VpcEndpoint(\n    "chat-bot",' in out
    assert f'    service_name="{OFFLINE_SERVICE_NAME}",' in out
    assert '-H "Authorization: Bearer $PRIVEND_API_KEY"' in out
    assert f'"model": "{MODEL_8B}"' in out
    assert "pulumi stack output apiKey --show-secrets -s dev-chat-bot" in out


def test_connect_info_of_a_deployed_endpoint_uses_its_service_name_and_never_prints_the_api_key(
        world, deployer, monkeypatch):
    import privend.stack_outputs

    ok("endpoint", "sync")
    service = "com.amazonaws.vpce.us-east-1.vpce-svc-0123456789abcdef0"
    api_key = "pe-live-3f9a1c7d2b8e4f60a5c1"
    monkeypatch.setattr(privend.stack_outputs, "endpoint_outputs",
                        lambda cfg, name: {"serviceName": service, "apiKey": api_key} if name == "coder" else {})
    out = ok("endpoint", "connect-info", "coder").stdout
    assert f"--service-name {service} \\" in out
    assert f'service_name        = "{service}"' in out and f'service_name="{service}",' in out
    assert OFFLINE_SERVICE_NAME not in out
    assert api_key not in out
    bearer_lines = [line for line in out.splitlines() if "Authorization" in line]
    assert bearer_lines == ['  -H "Authorization: Bearer $PRIVEND_API_KEY" \\']


def test_connect_info_of_an_undeployed_endpoint_ignores_outputs(world, monkeypatch):
    import privend.stack_outputs

    # A stack of that name may exist from an earlier life; the endpoint record says it is not deployed.
    monkeypatch.setattr(privend.stack_outputs, "endpoint_outputs", lambda cfg, name: {"serviceName": "stale"})
    out = ok("endpoint", "connect-info", "tiny").stdout
    assert "stale" not in out and OFFLINE_SERVICE_NAME in out


# -- export and plan --


def test_export_manifests_writes_one_yaml_file_per_object(world, tmp_path):
    import yaml

    out_dir = tmp_path / "manifests"
    result = ok("export", "manifests", "--endpoint", "chat-bot", "--out", str(out_dir))
    files = sorted(p.name for p in out_dir.iterdir())
    assert result.stdout == f"wrote {len(files)} manifests for endpoint 'chat-bot' to {out_dir}\n"
    assert "00-namespace-ep-chat-bot.yaml" in files
    assert any(name.endswith("-deployment-engine.yaml") for name in files)
    assert not any(name.startswith(".tmp-") for name in files)
    documents = [yaml.safe_load((out_dir / name).read_text()) for name in files]
    assert all(d["metadata"]["labels"]["privend.io/endpoint"] == "chat-bot" for d in documents)
    deployment = next(d for d in documents if d["kind"] == "Deployment")
    env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MODEL_ID"]["value"] == MODEL_8B
    secrets = [d for d in documents if d["kind"] == "Secret"]
    assert secrets and all("data" not in s and "stringData" not in s for s in secrets)


def test_export_manifests_of_unknown_endpoint_writes_nothing(world, tmp_path):
    out_dir = tmp_path / "manifests"
    assert_one_line_error(run("export", "manifests", "--endpoint", "nope", "--out", str(out_dir)), 2,
                          "endpoint 'nope' not found in env dev")
    assert not out_dir.exists()


def test_plan_json_holds_the_platform_stack_and_one_stack_per_live_endpoint(world):
    ok("endpoint", "delete", "coder", "--yes", "--no-deploy")  # its stack is about to go: not planned
    resources = json.loads(ok("plan", "--env", "dev", "--format", "json").stdout)
    stacks = {r["stack"] for r in resources}
    assert stacks == {"dev", "dev-chat-bot", "dev-tiny"}
    namespaces = {r["stack"]: r["inputs"]["metadata"]["name"] for r in resources
                  if r["type"] == "kubernetes:core/v1:Namespace"}
    # The platform stack's one namespace is the metering collector's.
    assert namespaces == {"dev": "privend-metering", "dev-chat-bot": "ep-chat-bot", "dev-tiny": "ep-tiny"}


def test_plan_of_one_endpoint_holds_only_that_endpoints_stack(world):
    resources = json.loads(ok("plan", "--env", "dev", "--endpoint", "tiny", "--format", "json").stdout)
    assert resources and {r["stack"] for r in resources} == {"dev-tiny"}
    assert_one_line_error(run("plan", "--env", "dev", "--endpoint", "nope"), 2, "endpoint 'nope' not found in env dev")
