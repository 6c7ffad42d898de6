"""Shared fixtures: offline plans of the real environments, computed once per session."""

from __future__ import annotations

import functools

import pytest

from privend.config import load_environment
from privend.offline import StackPlan
from privend.plan import plan_platform


@functools.lru_cache(maxsize=None)
def _platform_plan(env: str) -> StackPlan:
    return plan_platform(load_environment(env))


@pytest.fixture(scope="session")
def platform_plan():
    """platform_plan("dev") -> StackPlan of the real dev stack file under the offline engine."""
    return _platform_plan


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """Every test gets its own PRIVEND_HOME so no test sees another's registry."""
    monkeypatch.setenv("PRIVEND_HOME", str(tmp_path / "privend-home"))
    monkeypatch.delenv("PRIVEND_REGISTRY", raising=False)
    monkeypatch.delenv("PRIVEND_ENV", raising=False)
