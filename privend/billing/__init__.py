"""Subscriptions, metering and billing: plans, usage import and pull, reconcile, alerts, hard caps.

The money rules live in `rating`; `reconcile` turns the registry's usage and
subscription history into invoices, alerts and suspensions and commits them in
one atomic registry write.
"""
