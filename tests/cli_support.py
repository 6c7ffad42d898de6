"""Running `privend` in-process, and what its output must look like."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from privend.cli import main


def run(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=input)


def ok(*args: str, input: str | None = None) -> Result:
    result = run(*args, input=input)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result


def assert_one_line_error(result: Result, exit_code: int, message: str) -> None:
    assert result.exit_code == exit_code, (result.stdout, result.stderr)
    assert result.stderr.startswith("error: "), result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr, result.stderr


REPO_STACKS = Path(__file__).resolve().parent.parent / "stacks"


def private_stacks(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A copy of the repository's stack files that the CLI reads and writes instead (PRIVEND_STACKS_DIR)."""
    target = tmp_path / "stacks"
    shutil.copytree(REPO_STACKS, target)
    monkeypatch.setenv("PRIVEND_STACKS_DIR", str(target))
    return target
