"""Private Endpoint control plane: specs, catalogs, planners, renderers, registry, CLI."""

__version__ = "0.1.0"
