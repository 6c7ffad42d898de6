"""Alert delivery: the registry's outbox entries published to the SNS alert topic.

Reconcile writes each alert into the outbox once, in the same atomic commit as
the invoices; this module sends the unsent ones and marks each sent right after
SNS accepted it. A crash between the two can send one alert twice (at least
once); it never loses one or sends a re-run's repeat.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from privend.registry.billing import Alert



def alert_message(alert: Alert, env: str) -> dict[str, Any]:
    return {"env": env, "period": alert.period, "tenant": alert.tenant, "endpoint": alert.endpoint,
            "kind": alert.kind, "message": alert.message, "details": alert.details,
            "created_at": alert.created_at.isoformat()}


def topic_region(topic_arn: str) -> str | None:
    """The region of an SNS topic ARN (`arn:aws:sns:<region>:<account>:<name>`), None if it names none."""
    return topic_arn.split(":")[3] if topic_arn.count(":") >= 5 else None


def sns_publisher(env: str, topic_arn: str, client: Any) -> Callable[[Alert], None]:
    """A `publish(alert)` that sends to `topic_arn` through the SNS `client`, with the kind as a
    message attribute for filtering."""

    def publish(alert: Alert) -> None:
        client.publish(
            TopicArn=topic_arn,
            Subject=f"privend {env}: {alert.kind} for {alert.endpoint} in {alert.period}"[:100],
            Message=json.dumps(alert_message(alert, env), sort_keys=True),
            MessageAttributes={"kind": {"DataType": "String", "StringValue": alert.kind},
                               "tenant": {"DataType": "String", "StringValue": alert.tenant}},
        )

    return publish
