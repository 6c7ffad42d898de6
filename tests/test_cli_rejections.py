"""What `privend tenant ...` and `privend endpoint ...` refuse: one line on stderr, an exit code, nothing changed.

Input errors exit 2, policy violations exit 3; either way the registry of
`world` (conftest: two tenants and three recorded endpoints in dev) is exactly
as before.
"""

from __future__ import annotations

import pytest

from tests.cli_support import (
    ACCOUNT,
    APP_ROLE,
    ECR_IMAGE,
    FOREIGN_IMAGE,
    MODEL_1B,
    MODEL_70B,
    OTHER_ACCOUNT,
    START,
    assert_one_line_error,
    ok,
    registry_state,
    run,
    show_json,
)


# `endpoint create` checks EC2 quotas where AWS credentials exist: keep every test away from AWS.
pytestmark = pytest.mark.usefixtures("no_aws_credentials")


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
                     "error: unknown IANA time zone 'Mars/Olympus' (use a name like Europe/Berlin)"),
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
