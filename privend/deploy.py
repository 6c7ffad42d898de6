"""The deploy layer: endpoint stacks through the Pulumi Automation API.

Deliberately thin. Everything it deploys is planned and tested offline; this
module only needs the Pulumi CLI on PATH and cloud credentials, and says so in
one line when either is missing.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Protocol

from privend.config import EnvironmentConfig
from privend.errors import PrivendError
from privend.naming import endpoint_names
from privend.settings import Settings
from privend.spec import EndpointSpec


# The endpoint stack's secret config key holding its API keys' secrets, {name: secret}, as JSON.
API_KEYS_CONFIG = "privend:apiKeys"


class DeployUnavailable(PrivendError):
    """Deploying needs what this machine lacks (Pulumi CLI or credentials)."""


def policy_pack_dir() -> Path:
    """The CrossGuard pack's folder, as the installed package privend.policies.

    The policies/ folder of the checkout under an editable install, site-packages/privend/policies
    from a wheel. The engine is handed a folder, so a pack that is not one on disk is refused.
    """
    pack = files("privend.policies")
    if not isinstance(pack, Path) or not (pack / "PulumiPolicy.yaml").is_file():
        raise DeployUnavailable(f"the policy pack privend.policies is not a folder on disk ({pack})")
    return pack


@dataclass(frozen=True)
class DeployOutcome:
    ok: bool
    message: str
    outputs: dict


class Deployer(Protocol):
    def check(self) -> None:
        """Raise DeployUnavailable if deploys cannot run here."""

    def deploy(self, spec: EndpointSpec, cfg: EnvironmentConfig) -> DeployOutcome: ...

    def destroy(self, spec: EndpointSpec, cfg: EnvironmentConfig) -> DeployOutcome: ...

    def set_api_key_secret(self, spec: EndpointSpec, cfg: EnvironmentConfig, name: str, secret: str | None) -> None:
        """Store (or with None, remove) an API key's secret in the endpoint stack's secret config."""


def backend_url(settings: Settings) -> str:
    """PULUMI_BACKEND_URL, else the embedded default: a file backend under PRIVEND_HOME/state."""
    if settings.pulumi_backend_url:
        return settings.pulumi_backend_url
    state = settings.registry_home.resolve() / "state"
    state.mkdir(parents=True, exist_ok=True)
    return f"file://{state}"


class AutomationDeployer:
    """Runs `pulumi up`/`destroy` of `<env>-<endpoint>` stacks with the endpoint program inline."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def check(self) -> None:
        policy_pack_dir()
        if shutil.which("pulumi") is None:
            raise DeployUnavailable("the Pulumi CLI is not on PATH (install it: https://www.pulumi.com/docs/install/)")
        import boto3  # a noticeable part of a second to import: only when a deploy is attempted

        if boto3.session.Session().get_credentials() is None:
            raise DeployUnavailable("no AWS credentials found (configure a profile, SSO login or role)")

    def _stack(self, spec: EndpointSpec, cfg: EnvironmentConfig):
        # The Pulumi SDKs (also behind the endpoint program) take most of a second to import.
        import pulumi
        from pulumi import automation as auto

        from privend.endpoint_program import PROJECT, endpoint_program

        def program():
            config = pulumi.Config("privend")
            token = config.get_secret("hfToken")
            # {name: secret} as one secret JSON value: it never appears in plain config or in outputs.
            api_keys = config.get_secret_object(API_KEYS_CONFIG.split(":", 1)[1])
            outputs = endpoint_program(spec, cfg, hf_token=token, org=settings.pulumi_org, api_key_secrets=api_keys)
            for key, value in outputs.items():
                pulumi.export(key, value)

        settings = self.settings
        stack = auto.create_or_select_stack(
            stack_name=endpoint_names(cfg.environment, spec.name).stack,
            project_name=PROJECT,
            program=program,
            opts=auto.LocalWorkspaceOptions(
                project_settings=auto.ProjectSettings(name=PROJECT, runtime="python",
                                                      backend=auto.ProjectBackend(url=backend_url(settings))),
                env_vars={"PULUMI_CONFIG_PASSPHRASE": settings.config_passphrase.reveal()},
            ),
        )
        stack.set_config("aws:region", auto.ConfigValue(cfg.region))
        if settings.hf_token is not None:
            stack.set_config("privend:hfToken", auto.ConfigValue(settings.hf_token.reveal(), secret=True))
        return stack

    def set_api_key_secret(self, spec: EndpointSpec, cfg: EnvironmentConfig, name: str, secret: str | None) -> None:
        import json

        from pulumi import automation as auto

        stack = self._stack(spec, cfg)
        try:
            current = json.loads(stack.get_config(API_KEYS_CONFIG).value)
        except Exception:  # not set yet: the Automation API raises CommandError
            current = {}
        if secret is None:
            current.pop(name, None)
        else:
            current[name] = secret
        stack.set_config(API_KEYS_CONFIG, auto.ConfigValue(json.dumps(current, sort_keys=True), secret=True))

    def deploy(self, spec: EndpointSpec, cfg: EnvironmentConfig) -> DeployOutcome:
        stack = self._stack(spec, cfg)
        try:
            # The same guardrails the offline plan enforces, now enforced by the engine.
            pack = policy_pack_dir()
            result = stack.up(policy_packs=[str(pack)], policy_pack_configs=[str(pack / "policy-config.json")],
                              on_output=lambda _line: None)
        except Exception as exc:  # the Automation API raises CommandError with the engine's output
            return DeployOutcome(False, str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__, {})
        outputs = {k: ("[secret]" if v.secret else v.value) for k, v in result.outputs.items()}
        return DeployOutcome(True, result.summary.result, outputs)

    def destroy(self, spec: EndpointSpec, cfg: EnvironmentConfig) -> DeployOutcome:
        stack = self._stack(spec, cfg)
        try:
            result = stack.destroy(on_output=lambda _line: None)
            stack.workspace.remove_stack(stack.name)
        except Exception as exc:
            return DeployOutcome(False, str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__, {})
        return DeployOutcome(True, result.summary.result, {})


def default_deployer(settings: Settings) -> Deployer:
    return AutomationDeployer(settings)
