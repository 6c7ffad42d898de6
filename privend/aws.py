"""AWS clients for the use cases that call AWS directly (CloudWatch, SNS).

boto3 is imported only here and in the modules that need it at call time: it takes
a noticeable part of a second to import, and most commands never reach AWS.
"""

from __future__ import annotations

from typing import Any, Literal

# The services the control plane calls directly; boto3's typed `client` takes the name as a literal.
Service = Literal["cloudwatch", "sns"]


def client(service: Service, region: str | None = None) -> Any:
    """A boto3 client; with no region, boto3 falls back to AWS_REGION / the profile's region."""
    import boto3  # see the module docstring

    return boto3.session.Session().client(service, region_name=region)
