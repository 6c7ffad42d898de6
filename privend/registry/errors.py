"""The errors the registry raises, and their messages.

Both backends build their errors here so an operator sees the same one line
whichever backend holds the data; the tests check these lines on both.
"""

from __future__ import annotations

from collections.abc import Sequence

from privend.errors import InputError, PrivendError


class NotFound(InputError):
    """A tenant or endpoint named by the operator does not exist (exit code 2)."""

    def __init__(self, message: str, kind: str | None = None, env: str | None = None, name: str | None = None):
        super().__init__(message)
        self.kind, self.env, self.name = kind, env, name


class ConflictError(PrivendError):
    """A record changed between the read and the write: read it again and retry (exit code 1)."""


def tenant_exists(env: str, name: str) -> InputError:
    return InputError(f"tenant '{name}' already exists in env {env}")


def tenant_not_found(env: str, name: str) -> NotFound:
    return NotFound(f"tenant '{name}' not found in env {env}", kind="tenant", env=env, name=name)


def tenant_has_endpoints(env: str, name: str, endpoints: Sequence[str]) -> InputError:
    listed = f": {', '.join(endpoints)}" if endpoints else ""
    return InputError(
        f"tenant '{name}' still has endpoints in env {env}{listed}; delete them first"
    )


def endpoint_exists(env: str, name: str) -> InputError:
    return InputError(f"endpoint '{name}' already exists in env {env}")


def endpoint_not_found(env: str, name: str) -> NotFound:
    return NotFound(f"endpoint '{name}' not found in env {env}", kind="endpoint", env=env, name=name)


def version_conflict(env: str, name: str, expected: int, actual: int) -> ConflictError:
    return ConflictError(
        f"endpoint '{name}' in env {env} is at version {actual}, not {expected}: "
        "it changed since it was read; read it again and retry"
    )


def endpoint_busy(env: str, name: str) -> ConflictError:
    return ConflictError(
        f"endpoint '{name}' in env {env} is being changed by another writer; retry"
    )


def admission_busy(env: str, name: str) -> ConflictError:
    return ConflictError(
        f"endpoints in env {env} kept changing while endpoint '{name}' was being admitted; "
        "nothing recorded; retry"
    )


def period_finalized(env: str, period: str) -> InputError:
    return InputError(f"period {period} in env {env} is finalized; its invoices never change")


def api_key_exists(env: str, endpoint: str, name: str) -> InputError:
    return InputError(f"API key '{name}' already exists on endpoint '{endpoint}' in env {env}")


def api_key_not_found(env: str, endpoint: str, name: str) -> NotFound:
    return NotFound(f"API key '{name}' not found on endpoint '{endpoint}' in env {env}")


def api_key_revoked(env: str, endpoint: str, name: str) -> InputError:
    return InputError(f"API key '{name}' of endpoint '{endpoint}' in env {env} is already revoked")
