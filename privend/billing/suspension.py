"""Hard caps: which endpoints billing suspends, and what `endpoint sync` deploys for them.

Reconcile decides (see `suspension_changes`): an endpoint whose running segment
is on a `hard` plan whose overage protection is used up in the current period
becomes `suspended`; a suspended endpoint whose current period has room again
(a new period, or a plan change) goes back to `pending`, so `sync` redeploys it.

`sync` (in `privend.service.endpoints`) deploys `deploy_spec(endpoint)`: the spec with
minimum replicas zero while suspended, rendered with `SUSPENDED_ANNOTATIONS` on
the ScaledObject (KEDA's documented pause: it scales the Deployment to that many
replicas and stops autoscaling), and records `target_hash(endpoint)` as the
deployed hash. So a suspended endpoint is deployed once at zero, and a lifted
one differs from its spec hash again and is redeployed in full.
"""

from __future__ import annotations

from typing import Any

from privend.registry.models import Endpoint, spec_hash
from privend.values import EndpointStatus

SUSPENDED = EndpointStatus.SUSPENDED

# KEDA pauses a ScaledObject at this replica count while the annotation is present.
SUSPENDED_ANNOTATIONS = {"autoscaling.keda.sh/paused-replicas": "0"}


def is_suspended(endpoint: Endpoint) -> bool:
    return endpoint.status == SUSPENDED


def effective_replicas(endpoint: Endpoint) -> tuple[int, int]:
    """(min, max) replicas to deploy: zero while the endpoint is suspended."""
    if is_suspended(endpoint):
        return 0, 0
    return int(endpoint.spec["min_replicas"]), int(endpoint.spec["max_replicas"])  # type: ignore[arg-type]


def deploy_spec(endpoint: Endpoint) -> dict[str, Any]:
    """The spec `sync` deploys: the endpoint's own, scaled to zero while suspended."""
    spec = dict(endpoint.spec)
    if is_suspended(endpoint):
        # max_replicas stays: KEDA needs max >= 1; the pause annotation holds it at zero.
        spec["min_replicas"] = 0
    return spec


def scaled_object_annotations(endpoint: Endpoint) -> dict[str, str]:
    """Annotations the endpoint's ScaledObject carries: KEDA's pause at zero while suspended."""
    return dict(SUSPENDED_ANNOTATIONS) if is_suspended(endpoint) else {}


def target_hash(endpoint: Endpoint) -> str:
    """The deployed hash `sync` records after deploying `deploy_spec(endpoint)`."""
    if not is_suspended(endpoint):
        return endpoint.spec_hash
    return spec_hash({**deploy_spec(endpoint), "suspended": True})


def needs_deploy(endpoint: Endpoint) -> bool:
    """True if what is deployed differs from what should run (suspension included)."""
    return endpoint.deployed_hash != target_hash(endpoint)


def sync_message(endpoint: Endpoint) -> str:
    """What `sync` says about an endpoint it scaled to zero."""
    return f"scaled to zero: {endpoint.status_message}" if is_suspended(endpoint) else ""
