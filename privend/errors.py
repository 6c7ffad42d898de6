"""Errors the control plane raises on purpose, each with the exit code the CLI uses.

The CLI turns these into one line on stderr and the exit code below; anything
else is a bug and is allowed to show a traceback.
"""

from __future__ import annotations


class PrivendError(Exception):
    """An operation failed (exit code 1)."""

    exit_code = 1


class InputError(PrivendError):
    """Bad input from the operator: a config value, an option, a name (exit code 2)."""

    exit_code = 2


class PolicyViolation(PrivendError):
    """A mandatory guardrail rule was violated (exit code 3)."""

    exit_code = 3
