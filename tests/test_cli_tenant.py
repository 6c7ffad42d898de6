"""`privend tenant ...` through the CLI, as an operator runs it.

Every test runs against its own registry (conftest's PRIVEND_HOME); `world`
(conftest) holds two tenants and three recorded endpoints in dev. The one-line
rejections of `tenant create`, `show` and `delete` are in test_cli_rejections.py.
"""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from tests.cli_support import (
    ACCOUNT,
    APP_ROLE,
    OTHER_ACCOUNT,
    TENANT_FIELDS,
    assert_one_line_error,
    ok,
    registry_state,
    run,
)


# `endpoint create` checks EC2 quotas where AWS credentials exist: keep every test away from AWS.
pytestmark = pytest.mark.usefixtures("no_aws_credentials")


def test_tenant_create_confirms_account_and_tier_and_list_json_has_stable_fields(world):
    result = ok("tenant", "create", "initech", "--aws-account", "777788889999")
    assert result.stdout == "created tenant 'initech' in env dev (account 777788889999, tier shared)\n"
    tenants = json.loads(ok("tenant", "list", "--format", "json").stdout)
    assert [t["name"] for t in tenants] == ["acme", "globex", "initech"]
    assert all(set(t) == TENANT_FIELDS for t in tenants)
    acme, globex, initech = tenants
    assert (acme["principals"], acme["aws_account"], acme["tier"]) == ([APP_ROLE], ACCOUNT, "shared")
    assert globex["billing_timezone"] == "Europe/Berlin"
    assert globex["tier"] == "dedicated"
    assert globex["principals"] == []
    assert initech["billing_timezone"] == "UTC"
    assert initech["env"] == "dev"
    assert datetime.fromisoformat(initech["created_at"]).tzinfo is not None


def test_tenant_list_table_shows_principal_count_or_account_root(world):
    out = ok("tenant", "list").stdout
    assert "tenants in dev" in out
    acme_row = next(line for line in out.splitlines() if " acme " in line)
    globex_row = next(line for line in out.splitlines() if " globex " in line)
    assert ACCOUNT in acme_row
    assert "shared" in acme_row
    assert "│ 1 " in acme_row
    assert OTHER_ACCOUNT in globex_row
    assert "dedicated" in globex_row
    assert "account root" in globex_row


def test_tenants_are_scoped_by_env(world):
    assert json.loads(ok("tenant", "list", "--env", "prod", "--format", "json").stdout) == []
    assert_one_line_error(run("tenant", "show", "acme", "--env", "prod"), 2, "tenant 'acme' not found in env prod")


def test_tenant_show_json_lists_its_endpoints_and_table_shows_fields(world):
    data = json.loads(ok("tenant", "show", "acme", "--format", "json").stdout)
    assert set(data) == TENANT_FIELDS | {"endpoints"}
    assert data["endpoints"] == ["chat-bot", "tiny"]
    assert data["principals"] == [APP_ROLE]
    out = ok("tenant", "show", "globex").stdout
    assert "tenant globex" in out
    assert "Europe/Berlin" in out
    assert "coder" in out
    assert "chat-bot" not in out


def test_tenant_name_of_exactly_20_characters_is_accepted():
    ok("tenant", "create", "t" * 20, "--aws-account", ACCOUNT)
    assert json.loads(ok("tenant", "show", "t" * 20, "--format", "json").stdout)["name"] == "t" * 20


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
