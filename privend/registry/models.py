"""The records the registry keeps: tenants, endpoints and their subscription history.

Records are frozen pydantic models so a value read from the registry cannot be
changed behind the registry's back; changes go through `Registry.update_endpoint`.
Every datetime is timezone-aware and normalised to UTC on the way in, so both
backends hand back identical values whatever offset the caller used.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from itertools import pairwise
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StringConstraints,
    model_validator,
)

from privend.errors import InputError
from privend.values import (
    ApiKeyName,
    ApiKeyState,
    AwsAccountId,
    EndpointName,
    EndpointStatus,
    EnvName,
    PrincipalArn,
    TenantName,
    Tier,
    TimeZoneName,
)

def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]



class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Tenant(_Record):
    """A customer: the AWS account and principals allowed to reach its endpoints."""

    env: EnvName
    name: TenantName
    aws_account: AwsAccountId
    principals: list[PrincipalArn]
    billing_timezone: TimeZoneName = "UTC"
    tier: Tier
    created_at: UtcDatetime


class Endpoint(_Record):
    """One customer endpoint: its spec, what was last deployed, and where it stands.

    `spec` is the validated endpoint spec as plain JSON data; the registry stores
    it without interpreting it, and `privend.spec.EndpointSpec.from_record` reads
    it back typed. `version` increases by one on every change and is
    what `update_endpoint` and `delete_endpoint` compare against.
    """

    env: EnvName
    name: EndpointName
    tenant: TenantName
    spec: dict[str, JsonValue]
    spec_hash: str
    deployed_hash: str | None = None
    status: EndpointStatus = EndpointStatus.PENDING
    status_message: str = ""
    created_at: UtcDatetime
    updated_at: UtcDatetime
    version: int = Field(default=1, ge=1)


class ApiKey(_Record):
    """A named API key of an endpoint, as the registry knows it: never its secret.

    The secret is shown once when the key is created; afterwards it lives only in
    the endpoint stack's Pulumi secret config and the gateway's Kubernetes Secret.
    `fingerprint` (a sha256 prefix) recognises a key without revealing it.
    """

    env: EnvName
    endpoint: EndpointName
    name: ApiKeyName
    fingerprint: Annotated[str, StringConstraints(pattern=r"^sha256:[0-9a-f]{16}$")]
    rate_limit_per_minute: int | None = Field(default=None, ge=1)
    state: ApiKeyState = "active"
    created_at: UtcDatetime
    revoked_at: UtcDatetime | None = None


class SubscriptionSegment(_Record):
    """One plan over one period; `end` is exclusive, and None while the segment runs."""

    plan: Annotated[str, StringConstraints(min_length=1)]
    start: UtcDatetime
    end: UtcDatetime | None = None

    @model_validator(mode="after")
    def _ends_after_start(self) -> SubscriptionSegment:
        if self.end is not None and self.end <= self.start:
            raise ValueError(
                f"subscription segment {self.plan!r} ends at {self.end.isoformat()}, "
                f"not after its start {self.start.isoformat()}"
            )
        return self


def check_subscription(segments: Sequence[SubscriptionSegment]) -> list[SubscriptionSegment]:
    """Return `segments` as a list if they form a valid history, else raise InputError.

    A valid history is ordered by start, has no overlap (a segment may start
    exactly when the previous one ends) and only its last segment may be open.
    """
    for previous, following in pairwise(segments):
        if previous.end is None:
            raise InputError(
                f"subscription segment {previous.plan!r} starting {previous.start.isoformat()} "
                "is open-ended but is not the last one"
            )
        if following.start < previous.end:
            raise InputError(
                f"subscription segments overlap: {previous.plan!r} until "
                f"{previous.end.isoformat()} and {following.plan!r} from "
                f"{following.start.isoformat()}"
            )
    return list(segments)


def spec_hash(spec: Mapping[str, Any]) -> str:
    """The sha256 of `spec` as canonical JSON: equal specs hash equal, whatever their key order."""
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
