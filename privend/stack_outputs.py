"""Read deployed stack outputs, where a backend is reachable; offline there are none."""

from __future__ import annotations

import shutil

from privend.config import EnvironmentConfig
from privend.deploy import backend_url
from privend.naming import endpoint_names
from privend.settings import Settings


def endpoint_outputs(settings: Settings, cfg: EnvironmentConfig, endpoint: str) -> dict:
    """Outputs of a deployed endpoint stack (secrets stay hidden), or {} when they cannot be read here."""
    if shutil.which("pulumi") is None:
        return {}
    # The Pulumi SDKs (also behind the endpoint program) take most of a second to import.
    from pulumi import automation as auto

    from privend.endpoint_program import PROJECT

    try:
        stack = auto.select_stack(
            stack_name=endpoint_names(cfg.environment, endpoint).stack, project_name=PROJECT, program=lambda: None,
            opts=auto.LocalWorkspaceOptions(project_settings=auto.ProjectSettings(
                name=PROJECT, runtime="python", backend=auto.ProjectBackend(url=backend_url(settings)))),
        )
        return {k: v.value for k, v in stack.outputs().items() if not v.secret}
    except Exception:  # noqa: BLE001 - no stack or no backend: treat as not deployed
        return {}
