"""`privend doctor`: what real use needs (the Pulumi CLI, AWS credentials and region, a state backend,
the registry, valid stack files, a kubeconfig), one finding each with the fix. Reads only: it creates,
migrates and contacts nothing (no AWS call, no Pulumi login)."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

from privend.config import load_environment
from privend.errors import PrivendError
from privend.registry.sqlite import SCHEMA_VERSION, stored_schema_version
from privend.service.app import App


@dataclass(frozen=True)
class Finding:
    check: str
    ok: bool
    detail: str
    fix: str = ""


def run_checks(app: App, pulumi_timeout: float = 15.0) -> list[Finding]:
    return [pulumi_cli(pulumi_timeout), aws_credentials(), state_backend(app), registry(app), *stack_files(app),
            kubeconfig(app)]


def pulumi_cli(timeout: float = 15.0) -> Finding:
    install = "install it: curl -fsSL https://get.pulumi.com | sh (https://www.pulumi.com/docs/install/)"
    path = shutil.which("pulumi")
    if path is None:
        return Finding("pulumi", False, "the Pulumi CLI is not on PATH", install)
    try:
        done = subprocess.run([path, "version"], capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Finding("pulumi", False, f"{path} does not run ({exc})", install)
    version = done.stdout.strip()
    if done.returncode != 0 or not version.startswith("v3."):
        return Finding("pulumi", False, f"{path} answers {version or done.stderr.strip()!r}, not a v3 version",
                       install)
    return Finding("pulumi", True, f"{version} at {path}")


def aws_credentials() -> Finding:
    import boto3  # a noticeable part of a second to import: only doctor pays for it here

    session = boto3.session.Session()
    try:
        credentials = session.get_credentials()
    except Exception as exc:  # noqa: BLE001 - a broken profile or SSO cache: report it, do not crash
        return Finding("aws", False, f"credentials cannot be loaded ({exc})", "aws sso login, or fix the profile")
    if credentials is None:
        return Finding("aws", False, "no AWS credentials found",
                       "aws sso login (or aws configure, or a role assumed through OIDC in CI)")
    if not session.region_name:
        return Finding("aws", False, f"credentials from {credentials.method}, but no region",
                       "export AWS_DEFAULT_REGION=us-east-1 (or set region in the profile)")
    return Finding("aws", True, f"credentials from {credentials.method}, region {session.region_name}")


def state_backend(app: App) -> Finding:
    url = app.settings.pulumi_backend_url
    if url:
        return Finding("state", True, f"PULUMI_BACKEND_URL {url}")
    home = app.settings.home
    if home is None:
        return Finding("state", False, "no state backend: outside a project and PULUMI_BACKEND_URL unset",
                       "pulumi login s3://bucket/prefix, or export PULUMI_BACKEND_URL, or run in the project")
    state = home.resolve() / "state"
    parent = next((p for p in (state, *state.parents) if p.exists()), None)
    if parent is None or not parent.is_dir():
        return Finding("state", False, f"file backend {state}: {parent} is not a directory",
                       "point PRIVEND_HOME at a directory, or set PULUMI_BACKEND_URL")
    return Finding("state", True, f"file backend file://{state} (embedded default; pulumi login for a shared one)")


def registry(app: App) -> Finding:
    settings = app.settings
    if settings.registry_url:
        return Finding("registry", True, f"DynamoDB {settings.registry_url} (not contacted)")
    if settings.home is None:
        return Finding("registry", False, "no registry: outside a project and PRIVEND_HOME unset",
                       "run privend in the project, or export PRIVEND_HOME")
    path = settings.home / "registry.db"
    if not path.exists():
        return Finding("registry", True, f"{path} does not exist yet: the first command creates it")
    try:
        version = stored_schema_version(path)
    except PrivendError as exc:
        return Finding("registry", False, str(exc), "move the file aside, or point PRIVEND_HOME elsewhere")
    if version > SCHEMA_VERSION:
        return Finding("registry", False, f"{path}: schema version {version}, newer than this privend "
                                          f"({SCHEMA_VERSION})", "upgrade privend")
    note = "" if version == SCHEMA_VERSION else f" (the next command migrates it to {SCHEMA_VERSION})"
    return Finding("registry", True, f"{path}: schema version {version}{note}")


def stack_files(app: App) -> list[Finding]:
    directory = app.settings.stacks
    files = sorted(directory.glob("Pulumi.*.yaml"))
    if not files:
        return [Finding("stacks", False, f"no stack files in {directory}",
                        "run privend in the project, or export PRIVEND_STACKS_DIR")]
    findings = []
    for path in files:
        env = path.name[len("Pulumi."):-len(".yaml")]
        try:
            cfg = load_environment(env, app.settings.stacks_dir)
        except PrivendError as exc:
            findings.append(Finding(f"stack {env}", False, str(exc), f"edit {path}"))
        else:
            findings.append(Finding(f"stack {env}", True, f"{cfg.region}, {len(cfg.gpu_pools)} GPU pool(s)"))
    return findings


def kubeconfig(app: App) -> Finding:
    path = app.settings.kubeconfig or Path.home() / ".kube" / "config"
    fix = (f"aws eks update-kubeconfig --name <cluster> --region <region> (or pulumi stack output kubeconfig "
           f"--show-secrets > {path})")
    if not path.is_file():
        return Finding("kubeconfig", False, f"{path} does not exist", fix)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        return Finding("kubeconfig", False, f"{path} cannot be read as YAML ({type(exc).__name__})", fix)
    if not isinstance(document, dict) or not document.get("current-context"):
        return Finding("kubeconfig", False, f"{path} has no current-context", fix)
    return Finding("kubeconfig", True, f"{path}, context {document['current-context']}")
