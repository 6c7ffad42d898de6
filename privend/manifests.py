"""Write an endpoint's Kubernetes objects as YAML files, atomically per file, and its gateway's Envoy config."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import yaml

from privend.config import EnvironmentConfig
from privend import gateway
from privend.render import context, gateway_bootstrap, gateway_limits, render_endpoint
from privend.spec import EndpointSpec


def manifest_filename(index: int, obj: dict) -> str:
    return f"{index:02d}-{obj['kind'].lower()}-{obj['metadata']['name']}.yaml"


GATEWAY_DIR = "gateway"


def _write(path: Path, text: str) -> Path:
    """Each file appears complete or not at all (temp file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".yaml")
    os.fchmod(fd, 0o644)  # nothing exported holds a secret value; mkstemp's 0600 would surprise kubectl users
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)
    return path


def write_manifests(spec: EndpointSpec, cfg: EnvironmentConfig, out_dir: Path) -> list[Path]:
    """Render and write the Kubernetes objects, one file each."""
    objects = render_endpoint(spec, cfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    return [_write(out_dir / manifest_filename(index, obj), yaml.safe_dump(obj, sort_keys=False))
            for index, obj in enumerate(objects)]


def write_gateway_config(spec: EndpointSpec, cfg: EnvironmentConfig, out_dir: Path) -> list[Path]:
    """`gateway/envoy.yaml` as the ConfigMap holds it, and what it references: where the key Secret is
    mounted, a placeholder route file with no key (every request 401), so `envoy --mode validate -c
    envoy.yaml` passes from `gateway/` and no exported file holds key material."""
    directory = out_dir / GATEWAY_DIR
    bootstrap = yaml.safe_dump(gateway_bootstrap(context(spec, cfg)), sort_keys=True)
    placeholder = "# " + gateway.ROUTES_PLACEHOLDER + yaml.safe_dump(
        gateway.key_routes([], gateway_limits(spec)), sort_keys=True)
    return [_write(directory / "envoy.yaml", bootstrap),
            _write(directory / gateway.KEYS_DIR / gateway.ROUTES_FILE, placeholder)]
