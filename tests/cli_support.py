"""Running `privend` in-process, and what its output must look like."""

from __future__ import annotations

import os
import shutil
from datetime import datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from privend.admission import Admission, admit_endpoint
from privend import config
from privend.cli import main
from privend.config import EnvironmentConfig, display_path, stack_file
from privend.registry import Endpoint, Registry, backends
from privend.service.endpoints import new_endpoint, size_request
from privend.settings import Settings
from privend.spec import EndpointRequest


def run(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=input)


def ok(*args: str, input: str | None = None) -> Result:
    result = run(*args, input=input)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result


def assert_one_line_error(result: Result, exit_code: int, message: str) -> None:
    assert result.exit_code == exit_code, (result.stdout, result.stderr)
    assert result.stderr.startswith("error: "), result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr, result.stderr


REPO_STACKS = Path(__file__).resolve().parent.parent / "stacks"


def private_stacks(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A copy of the repository's stack files that the CLI reads and writes instead (PRIVEND_STACKS_DIR)."""
    target = tmp_path / "stacks"
    shutil.copytree(REPO_STACKS, target)
    monkeypatch.setenv("PRIVEND_STACKS_DIR", str(target))
    return target


def current_settings() -> Settings:
    """The settings the CLI would read from the process environment as the test set it up."""
    return Settings.from_environ(os.environ)


def open_registry() -> Registry:
    """The registry the CLI would open, as the test's environment variables name it."""
    return backends.open_registry(current_settings())


def load_environment(env: str) -> EnvironmentConfig:
    """The environment as the CLI loads it, from the stack files the test's settings name."""
    return config.load_environment(env, current_settings().stacks_dir)


def stack_source(cfg: EnvironmentConfig) -> str:
    """The environment's stack file as refusals name it."""
    return display_path(stack_file(cfg.environment, current_settings().stacks_dir))


def admit(registry: Registry, cfg: EnvironmentConfig, request: EndpointRequest) -> Admission | None:
    """What `endpoint create` admits for `request` before it records anything."""
    spec = size_request(registry, cfg, request)
    return admit_endpoint(registry.list_endpoints(cfg.environment), spec, cfg, stack_source(cfg))


def record_request(registry: Registry, cfg: EnvironmentConfig, request: EndpointRequest, start: datetime | None = None,
           admission: Admission | None = None) -> Endpoint:
    """Record `request` the way `endpoint create` does, with the admission it was given (if any)."""
    spec = admission.spec if admission is not None else size_request(registry, cfg, request)
    return new_endpoint(registry, cfg, spec, start, admission=admission)
