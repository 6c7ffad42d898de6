"""The embedded registry backend: one SQLite file, `registry.db` under PRIVEND_HOME.

Several `privend` processes (a CI job running `endpoint sync` while an operator
creates an endpoint) may write to the file at once, so:
- WAL mode, so readers never block the writer nor the writer the readers;
- every write runs in `BEGIN IMMEDIATE`, which takes the write lock before the
  transaction's first read: a transaction that read under a shared lock and
  only then asked for the write lock could fail with "database is locked"
  without waiting, whatever the busy timeout;
- a busy timeout, so a writer waits for the other one instead of failing;
- each operation's reads, checks and writes share one transaction, so a crash
  at any point leaves either all of it or none of it.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from pydantic import JsonValue

from privend.errors import PrivendError
from privend.registry import errors
from privend.registry.base import Registry, updated_endpoint
from privend.registry.models import (
    Endpoint,
    EndpointStatus,
    SubscriptionSegment,
    Tenant,
    check_subscription,
)

# How long a writer waits for another process's write transaction to finish.
BUSY_TIMEOUT_SECONDS = 30.0

# Migrations by schema version: _MIGRATIONS[n] takes the schema from version n
# to n + 1. Append to this list; never edit an entry that has shipped.
_MIGRATIONS: list[tuple[str, ...]] = [
    (
        """
        CREATE TABLE tenants (
            env TEXT NOT NULL,
            name TEXT NOT NULL,
            aws_account TEXT NOT NULL,
            principals TEXT NOT NULL,        -- JSON array of IAM ARNs
            billing_timezone TEXT NOT NULL,
            tier TEXT NOT NULL,
            created_at TEXT NOT NULL,        -- ISO 8601, UTC
            PRIMARY KEY (env, name)
        )
        """,
        # The subscription history lives in the endpoint's row, so no crash or
        # partial write can ever separate the two.
        """
        CREATE TABLE endpoints (
            env TEXT NOT NULL,
            name TEXT NOT NULL,
            tenant TEXT NOT NULL,
            spec TEXT NOT NULL,              -- JSON object
            spec_hash TEXT NOT NULL,
            deployed_hash TEXT,
            status TEXT NOT NULL,
            status_message TEXT NOT NULL,
            subscription TEXT NOT NULL,      -- JSON array of segments
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            version INTEGER NOT NULL,
            PRIMARY KEY (env, name),
            FOREIGN KEY (env, tenant) REFERENCES tenants (env, name)
        )
        """,
        "CREATE INDEX endpoints_by_tenant ON endpoints (env, tenant, name)",
        # A partial index holding only the endpoints that need a deploy: `sync`
        # finds the few among thousands without reading the others. The query
        # below must repeat this WHERE clause for SQLite to use the index.
        """
        CREATE INDEX endpoints_needing_deploy ON endpoints (env, name)
            WHERE deployed_hash IS NULL OR deployed_hash <> spec_hash
        """,
    ),
]
SCHEMA_VERSION = len(_MIGRATIONS)

_NEEDING_DEPLOY_SQL = (
    "SELECT * FROM endpoints"
    " WHERE env = ? AND (deployed_hash IS NULL OR deployed_hash <> spec_hash)"
    " ORDER BY name"
)


class SqliteRegistry(Registry):
    """The registry in one SQLite file; safe to share between threads and processes."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        # One connection per registry, guarded by a lock, so threads of one
        # process (parallel deploys) can share a registry.
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(
            self.path,
            timeout=BUSY_TIMEOUT_SECONDS,
            # Autocommit at the driver level: this module issues BEGIN/COMMIT itself.
            isolation_level=None,
            check_same_thread=False,
        )
        self._conn.row_factory = sqlite3.Row
        try:
            self._execute("PRAGMA foreign_keys = ON")
            self._execute("PRAGMA journal_mode = WAL")
            self._migrate()
        except BaseException:
            self._conn.close()
            raise

    # -- plumbing --

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        # Every statement goes through here: the one place to trace or fault-inject.
        return self._conn.execute(sql, params)

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        with self._lock:
            self._execute("BEGIN IMMEDIATE")
            try:
                yield
                self._execute("COMMIT")
            except BaseException:
                self._conn.rollback()
                raise

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._execute(sql, params).fetchall()

    def _migrate(self) -> None:
        with self._transaction():
            self._execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = self._execute("SELECT version FROM schema_version").fetchone()
            current = row["version"] if row else 0
            if current > SCHEMA_VERSION:
                raise PrivendError(
                    f"registry {self.path} has schema version {current}, newer than this "
                    f"privend supports ({SCHEMA_VERSION}); upgrade privend"
                )
            for statements in _MIGRATIONS[current:]:
                for statement in statements:
                    self._execute(statement)
            if row is None:
                self._execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
            elif current != SCHEMA_VERSION:
                self._execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # -- tenants --

    def create_tenant(self, tenant: Tenant) -> Tenant:
        row = tenant.model_dump(mode="json")
        with self._transaction():
            if self._tenant_row(tenant.env, tenant.name) is not None:
                raise errors.tenant_exists(tenant.env, tenant.name)
            self._execute(
                "INSERT INTO tenants (env, name, aws_account, principals, billing_timezone,"
                " tier, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    row["env"],
                    row["name"],
                    row["aws_account"],
                    json.dumps(row["principals"]),
                    row["billing_timezone"],
                    row["tier"],
                    row["created_at"],
                ),
            )
        return tenant

    def get_tenant(self, env: str, name: str) -> Tenant:
        with self._lock:
            row = self._tenant_row(env, name)
        if row is None:
            raise errors.tenant_not_found(env, name)
        return _tenant_from_row(row)

    def list_tenants(self, env: str) -> list[Tenant]:
        rows = self._read("SELECT * FROM tenants WHERE env = ? ORDER BY name", (env,))
        return [_tenant_from_row(row) for row in rows]

    def delete_tenant(self, env: str, name: str) -> None:
        with self._transaction():
            if self._tenant_row(env, name) is None:
                raise errors.tenant_not_found(env, name)
            endpoints = self._execute(
                "SELECT name FROM endpoints WHERE env = ? AND tenant = ? ORDER BY name",
                (env, name),
            ).fetchall()
            if endpoints:
                raise errors.tenant_has_endpoints(env, name, [row["name"] for row in endpoints])
            self._execute("DELETE FROM tenants WHERE env = ? AND name = ?", (env, name))

    def _tenant_row(self, env: str, name: str) -> sqlite3.Row | None:
        return self._execute(
            "SELECT * FROM tenants WHERE env = ? AND name = ?", (env, name)
        ).fetchone()

    # -- endpoints --

    def create_endpoint(
        self, endpoint: Endpoint, subscription: Sequence[SubscriptionSegment]
    ) -> Endpoint:
        history = check_subscription(subscription)
        row = _endpoint_to_row(endpoint, history)
        with self._transaction():
            if self._endpoint_row(endpoint.env, endpoint.name) is not None:
                raise errors.endpoint_exists(endpoint.env, endpoint.name)
            if self._tenant_row(endpoint.env, endpoint.tenant) is None:
                raise errors.tenant_not_found(endpoint.env, endpoint.tenant)
            columns = ", ".join(row)
            placeholders = ", ".join("?" for _ in row)
            self._execute(
                f"INSERT INTO endpoints ({columns}) VALUES ({placeholders})", tuple(row.values())
            )
        return endpoint

    def get_endpoint(self, env: str, name: str) -> Endpoint:
        return _endpoint_from_row(self._existing_endpoint_row(env, name))

    def list_endpoints(self, env: str, tenant: str | None = None) -> list[Endpoint]:
        if tenant is None:
            rows = self._read("SELECT * FROM endpoints WHERE env = ? ORDER BY name", (env,))
        else:
            rows = self._read(
                "SELECT * FROM endpoints WHERE env = ? AND tenant = ? ORDER BY name",
                (env, tenant),
            )
        return [_endpoint_from_row(row) for row in rows]

    def get_subscription(self, env: str, name: str) -> list[SubscriptionSegment]:
        return _subscription_from_row(self._existing_endpoint_row(env, name))

    def update_endpoint(
        self,
        env: str,
        name: str,
        *,
        expected_version: int,
        spec: dict[str, JsonValue] | None = None,
        spec_hash: str | None = None,
        status: EndpointStatus | None = None,
        status_message: str | None = None,
        deployed_hash: str | None = None,
        subscription: Sequence[SubscriptionSegment] | None = None,
    ) -> Endpoint:
        with self._transaction():
            current_row = self._endpoint_row(env, name)
            if current_row is None:
                raise errors.endpoint_not_found(env, name)
            current = _endpoint_from_row(current_row)
            new, history = updated_endpoint(
                current,
                expected_version=expected_version,
                spec=spec,
                spec_hash=spec_hash,
                status=status,
                status_message=status_message,
                deployed_hash=deployed_hash,
                subscription=subscription,
            )
            row = _endpoint_to_row(new, history)
            assignments = ", ".join(f"{column} = ?" for column in row)
            # The version condition is redundant under BEGIN IMMEDIATE; it keeps
            # the statement correct on its own should the transaction ever change.
            cursor = self._execute(
                f"UPDATE endpoints SET {assignments} WHERE env = ? AND name = ? AND version = ?",
                (*row.values(), env, name, expected_version),
            )
            if cursor.rowcount != 1:
                raise errors.version_conflict(env, name, expected_version, current.version)
        return new

    def delete_endpoint(self, env: str, name: str, expected_version: int) -> None:
        with self._transaction():
            row = self._endpoint_row(env, name)
            if row is None:
                raise errors.endpoint_not_found(env, name)
            if row["version"] != expected_version:
                raise errors.version_conflict(env, name, expected_version, row["version"])
            self._execute("DELETE FROM endpoints WHERE env = ? AND name = ?", (env, name))

    def list_endpoints_needing_deploy(self, env: str) -> list[Endpoint]:
        return [_endpoint_from_row(row) for row in self._read(_NEEDING_DEPLOY_SQL, (env,))]

    def _endpoint_row(self, env: str, name: str) -> sqlite3.Row | None:
        return self._execute(
            "SELECT * FROM endpoints WHERE env = ? AND name = ?", (env, name)
        ).fetchone()

    def _existing_endpoint_row(self, env: str, name: str) -> sqlite3.Row:
        with self._lock:
            row = self._endpoint_row(env, name)
        if row is None:
            raise errors.endpoint_not_found(env, name)
        return row


def _tenant_from_row(row: sqlite3.Row) -> Tenant:
    return Tenant.model_validate({**dict(row), "principals": json.loads(row["principals"])})


def _endpoint_to_row(
    endpoint: Endpoint, subscription: Sequence[SubscriptionSegment] | None
) -> dict[str, Any]:
    """Column values for `endpoint`; without a subscription column if `subscription` is None."""
    row = endpoint.model_dump(mode="json")
    row["spec"] = json.dumps(row["spec"])
    if subscription is not None:
        row["subscription"] = json.dumps(
            [segment.model_dump(mode="json") for segment in subscription]
        )
    return row


def _endpoint_from_row(row: sqlite3.Row) -> Endpoint:
    fields = {key: row[key] for key in row.keys() if key != "subscription"}
    return Endpoint.model_validate({**fields, "spec": json.loads(row["spec"])})


def _subscription_from_row(row: sqlite3.Row) -> list[SubscriptionSegment]:
    return [SubscriptionSegment.model_validate(item) for item in json.loads(row["subscription"])]
