"""The registry: tenants, endpoints and their subscription history, behind one interface.

`open_registry()` picks the backend: the SQLite file `registry.db` under
PRIVEND_HOME (default `.privend/` in the current directory), or the DynamoDB
table named by `PRIVEND_REGISTRY=dynamodb://<table>?region=<region>`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from privend.errors import InputError
from privend.registry.base import Registry
from privend.registry.errors import ConflictError, NotFound
from privend.registry.models import Endpoint, SubscriptionSegment, Tenant, spec_hash
from privend.registry.sqlite import SqliteRegistry

__all__ = [
    "ConflictError",
    "Endpoint",
    "NotFound",
    "Registry",
    "SqliteRegistry",
    "SubscriptionSegment",
    "Tenant",
    "open_registry",
    "spec_hash",
]

_URL_FORM = "dynamodb://<table>?region=<region>"


def open_registry(env: Mapping[str, str] | None = None) -> Registry:
    """Open the registry that the environment variables `env` (default: os.environ) name.

    `env` here means process environment variables, not a deployment env.
    """
    env = os.environ if env is None else env
    url = env.get("PRIVEND_REGISTRY")
    if url:
        return _open_dynamodb(url)
    home = Path(env.get("PRIVEND_HOME") or ".privend")
    home.mkdir(parents=True, exist_ok=True)
    return SqliteRegistry(home / "registry.db")


def _open_dynamodb(url: str) -> Registry:
    parts = urlsplit(url)
    if parts.scheme != "dynamodb" or not parts.netloc or parts.path not in ("", "/"):
        raise InputError(f"PRIVEND_REGISTRY must look like {_URL_FORM}, not {url!r}")
    query = parse_qs(parts.query)
    unknown = sorted(set(query) - {"region"})
    if unknown:
        raise InputError(
            f"PRIVEND_REGISTRY has unknown parameter(s) {', '.join(unknown)}; expected {_URL_FORM}"
        )
    # Imported here, not at the top: boto3 takes a noticeable part of a second to
    # import, and every CLI command on the embedded default would pay for it.
    from privend.registry.dynamodb import DynamoRegistry

    # No region: boto3 falls back to AWS_REGION / AWS_DEFAULT_REGION / the profile's region.
    region = query.get("region", [None])[-1]
    return DynamoRegistry(parts.netloc, region_name=region)
