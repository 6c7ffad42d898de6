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
  at any point leaves either all of it or none of it. That includes an
  admission check (`admit=`, e.g. the GPU pool's maxSize): it reads the
  endpoints under the write lock, so no other writer can slip in between the
  check and the write.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import JsonValue

from privend.errors import PrivendError
from privend.registry import errors
from privend.registry.base import Admit, Registry, updated_endpoint, utc_now
from privend.registry.billing import (
    Alert,
    BillingPeriod,
    BillingSubscription,
    InvoiceRecord,
    QuarantinedEvent,
    ReconcileCommit,
    UsageBatchResult,
    UsageEvent,
    conflict_record,
    dedupe_batch,
)
from privend.registry.models import (
    ApiKey,
    Endpoint,
    EndpointStatus,
    SubscriptionSegment,
    Tenant,
    check_subscription,
)

# Usage events are kept per UTC week of their timestamp (see migration 5): a billing
# period reads the five or six weeks it touches.
USAGE_WEEK_US = 7 * 86_400 * 1_000_000
# The week of column `ts`, rounded down for instants before 1970 as Python's // does.
_WEEK_OF_TS = f"(ts / {USAGE_WEEK_US} - (ts % {USAGE_WEEK_US} < 0))"


def _week_table(week: int) -> str:
    return f'"usage_week_{int(week)}"'


# How long a writer waits for another process's write transaction to finish.
BUSY_TIMEOUT_SECONDS = 30.0

# The page size of a new registry file (see __init__).
PAGE_SIZE = 16_384

# Migrations by schema version: _MIGRATIONS[n] takes the schema from version n
# to n + 1. Append to this list; never edit an entry that has shipped.
_MIGRATIONS: list[tuple[str | Callable[[SqliteRegistry], None], ...]] = [
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
        # (No longer read: the migration from version 3 to 4 drops it.)
        """
        CREATE INDEX endpoints_needing_deploy ON endpoints (env, name)
            WHERE deployed_hash IS NULL OR deployed_hash <> spec_hash
        """,
    ),
    (
        # Usage events. Rows are appended in rowid order (cheap); the unique index on
        # the event id makes the import idempotent; the one other index serves
        # reconcile's range sums and covers them, so a sum never reads the table.
        # Both hold the small rowid, not the id text. No other index: each costs
        # import speed.
        """
        CREATE TABLE usage_events (
            env TEXT NOT NULL,
            id TEXT NOT NULL,
            endpoint TEXT NOT NULL,
            ts INTEGER NOT NULL,             -- microseconds since the epoch, UTC
            input_tokens INTEGER NOT NULL,
            output_tokens INTEGER NOT NULL
        )
        """,
        "CREATE UNIQUE INDEX usage_by_id ON usage_events (env, id)",
        """
        CREATE INDEX usage_by_endpoint_time
            ON usage_events (env, endpoint, ts, input_tokens, output_tokens)
        """,
        """
        CREATE TABLE usage_quarantine (
            env TEXT NOT NULL,
            key TEXT NOT NULL,               -- sha256 of reason and line: stored once
            reason TEXT NOT NULL,
            detail TEXT NOT NULL,
            line TEXT NOT NULL,
            event_id TEXT,
            endpoint TEXT,
            quarantined_at TEXT NOT NULL,
            PRIMARY KEY (env, key)
        ) WITHOUT ROWID
        """,
        # Billing outlives the endpoint and tenant records: their history is kept here on delete.
        """
        CREATE TABLE retired_endpoints (
            env TEXT NOT NULL,
            name TEXT NOT NULL,
            retired_at TEXT NOT NULL,
            tenant TEXT NOT NULL,
            subscription TEXT NOT NULL,
            PRIMARY KEY (env, name, retired_at)
        )
        """,
        """
        CREATE TABLE retired_tenants (
            env TEXT NOT NULL,
            name TEXT NOT NULL,
            retired_at TEXT NOT NULL,
            billing_timezone TEXT NOT NULL,
            PRIMARY KEY (env, name, retired_at)
        )
        """,
        """
        CREATE TABLE billing_periods (
            env TEXT NOT NULL,
            period TEXT NOT NULL,            -- YYYY-MM
            finalized INTEGER NOT NULL,
            reconciled_at TEXT NOT NULL,
            finalized_at TEXT,
            PRIMARY KEY (env, period)
        )
        """,
        """
        CREATE TABLE invoices (
            env TEXT NOT NULL,
            period TEXT NOT NULL,
            tenant TEXT NOT NULL,
            document TEXT NOT NULL,          -- JSON: currency, lines, total, basis
            PRIMARY KEY (env, period, tenant)
        )
        """,
        """
        CREATE TABLE alerts (
            env TEXT NOT NULL,
            period TEXT NOT NULL,
            endpoint TEXT NOT NULL,
            kind TEXT NOT NULL,
            tenant TEXT NOT NULL,
            message TEXT NOT NULL,
            details TEXT NOT NULL,
            created_at TEXT NOT NULL,
            published_at TEXT,
            PRIMARY KEY (env, period, endpoint, kind)
        )
        """,
    ),
    (
        # Usage events keyed by a small integer per (env, endpoint) rather than the names:
        # the time index then compares integers, not text, on every step of an insert, and
        # its entries are smaller (1M inserts of the import's statements alone: about a sixth
        # less time). A key, once given, never changes and is never reused.
        """
        CREATE TABLE usage_endpoints (
            key INTEGER PRIMARY KEY,
            env TEXT NOT NULL,
            endpoint TEXT NOT NULL,
            UNIQUE (env, endpoint)
        )
        """,
        "INSERT INTO usage_endpoints (env, endpoint)"
        " SELECT DISTINCT env, endpoint FROM usage_events ORDER BY env, endpoint",
        """
        CREATE TABLE usage_events_keyed (
            env TEXT NOT NULL,
            id TEXT NOT NULL,
            endpoint_key INTEGER NOT NULL,   -- usage_endpoints.key
            ts INTEGER NOT NULL,             -- microseconds since the epoch, UTC
            input_tokens INTEGER NOT NULL,
            output_tokens INTEGER NOT NULL
        )
        """,
        "INSERT INTO usage_events_keyed (env, id, endpoint_key, ts, input_tokens, output_tokens)"
        " SELECT e.env, e.id, k.key, e.ts, e.input_tokens, e.output_tokens"
        " FROM usage_events AS e JOIN usage_endpoints AS k ON k.env = e.env AND k.endpoint = e.endpoint",
        "DROP TABLE usage_events",
        "ALTER TABLE usage_events_keyed RENAME TO usage_events",
        "CREATE UNIQUE INDEX usage_by_id ON usage_events (env, id)",
        """
        CREATE INDEX usage_by_endpoint_time
            ON usage_events (endpoint_key, ts, input_tokens, output_tokens)
        """,
    ),
    (
        # `sync` finds its work in one scan of the env's endpoints (endpoints.pending_work),
        # since what should run also depends on suspension, which this index cannot see.
        # Nothing reads endpoints_needing_deploy any more; dropping it spares every
        # endpoint write its upkeep.
        "DROP INDEX IF EXISTS endpoints_needing_deploy",
    ),
    (
        # Usage in two places, each written once per event: usage_ids, keyed by (env, id),
        # holds each accepted event (what makes the import idempotent and finds conflicts);
        # one append-only table per UTC week (usage_week_<n>, listed in usage_weeks) holds
        # what reconcile sums. An append costs a fraction of the random insert into a time
        # index that it replaces, the largest single cost of an import; reconcile scans the
        # weeks its windows touch instead of reading ranges of that index.
        """
        CREATE TABLE usage_ids (
            env TEXT NOT NULL,
            id TEXT NOT NULL,
            endpoint_key INTEGER NOT NULL,   -- usage_endpoints.key
            ts INTEGER NOT NULL,             -- microseconds since the epoch, UTC
            input_tokens INTEGER NOT NULL,
            output_tokens INTEGER NOT NULL,
            PRIMARY KEY (env, id)
        ) WITHOUT ROWID
        """,
        "CREATE TABLE usage_weeks (week INTEGER PRIMARY KEY)",
        "INSERT INTO usage_ids SELECT env, id, endpoint_key, ts, input_tokens, output_tokens FROM usage_events",
        lambda registry: registry._copy_events_to_weeks("usage_events"),
        "DROP TABLE usage_events",
    ),
    # API keys of endpoints: what the gateway's keys are, never their secrets.
    (
        """
        CREATE TABLE api_keys (
            env TEXT NOT NULL,
            endpoint TEXT NOT NULL,
            name TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            rate_limit_per_minute INTEGER,
            state TEXT NOT NULL,
            created_at TEXT NOT NULL,
            revoked_at TEXT,
            PRIMARY KEY (env, endpoint, name)
        ) WITHOUT ROWID
        """,
    ),
]
SCHEMA_VERSION = len(_MIGRATIONS)


def _open_error(path: str, exc: sqlite3.Error) -> PrivendError:
    """Why the registry file cannot be used, in one line: it is not a SQLite database, or it
    (or its directory) cannot be written. Nothing has been changed in it at that point: SQLite
    writes nothing to a file it does not recognise."""
    if isinstance(exc, sqlite3.DatabaseError) and "not a database" in str(exc):
        return PrivendError(f"registry {path} is not a SQLite database ({exc}): move it aside, "
                            "or set PRIVEND_HOME to the directory of the registry")
    return PrivendError(f"registry {path} cannot be opened for writing ({exc}): check the permissions of "
                        "the file and its directory (PRIVEND_HOME)")


def stored_schema_version(path: str | os.PathLike[str]) -> int:
    """The schema version of the registry file at `path`, read only (nothing is created or migrated)."""
    try:
        conn = sqlite3.connect(f"file:{os.fspath(path)}?mode=ro", uri=True)
        try:
            row = conn.execute("SELECT version FROM schema_version").fetchone()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise _open_error(os.fspath(path), exc) from None
    return int(row[0]) if row else 0


class SqliteRegistry(Registry):
    """The registry in one SQLite file; safe to share between threads and processes."""

    # Usage events per transaction. Ids and times arrive in no order, so a batch of any
    # size rewrites most pages of the usage id table: fewer, larger batches write less
    # (100,000 imports faster than 50,000). Two batches in memory (one being collected,
    # one stored) keep an import's peak near 250 MiB.
    usage_batch_size = 100_000

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        # One connection per registry, guarded by a lock, so threads of one
        # process (parallel deploys) can share a registry.
        self._lock = threading.RLock()
        # usage_endpoints as read or written by committed transactions: env -> name -> key.
        # Keys never change, so what is here stays true whatever other processes write.
        self._usage_keys: dict[str, dict[str, int]] = {}
        try:
            self._conn = sqlite3.connect(
                self.path,
                timeout=BUSY_TIMEOUT_SECONDS,
                # Autocommit at the driver level: this module issues BEGIN/COMMIT itself.
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise _open_error(self.path, exc) from None
        self._conn.row_factory = sqlite3.Row
        try:
            self._execute("PRAGMA foreign_keys = ON")
            # 16 KiB pages rather than 4: a usage batch rewrites most pages of the usage
            # id table (ids arrive in no order), and a quarter as many pages
            # make that, its WAL frames and checkpoints cheaper: the import runs 10-15 %
            # faster. Only a new, empty file takes it (before WAL mode is set); an existing
            # registry keeps its page size, and works the same either way.
            self._execute(f"PRAGMA page_size = {PAGE_SIZE}")
            self._execute("PRAGMA journal_mode = WAL")
            # A 64 MiB page cache keeps the usage tables' b-trees hot during a
            # bulk import; staging tables live in memory.
            self._execute("PRAGMA cache_size = -65536")
            self._execute("PRAGMA temp_store = MEMORY")
            self._migrate()
            # One usage batch, staged by record_usage; untyped columns keep the values as
            # json_extract gives them. Per connection, in memory, empty between batches.
            self._execute(
                "CREATE TEMP TABLE IF NOT EXISTS usage_batch (id PRIMARY KEY, endpoint_key, ts, input_tokens,"
                " output_tokens) WITHOUT ROWID"
            )
        except sqlite3.Error as exc:
            self._conn.close()
            raise _open_error(self.path, exc) from None
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

    def _executemany(self, sql: str, rows: Any) -> sqlite3.Cursor:
        return self._conn.executemany(sql, rows)

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
                    if isinstance(statement, str):
                        self._execute(statement)
                    else:
                        statement(self)  # a step SQL alone cannot say (tables named by data)
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
            self._execute(
                "INSERT OR REPLACE INTO retired_tenants (env, name, retired_at, billing_timezone)"
                " SELECT env, name, ?, billing_timezone FROM tenants WHERE env = ? AND name = ?",
                (utc_now().isoformat(), env, name),
            )
            self._execute("DELETE FROM tenants WHERE env = ? AND name = ?", (env, name))

    def _tenant_row(self, env: str, name: str) -> sqlite3.Row | None:
        return self._execute(
            "SELECT * FROM tenants WHERE env = ? AND name = ?", (env, name)
        ).fetchone()

    # -- endpoints --

    def create_endpoint(
        self,
        endpoint: Endpoint,
        subscription: Sequence[SubscriptionSegment],
        *,
        admit: Admit | None = None,
    ) -> Endpoint:
        history = check_subscription(subscription)
        row = _endpoint_to_row(endpoint, history)
        with self._transaction():
            if self._endpoint_row(endpoint.env, endpoint.name) is not None:
                raise errors.endpoint_exists(endpoint.env, endpoint.name)
            if self._tenant_row(endpoint.env, endpoint.tenant) is None:
                raise errors.tenant_not_found(endpoint.env, endpoint.tenant)
            if admit is not None:
                # Under BEGIN IMMEDIATE: no other writer can change what it sees before the commit.
                admit(self._endpoints_in(endpoint.env))
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
        admit: Admit | None = None,
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
            if admit is not None:
                admit(self._endpoints_in(env))
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
            # Billing still needs the history of an endpoint whose stack is gone.
            self._execute(
                "INSERT OR REPLACE INTO retired_endpoints (env, name, retired_at, tenant, subscription)"
                " VALUES (?, ?, ?, ?, ?)",
                (env, name, utc_now().isoformat(), row["tenant"], row["subscription"]),
            )
            self._execute("DELETE FROM endpoints WHERE env = ? AND name = ?", (env, name))
            self._execute("DELETE FROM api_keys WHERE env = ? AND endpoint = ?", (env, name))

    # -- API keys --

    def create_api_key(self, key: ApiKey) -> ApiKey:
        row = key.model_dump(mode="json")
        with self._transaction():
            if self._endpoint_row(key.env, key.endpoint) is None:
                raise errors.endpoint_not_found(key.env, key.endpoint)
            if self._api_key_row(key.env, key.endpoint, key.name) is not None:
                raise errors.api_key_exists(key.env, key.endpoint, key.name)
            self._execute(
                f"INSERT INTO api_keys ({', '.join(row)}) VALUES ({', '.join('?' for _ in row)})",
                tuple(row.values()),
            )
        return key

    def list_api_keys(self, env: str, endpoint: str) -> list[ApiKey]:
        with self._lock:
            if self._endpoint_row(env, endpoint) is None:
                raise errors.endpoint_not_found(env, endpoint)
            rows = self._execute(
                "SELECT * FROM api_keys WHERE env = ? AND endpoint = ? ORDER BY name", (env, endpoint)
            ).fetchall()
        return [ApiKey.model_validate(dict(row)) for row in rows]

    def revoke_api_key(self, env: str, endpoint: str, name: str, at: datetime) -> ApiKey:
        with self._transaction():
            row = self._api_key_row(env, endpoint, name)
            if row is None:
                if self._endpoint_row(env, endpoint) is None:
                    raise errors.endpoint_not_found(env, endpoint)
                raise errors.api_key_not_found(env, endpoint, name)
            current = ApiKey.model_validate(dict(row))
            if current.state == "revoked":
                raise errors.api_key_revoked(env, endpoint, name)
            revoked = current.model_copy(update={"state": "revoked", "revoked_at": at.astimezone(UTC)})
            self._execute(
                "UPDATE api_keys SET state = 'revoked', revoked_at = ? WHERE env = ? AND endpoint = ? AND name = ?",
                (revoked.model_dump(mode="json")["revoked_at"], env, endpoint, name),
            )
        return revoked

    def _api_key_row(self, env: str, endpoint: str, name: str) -> sqlite3.Row | None:
        return self._execute(
            "SELECT * FROM api_keys WHERE env = ? AND endpoint = ? AND name = ?", (env, endpoint, name)
        ).fetchone()

    def _endpoints_in(self, env: str) -> list[Endpoint]:
        """Every endpoint of `env`, read inside the caller's transaction."""
        rows = self._execute("SELECT * FROM endpoints WHERE env = ? ORDER BY name", (env,)).fetchall()
        return [_endpoint_from_row(row) for row in rows]

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

    # -- usage --

    def record_usage(
        self,
        env: str,
        events: Sequence[UsageEvent],
        quarantine: Sequence[QuarantinedEvent] = (),
        *,
        at: datetime,
    ) -> UsageBatchResult:
        unique, duplicate, conflicts = dedupe_batch(events, at)
        with self._transaction():
            added = self._add_usage_endpoints(env, {event[1] for event in unique})
            # The batch goes in as one JSON text that SQLite unpacks itself: binding rows
            # one by one would cost more than the insert, and hold the GIL meanwhile.
            batch = _json_rows(unique)
            # Unpacked once (the unpacking costs as much as the lookup of stored ids) into
            # the in-memory usage_batch, keyed by id: both statements below read it in id
            # order, so each page of the id index is visited once per batch. SQLite sorts
            # (ORDER BY: the key then fills in order, faster than at random) and finds each
            # endpoint's key with the GIL released, where Python would hold it against the
            # parsing thread. CROSS JOIN fixes the batch as the outer loop: newer SQLite
            # (3.51) otherwise loops over the endpoints and reads the whole batch for each.
            self._execute(
                "INSERT INTO temp.usage_batch (id, endpoint_key, ts, input_tokens, output_tokens)"
                " SELECT j.value->>0 AS id, k.key, j.value->>2, j.value->>3, j.value->>4"
                " FROM json_each(?) AS j CROSS JOIN usage_endpoints AS k ON k.env = ? AND k.endpoint = j.value->>1"
                " ORDER BY id",
                (batch, env),
            )
            # Only ids already stored come back: about as many rows as duplicates, which
            # on a re-import is every event, so they are classified as they come, not held.
            existing = self._execute(
                "SELECT s.id, s.endpoint_key, s.ts, s.input_tokens, s.output_tokens,"
                " e.endpoint_key, e.ts, e.input_tokens, e.output_tokens"
                " FROM temp.usage_batch AS s CROSS JOIN usage_ids AS e WHERE e.env = ? AND e.id = s.id"
                " ORDER BY s.id",
                (env,),
            )
            names: dict[int, str] | None = None
            stored: list[tuple[str]] = []
            for row in existing:
                stored.append((row[0],))
                if tuple(row[1:5]) == tuple(row[5:9]):
                    duplicate += 1
                    continue
                if names is None:
                    names = {key: name for name, key in self._usage_endpoint_keys(env).items()}
                incoming = UsageEvent(row[0], names[row[1]], *row[2:5])
                conflicts.append(conflict_record(incoming, (names[row[5]], *row[6:9]), at))
            # What stays staged is new: stored once by id (the key refuses a repeat), then in its week.
            self._executemany("DELETE FROM temp.usage_batch WHERE id = ?", stored)
            accepted = self._execute(
                "INSERT INTO usage_ids (env, id, endpoint_key, ts, input_tokens, output_tokens)"
                " SELECT ?, id, endpoint_key, ts, input_tokens, output_tokens FROM temp.usage_batch ORDER BY id",
                (env,),
            ).rowcount
            self._copy_events_to_weeks("temp.usage_batch")
            # Empty again at commit, as a rollback leaves it too.
            self._execute("DELETE FROM temp.usage_batch")
            self._insert_quarantine(env, [*quarantine, *conflicts])
        # Only now: a rolled-back transaction's new keys were never given.
        if added:
            self._usage_keys[env].update(added)
        return UsageBatchResult(accepted, duplicate, len(conflicts))

    def _add_usage_endpoints(self, env: str, names: set[str]) -> dict[str, int]:
        """Give each of `names` without one a key (inside the caller's write transaction); those given now."""
        known = self._usage_keys.get(env)
        if known is None:
            known = self._usage_keys[env] = self._usage_endpoint_keys(env)
        added: dict[str, int] = {}
        for name in sorted(names - known.keys()):
            # Another process may have given it a key since this one last looked.
            self._execute("INSERT OR IGNORE INTO usage_endpoints (env, endpoint) VALUES (?, ?)", (env, name))
            added[name] = self._execute(
                "SELECT key FROM usage_endpoints WHERE env = ? AND endpoint = ?", (env, name)).fetchone()[0]
        return added

    def _usage_endpoint_keys(self, env: str) -> dict[str, int]:
        """name -> key of every endpoint of `env` given a key, read in the caller's transaction."""
        return {row[0]: row[1] for row in self._execute(
            "SELECT endpoint, key FROM usage_endpoints WHERE env = ?", (env,))}

    def _insert_quarantine(self, env: str, records: Sequence[QuarantinedEvent]) -> None:
        if not records:
            return
        self._executemany(
            "INSERT OR IGNORE INTO usage_quarantine (env, key, reason, detail, line, event_id,"
            " endpoint, quarantined_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(env, q.key, q.reason, q.detail, q.line, q.event_id, q.endpoint,
              q.quarantined_at.astimezone(UTC).isoformat()) for q in records],
        )

    def _copy_events_to_weeks(self, source: str) -> None:
        """Append the events of table `source` to their weeks' tables (in the caller's write transaction)."""
        weeks = [row[0] for row in self._execute(f"SELECT DISTINCT {_WEEK_OF_TS} FROM {source}")]
        for week in sorted(weeks):
            table = _week_table(week)
            self._execute(
                f"CREATE TABLE IF NOT EXISTS {table} (endpoint_key INTEGER NOT NULL, ts INTEGER NOT NULL,"
                " input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL)"
            )
            self._execute("INSERT OR IGNORE INTO usage_weeks (week) VALUES (?)", (week,))
            self._execute(
                f"INSERT INTO {table} (endpoint_key, ts, input_tokens, output_tokens)"
                f" SELECT endpoint_key, ts, input_tokens, output_tokens FROM {source} WHERE ts >= ? AND ts < ?",
                (week * USAGE_WEEK_US, (week + 1) * USAGE_WEEK_US),
            )

    def usage_totals(self, env: str, windows: Sequence[tuple[str, int, int]]) -> list[int]:
        if not windows:
            return []
        totals = [0] * len(windows)
        with self._lock:
            self._execute(
                "CREATE TEMP TABLE IF NOT EXISTS usage_spans (n INTEGER PRIMARY KEY,"
                " endpoint_key INTEGER NOT NULL, start INTEGER NOT NULL, stop INTEGER NOT NULL)"
            )
            self._execute("CREATE INDEX IF NOT EXISTS temp.usage_spans_by_key ON usage_spans (endpoint_key, start)")
            self._execute("BEGIN")  # one snapshot for every window
            try:
                self._execute("DELETE FROM temp.usage_spans")
                keys = self._usage_endpoint_keys(env)
                spans = [(n, keys[endpoint], start, stop) for n, (endpoint, start, stop) in enumerate(windows)
                         if endpoint in keys and start < stop]  # an endpoint without usage sums to 0
                self._executemany("INSERT INTO temp.usage_spans VALUES (?, ?, ?, ?)", spans)
                if spans:
                    first = min(span[2] for span in spans) // USAGE_WEEK_US
                    last = (max(span[3] for span in spans) - 1) // USAGE_WEEK_US
                    weeks = [row[0] for row in self._execute(
                        "SELECT week FROM usage_weeks WHERE week BETWEEN ? AND ? ORDER BY week", (first, last))]
                    # One pass over each week the windows touch: each event adds to every window of
                    # its endpoint that holds it, found through the spans' index.
                    for week in weeks:
                        for n, total in self._execute(
                            "SELECT w.n, SUM(e.input_tokens + e.output_tokens)"
                            f" FROM {_week_table(week)} AS e CROSS JOIN temp.usage_spans AS w"
                            " ON w.endpoint_key = e.endpoint_key AND e.ts >= w.start AND e.ts < w.stop"
                            " GROUP BY w.n"
                        ):
                            totals[n] += total
                self._execute("DELETE FROM temp.usage_spans")
                self._execute("COMMIT")
            except BaseException:
                self._conn.rollback()
                raise
        return totals

    def count_usage_events(self, env: str) -> int:
        return self._read("SELECT COUNT(*) FROM usage_ids WHERE env = ?", (env,))[0][0]

    def list_quarantine(self, env: str) -> list[QuarantinedEvent]:
        rows = self._read(
            "SELECT * FROM usage_quarantine WHERE env = ? ORDER BY quarantined_at, key", (env,)
        )
        return [
            QuarantinedEvent(row["key"], row["reason"], row["detail"], row["line"],
                             datetime.fromisoformat(row["quarantined_at"]), row["event_id"], row["endpoint"])
            for row in rows
        ]

    def list_billing_subscriptions(self, env: str) -> list[BillingSubscription]:
        with self._lock:
            zones = {row["name"]: row["billing_timezone"] for row in self._execute(
                "SELECT name, billing_timezone FROM retired_tenants WHERE env = ? ORDER BY retired_at",
                (env,))}
            zones.update({row["name"]: row["billing_timezone"] for row in self._execute(
                "SELECT name, billing_timezone FROM tenants WHERE env = ?", (env,))})
            retired = self._execute(
                "SELECT * FROM retired_endpoints WHERE env = ? ORDER BY name, retired_at", (env,)
            ).fetchall()
            current = self._execute(
                "SELECT name, tenant, subscription FROM endpoints WHERE env = ? ORDER BY name", (env,)
            ).fetchall()
        result = [
            BillingSubscription(row["name"], row["tenant"], zones.get(row["tenant"], "UTC"),
                                tuple(_subscription_from_row(row)), datetime.fromisoformat(row["retired_at"]))
            for row in retired
        ] + [
            BillingSubscription(row["name"], row["tenant"], zones.get(row["tenant"], "UTC"),
                                tuple(_subscription_from_row(row)))
            for row in current
        ]
        return sorted(result, key=lambda s: (s.endpoint, s.retired_at is None, s.retired_at or T_MIN))

    # -- billing --

    def get_billing_period(self, env: str, period: str) -> BillingPeriod | None:
        rows = self._read("SELECT * FROM billing_periods WHERE env = ? AND period = ?", (env, period))
        return _period_from_row(rows[0]) if rows else None

    def list_billing_periods(self, env: str) -> list[BillingPeriod]:
        rows = self._read("SELECT * FROM billing_periods WHERE env = ? ORDER BY period", (env,))
        return [_period_from_row(row) for row in rows]

    def list_invoices(self, env: str, period: str) -> list[InvoiceRecord]:
        rows = self._read(
            "SELECT tenant, document FROM invoices WHERE env = ? AND period = ? ORDER BY tenant",
            (env, period),
        )
        return [InvoiceRecord(period, row["tenant"], json.loads(row["document"])) for row in rows]

    def commit_reconcile(self, commit: ReconcileCommit) -> list[Alert]:
        env, period, at = commit.env, commit.period, commit.at.astimezone(UTC).isoformat()
        new_alerts: list[Alert] = []
        with self._transaction():
            row = self._execute(
                "SELECT finalized FROM billing_periods WHERE env = ? AND period = ?", (env, period)
            ).fetchone()
            if row is not None and row["finalized"]:
                raise errors.period_finalized(env, period)
            self._execute(
                "INSERT OR REPLACE INTO billing_periods (env, period, finalized, reconciled_at, finalized_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (env, period, int(commit.finalize), at, at if commit.finalize else None),
            )
            self._execute("DELETE FROM invoices WHERE env = ? AND period = ?", (env, period))
            self._executemany(
                "INSERT INTO invoices (env, period, tenant, document) VALUES (?, ?, ?, ?)",
                [(env, period, invoice.tenant, _json(invoice.document)) for invoice in commit.invoices],
            )
            for alert in commit.alerts:
                inserted = self._execute(
                    "INSERT OR IGNORE INTO alerts (env, period, endpoint, kind, tenant, message, details,"
                    " created_at, published_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL)",
                    (env, alert.period, alert.endpoint, alert.kind, alert.tenant, alert.message,
                     _json(alert.details), alert.created_at.astimezone(UTC).isoformat()),
                ).rowcount
                if inserted:
                    new_alerts.append(alert)
            for change in commit.status_changes:
                current_row = self._endpoint_row(env, change.endpoint)
                if current_row is None or current_row["version"] != change.expected_version:
                    continue  # changed since reconcile read it: the next run decides again
                new, _ = updated_endpoint(
                    _endpoint_from_row(current_row), expected_version=change.expected_version,
                    spec=None, spec_hash=None, status=change.status,  # type: ignore[arg-type]
                    status_message=change.status_message, deployed_hash=None, subscription=None,
                )
                row = _endpoint_to_row(new, None)
                assignments = ", ".join(f"{column} = ?" for column in row)
                self._execute(
                    f"UPDATE endpoints SET {assignments} WHERE env = ? AND name = ? AND version = ?",
                    (*row.values(), env, change.endpoint, change.expected_version),
                )
        return new_alerts

    def list_alerts(self, env: str, period: str | None = None) -> list[Alert]:
        if period is None:
            rows = self._read("SELECT * FROM alerts WHERE env = ? ORDER BY period, endpoint, kind", (env,))
        else:
            rows = self._read(
                "SELECT * FROM alerts WHERE env = ? AND period = ? ORDER BY period, endpoint, kind",
                (env, period),
            )
        return [
            Alert(row["period"], row["endpoint"], row["kind"], row["tenant"], row["message"],
                  datetime.fromisoformat(row["created_at"]), json.loads(row["details"]),
                  datetime.fromisoformat(row["published_at"]) if row["published_at"] else None)
            for row in rows
        ]

    def mark_alerts_published(
        self, env: str, keys: Sequence[tuple[str, str, str]], at: datetime
    ) -> None:
        with self._transaction():
            self._executemany(
                "UPDATE alerts SET published_at = ? WHERE env = ? AND period = ? AND endpoint = ?"
                " AND kind = ? AND published_at IS NULL",
                [(at.astimezone(UTC).isoformat(), env, *key) for key in keys],
            )


T_MIN = datetime.min.replace(tzinfo=UTC)


def _json_rows(rows: Sequence[tuple[Any, ...]]) -> str:
    """`rows` as one JSON array of arrays, for json_each."""
    try:
        # orjson is several times faster than json, and this runs with the GIL held.
        return orjson.dumps(rows, default=tuple).decode()
    except TypeError:
        # What orjson refuses (an integer beyond 64 bits, a lone surrogate) takes json's path, as before.
        return json.dumps(rows, ensure_ascii=False)


def _json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def _period_from_row(row: sqlite3.Row) -> BillingPeriod:
    return BillingPeriod(
        row["period"], bool(row["finalized"]), datetime.fromisoformat(row["reconciled_at"]),
        datetime.fromisoformat(row["finalized_at"]) if row["finalized_at"] else None,
    )


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
