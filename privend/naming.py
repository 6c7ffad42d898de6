"""Names of cloud and Kubernetes objects, kept within each service's limits.

AWS and Kubernetes cap name lengths (load balancers and target groups 32,
IAM roles 64, Kubernetes objects 63). A name that would be too long is cut and
given a short hash of the full name, so it stays unique and stable across runs.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

LIMITS = {
    "load-balancer": 32,
    "target-group": 32,
    "iam-role": 64,
    "security-group": 255,
    "kubernetes": 63,
    "node-group": 63,
    "eks-cluster": 100,
    "dynamodb-table": 255,
    "sns-topic": 256,
}
_HASH_LEN = 6


def bounded_name(kind: str, *parts: str) -> str:
    """Join `parts` with '-' and fit the result into the limit for `kind`."""
    limit = LIMITS[kind]
    full = "-".join(p for p in parts if p)
    if len(full) <= limit:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:_HASH_LEN]
    head = full[: limit - _HASH_LEN - 1].rstrip("-")
    return f"{head}-{digest}"


def cluster_name(env: str) -> str:
    return bounded_name("eks-cluster", "privend", env)




@dataclass(frozen=True)
class EndpointNames:
    """Every name derived from (env, endpoint), each within its service's limit.

    Endpoint names are unique within an environment, so names built from
    (env, endpoint) are unique; the tenant is carried in labels and tags.
    """

    stack: str
    namespace: str
    load_balancer: str
    target_group: str
    security_group: str
    node_role: str
    node_group: str
    service_account: str = "engine"
    deployment: str = "engine"
    service: str = "engine"


def endpoint_names(env: str, endpoint: str) -> EndpointNames:
    return EndpointNames(
        stack=f"{env}-{endpoint}",
        namespace=bounded_name("kubernetes", "ep", endpoint),
        load_balancer=bounded_name("load-balancer", "pe", env, endpoint),
        target_group=bounded_name("target-group", "pe", env, endpoint),
        security_group=bounded_name("security-group", "privend", env, endpoint, "nlb"),
        node_role=bounded_name("iam-role", "privend", env, endpoint, "nodes"),
        node_group=bounded_name("node-group", "privend", env, "ded", endpoint),
    )
