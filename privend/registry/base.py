"""The registry interface that every backend implements, and the rules they share.

Every method is scoped by env (`dev`, `staging`, `prod`): one store can hold
the records of several environments without them seeing each other.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

from pydantic import JsonValue

from privend.registry import errors
from privend.registry.billing import (
    Alert,
    BillingPeriod,
    BillingSubscription,
    InvoiceRecord,
    QuarantinedEvent,
    ReconcileCommit,
    UsageBatchResult,
    UsageEvent,
)
from privend.registry.models import (
    ApiKey,
    Endpoint,
    EndpointStatus,
    SubscriptionSegment,
    Tenant,
    check_subscription,
)


# An admission check that a create or update runs atomically with its write: called
# with every endpoint of the env as stored when the write applies; raising refuses
# the write (nothing is stored) and the exception reaches the caller.
Admit = Callable[[list[Endpoint]], None]


def utc_now() -> datetime:
    return datetime.now(UTC)


class Registry(abc.ABC):
    """Tenants, endpoints and their subscription history, with atomic conditional writes.

    Errors: `errors.NotFound` (an InputError) for a missing record, `InputError`
    for a duplicate or a refused delete, `errors.ConflictError` when
    `expected_version` no longer matches. Each carries a one-line message.

    Admission (`admit=` on `create_endpoint` and `update_endpoint`): the check
    sees the endpoints of the env exactly as they stand when the write applies,
    so two writers can never both pass a check that only one of them fits, e.g.
    a GPU pool's maxSize. SQLite runs it inside the write transaction, which
    holds the database's write lock; DynamoDB reads the env's capacity version
    before the endpoints and makes the write conditional on it, and every write
    that creates an endpoint or changes a spec bumps that version, so a check
    made on a stale view fails its condition and runs again on a fresh one.
    `admit` may therefore be called more than once; it must not write.
    """

    # -- tenants --

    @abc.abstractmethod
    def create_tenant(self, tenant: Tenant) -> Tenant:
        """Store `tenant`; refused if a tenant of that name exists in its env."""

    @abc.abstractmethod
    def get_tenant(self, env: str, name: str) -> Tenant: ...

    @abc.abstractmethod
    def list_tenants(self, env: str) -> list[Tenant]:
        """All tenants of `env`, sorted by name."""

    @abc.abstractmethod
    def delete_tenant(self, env: str, name: str) -> None:
        """Delete a tenant; refused while it has endpoints, even ones created concurrently."""

    # -- endpoints --

    @abc.abstractmethod
    def create_endpoint(
        self,
        endpoint: Endpoint,
        subscription: Sequence[SubscriptionSegment],
        *,
        admit: Admit | None = None,
    ) -> Endpoint:
        """Store `endpoint` with its subscription history, all or nothing.

        Refused if the endpoint exists or its tenant does not; of two concurrent
        creators of one name exactly one succeeds. `admit`, if given, runs
        atomically with the write (see the class docstring), after those checks.
        """

    @abc.abstractmethod
    def get_endpoint(self, env: str, name: str) -> Endpoint: ...

    @abc.abstractmethod
    def list_endpoints(self, env: str, tenant: str | None = None) -> list[Endpoint]:
        """Endpoints of `env` (of one tenant if given), sorted by name."""

    @abc.abstractmethod
    def get_subscription(self, env: str, name: str) -> list[SubscriptionSegment]:
        """The endpoint's subscription history, oldest segment first."""

    @abc.abstractmethod
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
        """Change the given fields if the endpoint is still at `expected_version`.

        None leaves a field as it is. `spec` and `spec_hash` change together.
        `subscription` replaces the whole history. Returns the endpoint with
        its version bumped by one and `updated_at` set to now. `admit`, if
        given, runs atomically with the write (see the class docstring); it
        sees this endpoint as stored, before the change.
        """

    @abc.abstractmethod
    def delete_endpoint(self, env: str, name: str, expected_version: int) -> None:
        """Delete the endpoint and its subscription history if still at `expected_version`."""

    # -- API keys --

    @abc.abstractmethod
    def create_api_key(self, key: ApiKey) -> ApiKey:
        """Store `key`; refused if its endpoint does not exist or has a key of that name (even revoked)."""

    @abc.abstractmethod
    def list_api_keys(self, env: str, endpoint: str) -> list[ApiKey]:
        """The endpoint's keys, active and revoked, sorted by name; NotFound if the endpoint does not exist."""

    @abc.abstractmethod
    def revoke_api_key(self, env: str, endpoint: str, name: str, at: datetime) -> ApiKey:
        """Mark a key revoked at `at`; NotFound if missing, InputError if already revoked.

        Deleting an endpoint deletes its keys."""

    # -- usage --

    # How many events plus quarantine records `record_usage` takes in one atomic batch.
    usage_batch_size: int = 20_000

    @abc.abstractmethod
    def record_usage(
        self,
        env: str,
        events: Sequence[UsageEvent],
        quarantine: Sequence[QuarantinedEvent] = (),
        *,
        at: datetime,
    ) -> UsageBatchResult:
        """Store one batch of usage events and quarantine records, all or nothing.

        An event whose id is new is accepted. One whose id exists with the same
        endpoint, timestamp and counts is a duplicate and ignored; with different
        content it is a conflict: quarantined (reason `conflict`, at `at`), and
        the first stands. The same rules hold between events of one batch, the
        earlier one standing. Quarantine records are stored once per key.
        """

    @abc.abstractmethod
    def usage_totals(self, env: str, windows: Sequence[tuple[str, int, int]]) -> list[int]:
        """For each (endpoint, start_us, end_us): input plus output tokens of its events in [start, end)."""

    @abc.abstractmethod
    def count_usage_events(self, env: str) -> int: ...

    @abc.abstractmethod
    def list_quarantine(self, env: str) -> list[QuarantinedEvent]:
        """Quarantined input of `env`, oldest first (then by key)."""

    @abc.abstractmethod
    def list_billing_subscriptions(self, env: str) -> list[BillingSubscription]:
        """Every endpoint's subscription history, current and retired, with tenant and time zone.

        Sorted by endpoint name, then retired ones (oldest first) before the current one.
        """

    # -- billing --

    @abc.abstractmethod
    def get_billing_period(self, env: str, period: str) -> BillingPeriod | None: ...

    @abc.abstractmethod
    def list_billing_periods(self, env: str) -> list[BillingPeriod]:
        """Every reconciled period of `env`, oldest first."""

    @abc.abstractmethod
    def list_invoices(self, env: str, period: str) -> list[InvoiceRecord]:
        """The invoices stored by the last reconcile of `period`, by tenant."""

    @abc.abstractmethod
    def commit_reconcile(self, commit: ReconcileCommit) -> list[Alert]:
        """Apply one reconcile run at once: the period's invoices (replacing the previous
        run's), the period record (finalized if asked), new alerts into the outbox and the
        endpoints' status changes. Returns the alerts that were new.

        Refused with InputError if the period is already finalized. An alert whose
        (period, endpoint, kind) exists is skipped; a status change whose endpoint
        moved past `expected_version` is skipped (the next run decides again).
        A crash leaves all of it or none of it.
        """

    @abc.abstractmethod
    def list_alerts(self, env: str, period: str | None = None) -> list[Alert]:
        """Outbox entries, by period, endpoint and kind."""

    @abc.abstractmethod
    def mark_alerts_published(
        self, env: str, keys: Sequence[tuple[str, str, str]], at: datetime
    ) -> None: ...

    # -- lifetime --

    @abc.abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def updated_endpoint(
    current: Endpoint,
    *,
    expected_version: int,
    spec: dict[str, JsonValue] | None,
    spec_hash: str | None,
    status: EndpointStatus | None,
    status_message: str | None,
    deployed_hash: str | None,
    subscription: Sequence[SubscriptionSegment] | None,
) -> tuple[Endpoint, list[SubscriptionSegment] | None]:
    """The record `update_endpoint` writes in place of `current`, and the new history if any.

    Raises ConflictError if `current` is not at `expected_version`. Backends
    still make the write itself conditional on the version: this check only
    gives the early, precise message.
    """
    if (spec is None) != (spec_hash is None):
        # A spec stored without its hash (or the reverse) would make `sync` (which
        # compares spec_hash with deployed_hash, see billing.suspension.needs_deploy)
        # skip a changed spec or redeploy an unchanged one, so the two only change together.
        raise TypeError("update_endpoint: pass spec and spec_hash together")
    if current.version != expected_version:
        raise errors.version_conflict(current.env, current.name, expected_version, current.version)
    changes: dict[str, Any] = {
        key: value
        for key, value in {
            "spec": spec,
            "spec_hash": spec_hash,
            "status": status,
            "status_message": status_message,
            "deployed_hash": deployed_hash,
        }.items()
        if value is not None
    }
    changes["version"] = current.version + 1
    # Never move updated_at backwards, even if this host's clock is behind the last writer's.
    changes["updated_at"] = max(utc_now(), current.updated_at)
    # model_validate rather than model_copy(update=...): the new values get validated.
    new = Endpoint.model_validate({**current.model_dump(), **changes})
    history = check_subscription(subscription) if subscription is not None else None
    return new, history
