"""`privend endpoint key create|list|revoke`: named API keys, secret shown once, registry keeps only a fingerprint."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from privend.gateway import fingerprint
from privend.registry.sqlite import SqliteRegistry
from tests.cli_support import assert_one_line_error, ok, run

pytestmark = pytest.mark.usefixtures("no_aws_credentials")


def _secret(stdout: str) -> str:
    return re.search(r"secret \(shown once; store it now\): (pe-\S+)", stdout).group(1)


def _spec_keys(name: str = "coder") -> list[dict]:
    shown = json.loads(ok("endpoint", "show", name, "--format", "json").stdout)
    return shown["spec"]["api_keys"]


def test_key_create_shows_the_secret_once_and_stores_it_only_in_the_stack_secret_config(world, deployer, tmp_path):
    result = ok("endpoint", "key", "create", "ci", "--endpoint", "coder", "--rate-limit", "600/min", "--no-deploy")
    secret = _secret(result.stdout)
    assert deployer.api_key_secrets == {"coder": {"ci": secret}}
    listed = ok("endpoint", "key", "list", "--endpoint", "coder", "--format", "json").stdout
    assert secret not in listed
    [key] = json.loads(listed)
    assert (key["name"], key["state"], key["rate_limit_per_minute"]) == ("ci", "active", 600)
    assert key["fingerprint"] == fingerprint(secret)
    assert _spec_keys() == [{"name": "ci", "rate_limit_per_minute": 600}]
    assert secret not in ok("endpoint", "show", "coder", "--format", "json").stdout
    for path in (p for p in Path(os.environ["PRIVEND_HOME"]).rglob("*") if p.is_file()):
        assert secret.encode() not in path.read_bytes(), path


def test_key_create_deploys_the_endpoint_with_the_key_listed(world, deployer):
    ok("endpoint", "key", "create", "web", "--endpoint", "coder")
    assert deployer.deployed == ["coder"]
    assert [k.name for k in deployer.specs["coder"].api_keys] == ["web"]


def test_key_revoke_marks_it_revoked_drops_it_from_the_spec_and_the_stack(world, deployer):
    ok("endpoint", "key", "create", "ci", "--endpoint", "coder", "--no-deploy")
    ok("endpoint", "key", "create", "web", "--endpoint", "coder", "--no-deploy")
    result = ok("endpoint", "key", "revoke", "ci", "--endpoint", "coder", "--no-deploy")
    assert result.stdout.startswith("revoked API key 'ci' of endpoint 'coder' (sha256:")
    states = {k["name"]: k["state"] for k in json.loads(
        ok("endpoint", "key", "list", "--endpoint", "coder", "--format", "json").stdout)}
    assert states == {"ci": "revoked", "web": "active"}
    assert [k["name"] for k in _spec_keys()] == ["web"]
    assert set(deployer.api_key_secrets["coder"]) == {"web"}


def test_key_list_table_never_shows_a_secret(world, deployer):
    created = ok("endpoint", "key", "create", "ci", "--endpoint", "coder", "--no-deploy").stdout
    secret = _secret(created)
    table = ok("endpoint", "key", "list", "--endpoint", "coder").stdout
    assert "ci" in table and "active" in table and secret not in table


def test_an_endpoint_update_keeps_its_keys(world, deployer):
    ok("endpoint", "key", "create", "ci", "--endpoint", "coder", "--no-deploy")
    ok("endpoint", "scale", "coder", "--replicas", "1:3", "--no-deploy")
    assert [k["name"] for k in _spec_keys()] == ["ci"]


def test_key_create_twice_is_refused_with_one_line(world, deployer):
    ok("endpoint", "key", "create", "ci", "--endpoint", "coder", "--no-deploy")
    assert_one_line_error(run("endpoint", "key", "create", "ci", "--endpoint", "coder", "--no-deploy"), 2,
                          "API key 'ci' already exists on endpoint 'coder' in env dev")
    assert len(deployer.api_key_secrets["coder"]) == 1


@pytest.mark.parametrize("limit", ["fast", "0/min", "10/hour", "-5"])
def test_bad_rate_limit_is_refused_with_one_line(world, deployer, limit):
    assert_one_line_error(run("endpoint", "key", "create", "ci", "--endpoint", "coder", "--rate-limit", limit), 2,
                          f"--rate-limit {limit!r} must be N/min")
    assert deployer.api_key_secrets == {}


def test_bad_key_name_and_unknown_endpoint_are_refused(world, deployer):
    assert_one_line_error(run("endpoint", "key", "create", "CI_key", "--endpoint", "coder"), 2,
                          "API key name 'CI_key' must be lowercase letters")
    assert_one_line_error(run("endpoint", "key", "create", "ci", "--endpoint", "ghost"), 2,
                          "endpoint 'ghost' not found in env dev")
    assert_one_line_error(run("endpoint", "key", "revoke", "nope", "--endpoint", "coder"), 2,
                          "API key 'nope' not found on endpoint 'coder' in env dev")


def test_key_create_without_a_deployer_stores_nothing(world, deployer):
    deployer.unavailable = "the Pulumi CLI is not on PATH"
    assert_one_line_error(run("endpoint", "key", "create", "ci", "--endpoint", "coder"), 1,
                          "cannot store the key's secret in the endpoint stack: the Pulumi CLI is not on PATH")
    assert json.loads(ok("endpoint", "key", "list", "--endpoint", "coder", "--format", "json").stdout) == []


def test_sqlite_registry_holds_the_fingerprint_not_the_secret(world, deployer):
    created = ok("endpoint", "key", "create", "ci", "--endpoint", "coder", "--no-deploy").stdout
    secret = _secret(created)
    db = next(Path(os.environ["PRIVEND_HOME"]).rglob("*.db"))
    with SqliteRegistry(db) as registry:
        [key] = registry.list_api_keys("dev", "coder")
    assert key.fingerprint == fingerprint(secret)


def test_endpoint_show_table_lists_key_names(world, deployer):
    ok("endpoint", "key", "create", "ci", "--endpoint", "coder", "--no-deploy")
    table = ok("endpoint", "show", "coder").stdout
    assert "spec.api_keys" in table and "ci" in table


def test_cold_start_wait_is_set_from_the_cli_and_kept(world, deployer):
    ok("endpoint", "update", "coder", "--cold-start-wait", "90s", "--no-deploy")
    shown = json.loads(ok("endpoint", "show", "coder", "--format", "json").stdout)
    assert shown["spec"]["cold_start_wait_seconds"] == 90
    ok("endpoint", "update", "coder", "--cold-start-wait", "2m", "--no-deploy")
    assert json.loads(ok("endpoint", "show", "coder", "--format", "json").stdout)["spec"]["cold_start_wait_seconds"] == 120


@pytest.mark.parametrize("wait", ["soon", "0", "2d"])
def test_bad_cold_start_wait_is_refused_with_one_line(world, wait):
    assert_one_line_error(run("endpoint", "update", "coder", "--cold-start-wait", wait, "--no-deploy"), 2,
                          f"--cold-start-wait {wait!r} must be a duration like 90s, 10m or 1h")


def test_cold_start_wait_above_an_hour_is_refused(world):
    assert_one_line_error(run("endpoint", "update", "coder", "--cold-start-wait", "2h", "--no-deploy"), 2,
                          "cold_start_wait_seconds")
