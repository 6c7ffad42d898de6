"""The DynamoDB table the registry, billing and usage tests run on under moto (conftest's `aws`)."""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3

TABLE = "privend-registry-test"
REGION = "us-east-1"


@cache
def _boto3_session() -> boto3.session.Session:
    # One session for all tests: each new session loads the DynamoDB service
    # model again, a tenth of a second or more per client. Clients are only
    # made from the main thread, as a session is not thread-safe.
    return boto3.session.Session()


def dynamodb_client() -> Any:
    return _boto3_session().client("dynamodb", region_name=REGION)
