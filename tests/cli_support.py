"""Running `privend` in-process, what its output must look like, and the dev world the CLI tests share."""

from __future__ import annotations

import os
import json
import shutil
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from privend.admission import Admission, admit_endpoint
from privend import config
from privend.cli import COMMANDS, main
from privend.config import EnvironmentConfig, display_path, stack_file
from privend.registry import Endpoint, Registry, backends
from privend.service.endpoints import new_endpoint, size_request
from privend.settings import Settings
from privend.spec import EndpointRequest
from privend.deploy import DeployOutcome, DeployUnavailable


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
# -- the world of the tenant and endpoint tests (conftest's `world`) --

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


class FakeDeployer:
    """Records what it was asked to deploy and destroy; fails for the names in `fail`."""

    def __init__(self) -> None:
        self.deployed: list[str] = []
        self.destroyed: list[str] = []
        self.specs: dict = {}
        self.fail: set[str] = set()
        self.explode: set[str] = set()
        self.unavailable: str | None = None
        self.api_key_secrets: dict[str, dict[str, str]] = {}  # endpoint -> {key name: secret}

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

    def set_api_key_secret(self, spec, cfg, name, secret) -> None:
        stored = self.api_key_secrets.setdefault(spec.name, {})
        if secret is None:
            stored.pop(name, None)
        else:
            stored[name] = secret

    def destroy(self, spec, cfg) -> DeployOutcome:
        self.destroyed.append(spec.name)
        if spec.name in self.fail:
            return DeployOutcome(False, f"dependency violation in {spec.name}", {})
        return DeployOutcome(True, "succeeded", {})


def all_commands() -> Iterator[tuple[tuple[str, ...], click.Command]]:
    """Every leaf command of `privend`, with the words that name it (`("endpoint", "key", "create")`)."""
    def walk(command: click.Command, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], click.Command]]:
        if isinstance(command, click.Group):
            for name in command.list_commands(click.Context(command)):
                sub = command.get_command(click.Context(command), name)
                assert sub is not None
                yield from walk(sub, (*path, name))
        else:
            yield path, command

    for name in sorted(COMMANDS):
        top = main.get_command(click.Context(main), name)
        assert top is not None
        yield from walk(top, (name,))
