"""`privend export ...`: an endpoint's Kubernetes objects as YAML files."""

from __future__ import annotations

from pathlib import Path

import click

from privend.cli import env_option, pass_app
from privend.service import stacks
from privend.service.app import App


@click.group()
def export() -> None:
    """Export rendered artefacts."""


@export.command("manifests")
@click.option("--endpoint", required=True)
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@env_option
@pass_app
def manifests(app: App, endpoint, out_dir, env) -> None:
    """Write the endpoint's Kubernetes objects, one YAML file each (Secrets without values), and gateway/envoy.yaml."""
    written = stacks.export_manifests(app, env, endpoint, out_dir)
    click.echo(f"wrote {len(written.manifests)} manifests and the gateway's Envoy config ({written.gateway[0]}) "
               f"for endpoint '{endpoint}' to {out_dir}")
