"""Validated value types shared by the specs, the environment config and the registry records.

Each concept is checked in one place, with one message: a tenant name accepted by
`tenant create` is a name the registry stores, and a principal the registry
reads back is one the spec accepts. The annotated types work as pydantic field
types; the `check_*` functions are the same checks for code outside a model.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator

# Tenant and endpoint names end up in Kubernetes names, AWS names and DynamoDB keys
# (`TENANT#<name>`), so they are DNS-1123 labels: that also keeps `#` out of keys.
DNS1123_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
TENANT_NAME_MAX = 20
ENDPOINT_NAME_MAX = 24  # leaves room in `pe-<env>-<endpoint>` (32) and `ep-<endpoint>` (63)
ENV_NAME_MAX = 12  # env names prefix every AWS name; see privend.naming
API_KEY_NAME_MAX = 32  # a key's name is a gateway route name, a log field and a DynamoDB key part

ACCOUNT_ID = re.compile(r"^[0-9]{12}$")
# Principals a VPC endpoint service may allow: an account root, or a role or user of
# that account (IAM paths included), in any AWS partition.
PRINCIPAL_ARN = re.compile(
    r"^arn:aws(?:-[a-z]+)*:iam::([0-9]{12}):(?:root|(?:role|user)/[A-Za-z0-9+=,.@_/-]{1,512})$"
)

Tier = Literal["shared", "dedicated"]
TIERS: tuple[str, ...] = get_args(Tier)
CapacityType = Literal["on-demand", "spot"]
CAPACITY_TYPES: tuple[str, ...] = get_args(CapacityType)
Engine = Literal["tgi", "vllm"]
ENGINES: tuple[str, ...] = get_args(Engine)


class EndpointStatus(StrEnum):
    """Where an endpoint stands. A StrEnum: compares equal to, and stores as, its plain string."""

    PENDING = "pending"  # recorded, not deployed as it should run
    DEPLOYING = "deploying"  # a sync is deploying it
    READY = "ready"  # deployed as recorded
    FAILED = "failed"  # the last deploy failed; sync tries again
    SUSPENDED = "suspended"  # hard cap reached: deployed scaled to zero
    DELETING = "deleting"  # marked for deletion; sync destroys the stack


# Endpoints whose pods exist or may come back at any time.
RUNNING_STATUSES: tuple[EndpointStatus, ...] = (EndpointStatus.READY, EndpointStatus.DEPLOYING,
                                                EndpointStatus.SUSPENDED)


def check_dns_label(value: str, what: str, max_len: int) -> str:
    """`value` if it is a DNS-1123 label of at most `max_len` characters, else ValueError naming `what`."""
    if len(value) > max_len:
        raise ValueError(f"{what} {value!r} is longer than {max_len} characters")
    if not DNS1123_LABEL.match(value):
        raise ValueError(f"{what} {value!r} must be lowercase letters, digits and '-', starting with a letter")
    return value


def check_account_id(value: str) -> str:
    if not ACCOUNT_ID.match(value):
        raise ValueError(f"AWS account id {value!r} must be 12 digits")
    return value


def check_principal(value: str) -> str:
    if "*" in value:
        raise ValueError(f"principal {value!r}: wildcards would let any AWS account connect")
    if not PRINCIPAL_ARN.match(value):
        raise ValueError(f"principal {value!r} is not an IAM root, role or user ARN")
    return value


def principal_account(arn: str) -> str:
    """The account id of a principal that passed `check_principal`."""
    match = PRINCIPAL_ARN.match(arn)
    if match is None:
        raise ValueError(f"principal {arn!r} is not an IAM root, role or user ARN")
    return match.group(1)


def check_time_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown IANA time zone {value!r} (use a name like Europe/Berlin)") from None
    return value


def _label(what: str, max_len: int):
    return AfterValidator(lambda value: check_dns_label(value, what, max_len))


TenantName = Annotated[str, _label("tenant name", TENANT_NAME_MAX)]
EndpointName = Annotated[str, _label("endpoint name", ENDPOINT_NAME_MAX)]
EnvName = Annotated[str, _label("environment name", ENV_NAME_MAX)]
ApiKeyName = Annotated[str, _label("API key name", API_KEY_NAME_MAX)]
ApiKeyState = Literal["active", "revoked"]
AwsAccountId = Annotated[str, AfterValidator(check_account_id)]
PrincipalArn = Annotated[str, AfterValidator(check_principal)]
TimeZoneName = Annotated[str, AfterValidator(check_time_zone)]
