"""The production registry backend: the DynamoDB table that the platform stack creates.

Single-table design. Every item of an environment shares the partition key
`ENV#<env>`; the sort key says what the item is:

    pk=ENV#dev  sk=TENANT#acme      a tenant, with `endpoint_count`
    pk=ENV#dev  sk=ENDPOINT#chat    an endpoint, its spec and its subscription history

Atomicity comes from DynamoDB's conditions, never from read-then-write in here:
- creates are conditional puts (`attribute_not_exists(pk)`);
- an endpoint is created or deleted in one TransactWriteItems together with an
  update of its tenant's `endpoint_count`, conditional on the tenant existing.
  A plain ConditionCheck on the tenant would not do: a concurrent
  `delete_tenant` could count no endpoints, then delete the tenant after the
  check passed. Writing the count makes the two transactions conflict instead;
- `delete_tenant` is a delete conditional on `endpoint_count = 0`;
- updates and deletes of an endpoint are conditional on its `version`.
The subscription history is an attribute of the endpoint item, so no failure
can write one without the other.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from typing import Any

import boto3
from botocore.exceptions import ClientError
from pydantic import JsonValue

from privend.registry import errors
from privend.registry.base import Registry, updated_endpoint
from privend.registry.models import (
    Endpoint,
    EndpointStatus,
    SubscriptionSegment,
    Tenant,
    check_subscription,
)

_TENANT = "TENANT#"
_ENDPOINT = "ENDPOINT#"

# TransactionConflict means another transaction held one of our items at that
# moment, not that a condition failed; trying again soon gives the real outcome.
_TRANSACTION_ATTEMPTS = 3
_TRANSACTION_BACKOFF_SECONDS = 0.05


def table_schema() -> dict[str, Any]:
    """Key schema, attribute definitions and billing mode of the registry table.

    In the shape of DynamoDB's CreateTable request (`create_table(TableName=...,
    **table_schema())`), the one definition the platform stack and the tests share.
    """
    return {
        "KeySchema": [
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        "AttributeDefinitions": [
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        "BillingMode": "PAY_PER_REQUEST",
    }


class _Cancelled(Exception):
    """A TransactWriteItems call was cancelled; `codes` has one reason per item, in order."""

    def __init__(self, error: ClientError) -> None:
        super().__init__(str(error))
        self.error = error
        reasons = error.response.get("CancellationReasons", [])
        self.codes = [reason.get("Code") for reason in reasons]

    def condition_failed(self, index: int) -> bool:
        return index < len(self.codes) and self.codes[index] == "ConditionalCheckFailed"

    @property
    def conflict(self) -> bool:
        return "TransactionConflict" in self.codes


class DynamoRegistry(Registry):
    """The registry in one DynamoDB table; see `table_schema()` for its keys."""

    def __init__(self, table_name: str, region_name: str | None = None, client: Any = None) -> None:
        self.table_name = table_name
        self._owns_client = client is None
        # A session of its own: boto3's default session is not thread-safe,
        # and clients may be created from several threads.
        self._client = client or boto3.session.Session().client("dynamodb", region_name=region_name)

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    # -- plumbing --

    def _key(self, env: str, prefix: str, name: str) -> dict[str, Any]:
        return {"pk": {"S": f"ENV#{env}"}, "sk": {"S": f"{prefix}{name}"}}

    def _get(self, env: str, prefix: str, name: str) -> dict[str, Any] | None:
        response = self._client.get_item(
            TableName=self.table_name, Key=self._key(env, prefix, name), ConsistentRead=True
        )
        return response.get("Item")

    def _query(
        self,
        env: str,
        prefix: str,
        filter_expression: str | None = None,
        names: dict[str, str] | None = None,
        values: dict[str, Any] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Items of `env` whose sort key starts with `prefix`, in sort key (so name) order."""
        request: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": {
                ":pk": {"S": f"ENV#{env}"},
                ":prefix": {"S": prefix},
                **(values or {}),
            },
            "ConsistentRead": True,
        }
        if filter_expression is not None:
            request["FilterExpression"] = filter_expression
        if names:
            request["ExpressionAttributeNames"] = names
        for page in self._client.get_paginator("query").paginate(**request):
            yield from page["Items"]

    def _transact(self, items: list[dict[str, Any]]) -> None:
        for attempt in range(_TRANSACTION_ATTEMPTS):
            try:
                self._client.transact_write_items(TransactItems=items)
                return
            except ClientError as error:
                if error.response["Error"]["Code"] != "TransactionCanceledException":
                    raise
                cancelled = _Cancelled(error)
                if not cancelled.conflict or attempt == _TRANSACTION_ATTEMPTS - 1:
                    raise cancelled from error
                time.sleep(_TRANSACTION_BACKOFF_SECONDS * 2**attempt)

    def _tenant_count_update(self, env: str, tenant: str, delta: int) -> dict[str, Any]:
        return {
            "Update": {
                "TableName": self.table_name,
                "Key": self._key(env, _TENANT, tenant),
                "UpdateExpression": "ADD endpoint_count :delta",
                # Without it, ADD on a missing tenant would create a stub item.
                "ConditionExpression": "attribute_exists(pk)",
                "ExpressionAttributeValues": {":delta": {"N": str(delta)}},
            }
        }

    # -- tenants --

    def create_tenant(self, tenant: Tenant) -> Tenant:
        try:
            self._client.put_item(
                TableName=self.table_name,
                Item=_tenant_item(tenant, self._key(tenant.env, _TENANT, tenant.name)),
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as error:
            if _code(error) == "ConditionalCheckFailedException":
                raise errors.tenant_exists(tenant.env, tenant.name) from None
            raise
        return tenant

    def get_tenant(self, env: str, name: str) -> Tenant:
        item = self._get(env, _TENANT, name)
        if item is None:
            raise errors.tenant_not_found(env, name)
        return _tenant_from_item(item)

    def list_tenants(self, env: str) -> list[Tenant]:
        return [_tenant_from_item(item) for item in self._query(env, _TENANT)]

    def delete_tenant(self, env: str, name: str) -> None:
        try:
            self._client.delete_item(
                TableName=self.table_name,
                Key=self._key(env, _TENANT, name),
                ConditionExpression="attribute_exists(pk) AND endpoint_count = :zero",
                ExpressionAttributeValues={":zero": {"N": "0"}},
            )
        except ClientError as error:
            if _code(error) != "ConditionalCheckFailedException":
                raise
            if self._get(env, _TENANT, name) is None:
                raise errors.tenant_not_found(env, name) from None
            endpoints = [endpoint.name for endpoint in self.list_endpoints(env, tenant=name)]
            raise errors.tenant_has_endpoints(env, name, endpoints) from None

    # -- endpoints --

    def create_endpoint(
        self, endpoint: Endpoint, subscription: Sequence[SubscriptionSegment]
    ) -> Endpoint:
        history = check_subscription(subscription)
        env, name = endpoint.env, endpoint.name
        put = {
            "Put": {
                "TableName": self.table_name,
                "Item": _endpoint_item(endpoint, history, self._key(env, _ENDPOINT, name)),
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        }
        try:
            self._transact([put, self._tenant_count_update(env, endpoint.tenant, +1)])
        except _Cancelled as cancelled:
            if cancelled.condition_failed(0):
                raise errors.endpoint_exists(env, name) from None
            if cancelled.condition_failed(1):
                raise errors.tenant_not_found(env, endpoint.tenant) from None
            if cancelled.conflict:
                raise errors.endpoint_busy(env, name) from None
            raise cancelled.error from None
        return endpoint

    def get_endpoint(self, env: str, name: str) -> Endpoint:
        return _endpoint_from_item(self._existing_endpoint_item(env, name))

    def list_endpoints(self, env: str, tenant: str | None = None) -> list[Endpoint]:
        if tenant is None:
            items = self._query(env, _ENDPOINT)
        else:
            items = self._query(
                env,
                _ENDPOINT,
                "#tenant = :tenant",
                names={"#tenant": "tenant"},
                values={":tenant": {"S": tenant}},
            )
        return [_endpoint_from_item(item) for item in items]

    def get_subscription(self, env: str, name: str) -> list[SubscriptionSegment]:
        return _subscription_from_item(self._existing_endpoint_item(env, name))

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
        current_item = self._existing_endpoint_item(env, name)
        new, history = updated_endpoint(
            _endpoint_from_item(current_item),
            expected_version=expected_version,
            spec=spec,
            spec_hash=spec_hash,
            status=status,
            status_message=status_message,
            deployed_hash=deployed_hash,
            subscription=subscription,
        )
        item = _endpoint_item(
            new,
            history if history is not None else _subscription_from_item(current_item),
            self._key(env, _ENDPOINT, name),
        )
        try:
            self._client.put_item(
                TableName=self.table_name,
                Item=item,
                ConditionExpression="#version = :expected",
                ExpressionAttributeNames={"#version": "version"},
                ExpressionAttributeValues={":expected": {"N": str(expected_version)}},
            )
        except ClientError as error:
            if _code(error) != "ConditionalCheckFailedException":
                raise
            raise self._lost_race(env, name, expected_version) from None
        return new

    def delete_endpoint(self, env: str, name: str, expected_version: int) -> None:
        current = _endpoint_from_item(self._existing_endpoint_item(env, name))
        if current.version != expected_version:
            raise errors.version_conflict(env, name, expected_version, current.version)
        delete = {
            "Delete": {
                "TableName": self.table_name,
                "Key": self._key(env, _ENDPOINT, name),
                "ConditionExpression": "#version = :expected",
                "ExpressionAttributeNames": {"#version": "version"},
                "ExpressionAttributeValues": {":expected": {"N": str(expected_version)}},
            }
        }
        try:
            self._transact([delete, self._tenant_count_update(env, current.tenant, -1)])
        except _Cancelled as cancelled:
            if cancelled.condition_failed(0):
                raise self._lost_race(env, name, expected_version) from None
            if cancelled.conflict:
                raise errors.endpoint_busy(env, name) from None
            raise cancelled.error from None

    def list_endpoints_needing_deploy(self, env: str) -> list[Endpoint]:
        items = self._query(
            env,
            _ENDPOINT,
            "attribute_not_exists(deployed_hash) OR spec_hash <> deployed_hash",
        )
        return [_endpoint_from_item(item) for item in items]

    def _existing_endpoint_item(self, env: str, name: str) -> dict[str, Any]:
        item = self._get(env, _ENDPOINT, name)
        if item is None:
            raise errors.endpoint_not_found(env, name)
        return item

    def _lost_race(self, env: str, name: str, expected_version: int) -> Exception:
        """The error for a version condition that failed after the early check passed."""
        item = self._get(env, _ENDPOINT, name)
        if item is None:
            return errors.endpoint_not_found(env, name)
        return errors.version_conflict(env, name, expected_version, int(item["version"]["N"]))


def _code(error: ClientError) -> str:
    return error.response["Error"]["Code"]


def _tenant_item(tenant: Tenant, key: dict[str, Any]) -> dict[str, Any]:
    data = tenant.model_dump(mode="json")
    return {
        **key,
        "env": {"S": data["env"]},
        "name": {"S": data["name"]},
        "aws_account": {"S": data["aws_account"]},
        "principals": {"L": [{"S": arn} for arn in data["principals"]]},
        "billing_timezone": {"S": data["billing_timezone"]},
        "tier": {"S": data["tier"]},
        "created_at": {"S": data["created_at"]},
        "endpoint_count": {"N": "0"},
    }


def _tenant_from_item(item: dict[str, Any]) -> Tenant:
    return Tenant(
        env=item["env"]["S"],
        name=item["name"]["S"],
        aws_account=item["aws_account"]["S"],
        principals=[arn["S"] for arn in item["principals"]["L"]],
        billing_timezone=item["billing_timezone"]["S"],
        tier=item["tier"]["S"],
        created_at=item["created_at"]["S"],
    )


def _endpoint_item(
    endpoint: Endpoint, subscription: Sequence[SubscriptionSegment], key: dict[str, Any]
) -> dict[str, Any]:
    data = endpoint.model_dump(mode="json")
    item = {
        **key,
        "env": {"S": data["env"]},
        "name": {"S": data["name"]},
        "tenant": {"S": data["tenant"]},
        # JSON text, not a DynamoDB map: a map would hand numbers back as
        # Decimal, and the spec must come back exactly as it went in.
        "spec": {"S": json.dumps(data["spec"])},
        "spec_hash": {"S": data["spec_hash"]},
        "status": {"S": data["status"]},
        "status_message": {"S": data["status_message"]},
        "subscription": {
            "S": json.dumps([segment.model_dump(mode="json") for segment in subscription])
        },
        "created_at": {"S": data["created_at"]},
        "updated_at": {"S": data["updated_at"]},
        "version": {"N": str(data["version"])},
    }
    # Absent rather than NULL, so "never deployed" is `attribute_not_exists(deployed_hash)`.
    if data["deployed_hash"] is not None:
        item["deployed_hash"] = {"S": data["deployed_hash"]}
    return item


def _endpoint_from_item(item: dict[str, Any]) -> Endpoint:
    return Endpoint(
        env=item["env"]["S"],
        name=item["name"]["S"],
        tenant=item["tenant"]["S"],
        spec=json.loads(item["spec"]["S"]),
        spec_hash=item["spec_hash"]["S"],
        deployed_hash=item["deployed_hash"]["S"] if "deployed_hash" in item else None,
        status=item["status"]["S"],
        status_message=item["status_message"]["S"],
        created_at=item["created_at"]["S"],
        updated_at=item["updated_at"]["S"],
        version=int(item["version"]["N"]),
    )


def _subscription_from_item(item: dict[str, Any]) -> list[SubscriptionSegment]:
    raw_segments = json.loads(item["subscription"]["S"])
    return [SubscriptionSegment.model_validate(raw) for raw in raw_segments]
