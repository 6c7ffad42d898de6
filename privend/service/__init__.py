"""The application layer: one module per group of use cases, under a thin CLI.

Each use case takes an `App` (the settings and the adapters they choose) and a
typed request, and returns a typed result: what was admitted, recorded and
deployed, and what the operator should be told. The CLI parses, calls one use
case and renders its result; `privend demo` calls the same use cases.

| module | use cases |
|---|---|
| `app` | `App`: the registry, environment config, plans and deployer of one set of settings |
| `tenants` | create, list, show, delete tenants |
| `endpoints` | create, update, scale, delete, list, show, sync, connect-info |
| `capacity` | capacity plan and apply, quota check |
| `billing` | usage import and pull, quarantine, reconcile, export, alerts |
| `stacks` | offline plans, guardrail checks, manifest export |
"""
