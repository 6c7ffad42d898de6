"""`privend endpoint sync`, and `endpoint create|scale|delete` deploying right after they record.

Deploys go either through the real deploy layer with the Pulumi CLI kept off
PATH (`no_pulumi`, what this machine has) or through conftest's `deployer`, a
FakeDeployer (tests/cli_support.py) patched into `privend.deploy`.
"""

from __future__ import annotations

import json

import pytest

from tests.cli_support import (
    ACCOUNT,
    MODEL_1B,
    assert_no_error_lines,
    assert_one_line_error,
    by_name,
    endpoints_json,
    ok,
    registry_state,
    run,
)


# `endpoint create` checks EC2 quotas where AWS credentials exist: keep every test away from AWS.
pytestmark = pytest.mark.usefixtures("no_aws_credentials")


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
    assert "recorded but not deployed" in scaled.stdout
    assert "`privend endpoint sync --env dev`" in scaled.stdout
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
        assert endpoint["status"] == "ready"
        assert endpoint["status_message"] == ""
        assert endpoint["deployed_hash"] == endpoint["spec_hash"]
        assert endpoint["in_sync"] is True
    # The deployer was given the recorded spec.
    assert deployer.specs["coder"].engine == "vllm"
    assert deployer.specs["tiny"].max_replicas == 3


def test_sync_after_a_change_deploys_only_the_changed_endpoint(world, deployer):
    ok("endpoint", "sync")
    deployer.deployed.clear()
    ok("endpoint", "scale", "tiny", "--replicas", "2:3", "--no-deploy")
    assert by_name("tiny")["in_sync"] is False
    assert by_name("chat-bot")["in_sync"] is True
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
    assert "FAILED" in failed_row
    assert "quota exceeded for chat-bot" in failed_row
    chat = by_name("chat-bot")
    assert chat["status"] == "failed"
    assert chat["status_message"] == "quota exceeded for chat-bot"
    assert chat["in_sync"] is False
    assert by_name("coder")["status"] == "ready"
    assert by_name("tiny")["status"] == "ready"
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
    assert deployer.destroyed == ["tiny"]
    assert deployer.deployed == []
    destroy_row = next(line for line in result.stdout.splitlines() if "tiny" in line)
    assert "destroy" in destroy_row
    assert "ok" in destroy_row
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


def test_change_recorded_while_its_stack_deploys_is_deployed_by_the_next_sync(world, deployer):
    from privend.registry import spec_hash
    from tests.cli_support import open_registry

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
    assert deployer.deployed == ["tiny"]
    assert deployer.specs["tiny"].min_replicas == 2
    assert by_name("tiny")["in_sync"] is True


def test_sync_that_cannot_deploy_starts_nothing(world, deployer):
    deployer.unavailable = "no AWS credentials found (configure a profile, SSO login or role)"
    before = registry_state()
    assert_one_line_error(run("endpoint", "sync"), 1,
                          "3 endpoint(s) in env dev recorded but not deployed: no AWS credentials found")
    assert deployer.deployed == []
    assert registry_state() == before


# -- create and delete deploying at once through a fake deployer --


def test_create_without_no_deploy_deploys_at_once_when_the_deploy_layer_works(world, deployer):
    result = ok("endpoint", "create", "support", "--tenant", "acme", "--model", MODEL_1B)
    assert result.stdout.splitlines()[-1] == "deployed endpoint 'support'"
    assert deployer.deployed == ["support"]
    assert by_name("support")["status"] == "ready"
    assert by_name("support")["in_sync"] is True


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
