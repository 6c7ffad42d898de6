"""`App`: what every use case needs from outside, chosen once from the settings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from privend import deploy
from privend.billing.plans import Plan, load_plans
from privend.config import EnvironmentConfig, check_environment, display_path, load_environment, stack_file
from privend.deploy import Deployer
from privend.registry import backends
from privend.registry.base import Registry
from privend.settings import Settings


@dataclass(frozen=True)
class App:
    """The registry, stack files, plans catalog and deployer that `settings` name."""

    settings: Settings

    def registry(self) -> Registry:
        """A new connection (SQLite) or client (DynamoDB); use it as a context manager."""
        return backends.open_registry(self.settings)

    def environment(self, env: str) -> EnvironmentConfig:
        """The validated config of `env` (InputError, with the known environments, for an unknown one)."""
        return load_environment(env, self.settings.stacks_dir)

    def check_environment(self, env: str) -> str:
        """`env` when it has a stack file; InputError listing the environments otherwise."""
        check_environment(env, self.settings.stacks_dir)
        return env

    def stack_path(self, env: str) -> Path:
        return stack_file(env, self.settings.stacks_dir)

    def stack_source(self, env: str) -> str:
        """The stack file of `env` as messages name it."""
        return display_path(self.stack_path(env))

    def plans(self) -> dict[str, Plan]:
        return load_plans(self.settings.plans)

    def deployer(self) -> Deployer:
        # Looked up on the module at call time, so a test can put a stand-in deployer there.
        return deploy.default_deployer(self.settings)
