"""The Private Endpoint CrossGuard policy pack, installed as privend.policies: rules in `rules.py`, the pack in `__main__.py`."""
