"""Write an endpoint's Kubernetes objects as YAML files, atomically per file, and its gateway's Envoy config."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import yaml

from privend.config import EnvironmentConfig
from privend import gateway
from privend.errors import InputError, PrivendError
from privend.render import OFFLINE_PLACEHOLDERS, context, gateway_bootstrap, gateway_limits, render_endpoint
from privend.spec import EndpointSpec


def manifest_filename(index: int, obj: dict) -> str:
    return f"{index:02d}-{obj['kind'].lower()}-{obj['metadata']['name']}.yaml"


GATEWAY_DIR = "gateway"


def write_manifests(spec: EndpointSpec, cfg: EnvironmentConfig, out_dir: Path) -> list[Path]:
    """Render and write the Kubernetes objects, one file each."""
    objects = render_endpoint(spec, cfg)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"--out {out_dir} is a file, not a directory")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"--out {out_dir} cannot be created ({exc.strerror or exc})") from None
    written: list[Path] = []
    for index, obj in enumerate(objects):
        path = out_dir / manifest_filename(index, obj)
        text = yaml.safe_dump(obj, sort_keys=False)
        try:
            _write_atomically(path, placeholder_notice(text) + text)
        except OSError as exc:
            raise PrivendError(f"cannot write {path} ({exc.strerror or exc}); "
                               f"{len(written)} of {len(objects)} manifests written") from None
        written.append(path)
    return written


def placeholders_in(text: str) -> list[str]:
    """What offline placeholders `text` holds, as people call them."""
    return [what for value, what in OFFLINE_PLACEHOLDERS.items() if value in text]


def placeholder_notice(text: str) -> str:
    """A comment for the top of a manifest that still holds offline placeholders, else ''."""
    found = placeholders_in(text)
    if not found:
        return ""
    verb = "is an offline placeholder" if len(found) == 1 else "are offline placeholders"
    return (f"# NOT READY TO APPLY: {' and '.join(found)} in this file {verb}; the deployed\n"
            "# endpoint stack has the real values (privend endpoint sync deploys it with them).\n")


def _write_atomically(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".yaml")
    try:
        os.fchmod(fd, 0o644)  # manifests hold no secret values; mkstemp's 0600 would surprise kubectl users
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_gateway_config(spec: EndpointSpec, cfg: EnvironmentConfig, out_dir: Path) -> list[Path]:
    """`gateway/envoy.yaml` as the ConfigMap holds it, and what it references: where the key Secret is
    mounted, a placeholder route file with no key (every request 401), so `envoy --mode validate -c
    envoy.yaml` passes from `gateway/` and no exported file holds key material."""
    directory = out_dir / GATEWAY_DIR
    bootstrap = yaml.safe_dump(gateway_bootstrap(context(spec, cfg)), sort_keys=True)
    placeholder = "# " + gateway.ROUTES_PLACEHOLDER + yaml.safe_dump(
        gateway.key_routes([], gateway_limits(spec)), sort_keys=True)
    written = []
    for path, text in ((directory / "envoy.yaml", bootstrap),
                       (directory / gateway.KEYS_DIR / gateway.ROUTES_FILE, placeholder)):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            _write_atomically(path, text)
        except OSError as exc:
            raise PrivendError(f"cannot write {path} ({exc.strerror or exc})") from None
        written.append(path)
    return written
