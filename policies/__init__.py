"""The Private Endpoint CrossGuard policy pack: rules in `policies.rules`, the pack in `__main__.py`."""
