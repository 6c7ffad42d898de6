"""Alerts once each (outbox, SNS), hard versus soft caps, and crash safety of reconcile, on both backends."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest

from privend.billing import suspension
from privend.billing.alerts import sns_publisher
from privend.billing.reconcile import dumps, reconcile
from privend.billing.usage import import_usage
from privend.registry import Registry, spec_hash
from privend.registry.sqlite import SqliteRegistry
from tests.billing_support import ENV, add_endpoint, add_tenant, event, utc

NOW = utc(2025, 3, 20)  # inside March: the current period


def run(registry: Registry, plans, period="2025-03", now=NOW, **kwargs):
    return reconcile(registry, ENV, period, now=now, plans=plans, **kwargs)


@pytest.fixture
def fleet(registry: Registry) -> Registry:
    """batch: hard plan, protection used up (capped: 1,000,000 included, 10.00/M, 50.00 protection).
    chat: soft plan (basic), protection used up. quiet: 85 % of its included tokens."""
    add_tenant(registry)
    add_endpoint(registry, "batch", [("capped", utc(2025, 1, 1), None)])
    add_endpoint(registry, "chat", [("basic", utc(2025, 1, 1), None)])
    add_endpoint(registry, "quiet", [("basic", utc(2025, 1, 1), None)])
    import_usage(registry, ENV, [
        event("b1", "batch", "2025-03-10T00:00:00Z", 6_000_000),  # 5,000,000 over = 50.00: exactly the cap
        event("c1", "chat", "2025-03-10T00:00:00Z", 80_000_000),
        event("q1", "quiet", "2025-03-10T00:00:00Z", 2_635_000),  # 85 % of 3,100,000
    ], now=NOW)
    return registry


def kinds(registry: Registry) -> list[tuple[str, str]]:
    return [(a.endpoint, a.kind) for a in registry.list_alerts(ENV, "2025-03")]


def test_alerts_fire_at_80_and_100_percent_and_at_the_cap_once_each(fleet: Registry, plans) -> None:
    first = run(fleet, plans)
    second = run(fleet, plans)

    assert [(a.endpoint, a.kind) for a in first.new_alerts] == [
        ("batch", "usage_80"), ("batch", "usage_100"), ("batch", "overage_cap"),
        ("chat", "usage_80"), ("chat", "usage_100"), ("chat", "overage_cap"),
        ("quiet", "usage_80"),
    ]
    assert second.new_alerts == []
    assert len(kinds(fleet)) == 7
    quiet = fleet.list_alerts(ENV, "2025-03")[-1]
    assert quiet.message == ("endpoint 'quiet' of tenant 'acme' used 80% of its included tokens in 2025-03: "
                             "2,635,000 of 3,100,000")


def test_alert_for_100_percent_comes_once_usage_grows_past_it(fleet: Registry, plans) -> None:
    run(fleet, plans)
    import_usage(fleet, ENV, [event("q2", "quiet", "2025-03-11T00:00:00Z", 465_000)], now=NOW)

    later = run(fleet, plans)

    assert [(a.endpoint, a.kind) for a in later.new_alerts] == [("quiet", "usage_100")]


def test_alerts_are_published_to_sns_once_and_marked_in_the_outbox(fleet: Registry, plans, aws: None) -> None:
    sns = boto3.session.Session().client("sns", region_name="us-east-1")
    topic = sns.create_topic(Name="privend-alerts")["TopicArn"]
    published: list[dict[str, Any]] = []
    sns.meta.events.register("before-parameter-build.sns.Publish", lambda params, **_: published.append(dict(params)))

    first = run(fleet, plans, publish=sns_publisher(ENV, topic, client=sns))
    second = run(fleet, plans, publish=sns_publisher(ENV, topic, client=sns))

    assert first.published == 7
    assert second.published == 0
    assert len(published) == 7
    assert all(params["TopicArn"] == topic for params in published)
    messages = [json.loads(params["Message"]) for params in published]
    assert sorted((m["endpoint"], m["kind"]) for m in messages) == sorted(kinds(fleet))
    cap = next(m for m in messages if m["kind"] == "overage_cap" and m["endpoint"] == "batch")
    assert cap["env"] == "dev"
    assert cap["message"].endswith("it is suspended (hard cap)")
    assert all(alert.published_at == NOW for alert in fleet.list_alerts(ENV))


def test_unpublished_alerts_wait_in_the_outbox_until_a_topic_is_configured(fleet: Registry, plans) -> None:
    run(fleet, plans)
    sent: list[str] = []

    result = run(fleet, plans, publish=lambda alert: sent.append(alert.kind))

    assert result.new_alerts == []
    assert result.published == 7
    assert len(sent) == 7


def test_hard_cap_suspends_soft_cap_keeps_serving(fleet: Registry, plans) -> None:
    result = run(fleet, plans)

    batch, chat = fleet.get_endpoint(ENV, "batch"), fleet.get_endpoint(ENV, "chat")
    assert result.suspended == ["batch"]
    assert batch.status == "suspended"
    assert batch.status_message.startswith("hard cap: the overage protection of plan 'capped' is used up for 2025-03")
    assert chat.status == "pending"
    # The next sync deploys it again, at zero: what it deploys differs from what was deployed.
    assert suspension.needs_deploy(batch)
    assert suspension.effective_replicas(batch) == (0, 0)
    assert suspension.deploy_spec(batch)["min_replicas"] == 0
    assert suspension.scaled_object_annotations(batch) == {"autoscaling.keda.sh/paused-replicas": "0"}
    assert suspension.effective_replicas(chat) == (1, 2)
    assert suspension.scaled_object_annotations(chat) == {}


def test_suspension_is_not_repeated_and_lifts_in_a_new_period(fleet: Registry, plans) -> None:
    run(fleet, plans)
    version = fleet.get_endpoint(ENV, "batch").version
    assert run(fleet, plans).suspended == []
    assert fleet.get_endpoint(ENV, "batch").version == version

    april = run(fleet, plans, finalize=True, now=utc(2025, 4, 1, 0, 5))

    lifted = fleet.get_endpoint(ENV, "batch")
    assert april.lifted == ["batch"]
    assert lifted.status == "pending"
    assert lifted.deployed_hash != lifted.spec_hash  # so sync redeploys it in full


def test_a_plan_with_room_lifts_the_suspension(fleet: Registry, plans) -> None:
    run(fleet, plans)
    batch = fleet.get_endpoint(ENV, "batch")
    history = fleet.get_subscription(ENV, "batch")
    change = utc(2025, 3, 21)
    from privend.registry import SubscriptionSegment

    fleet.update_endpoint(ENV, "batch", expected_version=batch.version, subscription=[
        history[0].model_copy(update={"end": change}), SubscriptionSegment(plan="pro", start=change)])

    result = run(fleet, plans, now=utc(2025, 3, 22))

    assert result.lifted == ["batch"]
    assert fleet.get_endpoint(ENV, "batch").status == "pending"


def test_hard_plan_under_its_cap_is_not_suspended(registry: Registry, plans) -> None:
    add_tenant(registry)
    add_endpoint(registry, "batch", [("capped", utc(2025, 1, 1), None)])
    import_usage(registry, ENV, [event("b1", "batch", "2025-03-10T00:00:00Z", 5_999_999)], now=NOW)

    result = run(registry, plans)

    assert result.suspended == []
    assert registry.get_endpoint(ENV, "batch").status == "pending"
    assert [a.kind for a in result.new_alerts] == ["usage_80", "usage_100"]


def test_suspended_target_hash_differs_from_spec_hash() -> None:
    from privend.registry import Endpoint

    spec = {"min_replicas": 1, "max_replicas": 3}
    endpoint = Endpoint(env=ENV, name="x", tenant="acme", spec=spec, spec_hash=spec_hash(spec), status="suspended",
                        deployed_hash=spec_hash(spec), created_at=NOW, updated_at=NOW)

    assert suspension.target_hash(endpoint) != endpoint.spec_hash
    assert suspension.needs_deploy(endpoint)
    deployed = endpoint.model_copy(update={"deployed_hash": suspension.target_hash(endpoint)})
    assert not suspension.needs_deploy(deployed)
    ready = deployed.model_copy(update={"status": "pending"})
    assert suspension.needs_deploy(ready)


# -- a crash at any point of a reconcile: before or after, never in between --


def state(registry: Registry) -> tuple[Any, ...]:
    return (
        registry.get_billing_period(ENV, "2025-03"),
        [(i.tenant, dumps(i.document)) for i in registry.list_invoices(ENV, "2025-03")],
        [(a.key, a.published_at) for a in registry.list_alerts(ENV)],
        [(e.name, e.status, e.version) for e in registry.list_endpoints(ENV)],
    )


class Crash(Exception):
    pass


def test_sqlite_crash_at_any_write_of_a_reconcile_leaves_it_as_before(tmp_path: Path, plans) -> None:
    path = tmp_path / "registry.db"
    setup = SqliteRegistry(path)
    add_tenant(setup)
    add_endpoint(setup, "batch", [("capped", utc(2025, 1, 1), None)])
    add_endpoint(setup, "chat", [("basic", utc(2025, 1, 1), None)])
    import_usage(setup, ENV, [event("b1", "batch", "2025-03-10T00:00:00Z", 6_000_000)], now=NOW)
    before = state(setup)
    writes = 0
    for crash_at in range(1, 50):
        registry = SqliteRegistry(path)
        count = {"n": 0}
        execute, executemany = registry._execute, registry._executemany

        def count_write(sql: str, count: dict[str, int] = count, crash_at: int = crash_at) -> None:
            if sql.split(None, 1)[0].upper() in {"INSERT", "UPDATE", "DELETE"} and "temp." not in sql:
                count["n"] += 1
                if count["n"] == crash_at:
                    raise Crash(sql)

        def crashing(sql: str, params: Any = (), _execute=execute) -> Any:
            cursor = _execute(sql, params)
            count_write(sql)
            return cursor

        def crashing_many(sql: str, rows: Any, _executemany=executemany) -> Any:
            cursor = _executemany(sql, rows)
            count_write(sql)
            return cursor

        registry._execute, registry._executemany = crashing, crashing_many  # type: ignore[method-assign]
        try:
            run(registry, plans)
        except Crash:
            assert state(registry) == before, f"crash at write {crash_at}"
            registry.close()
            continue
        writes = crash_at - 1
        registry.close()
        break
    assert writes >= 4  # period, invoices, alerts, the suspension: each write was crashed once
    with SqliteRegistry(path) as after:
        assert after.get_endpoint(ENV, "batch").status == "suspended"
        assert len(after.list_alerts(ENV)) == 3
    setup.close()


def test_dynamodb_crash_at_any_call_of_a_reconcile_leaves_before_or_after_and_next_run_completes(
    aws: None, plans
) -> None:
    from botocore.exceptions import EndpointConnectionError

    from privend.registry.dynamodb import DynamoRegistry, table_schema
    from tests.dynamodb_support import REGION, TABLE, dynamodb_client

    client = dynamodb_client()

    def fresh() -> DynamoRegistry:
        client.delete_table(TableName=TABLE)
        client.create_table(TableName=TABLE, **table_schema())
        registry = DynamoRegistry(TABLE, REGION, client=client)
        add_tenant(registry)
        add_endpoint(registry, "batch", [("capped", utc(2025, 1, 1), None)])
        add_endpoint(registry, "chat", [("basic", utc(2025, 1, 1), None)])
        import_usage(registry, ENV, [event("b1", "batch", "2025-03-10T00:00:00Z", 6_000_000)], now=NOW)
        return registry

    registry = fresh()
    run(registry, plans)
    after = state(registry)
    outcomes = []
    for crash_at in range(1, 100):
        registry = fresh()
        before = state(registry)
        calls = {"n": 0}

        def crash(model: Any, _n: int = crash_at, calls: dict[str, int] = calls, **_: Any) -> None:
            if model.name in {"PutItem", "DeleteItem", "UpdateItem", "TransactWriteItems"}:
                calls["n"] += 1
                if calls["n"] == _n:
                    raise EndpointConnectionError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com")

        client.meta.events.register("before-call.dynamodb", crash)
        try:
            run(registry, plans)
        except EndpointConnectionError:
            client.meta.events.unregister("before-call.dynamodb", crash)
        else:
            client.meta.events.unregister("before-call.dynamodb", crash)
            break
        seen = state(registry)  # reading rolls a committed run forward
        assert seen in (before, after), f"crash at write {crash_at}"
        outcomes.append("after" if seen == after else "before")
        run(registry, plans)  # the next run completes it
        assert state(registry) == after
    # Crashes before the commit point leave it as before; after it, as after.
    assert outcomes[0] == "before"
    assert outcomes[-1] == "after"
    assert outcomes == sorted(outcomes, key=["before", "after"].index)


def test_a_hard_cap_reached_in_a_past_period_says_the_endpoint_was_not_suspended(fleet: Registry, plans) -> None:
    result = run(fleet, plans, now=utc(2025, 4, 20))  # March reconciled in April

    cap = next(a for a in result.new_alerts if a.kind == "overage_cap" and a.endpoint == "batch")
    assert "it is suspended" not in cap.message
    assert cap.message.endswith("the period was over when it was reconciled, so it was not suspended (hard cap)")
    assert result.suspended == []
    assert fleet.get_endpoint(ENV, "batch").status != "suspended"
