"""`privend export ...`: an endpoint's Kubernetes objects as YAML files."""

from __future__ import annotations

from pathlib import Path

import click

from privend.cli import env_option


@click.group()
def export() -> None:
    """Export rendered artefacts."""


@export.command("manifests")
@click.option("--endpoint", required=True)
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@env_option
def manifests(endpoint, out_dir, env) -> None:
    """Write the endpoint's Kubernetes objects, one YAML file each (Secrets without values)."""
    from privend.config import load_environment
    from privend.endpoints import spec_of
    from privend.manifests import write_manifests
    from privend.registry import open_registry

    cfg = load_environment(env)
    with open_registry() as registry:
        spec = spec_of(registry.get_endpoint(env, endpoint))
    written = write_manifests(spec, cfg, out_dir)
    click.echo(f"wrote {len(written)} manifests for endpoint '{endpoint}' to {out_dir}")
