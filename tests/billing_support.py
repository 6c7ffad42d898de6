"""Helpers shared by the billing and usage tests: a plans catalog and records.

Their fixtures are conftest's: `plans` (this catalog, as PRIVEND_PLANS) and
`registry` (one test per backend, SQLite and DynamoDB on moto).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from privend.registry import Endpoint, Registry, SubscriptionSegment, Tenant, spec_hash

ENV = "dev"

# Round numbers so every expectation below can be worked out by hand.
PLANS_YAML = """
plans:
  - {name: basic, currency: USD, monthly_fee: "310.00", included_tokens: 3100000,
     overage_per_million_tokens: "2.00", max_overage: "100.00", cap: soft}
  - {name: pro, currency: USD, monthly_fee: "620.00", included_tokens: 6200000,
     overage_per_million_tokens: "1.00", max_overage: null, cap: soft}
  - {name: capped, currency: USD, monthly_fee: "100.00", included_tokens: 1000000,
     overage_per_million_tokens: "10.00", max_overage: "50.00", cap: hard}
  - {name: tiny, currency: USD, monthly_fee: "0.05", included_tokens: 0,
     overage_per_million_tokens: "0.01", max_overage: null, cap: soft}
"""


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def add_tenant(registry: Registry, name: str = "acme", timezone: str = "UTC", account: str = "111122223333") -> Tenant:
    return registry.create_tenant(Tenant(env=ENV, name=name, aws_account=account, principals=[],
                                         billing_timezone=timezone, tier="shared", created_at=utc(2024, 1, 1)))


def add_endpoint(registry: Registry, name: str, segments: list[tuple[str, datetime, datetime | None]],
                 tenant: str = "acme") -> Endpoint:
    spec = {"name": name, "min_replicas": 1, "max_replicas": 2, "plan": segments[-1][0]}
    endpoint = Endpoint(env=ENV, name=name, tenant=tenant, spec=spec, spec_hash=spec_hash(spec),
                        created_at=utc(2024, 1, 1), updated_at=utc(2024, 1, 1))
    history = [SubscriptionSegment(plan=plan, start=start, end=end) for plan, start, end in segments]
    return registry.create_endpoint(endpoint, history)


def event(event_id: str, endpoint: str, timestamp: str, input_tokens: int, output_tokens: int = 0) -> str:
    return json.dumps({"id": event_id, "endpoint": endpoint, "timestamp": timestamp,
                       "input_tokens": input_tokens, "output_tokens": output_tokens})


def lines_of(invoice: dict[str, Any]) -> list[tuple[str, str, Any, str]]:
    return [(line["endpoint"], line["kind"], line["quantity"], line["amount"]) for line in invoice["lines"]]
