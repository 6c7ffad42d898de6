"""`privend doctor`, offline: fake PATH entries, fake credentials, temporary files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from privend.registry.sqlite import SCHEMA_VERSION
from tests.cli_support import ok, private_stacks, run

pytestmark = pytest.mark.usefixtures("no_aws_credentials")


def _fake_pulumi(directory: Path, answer: str = "v3.150.0") -> None:
    directory.mkdir(exist_ok=True)
    script = directory / "pulumi"
    script.write_text(f"#!/bin/sh\necho {answer}\n")
    script.chmod(0o755)


@pytest.fixture
def ready(tmp_path, monkeypatch):
    """A machine with everything doctor looks for."""
    bin_dir = tmp_path / "bin"
    _fake_pulumi(bin_dir)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    kube = tmp_path / "kubeconfig"
    kube.write_text("apiVersion: v1\nkind: Config\ncurrent-context: privend-dev\n")
    monkeypatch.setenv("KUBECONFIG", str(kube))
    return tmp_path


def _lines(out: str) -> dict[str, str]:
    return {line.split(":", 1)[0][5:]: line for line in out.splitlines()}


def test_doctor_on_a_ready_machine_passes_every_check(ready):
    ok("tenant", "list")  # the registry exists
    lines = _lines(ok("doctor").stdout)
    assert lines["pulumi"].startswith("ok   pulumi: v3.150.0 at ")
    assert lines["aws"] == "ok   aws: credentials from env, region us-east-1"
    assert lines["registry"].endswith(f"schema version {SCHEMA_VERSION}")
    assert lines["kubeconfig"].endswith("context privend-dev")
    assert {"stack dev", "stack prod", "stack staging"} <= set(lines)
    assert all(line.startswith("ok   ") for line in lines.values())


def test_doctor_names_each_failure_with_its_fix_and_exits_1(ready, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    result = run("doctor")
    assert result.exit_code == 1
    lines = _lines(result.stdout)
    assert lines["pulumi"].startswith("FAIL pulumi: the Pulumi CLI is not on PATH; fix: install it")
    assert lines["aws"].startswith("FAIL aws: no AWS credentials found; fix: aws sso login")
    assert lines["kubeconfig"].startswith(f"FAIL kubeconfig: {tmp_path / 'missing'} does not exist; fix: ")
    assert result.stderr == "error: 3 check(s) failed: pulumi, aws, kubeconfig\n"


def test_doctor_reports_a_pulumi_that_is_not_v3_and_credentials_without_region(ready, monkeypatch, tmp_path):
    _fake_pulumi(tmp_path / "old", "v2.25.0")
    monkeypatch.setenv("PATH", str(tmp_path / "old"))
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.delenv("AWS_REGION", raising=False)
    lines = _lines(run("doctor").stdout)
    assert "answers 'v2.25.0', not a v3 version" in lines["pulumi"]
    assert lines["aws"].startswith("FAIL aws: credentials from env, but no region; fix: export AWS_DEFAULT_REGION")


def test_doctor_reports_a_registry_that_is_not_sqlite_without_touching_it(ready, monkeypatch, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "registry.db").write_bytes(b"not a database")
    monkeypatch.setenv("PRIVEND_HOME", str(home))
    lines = _lines(run("doctor").stdout)
    assert lines["registry"].startswith("FAIL registry: registry ") and "is not a SQLite database" in lines["registry"]
    assert (home / "registry.db").read_bytes() == b"not a database"
    assert sorted(p.name for p in home.iterdir()) == ["registry.db"]


def test_doctor_reports_an_invalid_stack_file_and_a_missing_registry_is_fine(ready, monkeypatch, tmp_path):
    stacks = private_stacks(monkeypatch, tmp_path)
    (stacks / "Pulumi.staging.yaml").write_text("config: [\n")
    lines = _lines(run("doctor").stdout)
    assert lines["stack staging"].startswith("FAIL stack staging: ") and "is not valid YAML" in lines["stack staging"]
    assert lines["stack dev"].startswith("ok   ")
    assert "does not exist yet: the first command creates it" in lines["registry"]


def test_doctor_json_has_one_finding_per_check(ready):
    data = json.loads(ok("doctor", "--format", "json").stdout)
    assert {f["check"] for f in data} >= {"pulumi", "aws", "state", "registry", "kubeconfig", "stack dev"}
    assert all(set(f) == {"check", "ok", "detail", "fix"} for f in data)
