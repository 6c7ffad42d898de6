"""The registry's behaviour, checked on both backends: SQLite in a temp dir, DynamoDB on moto.

Tests that take the `registry` or `store` fixture run once per backend (moto's
DynamoDB through conftest's `aws`). The crash-safety tests are per backend,
since the way to break a write in the middle differs: a failing statement (or a
killed process) inside the SQLite transaction, a failing call on the DynamoDB
client.
"""

from __future__ import annotations

import os

import hashlib
import json
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from functools import partial
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from privend.billing.suspension import needs_deploy
from privend.service.endpoints import pending_work
from privend.errors import InputError, PrivendError
from privend.registry import (
    ApiKey,
    ConflictError,
    Endpoint,
    NotFound,
    Registry,
    SubscriptionSegment,
    Tenant,
    spec_hash,
)
from privend.registry.backends import open_registry
from privend.settings import Settings
from privend.registry import dynamodb as dynamodb_backend
from privend.registry.dynamodb import DynamoRegistry, table_schema
from privend.registry.sqlite import _MIGRATIONS, SCHEMA_VERSION, SqliteRegistry
from tests.dynamodb_support import REGION, TABLE, dynamodb_client
from tests.thread_support import run_together

ENV = "dev"
T0 = datetime(2025, 1, 1, tzinfo=UTC)
ROOT_ARN = "arn:aws:iam::123456789012:root"
STARTER = [SubscriptionSegment(plan="starter", start=T0)]


def make_tenant(name: str = "acme", env: str = ENV, **overrides: Any) -> Tenant:
    fields: dict[str, Any] = {
        "env": env,
        "name": name,
        "aws_account": "123456789012",
        "principals": [ROOT_ARN, "arn:aws:iam::123456789012:role/app/inference-client"],
        "billing_timezone": "Europe/Paris",
        "tier": "shared",
        "created_at": T0,
    }
    return Tenant(**{**fields, **overrides})


def make_endpoint(
    name: str = "chat", tenant: str = "acme", env: str = ENV, **overrides: Any
) -> Endpoint:
    spec = overrides.pop("spec", {"model": "mistral-7b", "replicas": 1, "gpu": "g6.xlarge"})
    fields: dict[str, Any] = {
        "env": env,
        "name": name,
        "tenant": tenant,
        "spec": spec,
        "spec_hash": spec_hash(spec),
        "created_at": T0,
        "updated_at": T0,
    }
    return Endpoint(**{**fields, **overrides})


# -- fixtures --


@dataclass
class Store:
    """One backend's storage; `open()` gives another registry (own connection or client) on it."""

    open: Callable[[], Registry]


@pytest.fixture(params=["sqlite", "dynamodb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    opened: list[Registry] = []

    def open_sqlite() -> Registry:
        opened.append(SqliteRegistry(tmp_path / "registry.db"))
        return opened[-1]

    def open_dynamodb() -> Registry:
        opened.append(DynamoRegistry(TABLE, REGION, client=dynamodb_client()))
        return opened[-1]

    if request.param == "dynamodb":
        request.getfixturevalue("aws")
        yield Store(open_dynamodb)
    else:
        yield Store(open_sqlite)
    for registry in opened:
        registry.close()


@pytest.fixture
def registry(store: Store) -> Registry:
    return store.open()


@pytest.fixture
def acme(registry: Registry) -> Tenant:
    return registry.create_tenant(make_tenant())


# -- tenants --


def test_created_tenant_is_read_back_unchanged(registry: Registry) -> None:
    tenant = make_tenant(created_at=datetime(2025, 3, 1, 9, 30, tzinfo=ZoneInfo("Europe/Paris")))

    registry.create_tenant(tenant)

    stored = registry.get_tenant(ENV, "acme")
    assert stored == tenant
    assert stored.principals == [ROOT_ARN, "arn:aws:iam::123456789012:role/app/inference-client"]
    assert stored.created_at == datetime(2025, 3, 1, 8, 30, tzinfo=UTC)
    assert stored.created_at.utcoffset() == timedelta(0)


def test_tenants_are_listed_by_name_within_their_env_only(registry: Registry) -> None:
    for name in ("zeta", "acme", "mid"):
        registry.create_tenant(make_tenant(name))
    registry.create_tenant(make_tenant("other", env="staging"))

    assert [tenant.name for tenant in registry.list_tenants(ENV)] == ["acme", "mid", "zeta"]
    assert [tenant.name for tenant in registry.list_tenants("staging")] == ["other"]
    assert registry.list_tenants("prod") == []


def test_second_tenant_with_same_name_gets_one_line_error(registry: Registry) -> None:
    registry.create_tenant(make_tenant())

    with pytest.raises(InputError) as raised:
        registry.create_tenant(make_tenant(aws_account="999999999999"))

    assert str(raised.value) == "tenant 'acme' already exists in env dev"
    assert registry.get_tenant(ENV, "acme").aws_account == "123456789012"


def test_same_tenant_name_may_exist_in_two_envs(registry: Registry) -> None:
    registry.create_tenant(make_tenant())
    registry.create_tenant(make_tenant(env="prod", aws_account="999999999999"))

    assert registry.get_tenant(ENV, "acme").aws_account == "123456789012"
    assert registry.get_tenant("prod", "acme").aws_account == "999999999999"


def test_deleted_tenant_is_gone(registry: Registry, acme: Tenant) -> None:
    registry.delete_tenant(ENV, "acme")

    assert registry.list_tenants(ENV) == []
    with pytest.raises(NotFound, match="^tenant 'acme' not found in env dev$"):
        registry.get_tenant(ENV, "acme")


def test_tenant_with_endpoints_cannot_be_deleted_until_they_are(
    registry: Registry, acme: Tenant
) -> None:
    registry.create_endpoint(make_endpoint("chat"), STARTER)
    registry.create_endpoint(make_endpoint("api"), STARTER)

    with pytest.raises(InputError) as raised:
        registry.delete_tenant(ENV, "acme")

    assert str(raised.value) == (
        "tenant 'acme' still has endpoints in env dev: api, chat; delete them first"
    )
    assert registry.get_tenant(ENV, "acme") == acme
    registry.delete_endpoint(ENV, "api", expected_version=1)
    registry.delete_endpoint(ENV, "chat", expected_version=1)
    registry.delete_tenant(ENV, "acme")
    assert registry.list_tenants(ENV) == []


def test_tenant_delete_racing_endpoint_create_never_orphans_an_endpoint(store: Store) -> None:
    setup = store.open()
    for round_ in range(5):
        tenant, endpoint = f"t{round_}", f"ep{round_}"
        setup.create_tenant(make_tenant(tenant))
        creator, deleter = store.open(), store.open()

        outcomes = run_together(
            partial(creator.create_endpoint, make_endpoint(endpoint, tenant=tenant), STARTER),
            partial(deleter.delete_tenant, ENV, tenant),
        )

        create_first = [
            "ok",
            f"InputError: tenant '{tenant}' still has endpoints in env dev: {endpoint}; "
            "delete them first",
        ]
        delete_first = [f"NotFound: tenant '{tenant}' not found in env dev", "ok"]
        assert outcomes in (create_first, delete_first)
        tenants = {t.name for t in setup.list_tenants(ENV)}
        assert all(e.tenant in tenants for e in setup.list_endpoints(ENV))


# -- not found --


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda r: r.get_tenant(ENV, "ghost"), "tenant 'ghost' not found in env dev"),
        (lambda r: r.delete_tenant(ENV, "ghost"), "tenant 'ghost' not found in env dev"),
        (lambda r: r.get_endpoint(ENV, "ghost"), "endpoint 'ghost' not found in env dev"),
        (lambda r: r.get_subscription(ENV, "ghost"), "endpoint 'ghost' not found in env dev"),
        (
            lambda r: r.update_endpoint(ENV, "ghost", expected_version=1, status="ready"),
            "endpoint 'ghost' not found in env dev",
        ),
        (lambda r: r.delete_endpoint(ENV, "ghost", 1), "endpoint 'ghost' not found in env dev"),
        (
            lambda r: r.get_endpoint("staging", "chat"),
            "endpoint 'chat' not found in env staging",
        ),
    ],
    ids=[
        "get_tenant",
        "delete_tenant",
        "get_endpoint",
        "get_subscription",
        "update_endpoint",
        "delete_endpoint",
        "other_env",
    ],
)
def test_missing_record_raises_not_found_with_one_line_message(
    registry: Registry, acme: Tenant, call: Callable[[Registry], Any], message: str
) -> None:
    registry.create_endpoint(make_endpoint("chat"), STARTER)

    with pytest.raises(NotFound) as raised:
        call(registry)

    assert str(raised.value) == message
    assert raised.value.exit_code == 2


# -- endpoints --


def test_created_endpoint_and_subscription_are_read_back_unchanged(
    registry: Registry, acme: Tenant
) -> None:
    spec = {
        "model": {"id": "mistral-7b", "revision": "main"},
        "max_tokens": 4096,
        "temperature": 0.7,
        "labels": ["a", "é"],
        "notes": None,
    }
    endpoint = make_endpoint(spec=spec, status_message="queued")

    registry.create_endpoint(endpoint, STARTER)

    stored = registry.get_endpoint(ENV, "chat")
    assert stored == endpoint
    assert stored.spec == spec
    assert stored.version == 1
    assert registry.get_subscription(ENV, "chat") == STARTER


def test_endpoint_for_unknown_tenant_is_refused_and_not_stored(registry: Registry) -> None:
    with pytest.raises(NotFound) as raised:
        registry.create_endpoint(make_endpoint(tenant="ghost"), STARTER)

    assert str(raised.value) == "tenant 'ghost' not found in env dev"
    assert registry.list_endpoints(ENV) == []


def test_second_creator_of_same_endpoint_gets_one_line_error(
    registry: Registry, acme: Tenant
) -> None:
    registry.create_endpoint(make_endpoint(spec={"writer": "first"}), STARTER)

    with pytest.raises(InputError) as raised:
        registry.create_endpoint(make_endpoint(spec={"writer": "second"}), [])

    assert str(raised.value) == "endpoint 'chat' already exists in env dev"
    assert registry.get_endpoint(ENV, "chat").spec == {"writer": "first"}
    assert registry.get_subscription(ENV, "chat") == STARTER


def test_concurrent_creators_of_same_endpoint_one_wins_other_gets_one_line_error(
    store: Store,
) -> None:
    store.open().create_tenant(make_tenant())
    for round_ in range(5):
        name = f"race-{round_}"
        first, second = store.open(), store.open()

        outcomes = run_together(
            partial(first.create_endpoint, make_endpoint(name, spec={"writer": 1}), STARTER),
            partial(second.create_endpoint, make_endpoint(name, spec={"writer": 2}), STARTER),
        )

        assert sorted(outcomes) == [
            f"InputError: endpoint '{name}' already exists in env dev",
            "ok",
        ]
        winner = outcomes.index("ok") + 1
        assert store.open().get_endpoint(ENV, name).spec == {"writer": winner}


def test_concurrent_writers_of_different_endpoints_all_succeed(store: Store) -> None:
    # Two writers (separate connections: on SQLite as good as separate
    # processes) interleave twenty transactions each; none may be lost or fail
    # with "database is locked", and the tenant's endpoint count must balance.
    setup = store.open()
    setup.create_tenant(make_tenant())
    writers = [store.open(), store.open()]

    def write_many(writer: Registry, prefix: str) -> None:
        for i in range(20):
            writer.create_endpoint(make_endpoint(f"{prefix}-{i:02d}"), STARTER)

    outcomes = run_together(
        partial(write_many, writers[0], "a"), partial(write_many, writers[1], "b")
    )

    assert outcomes == ["ok", "ok"]
    stored = setup.list_endpoints(ENV)
    assert [e.name for e in stored] == [f"a-{i:02d}" for i in range(20)] + [
        f"b-{i:02d}" for i in range(20)
    ]
    for endpoint in stored:
        setup.delete_endpoint(ENV, endpoint.name, expected_version=1)
    setup.delete_tenant(ENV, "acme")
    assert setup.list_tenants(ENV) == []


def test_endpoints_are_listed_by_name_and_filtered_by_tenant(registry: Registry) -> None:
    registry.create_tenant(make_tenant("acme"))
    registry.create_tenant(make_tenant("globex"))
    registry.create_tenant(make_tenant("acme", env="staging"))
    registry.create_endpoint(make_endpoint("zulu", tenant="acme"), STARTER)
    registry.create_endpoint(make_endpoint("alpha", tenant="globex"), STARTER)
    registry.create_endpoint(make_endpoint("mike", tenant="acme"), STARTER)
    registry.create_endpoint(make_endpoint("bravo", tenant="acme", env="staging"), STARTER)

    assert [e.name for e in registry.list_endpoints(ENV)] == ["alpha", "mike", "zulu"]
    assert [e.name for e in registry.list_endpoints(ENV, tenant="acme")] == ["mike", "zulu"]
    assert [e.name for e in registry.list_endpoints(ENV, tenant="globex")] == ["alpha"]
    assert [e.name for e in registry.list_endpoints("staging")] == ["bravo"]
    assert registry.list_endpoints(ENV, tenant="nobody") == []


# -- updates and versions --


def test_update_bumps_version_and_updated_at_and_keeps_other_fields(
    registry: Registry, acme: Tenant
) -> None:
    created = registry.create_endpoint(make_endpoint(), STARTER)

    updated = registry.update_endpoint(
        ENV, "chat", expected_version=1, status="deploying", status_message="pulumi up"
    )

    assert updated.version == 2
    assert updated.updated_at > T0
    assert updated.updated_at.utcoffset() == timedelta(0)
    assert (updated.status, updated.status_message) == ("deploying", "pulumi up")
    assert updated.model_dump(exclude={"version", "updated_at", "status", "status_message"}) == (
        created.model_dump(exclude={"version", "updated_at", "status", "status_message"})
    )
    assert registry.get_endpoint(ENV, "chat") == updated
    assert registry.get_subscription(ENV, "chat") == STARTER


def test_update_changes_spec_and_hash_together(registry: Registry, acme: Tenant) -> None:
    registry.create_endpoint(make_endpoint(), STARTER)
    new_spec = {"model": "llama-3-8b", "replicas": 2}

    updated = registry.update_endpoint(
        ENV, "chat", expected_version=1, spec=new_spec, spec_hash=spec_hash(new_spec)
    )

    assert registry.get_endpoint(ENV, "chat").spec == new_spec
    assert updated.spec_hash == spec_hash(new_spec)
    with pytest.raises(TypeError, match="spec and spec_hash together"):
        registry.update_endpoint(ENV, "chat", expected_version=2, spec={"model": "x"})
    assert registry.get_endpoint(ENV, "chat").version == 2


def test_update_with_stale_version_raises_conflict_and_changes_nothing(
    registry: Registry, acme: Tenant
) -> None:
    registry.create_endpoint(make_endpoint(), STARTER)
    current = registry.update_endpoint(ENV, "chat", expected_version=1, status="deploying")

    with pytest.raises(ConflictError) as raised:
        registry.update_endpoint(ENV, "chat", expected_version=1, status="failed")

    assert str(raised.value) == (
        "endpoint 'chat' in env dev is at version 2, not 1: it changed since it was read; "
        "read it again and retry"
    )
    assert raised.value.exit_code == 1
    assert registry.get_endpoint(ENV, "chat") == current


def test_two_writers_updating_from_same_read_only_first_applies(store: Store) -> None:
    setup = store.open()
    setup.create_tenant(make_tenant())
    setup.create_endpoint(make_endpoint(), STARTER)
    writers = [store.open(), store.open()]

    outcomes = run_together(
        lambda: writers[0].update_endpoint(ENV, "chat", expected_version=1, status_message="one"),
        lambda: writers[1].update_endpoint(ENV, "chat", expected_version=1, status_message="two"),
    )

    assert sorted(outcomes) == [
        "ConflictError: endpoint 'chat' in env dev is at version 2, not 1: it changed since "
        "it was read; read it again and retry",
        "ok",
    ]
    stored = setup.get_endpoint(ENV, "chat")
    assert stored.version == 2
    assert stored.status_message == ["one", "two"][outcomes.index("ok")]


def test_delete_with_stale_version_raises_conflict_and_keeps_endpoint(
    registry: Registry, acme: Tenant
) -> None:
    registry.create_endpoint(make_endpoint(), STARTER)
    registry.update_endpoint(ENV, "chat", expected_version=1, status="ready")

    with pytest.raises(ConflictError, match="^endpoint 'chat' in env dev is at version 2, not 1:"):
        registry.delete_endpoint(ENV, "chat", expected_version=1)

    assert registry.get_endpoint(ENV, "chat").version == 2


def test_deleted_endpoint_takes_its_subscription_with_it(registry: Registry, acme: Tenant) -> None:
    registry.create_endpoint(make_endpoint(), STARTER)

    registry.delete_endpoint(ENV, "chat", expected_version=1)

    assert registry.list_endpoints(ENV) == []
    with pytest.raises(NotFound, match="^endpoint 'chat' not found in env dev$"):
        registry.get_subscription(ENV, "chat")


def test_invalid_status_is_rejected_and_nothing_changes(registry: Registry, acme: Tenant) -> None:
    registry.create_endpoint(make_endpoint(), STARTER)

    with pytest.raises(ValidationError, match="status"):
        registry.update_endpoint(
            ENV, "chat", expected_version=1, status="exploded"  # type: ignore[arg-type]
        )

    assert registry.get_endpoint(ENV, "chat").status == "pending"


# -- subscriptions --


def test_subscription_round_trips_as_the_same_instants_in_utc(
    registry: Registry, acme: Tenant
) -> None:
    paris = ZoneInfo("Europe/Paris")
    india = timezone(timedelta(hours=5, minutes=30))
    history = [
        SubscriptionSegment(
            plan="starter",
            start=datetime(2025, 1, 1, 0, 0, tzinfo=paris),
            end=datetime(2025, 3, 30, 3, 0, tzinfo=paris),  # just after the DST switch
        ),
        SubscriptionSegment(
            plan="pro", start=datetime(2025, 3, 30, 6, 30, 0, 123456, tzinfo=india), end=None
        ),
    ]

    registry.create_endpoint(make_endpoint(), history)

    stored = registry.get_subscription(ENV, "chat")
    assert stored == history
    assert stored[0].start == datetime(2024, 12, 31, 23, 0, tzinfo=UTC)
    assert stored[0].end == datetime(2025, 3, 30, 1, 0, tzinfo=UTC)
    assert stored[1].start == datetime(2025, 3, 30, 1, 0, 0, 123456, tzinfo=UTC)
    assert stored[1].end is None
    assert all(segment.start.utcoffset() == timedelta(0) for segment in stored)


def test_update_replaces_the_subscription_history(registry: Registry, acme: Tenant) -> None:
    registry.create_endpoint(make_endpoint(), STARTER)
    upgraded = [
        SubscriptionSegment(plan="starter", start=T0, end=T0 + timedelta(days=40)),
        SubscriptionSegment(plan="pro", start=T0 + timedelta(days=40)),
    ]

    updated = registry.update_endpoint(ENV, "chat", expected_version=1, subscription=upgraded)

    assert updated.version == 2
    assert registry.get_subscription(ENV, "chat") == upgraded


@pytest.mark.parametrize(
    ("history", "message"),
    [
        (
            [
                SubscriptionSegment(plan="starter", start=T0, end=T0 + timedelta(days=31)),
                SubscriptionSegment(plan="pro", start=T0 + timedelta(days=30)),
            ],
            "subscription segments overlap: 'starter' until 2025-02-01T00:00:00+00:00 and "
            "'pro' from 2025-01-31T00:00:00+00:00",
        ),
        (
            [
                SubscriptionSegment(plan="starter", start=T0),
                SubscriptionSegment(plan="pro", start=T0 + timedelta(days=30)),
            ],
            "subscription segment 'starter' starting 2025-01-01T00:00:00+00:00 is open-ended "
            "but is not the last one",
        ),
    ],
    ids=["overlap", "open-not-last"],
)
def test_invalid_subscription_history_is_refused_and_nothing_stored(
    registry: Registry, acme: Tenant, history: list[SubscriptionSegment], message: str
) -> None:
    with pytest.raises(InputError) as raised:
        registry.create_endpoint(make_endpoint(), history)

    assert str(raised.value) == message
    assert registry.list_endpoints(ENV) == []


def test_segment_ending_before_it_starts_is_rejected() -> None:
    with pytest.raises(ValidationError, match=r"'pro' ends at 2024-12-31T00:00:00\+00:00"):
        SubscriptionSegment(plan="pro", start=T0, end=T0 - timedelta(days=1))


def test_naive_datetimes_are_rejected() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        SubscriptionSegment(plan="pro", start=datetime(2025, 1, 1))
    with pytest.raises(ValidationError, match="timezone"):
        make_tenant(created_at=datetime(2025, 1, 1))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("aws_account", "12345", "AWS account id '12345' must be 12 digits"),
        ("principals", ["arn:aws:s3:::bucket"], "principal 'arn:aws:s3:::bucket' is not an IAM root, role or user ARN"),
        ("billing_timezone", "Mars/Olympus_Mons", "unknown IANA time zone 'Mars/Olympus_Mons'"),
        ("tier", "premium", "'shared' or 'dedicated'"),
        ("name", "Acme#1", "tenant name 'Acme#1' must be lowercase letters, digits and '-'"),
    ],
)
def test_tenant_rejects_invalid_fields(field: str, value: Any, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        make_tenant(**{field: value})


def test_tenant_accepts_principals_of_every_aws_partition() -> None:
    principals = [
        "arn:aws:iam::123456789012:root",
        "arn:aws-cn:iam::123456789012:role/inference",
        "arn:aws-us-gov:iam::123456789012:user/ops/alice",
    ]

    assert make_tenant(principals=principals).principals == principals


# -- spec hash --


def test_spec_hash_is_sha256_of_sorted_compact_json() -> None:
    spec = {"replicas": 2, "model": {"revision": "main", "id": "m"}, "tags": ["b", "a"]}

    expected = hashlib.sha256(
        b'{"model":{"id":"m","revision":"main"},"replicas":2,"tags":["b","a"]}'
    ).hexdigest()
    assert spec_hash(spec) == expected


def test_spec_hash_changes_when_any_value_changes() -> None:
    spec = {"model": "m", "replicas": 2, "tags": ["a", "b"]}

    assert spec_hash({**spec, "replicas": 3}) != spec_hash(spec)
    assert spec_hash({**spec, "tags": ["b", "a"]}) != spec_hash(spec)
    assert spec_hash({**spec, "extra": None}) != spec_hash(spec)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=4), children, max_size=4),
    max_leaves=12,
)


def _reversed_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _reversed_keys(value[key]) for key in reversed(list(value))}
    if isinstance(value, list):
        return [_reversed_keys(item) for item in value]
    return value


@given(st.dictionaries(st.text(max_size=4), json_values, min_size=2, max_size=6))
def test_spec_hash_does_not_depend_on_key_order(spec: dict[str, Any]) -> None:
    reordered = _reversed_keys(spec)

    assert list(reordered) != list(spec)
    assert spec_hash(reordered) == spec_hash(spec)


# -- deploy queue --


def test_sync_work_is_what_is_not_deployed_as_it_should_run_or_is_marked_deleting(
    registry: Registry, acme: Tenant
) -> None:
    # What `endpoint sync` reads: never deployed and changed specs, round-tripped through
    # the backend (DynamoDB stores "never deployed" as no attribute), and nothing of another env.
    deployed_spec = {"model": "m", "v": 1}
    registry.create_endpoint(make_endpoint("never-deployed"), STARTER)
    registry.create_endpoint(
        make_endpoint("up-to-date", spec=deployed_spec, deployed_hash=spec_hash(deployed_spec)),
        STARTER,
    )
    registry.create_endpoint(
        make_endpoint(
            "changed", spec={"model": "m", "v": 2}, deployed_hash=spec_hash(deployed_spec)
        ),
        STARTER,
    )
    registry.create_endpoint(
        make_endpoint(
            "to-destroy", spec=deployed_spec, deployed_hash=spec_hash(deployed_spec), status="deleting"
        ),
        STARTER,
    )
    registry.create_tenant(make_tenant(env="staging"))
    registry.create_endpoint(make_endpoint("elsewhere", env="staging"), STARTER)

    assert [e.name for e in pending_work(registry, ENV)] == ["changed", "never-deployed", "to-destroy"]
    assert [e.name for e in pending_work(registry, ENV) if needs_deploy(e)] == ["changed", "never-deployed"]

    changed = registry.get_endpoint(ENV, "changed")
    registry.update_endpoint(ENV, "changed", expected_version=1, deployed_hash=changed.spec_hash)
    new_spec = {"model": "m", "v": 3}
    registry.update_endpoint(
        ENV, "up-to-date", expected_version=1, spec=new_spec, spec_hash=spec_hash(new_spec)
    )
    assert [e.name for e in pending_work(registry, ENV)] == ["never-deployed", "to-destroy", "up-to-date"]


# -- crash safety: SQLite --


class SimulatedCrash(Exception):
    pass


def fail_after_first_write(registry: SqliteRegistry) -> list[str]:
    """Make `registry` raise right after its first INSERT/UPDATE/DELETE ran; returns that SQL.

    `del registry._execute` undoes it.
    """
    execute = registry._execute
    written: list[str] = []

    def execute_then_crash(sql: str, params: Any = ()) -> Any:
        cursor = execute(sql, params)
        if sql.split(None, 1)[0].upper() in {"INSERT", "UPDATE", "DELETE"}:
            written.append(sql)
            raise SimulatedCrash(sql)
        return cursor

    registry._execute = execute_then_crash  # type: ignore[method-assign]
    return written


def snapshot(registry: Registry) -> tuple[Any, ...]:
    return (
        registry.list_tenants(ENV),
        registry.list_endpoints(ENV),
        registry.get_subscription(ENV, "chat"),
    )


@pytest.mark.parametrize(
    "operation",
    [
        lambda r: r.create_endpoint(make_endpoint("new"), STARTER),
        lambda r: r.update_endpoint(
            ENV,
            "chat",
            expected_version=1,
            status="ready",
            subscription=[SubscriptionSegment(plan="pro", start=T0)],
        ),
        lambda r: r.delete_endpoint(ENV, "chat", 1),
        lambda r: r.delete_tenant(ENV, "globex"),
    ],
    ids=["create_endpoint", "update_endpoint", "delete_endpoint", "delete_tenant"],
)
def test_sqlite_failure_after_first_write_leaves_store_unchanged(
    tmp_path: Path, operation: Callable[[Registry], Any]
) -> None:
    path = tmp_path / "registry.db"
    with SqliteRegistry(path) as setup:
        setup.create_tenant(make_tenant())
        setup.create_tenant(make_tenant("globex"))
        setup.create_endpoint(make_endpoint("chat"), STARTER)
        before = snapshot(setup)
    registry = SqliteRegistry(path)
    written = fail_after_first_write(registry)

    with pytest.raises(SimulatedCrash):
        operation(registry)

    assert len(written) == 1
    with SqliteRegistry(path) as reader:
        assert snapshot(reader) == before
    # The failed transaction was rolled back, not left open: the connection writes again.
    del registry._execute
    registry.create_endpoint(make_endpoint("after"), STARTER)
    registry.close()


_KILL_MID_CREATE = """
import os, sys
from datetime import UTC, datetime
from privend.registry import Endpoint, SubscriptionSegment, spec_hash
from privend.registry.sqlite import SqliteRegistry

registry = SqliteRegistry(sys.argv[1])
execute = registry._execute

def execute_then_die(sql, params=()):
    cursor = execute(sql, params)
    if sql.startswith("INSERT INTO endpoints"):
        os._exit(17)  # no rollback, no cleanup: like a kill -9 or a power cut of the process
    return cursor

registry._execute = execute_then_die
now = datetime.now(UTC)
registry.create_endpoint(
    Endpoint(env="dev", name="chat", tenant="acme", spec={}, spec_hash=spec_hash({}),
             created_at=now, updated_at=now),
    [SubscriptionSegment(plan="starter", start=now)],
)
"""


def test_sqlite_process_killed_mid_create_leaves_no_endpoint(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    with SqliteRegistry(path) as setup:
        setup.create_tenant(make_tenant())

    killed = subprocess.run(
        [sys.executable, "-c", _KILL_MID_CREATE, str(path)], capture_output=True, timeout=60
    )

    assert killed.returncode == 17, killed.stderr.decode()
    with SqliteRegistry(path) as reader:
        assert reader.list_endpoints(ENV) == []
        reader.create_endpoint(make_endpoint(), STARTER)
        assert reader.get_subscription(ENV, "chat") == STARTER


# -- crash safety: DynamoDB --


@pytest.fixture
def dynamo(aws: None) -> Iterator[tuple[DynamoRegistry, Any]]:
    client = dynamodb_client()
    registry = DynamoRegistry(TABLE, REGION, client=client)
    registry.create_tenant(make_tenant())
    yield registry, client
    registry.close()


def record_calls(client: Any) -> list[str]:
    calls: list[str] = []
    client.meta.events.register(
        "before-call.dynamodb", lambda model, **_: calls.append(model.name)
    )
    return calls


def test_dynamodb_endpoint_create_and_delete_are_each_one_transaction(
    dynamo: tuple[DynamoRegistry, Any],
) -> None:
    registry, client = dynamo
    calls = record_calls(client)

    registry.create_endpoint(make_endpoint(), STARTER)
    created_with = list(calls)
    calls.clear()
    registry.delete_endpoint(ENV, "chat", expected_version=1)

    assert created_with == ["TransactWriteItems"]
    # The delete is one transaction; the query after it finds the endpoint's API keys (none here).
    assert calls == ["GetItem", "TransactWriteItems", "Query"]


def test_dynamodb_failed_transaction_stores_nothing(dynamo: tuple[DynamoRegistry, Any]) -> None:
    registry, client = dynamo

    def connection_lost(**_: Any) -> None:
        raise EndpointConnectionError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com")

    client.meta.events.register("before-call.dynamodb.TransactWriteItems", connection_lost)
    with pytest.raises(EndpointConnectionError):
        registry.create_endpoint(make_endpoint(), STARTER)

    client.meta.events.unregister("before-call.dynamodb.TransactWriteItems", connection_lost)
    assert registry.list_endpoints(ENV) == []
    with pytest.raises(NotFound):
        registry.get_subscription(ENV, "chat")
    # The tenant's endpoint count was not bumped either, or this would be refused.
    registry.delete_tenant(ENV, "acme")


def _transaction_conflict(**_: Any) -> None:
    raise ClientError(
        {
            "Error": {"Code": "TransactionCanceledException", "Message": "conflict"},
            "CancellationReasons": [{"Code": "None"}, {"Code": "TransactionConflict"}],
        },
        "TransactWriteItems",
    )


def test_dynamodb_retries_a_transaction_that_conflicted(
    dynamo: tuple[DynamoRegistry, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    registry, client = dynamo
    monkeypatch.setattr(dynamodb_backend, "_TRANSACTION_BACKOFF_SECONDS", 0)
    attempts: list[int] = []

    def conflict_once(**kwargs: Any) -> None:
        attempts.append(1)
        if len(attempts) == 1:
            _transaction_conflict(**kwargs)

    client.meta.events.register("before-call.dynamodb.TransactWriteItems", conflict_once)

    registry.create_endpoint(make_endpoint(), STARTER)

    assert len(attempts) == 2
    assert registry.get_endpoint(ENV, "chat").name == "chat"


def test_dynamodb_persistent_transaction_conflict_gives_one_line_error(
    dynamo: tuple[DynamoRegistry, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    registry, client = dynamo
    monkeypatch.setattr(dynamodb_backend, "_TRANSACTION_BACKOFF_SECONDS", 0)
    client.meta.events.register("before-call.dynamodb.TransactWriteItems", _transaction_conflict)

    with pytest.raises(ConflictError) as raised:
        registry.create_endpoint(make_endpoint(), STARTER)

    assert str(raised.value) == (
        "endpoint 'chat' in env dev is being changed by another writer; retry"
    )


def test_table_schema_is_pk_hash_sk_range_strings_on_demand() -> None:
    schema = table_schema()

    assert schema["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    assert schema["AttributeDefinitions"] == [
        {"AttributeName": "pk", "AttributeType": "S"},
        {"AttributeName": "sk", "AttributeType": "S"},
    ]
    assert schema["BillingMode"] == "PAY_PER_REQUEST"


# -- SQLite file and schema --


def test_sqlite_registry_uses_wal_and_keeps_data_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    with SqliteRegistry(path) as registry:
        registry.create_tenant(make_tenant())

    with SqliteRegistry(path) as reopened:
        assert reopened.get_tenant(ENV, "acme") == make_tenant()
        assert reopened._read("PRAGMA journal_mode")[0][0] == "wal"
        assert reopened._read("PRAGMA foreign_keys")[0][0] == 1
        versions = reopened._read("SELECT version FROM schema_version")
        assert [tuple(row) for row in versions] == [(SCHEMA_VERSION,)]


def test_sqlite_refuses_a_registry_with_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    with SqliteRegistry(path) as registry:
        registry._execute("UPDATE schema_version SET version = 99")

    with pytest.raises(PrivendError) as raised:
        SqliteRegistry(path)

    assert str(raised.value) == (
        f"registry {path} has schema version 99, newer than this privend supports ({SCHEMA_VERSION}); "
        "upgrade privend"
    )


def test_registry_at_schema_3_loses_the_needing_deploy_index_on_upgrade_and_keeps_its_endpoints(
    tmp_path: Path,
) -> None:
    path = tmp_path / "registry.db"
    connection = sqlite3.connect(path)
    for statement in (*_MIGRATIONS[0], *_MIGRATIONS[1], *_MIGRATIONS[2]):
        connection.execute(statement)
    connection.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    connection.execute("INSERT INTO schema_version VALUES (3)")
    tenant = make_tenant().model_dump(mode="json")
    connection.execute(
        "INSERT INTO tenants VALUES (?, ?, ?, ?, ?, ?, ?)",
        (ENV, "acme", tenant["aws_account"], json.dumps(tenant["principals"]), tenant["billing_timezone"],
         tenant["tier"], tenant["created_at"]),
    )
    subscription = json.dumps([segment.model_dump(mode="json") for segment in STARTER])
    for endpoint in (make_endpoint("fresh"), make_endpoint("live", deployed_hash=make_endpoint().spec_hash)):
        row = endpoint.model_dump(mode="json")
        connection.execute(
            "INSERT INTO endpoints VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (ENV, row["name"], "acme", json.dumps(row["spec"]), row["spec_hash"], row["deployed_hash"],
             row["status"], row["status_message"], subscription, row["created_at"], row["updated_at"],
             row["version"]),
        )
    connection.commit()
    index = "SELECT name FROM sqlite_master WHERE type = 'index' AND name = 'endpoints_needing_deploy'"
    assert connection.execute(index).fetchall() == [("endpoints_needing_deploy",)]
    connection.close()

    with SqliteRegistry(path) as registry:
        assert registry._read("SELECT version FROM schema_version")[0][0] == SCHEMA_VERSION
        assert registry._read(index) == []
        assert registry.get_endpoint(ENV, "live") == make_endpoint("live", deployed_hash=make_endpoint().spec_hash)
        assert registry.get_subscription(ENV, "fresh") == STARTER
        assert [e.name for e in pending_work(registry, ENV)] == ["fresh"]


def test_closed_sqlite_registry_refuses_further_use(tmp_path: Path) -> None:
    with SqliteRegistry(tmp_path / "registry.db") as registry:
        registry.create_tenant(make_tenant())

    with pytest.raises(sqlite3.ProgrammingError, match="closed database"):
        registry.list_tenants(ENV)


# -- choosing the backend --


def test_open_registry_defaults_to_sqlite_under_privend_home(tmp_path: Path) -> None:
    home = tmp_path / "state" / "privend"

    with open_registry(Settings.from_environ({"PRIVEND_HOME": str(home)})) as registry:
        registry.create_tenant(make_tenant())

    assert isinstance(registry, SqliteRegistry)
    assert (home / "registry.db").is_file()
    with SqliteRegistry(home / "registry.db") as reader:
        assert [t.name for t in reader.list_tenants(ENV)] == ["acme"]


def test_open_registry_uses_dot_privend_in_the_project_root_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "Pulumi.yaml").write_text("name: private-endpoint\n")
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    monkeypatch.delenv("PRIVEND_HOME", raising=False)
    monkeypatch.delenv("PRIVEND_REGISTRY", raising=False)

    with open_registry(Settings.from_environ(os.environ)) as registry:
        assert isinstance(registry, SqliteRegistry)

    assert (tmp_path / ".privend" / "registry.db").is_file()
    assert not (tmp_path / "sub" / ".privend").exists()


def test_open_registry_picks_dynamodb_table_and_region_from_url(aws: None) -> None:
    with open_registry(Settings.from_environ({"PRIVEND_REGISTRY": f"dynamodb://{TABLE}?region={REGION}"})) as registry:
        assert isinstance(registry, DynamoRegistry)
        assert registry.table_name == TABLE
        assert registry._client.meta.region_name == REGION
        registry.create_tenant(make_tenant())

    with DynamoRegistry(TABLE, REGION) as reader:
        assert [t.name for t in reader.list_tenants(ENV)] == ["acme"]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "postgres://db/registry",
            "PRIVEND_REGISTRY must look like dynamodb://<table>?region=<region>, "
            "not 'postgres://db/registry'",
        ),
        (
            "dynamodb://?region=us-east-1",
            "PRIVEND_REGISTRY must look like dynamodb://<table>?region=<region>, "
            "not 'dynamodb://?region=us-east-1'",
        ),
        (
            "dynamodb://registry?regoin=us-east-1",
            "PRIVEND_REGISTRY has unknown parameter(s) regoin; "
            "expected dynamodb://<table>?region=<region>",
        ),
    ],
)
def test_open_registry_rejects_a_malformed_url_in_one_line(url: str, message: str) -> None:
    with pytest.raises(InputError) as raised:
        open_registry(Settings.from_environ({"PRIVEND_REGISTRY": url}))

    assert str(raised.value) == message


# -- API keys --


def make_api_key(name: str = "ci", endpoint: str = "chat", **overrides: Any) -> ApiKey:
    fields: dict[str, Any] = {"env": ENV, "endpoint": endpoint, "name": name,
                              "fingerprint": "sha256:" + hashlib.sha256(name.encode()).hexdigest()[:16],
                              "rate_limit_per_minute": 120, "created_at": T0}
    return ApiKey(**{**fields, **overrides})


def test_api_keys_are_stored_listed_by_name_and_revoked(registry: Registry) -> None:
    registry.create_tenant(make_tenant())
    registry.create_endpoint(make_endpoint(), STARTER)
    registry.create_endpoint(make_endpoint("other"), STARTER)
    for key in (make_api_key("web"), make_api_key("ci", rate_limit_per_minute=None), make_api_key("ci", "other")):
        assert registry.create_api_key(key) == key
    assert [k.name for k in registry.list_api_keys(ENV, "chat")] == ["ci", "web"]
    assert registry.list_api_keys(ENV, "chat")[0] == make_api_key("ci", rate_limit_per_minute=None)
    at = datetime(2025, 2, 1, 12, tzinfo=timezone(timedelta(hours=2)))
    revoked = registry.revoke_api_key(ENV, "chat", "web", at)
    assert (revoked.state, revoked.revoked_at) == ("revoked", at.astimezone(UTC))
    assert registry.list_api_keys(ENV, "chat") == [make_api_key("ci", rate_limit_per_minute=None), revoked]
    assert [k.state for k in registry.list_api_keys(ENV, "other")] == ["active"]


def test_api_key_names_are_unique_per_endpoint_even_once_revoked(registry: Registry) -> None:
    registry.create_tenant(make_tenant())
    registry.create_endpoint(make_endpoint(), STARTER)
    registry.create_api_key(make_api_key("ci"))
    registry.revoke_api_key(ENV, "chat", "ci", T0)
    with pytest.raises(InputError) as raised:
        registry.create_api_key(make_api_key("ci"))
    assert str(raised.value) == "API key 'ci' already exists on endpoint 'chat' in env dev"


def test_api_key_of_a_missing_endpoint_is_refused(registry: Registry) -> None:
    registry.create_tenant(make_tenant())
    with pytest.raises(NotFound) as raised:
        registry.create_api_key(make_api_key(endpoint="ghost"))
    assert str(raised.value) == "endpoint 'ghost' not found in env dev"
    with pytest.raises(NotFound):
        registry.list_api_keys(ENV, "ghost")


def test_revoking_a_missing_or_revoked_key_says_which(registry: Registry) -> None:
    registry.create_tenant(make_tenant())
    registry.create_endpoint(make_endpoint(), STARTER)
    with pytest.raises(NotFound) as raised:
        registry.revoke_api_key(ENV, "chat", "nope", T0)
    assert str(raised.value) == "API key 'nope' not found on endpoint 'chat' in env dev"
    registry.create_api_key(make_api_key())
    registry.revoke_api_key(ENV, "chat", "ci", T0)
    with pytest.raises(InputError) as raised:
        registry.revoke_api_key(ENV, "chat", "ci", T0)
    assert str(raised.value) == "API key 'ci' of endpoint 'chat' in env dev is already revoked"


def test_deleting_an_endpoint_deletes_its_api_keys(registry: Registry) -> None:
    registry.create_tenant(make_tenant())
    registry.create_endpoint(make_endpoint(), STARTER)
    registry.create_api_key(make_api_key())
    registry.delete_endpoint(ENV, "chat", 1)
    registry.create_endpoint(make_endpoint(), STARTER)
    assert registry.list_api_keys(ENV, "chat") == []


def test_api_keys_of_one_env_are_invisible_in_another(registry: Registry) -> None:
    for env in (ENV, "prod"):
        registry.create_tenant(make_tenant(env=env))
        registry.create_endpoint(make_endpoint(env=env), STARTER)
    registry.create_api_key(make_api_key())
    assert registry.list_api_keys("prod", "chat") == []


def test_api_key_record_refuses_a_bad_name_or_fingerprint() -> None:
    with pytest.raises(ValidationError, match="API key name 'CI!'"):
        make_api_key("CI!")
    with pytest.raises(ValidationError):
        make_api_key(fingerprint="pe-secret-value")


def test_registry_at_schema_5_gains_the_api_key_table_and_keeps_its_endpoints(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    with SqliteRegistry(path) as registry:
        registry.create_tenant(make_tenant())
        registry.create_endpoint(make_endpoint(), STARTER)
        registry._execute("DROP TABLE api_keys")
        registry._execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION - 1,))
    with SqliteRegistry(path) as registry:
        assert registry._read("SELECT version FROM schema_version")[0][0] == SCHEMA_VERSION
        assert registry.get_endpoint(ENV, "chat") == make_endpoint()
        registry.create_api_key(make_api_key())
        assert [k.name for k in registry.list_api_keys(ENV, "chat")] == ["ci"]
