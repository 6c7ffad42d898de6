"""What a customer needs to reach their endpoint over PrivateLink, rendered from templates."""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from privend.render import LISTENER_PORT
from privend.config import EnvironmentConfig
from privend.naming import endpoint_names
from privend.spec import EndpointSpec

TEMPLATES = Path(__file__).parent / "templates"
OFFLINE_SERVICE_NAME = "<not deployed yet: run `privend endpoint sync`>"

_env = Environment(loader=FileSystemLoader(TEMPLATES), undefined=StrictUndefined, keep_trailing_newline=True,
                   autoescape=False)


def connect_info(spec: EndpointSpec, cfg: EnvironmentConfig, service_name: str | None) -> str:
    names = endpoint_names(cfg.environment, spec.name)
    hostname = cfg.endpoint_hostname(spec.name) or "<no privend:endpointDomain configured>"
    return _env.get_template("connect_info.md.j2").render(
        endpoint=spec.name, tenant=spec.tenant, env=cfg.environment, model=spec.model, engine=spec.engine,
        region=cfg.region, service_name=service_name or OFFLINE_SERVICE_NAME, principals=spec.allowed_principals,
        port=LISTENER_PORT, stack=names.stack, hostname=hostname, url=f"https://{hostname}", tf_name=spec.name.replace("-", "_"),
        py_name=spec.name.replace("-", "_") + "_endpoint",
    )
