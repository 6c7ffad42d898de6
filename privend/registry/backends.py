"""Open the registry the settings name: the SQLite file `registry.db` under PRIVEND_HOME
(default `.privend/` in the project root), or the DynamoDB table of `PRIVEND_REGISTRY=dynamodb://<table>?region=<region>`.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from privend.errors import InputError, PrivendError
from privend.registry.base import Registry
from privend.registry.sqlite import SqliteRegistry
from privend.settings import Settings

_URL_FORM = "dynamodb://<table>?region=<region>"


def open_registry(settings: Settings) -> Registry:
    """The registry of `settings`: DynamoDB when `registry_url` is set, else SQLite under `home`."""
    if settings.registry_url:
        return _open_dynamodb(settings.registry_url)
    home = settings.registry_home
    if home.exists() and not home.is_dir():
        raise InputError(f"PRIVEND_HOME {home} is a file, not a directory: point it at the registry's directory")
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PrivendError(f"PRIVEND_HOME {home} cannot be created ({exc.strerror or exc})") from None
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
