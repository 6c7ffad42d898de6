"""Scripting and discovery: --format json on every command that prints a result, one format choice
list, the catalog group, close-match suggestions, -h, help text on every option, ASCII-only numbers."""

from __future__ import annotations

import json

import click
import pytest

from privend.cli import format_option
from tests.cli_support import MODEL_1B, MODEL_8B, all_commands, assert_one_line_error, ok, run

pytestmark = pytest.mark.usefixtures("no_aws_credentials")


ALL = list(all_commands())


@pytest.mark.parametrize("path,command", ALL, ids=[" ".join(p) for p, _ in ALL])
def test_every_option_has_help_text_and_required_ones_say_so(path, command):
    for param in command.params:
        if isinstance(param, click.Option):
            assert param.help, f"{' '.join(path)} {param.opts[0]} has no help text"
    out = ok(*path, "--help").stdout
    for param in command.params:
        if isinstance(param, click.Option) and param.required:
            assert "[required]" in out, f"{' '.join(path)}: {param.opts[0]} is required but --help does not say so"


@pytest.mark.parametrize("path,command", ALL, ids=[" ".join(p) for p, _ in ALL])
def test_dash_h_is_help(path, command):
    assert ok(*path, "-h").stdout == ok(*path, "--help").stdout


@pytest.mark.parametrize("path,command", ALL, ids=[" ".join(p) for p, _ in ALL])
def test_every_format_option_defaults_to_table(path, command):
    for param in command.params:
        if param.name == "fmt":
            assert param.default == "table", path
            assert list(param.type.choices)[:2] == ["table", "json"], path


def test_format_option_is_table_or_json():
    @format_option
    def probe(fmt):
        return fmt

    assert list(click.command()(probe).params[0].type.choices) == ["table", "json"]


def test_create_requires_model_in_its_help_and_in_use(world):
    assert "--model TEXT" in ok("endpoint", "create", "--help").stdout
    result = run("endpoint", "create", "x", "--tenant", "acme", "--no-deploy")
    assert result.exit_code == 2 and "Missing option '--model'" in result.stderr


@pytest.mark.parametrize("kind", ["models", "gpus", "plans", "pools"])
def test_catalog_lists_as_table_and_json(kind):
    table = ok("catalog", kind).stdout
    data = json.loads(ok("catalog", kind, "--format", "json").stdout)
    assert data
    if kind == "models":
        assert MODEL_8B in table and MODEL_8B in {m["id"] for m in data}
    elif kind == "gpus":
        assert "g6.xlarge" in table and {"name", "gpus", "on_demand_hourly"} <= set(data["instances"][0])
    elif kind == "plans":
        assert "standard" in table and {p["name"] for p in data} >= {"standard", "scale"}
    else:
        assert "l4" in table and data[0]["name"] == "l4"


def test_endpoint_commands_answer_json(world, deployer):
    created = json.loads(ok("endpoint", "create", "extra", "--tenant", "acme", "--model", MODEL_1B,
                            "--no-deploy", "--format", "json").stdout)
    assert created["name"] == "extra" and created["plan"] == "standard"
    assert created["deployment"]["deployed"] is False and created["cost"]["pooled_monthly"][0].isdigit()
    updated = json.loads(ok("endpoint", "update", "extra", "--replicas", "1:2", "--no-deploy",
                            "--format", "json").stdout)
    assert updated["changed"] is True and updated["version"] == created["version"] + 1
    scaled = json.loads(ok("endpoint", "scale", "extra", "--replicas", "1:3", "--no-deploy",
                           "--format", "json").stdout)
    assert scaled["replicas"] == {"min": 1, "max": 3}
    info = json.loads(ok("endpoint", "connect-info", "extra", "--format", "json").stdout)
    assert info["endpoint"] == "extra" and info["service_name"] is None and "aws ec2" in info["instructions"]
    deleted = json.loads(ok("endpoint", "delete", "extra", "--yes", "--no-deploy", "--format", "json").stdout)
    assert deleted["name"] == "extra" and deleted["status"] == "deleting"


def test_tenant_create_answers_json():
    data = json.loads(ok("tenant", "create", "initech", "--aws-account", "777788889999", "--format",
                         "json").stdout)
    assert data["name"] == "initech" and data["aws_account"] == "777788889999"


def test_sync_that_cannot_run_still_answers_json_and_exits_1(world, no_pulumi):
    result = run("endpoint", "sync", "--format", "json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["ok"] is False and data["error"]
    assert result.stderr.startswith("error: ")


def test_billing_export_defaults_to_a_table(world):
    ok("billing", "reconcile", "--period", "2025-03")
    out = ok("billing", "export", "--period", "2025-03").stdout
    assert "invoice acme 2025-03" in out
    json.loads(ok("billing", "export", "--period", "2025-03", "--format", "json").stdout)
    result = run("billing", "export", "--period", "2025-03", "--output", "x.json")
    assert result.exit_code == 2 and "--output writes json or csv" in result.stderr


@pytest.mark.parametrize("args,hint", [
    (("endpoint", "show", "chat-bott"), "did you mean 'chat-bot'?"),
    (("tenant", "show", "acmee"), "did you mean 'acme'?"),
    (("endpoint", "create", "x", "--tenant", "globx", "--model", MODEL_8B, "--no-deploy"), "did you mean 'globex'?"),
    (("endpoint", "create", "x", "--tenant", "acme", "--model", MODEL_8B.lower(), "--no-deploy"),
     f"did you mean '{MODEL_8B}'?"),
    (("endpoint", "create", "x", "--tenant", "acme", "--model", MODEL_8B[:-1], "--no-deploy"),
     f"did you mean '{MODEL_8B}'?"),
    (("endpoint", "update", "tiny", "--plan", "standart", "--no-deploy"), "did you mean 'standard'?"),
])
def test_unknown_names_get_a_close_match(world, args, hint):
    assert_one_line_error(run(*args), 2, hint)


def test_an_unknown_pool_gets_a_close_match(world, monkeypatch, tmp_path):
    from tests.cli_support import private_stacks

    stacks = private_stacks(monkeypatch, tmp_path)
    path = stacks / "Pulumi.dev.yaml"
    path.write_text(path.read_text().replace("name: l4", "name: gpu-l4s"))
    result = run("endpoint", "create", "x", "--tenant", "acme", "--model", MODEL_8B, "--pool", "gpu-l4",
                 "--no-deploy")
    assert_one_line_error(result, 2, "did you mean 'gpu-l4s'?")


def test_no_suggestion_when_nothing_is_close(world):
    result = run("endpoint", "show", "zzzzzz")
    assert_one_line_error(result, 2, "endpoint 'zzzzzz' not found in env dev")
    assert "did you mean" not in result.stderr


@pytest.mark.parametrize("args", [
    ("endpoint", "update", "tiny", "--max-input-tokens", "١٠٠", "--no-deploy"),
    ("endpoint", "update", "tiny", "--gpus-per-replica", "٢", "--no-deploy"),
    ("endpoint", "update", "tiny", "--max-total-tokens", "1_000", "--no-deploy"),
    ("endpoint", "sync", "--parallel", "٤"),
    ("endpoint", "scale", "tiny", "--replicas", "١:٢", "--no-deploy"),
    ("endpoint", "update", "tiny", "--replicas", "١", "--no-deploy"),
])
def test_numbers_take_ascii_digits_only(world, args):
    before = ok("endpoint", "list", "--format", "json").stdout
    result = run(*args)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert ok("endpoint", "list", "--format", "json").stdout == before


def test_a_count_below_its_minimum_is_refused():
    result = run("endpoint", "sync", "--parallel", "0")
    assert result.exit_code == 2 and "0 is not in the range x>=1." in result.stderr
