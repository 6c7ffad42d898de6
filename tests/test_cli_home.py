"""Where the embedded registry lives (the project root, found by walking up to Pulumi.yaml) and
every command refusing an environment that has no stack file."""

from __future__ import annotations

from pathlib import Path

import pytest

from privend.settings import Settings, project_root
from tests.cli_support import all_commands, assert_one_line_error, ok, run

pytestmark = pytest.mark.usefixtures("no_aws_credentials")

ROOT = Path(__file__).resolve().parent.parent


def _project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    (project / "deep" / "er").mkdir(parents=True)
    (project / "Pulumi.yaml").write_text("name: private-endpoint\nruntime: python\n")
    return project


def test_project_root_is_the_nearest_directory_with_pulumi_yaml(tmp_path):
    project = _project(tmp_path)
    assert project_root(project / "deep" / "er") == project
    assert project_root(project) == project
    assert project_root(tmp_path) is None
    assert project_root(ROOT / "privend" / "cli") == ROOT


def test_the_default_home_is_privend_in_the_project_root(tmp_path):
    project = _project(tmp_path)
    assert Settings.from_environ({}, cwd=project / "deep" / "er").home == project / ".privend"
    assert Settings.from_environ({"PRIVEND_HOME": "/srv/reg"}, cwd=tmp_path).home == Path("/srv/reg")
    assert Settings.from_environ({}, cwd=tmp_path).home is None


def test_a_command_in_a_subdirectory_uses_the_projects_registry(tmp_path, monkeypatch):
    project = _project(tmp_path)
    monkeypatch.delenv("PRIVEND_HOME")
    monkeypatch.chdir(project / "deep" / "er")
    ok("tenant", "create", "acme", "--aws-account", "111122223333")
    assert (project / ".privend" / "registry.db").is_file()
    assert not (project / "deep" / "er" / ".privend").exists()
    monkeypatch.chdir(project)
    assert "acme" in ok("tenant", "list").stdout


@pytest.mark.parametrize("command", [("plan",), ("tenant", "list"), ("endpoint", "list"),
                                     ("billing", "reconcile", "--period", "2026-01")])
def test_outside_a_project_without_privend_home_a_command_says_so_and_creates_nothing(command, tmp_path,
                                                                                      monkeypatch):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    monkeypatch.delenv("PRIVEND_HOME")
    monkeypatch.setenv("PRIVEND_STACKS_DIR", str(ROOT / "stacks"))
    monkeypatch.chdir(outside)
    result = run(*command)
    assert_one_line_error(result, 2, f"not inside a Private Endpoint project (no Pulumi.yaml in {outside} or above)")
    assert "set PRIVEND_HOME" in result.stderr
    assert list(outside.iterdir()) == []


def test_outside_a_project_the_demo_still_runs_in_its_scratch_registry(tmp_path, monkeypatch):
    monkeypatch.delenv("PRIVEND_HOME")
    monkeypatch.setenv("PRIVEND_STACKS_DIR", str(ROOT / "stacks"))
    monkeypatch.chdir(tmp_path)
    ok("demo")
    assert list(tmp_path.iterdir()) == []


ENV_COMMANDS = [
    ("plan",), ("tenant", "list"), ("tenant", "show", "acme"), ("tenant", "delete", "acme"),
    ("tenant", "create", "acme", "--aws-account", "111122223333"),
    ("endpoint", "list"), ("endpoint", "show", "chat-bot"), ("endpoint", "sync"),
    ("endpoint", "connect-info", "chat-bot"), ("endpoint", "scale", "chat-bot", "--replicas", "1:2"),
    ("endpoint", "delete", "chat-bot", "--yes"), ("endpoint", "update", "chat-bot", "--replicas", "1:2"),
    ("export", "manifests", "--endpoint", "chat-bot", "--out", "out"), ("policy", "check"),
    ("capacity", "plan"), ("billing", "reconcile", "--period", "2025-03"),
    ("billing", "alerts", "--period", "2025-03"), ("billing", "export", "--period", "2025-03"),
    ("usage", "quarantine"), ("demo",),
]


@pytest.mark.parametrize("command", ENV_COMMANDS, ids=lambda c: " ".join(c[:2]))
@pytest.mark.parametrize("env", ["prd", "Dev"])
def test_every_command_refuses_an_unknown_environment_with_the_list(world, command, env, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = (ok("tenant", "list", "--format", "json").stdout, ok("endpoint", "list", "--format", "json").stdout)
    result = run(*command, "--env", env)
    assert_one_line_error(result, 2, "(environments: dev, prod, staging)")
    assert env in result.stderr
    assert (ok("tenant", "list", "--format", "json").stdout, ok("endpoint", "list", "--format", "json").stdout) \
        == before
    assert not (tmp_path / "out").exists()


def test_privend_env_naming_an_unknown_environment_is_refused_too(world, monkeypatch):
    monkeypatch.setenv("PRIVEND_ENV", "prd")
    assert_one_line_error(run("tenant", "list"), 2, "environment 'prd' has no stack file")


def test_every_env_option_checks_the_environment():
    from privend.cli import _known_environment

    checked = [" ".join(path) for path, command in all_commands()
               for p in command.params if p.name == "env"]
    assert len(checked) >= len(ENV_COMMANDS)
    for path, command in all_commands():
        for param in command.params:
            if param.name == "env":
                assert param.callback is _known_environment, path
