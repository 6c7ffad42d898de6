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
@click.option("--endpoint", required=True, help="The endpoint whose objects to write.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory to write the YAML files to (created if missing).")
@env_option
@pass_app
def manifests(app: App, endpoint, out_dir, env) -> None:
    """Write the endpoint's Kubernetes objects, one YAML file each (Secrets without values), and gateway/envoy.yaml."""
    exported = stacks.export_manifests(app, env, endpoint, out_dir)
    click.echo(f"wrote {len(exported.manifests)} manifests and the gateway's Envoy config ({exported.gateway[0]}) "
               f"for endpoint '{endpoint}' to {out_dir}")
    if exported.with_placeholders:
        names = ", ".join(p.name for p in exported.with_placeholders)
        click.echo(f"warning: {names} hold offline placeholders (target group ARN, load balancer dimension), "
                   "marked at the top of each file: not ready to apply", err=True)
