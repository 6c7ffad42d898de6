"""Running `privend` in-process, and what its output must look like."""

from __future__ import annotations

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
