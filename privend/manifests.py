"""Write an endpoint's Kubernetes objects as YAML files, atomically per file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import yaml

from privend.config import EnvironmentConfig
from privend.render import render_endpoint
from privend.spec import EndpointSpec


def manifest_filename(index: int, obj: dict) -> str:
    return f"{index:02d}-{obj['kind'].lower()}-{obj['metadata']['name']}.yaml"


def write_manifests(spec: EndpointSpec, cfg: EnvironmentConfig, out_dir: Path) -> list[Path]:
    """Render and write; each file appears complete or not at all (temp file, then rename)."""
    objects = render_endpoint(spec, cfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for index, obj in enumerate(objects):
        path = out_dir / manifest_filename(index, obj)
        fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=".tmp-", suffix=".yaml")
        os.fchmod(fd, 0o644)  # manifests hold no secret values; mkstemp's 0600 would surprise kubectl users
        with os.fdopen(fd, "w") as handle:
            yaml.safe_dump(obj, handle, sort_keys=False)
        os.replace(tmp, path)
        written.append(path)
    return written
