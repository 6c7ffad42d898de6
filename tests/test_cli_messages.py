"""What the CLI says about what it did: the plan an endpoint subscribes to, manifests that still hold
offline placeholders, and why an alert was not published."""

from __future__ import annotations

import json

import pytest

from tests.cli_support import MODEL_1B, ok, open_registry

pytestmark = pytest.mark.usefixtures("no_aws_credentials")


def test_endpoint_create_names_the_plan_it_subscribed_to(world):
    out = ok("endpoint", "create", "extra", "--tenant", "acme", "--model", MODEL_1B, "--no-deploy").stdout
    assert "subscribed to plan 'standard' (the default; --plan chooses another)" in out
    out = ok("endpoint", "create", "other", "--tenant", "acme", "--model", MODEL_1B, "--plan", "scale",
             "--no-deploy").stdout
    assert "subscribed to plan 'scale'\n" in out


def test_the_default_plan_is_in_the_help_of_create():
    assert "defaults to standard" in " ".join(ok("endpoint", "create", "--help").stdout.split())


def test_exported_manifests_with_offline_placeholders_say_so_at_the_top_and_on_stderr(world, tmp_path):
    result = ok("export", "manifests", "--endpoint", "chat-bot", "--out", str(tmp_path / "out"))
    manifests = sorted((tmp_path / "out").glob("*.yaml"))  # gateway/ holds the Envoy config, tested apart
    marked = sorted(p.name for p in manifests if p.read_text().startswith("# NOT READY TO APPLY: "))
    assert any("targetgroupbinding" in name for name in marked)
    for path in manifests:
        text = path.read_text()
        holds = "offline" in text.split("\n", 2)[-1]
        assert text.startswith("# NOT READY TO APPLY") == holds, path.name
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("warning: ") and "offline placeholders" in result.stderr
    for name in marked:
        assert name in result.stderr


def _alerting_world():
    """An alert in 2025-03: chat-bot's usage past 80 % of its plan's included tokens."""
    with open_registry() as registry:
        from privend.billing.usage import import_usage
        from tests.billing_support import event, utc

        import_usage(registry, "dev", [event("x1", "chat-bot", "2025-03-10T00:00:00Z", 900_000_000)],
                     now=utc(2025, 3, 20))


def test_billing_alerts_say_why_an_alert_was_not_published(world, monkeypatch):
    monkeypatch.delenv("PRIVEND_ALERT_TOPIC_ARN", raising=False)
    _alerting_world()
    reconciled = ok("billing", "reconcile", "--period", "2025-03").stdout
    assert "alerts recorded, not published: no alert topic is configured (set PRIVEND_ALERT_TOPIC_ARN" in reconciled
    out = ok("billing", "alerts", "--period", "2025-03").stdout
    assert "alert(s) not published: no alert topic is configured" in out
    data = json.loads(ok("billing", "alerts", "--period", "2025-03", "--format", "json").stdout)
    assert data and all(a["not_published_because"].startswith("no alert topic is configured") for a in data)
    monkeypatch.setenv("PRIVEND_ALERT_TOPIC_ARN", "arn:aws:sns:us-east-1:123456789012:alerts")
    out = ok("billing", "alerts", "--period", "2025-03").stdout
    assert "waiting in the outbox: the next `privend billing reconcile` publishes it to arn:aws:sns" in out


def test_a_scale_to_zero_endpoint_wakes_on_the_gateway_so_its_scaled_object_needs_no_notice(world, tmp_path):
    # The wake-up trigger reads the gateway's held requests, not the load balancer's flows:
    # nothing in the ScaledObject waits for a deployed value.
    ok("endpoint", "scale", "tiny", "--replicas", "0:3", "--no-deploy")
    ok("export", "manifests", "--endpoint", "tiny", "--out", str(tmp_path / "out"))
    [scaled] = (tmp_path / "out").glob("*-scaledobject-*.yaml")
    text = scaled.read_text()
    assert "gateway-pending-requests" in text
    assert not text.startswith("# NOT READY TO APPLY")
