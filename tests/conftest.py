"""Shared fixtures: offline plans of the real environments (computed once per session), a test kept apart
from the developer's registry and AWS credentials, the CLI tests' world and fake deployer, and the registry
backends and plans of the billing and usage tests."""

from __future__ import annotations

import functools
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from moto import mock_aws

from privend.billing.plans import Plan, load_plans
from privend.config import load_environment
from privend.offline import StackPlan
from privend.plan import plan_platform
from privend.registry import Registry
from privend.registry.dynamodb import DynamoRegistry, table_schema
from privend.registry.sqlite import SqliteRegistry
from tests.billing_support import PLANS_YAML
from tests.cli_support import (
    ACCOUNT,
    APP_ROLE,
    MODEL_1B,
    MODEL_8B,
    MODEL_QWEN,
    OTHER_ACCOUNT,
    START,
    FakeDeployer,
    ok,
)
from tests.dynamodb_support import REGION, TABLE, dynamodb_client
from tests.thread_support import moto_one_request_at_a_time


@functools.lru_cache(maxsize=None)
def _platform_plan(env: str) -> StackPlan:
    return plan_platform(load_environment(env))


@pytest.fixture(scope="session")
def platform_plan():
    """platform_plan("dev") -> StackPlan of the real dev stack file under the offline engine."""
    _platform_plan("dev")  # computed before any test body can monkeypatch the programs
    return _platform_plan


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """Every test gets its own PRIVEND_HOME so no test sees another's registry."""
    monkeypatch.setenv("PRIVEND_HOME", str(tmp_path / "privend-home"))
    monkeypatch.delenv("PRIVEND_REGISTRY", raising=False)
    monkeypatch.delenv("PRIVEND_ENV", raising=False)


# Credentials, and the settings that pick them or send a client elsewhere (an assumed role, a custom endpoint).
AWS_VARIABLES = (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB",
)


def keep_aws_away(patch: pytest.MonkeyPatch, directory: Path) -> None:
    """No AWS credentials in reach: the variables unset, the shared files missing, no instance metadata."""
    for name in AWS_VARIABLES:
        patch.delenv(name, raising=False)
    patch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(directory / "no-aws-credentials"))
    patch.setenv("AWS_CONFIG_FILE", str(directory / "no-aws-config"))
    patch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def no_aws_credentials(monkeypatch, tmp_path):
    """Nothing the test runs finds AWS credentials (`endpoint create`'s quota step, `quota check`, boto3 sessions),
    whatever the developer's machine has; a test may still set fake ones for moto."""
    keep_aws_away(monkeypatch, tmp_path)


@functools.lru_cache(maxsize=None)
def _fleet_plans(env: str):
    """Endpoint stacks of three tenants (two shared, one dedicated), planned together."""
    from privend.plan import plan_endpoint
    from privend.spec import build_spec, validate_request, validate_tenant

    cfg = load_environment(env)
    tenants = {
        "acme": validate_tenant(name="acme", aws_account="111122223333"),
        "globex": validate_tenant(name="globex", aws_account="444455556666", tier="dedicated",
                                  principals=["arn:aws:iam::444455556666:role/inference",
                                              "arn:aws:iam::444455556666:root"]),
        "initech": validate_tenant(name="initech", aws_account="777788889999"),
    }
    pool = cfg.gpu_pools[0].name
    requests = [
        dict(name="chat", tenant="acme", model="meta-llama/Llama-3.1-8B-Instruct", min_replicas=1, max_replicas=3),
        dict(name="code", tenant="acme", model="Qwen/Qwen2.5-7B-Instruct", min_replicas=1, max_replicas=2),
        dict(name="private", tenant="globex", model="mistralai/Mistral-7B-Instruct-v0.3", min_replicas=1, max_replicas=2),
        dict(name="batch", tenant="initech", model="meta-llama/Llama-3.2-3B-Instruct", engine="vllm",
             min_replicas=0, max_replicas=2),
    ]
    specs = [build_spec(validate_request(pool=pool, **r), tenants[r["tenant"]], cfg) for r in requests]
    platform = _platform_plan(env)
    return {spec.name: (spec, plan_endpoint(spec, cfg, platform)) for spec in specs}


@pytest.fixture(scope="session")
def fleet():
    """fleet("dev") -> {endpoint: (spec, StackPlan)} for four endpoints of three tenants."""
    _fleet_plans("dev")  # computed before any test body can monkeypatch the programs
    return _fleet_plans


# -- the CLI tests' deploy layer and world (tests/cli_support.py) --


@pytest.fixture
def no_pulumi(monkeypatch, tmp_path):
    """The build machine as it is: no Pulumi CLI on PATH, whatever the developer's machine has."""
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


@pytest.fixture
def deployer(monkeypatch) -> FakeDeployer:
    import privend.deploy

    fake = FakeDeployer()
    # The CLI's App asks privend.deploy for its deployer at call time.
    monkeypatch.setattr(privend.deploy, "default_deployer", lambda settings: fake)
    return fake


@pytest.fixture(scope="session")
def _world_home(tmp_path_factory) -> Path:
    """The world's registry, built once through the CLI (each endpoint create runs an offline policy check).

    Session-scoped, so it is built before any test's function-scoped fixtures
    (no_aws_credentials among them) run: it keeps AWS away itself.
    """
    home = tmp_path_factory.mktemp("world-home")
    with pytest.MonkeyPatch.context() as patch:
        keep_aws_away(patch, tmp_path_factory.mktemp("world-no-aws"))
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


# -- moto's DynamoDB, and the registry and plans of the billing and usage tests (tests/billing_support.py) --


@pytest.fixture
def aws(no_aws_credentials, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """moto's DynamoDB with fake credentials, answering one request at a time (see moto_one_request_at_a_time)."""
    moto_one_request_at_a_time(monkeypatch, REGION)
    with mock_aws():
        dynamodb_client().create_table(TableName=TABLE, **table_schema())
        yield


@pytest.fixture
def plans(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Plan]:
    """The billing tests' plans catalog (PLANS_YAML), written to tmp_path and set as PRIVEND_PLANS."""
    path = tmp_path / "plans.yaml"
    path.write_text(PLANS_YAML)
    monkeypatch.setenv("PRIVEND_PLANS", str(path))
    return load_plans(path)


@pytest.fixture(params=["sqlite", "dynamodb"])
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Registry]:
    """A fresh registry, once on SQLite in tmp_path and once on moto's DynamoDB (test_registry and
    test_usage_pull have registry fixtures of their own)."""
    if request.param == "sqlite":
        opened: Registry = SqliteRegistry(tmp_path / "registry.db")
    else:
        request.getfixturevalue("aws")
        opened = DynamoRegistry(TABLE, REGION, client=dynamodb_client())
    yield opened
    opened.close()
