"""ControlPlaneData: the registry table, the alert topic and the engine image repositories."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import pulumi
import pulumi_aws as aws

from privend.iam import kms_key_policy
from privend.naming import bounded_name
from privend.registry.dynamodb import table_schema

ENGINE_REPOSITORIES = ("tgi", "vllm")
# The registry's own definition, so the table the platform creates is the one the DynamoDB backend expects.
REGISTRY_KEY_SCHEMA = tuple((k["AttributeName"], k["KeyType"]) for k in table_schema()["KeySchema"])


@dataclass(frozen=True)
class ControlPlaneDataArgs:
    environment: str
    account_id: pulumi.Input[str]
    key_schema: Sequence[tuple[str, str]] = REGISTRY_KEY_SCHEMA
    tags: Mapping[str, str] = field(default_factory=dict)


class ControlPlaneData(pulumi.ComponentResource):
    registry_table_name: pulumi.Output[str]
    alert_topic_arn: pulumi.Output[str]
    repository_urls: dict[str, pulumi.Output[str]]

    def __init__(self, name: str, args: ControlPlaneDataArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("private-endpoint:data:ControlPlaneData", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = dict(args.tags)
        self.key = aws.kms.Key(
            f"{name}-key",
            description=f"privend {args.environment} control-plane data",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            # CloudWatch alarms publish to the encrypted topic, so the service may use the key.
            policy=pulumi.Output.from_input(args.account_id).apply(
                lambda a: json.dumps(kms_key_policy(a, service_principals=["cloudwatch.amazonaws.com"]))
            ),
            tags=tags,
            opts=child,
        )
        hash_key = next(k for k, t in args.key_schema if t == "HASH")
        range_key = next((k for k, t in args.key_schema if t == "RANGE"), None)
        self.table = aws.dynamodb.Table(
            f"{name}-registry",
            name=bounded_name("dynamodb-table", "privend", args.environment, "registry"),
            billing_mode="PAY_PER_REQUEST",
            hash_key=hash_key,
            range_key=range_key,
            attributes=[{"name": k, "type": "S"} for k, _ in args.key_schema],
            point_in_time_recovery={"enabled": True},
            server_side_encryption={"enabled": True, "kms_key_arn": self.key.arn},
            deletion_protection_enabled=True,
            tags=tags,
            opts=child,
        )
        self.topic = aws.sns.Topic(
            f"{name}-alerts",
            name=bounded_name("sns-topic", "privend", args.environment, "alerts"),
            kms_master_key_id=self.key.id,
            tags=tags,
            opts=child,
        )
        self.repositories = {
            engine: aws.ecr.Repository(
                f"{name}-{engine}",
                name=f"privend/{args.environment}/{engine}",
                image_scanning_configuration={"scan_on_push": True},
                image_tag_mutability="IMMUTABLE",
                encryption_configurations=[{"encryption_type": "KMS", "kms_key": self.key.arn}],
                tags=tags,
                opts=child,
            )
            for engine in ENGINE_REPOSITORIES
        }
        self.registry_table_name = self.table.name
        self.alert_topic_arn = self.topic.arn
        self.repository_urls = {engine: repo.repository_url for engine, repo in self.repositories.items()}
        self.register_outputs(
            {
                "registryTableName": self.registry_table_name,
                "alertTopicArn": self.alert_topic_arn,
                "repositoryUrls": self.repository_urls,
            }
        )
