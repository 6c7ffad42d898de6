"""AWS set-up problems reach the operator as one line and exit code 1, never a traceback."""

import pytest
from click.testing import CliRunner

from privend.cli import main

# No credentials, profiles or endpoint overrides of the developer's machine change what the CLI reports.
pytestmark = pytest.mark.usefixtures("no_aws_credentials")


def test_dynamodb_registry_without_a_region_is_one_line_exit_1(monkeypatch):
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("PRIVEND_REGISTRY", "dynamodb://privend-dev-registry")
    result = CliRunner().invoke(main, ["tenant", "list"])
    assert result.exit_code == 1
    assert result.stderr == "error: AWS: You must specify a region.\n"


def test_unexpected_errors_are_not_swallowed(monkeypatch):
    def broken(settings):
        raise RuntimeError("a bug")
    monkeypatch.setattr("privend.registry.backends.open_registry", broken)
    result = CliRunner().invoke(main, ["tenant", "list"])
    assert isinstance(result.exception, RuntimeError)
    assert str(result.exception) == "a bug"
    assert result.exit_code == 1
    assert "error: " not in result.stderr  # not dressed up as a user error
