"""The registry: tenants, endpoints and their subscription history, behind one interface.

This package holds the interface (`Registry`) and the records; the backends are
`privend.registry.sqlite` (the embedded default) and `privend.registry.dynamodb`,
and `privend.registry.backends.open_registry` picks one from the settings.
"""

from __future__ import annotations

from privend.registry.base import Registry
from privend.registry.errors import ConflictError, NotFound
from privend.registry.models import ApiKey, Endpoint, SubscriptionSegment, Tenant, spec_hash

__all__ = [
    "ApiKey",
    "ConflictError",
    "Endpoint",
    "NotFound",
    "Registry",
    "SubscriptionSegment",
    "Tenant",
    "spec_hash",
]
