"""Files and directories the CLI reads or writes that are not what it expects: one line, the exit
code, and nothing changed; never a traceback."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path

import pytest

from tests.cli_support import REPO_STACKS, assert_one_line_error, ok, private_stacks, run

pytestmark = pytest.mark.usefixtures("no_aws_credentials")

# One command of each kind that opens the registry: read, write, plan, billing.
REGISTRY_COMMANDS = [
    ("tenant", "list"),
    ("tenant", "create", "acme", "--aws-account", "111122223333"),
    ("endpoint", "list"),
    ("plan",),
    ("billing", "reconcile", "--period", "2026-01"),
    ("usage", "quarantine"),
]


def _snapshot(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


@pytest.mark.parametrize("content", [b"this is not a database\n", os.urandom(8192)], ids=["text", "random-bytes"])
@pytest.mark.parametrize("command", REGISTRY_COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_a_registry_file_that_is_not_sqlite_is_one_line_exit_1_and_stays_as_it_was(command, content, tmp_path,
                                                                                     monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    (home / "registry.db").write_bytes(content)
    monkeypatch.setenv("PRIVEND_HOME", str(home))
    before = _snapshot(home)
    result = run(*command)
    assert_one_line_error(result, 1, f"registry {home / 'registry.db'} is not a SQLite database")
    assert _snapshot(home) == before


def test_a_registry_damaged_after_opening_is_one_line_exit_1(monkeypatch):
    import privend.registry.sqlite as sqlite_backend

    def damaged(self, env):
        raise sqlite3.DatabaseError("database disk image is malformed")

    monkeypatch.setattr(sqlite_backend.SqliteRegistry, "list_tenants", damaged)
    assert_one_line_error(run("tenant", "list"), 1, "registry: database disk image is malformed")


@pytest.mark.parametrize("command", REGISTRY_COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_privend_home_naming_a_file_is_one_line_exit_2(command, tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.write_text("a file\n")
    monkeypatch.setenv("PRIVEND_HOME", str(home))
    assert_one_line_error(run(*command), 2, f"PRIVEND_HOME {home} is a file, not a directory")
    assert home.read_text() == "a file\n"


def test_privend_home_below_a_file_cannot_be_created_exit_1(tmp_path, monkeypatch):
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    monkeypatch.setenv("PRIVEND_HOME", str(blocker / "home"))
    assert_one_line_error(run("tenant", "list"), 1, f"PRIVEND_HOME {blocker / 'home'} cannot be created")


def _make_read_only(path: Path, monkeypatch) -> None:
    """Read-only for this process: by permissions where they bind, else (as root) by the OS refusing writes."""
    path.chmod(0o555)
    if os.geteuid() == 0:
        real_connect = sqlite3.connect

        def connect(database, *args, **kwargs):
            # What SQLite answers for a database in a directory it may not write.
            if Path(database).parent == path:
                raise sqlite3.OperationalError("unable to open database file")
            return real_connect(database, *args, **kwargs)

        monkeypatch.setattr(sqlite3, "connect", connect)


@pytest.mark.parametrize("command", REGISTRY_COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_a_read_only_privend_home_is_one_line_exit_1(command, tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    _make_read_only(home, monkeypatch)
    monkeypatch.setenv("PRIVEND_HOME", str(home))
    try:
        assert_one_line_error(run(*command), 1, f"registry {home / 'registry.db'} cannot be opened for writing")
        assert list(home.iterdir()) == []
    finally:
        home.chmod(0o755)


def test_a_stack_file_that_is_not_utf8_is_one_line_exit_2_for_every_command_that_reads_it(monkeypatch, tmp_path):
    stacks = private_stacks(monkeypatch, tmp_path)
    path = stacks / "Pulumi.dev.yaml"
    path.write_bytes(path.read_bytes() + b"# caf\xe9\n")
    before = path.read_bytes()
    for command in [("plan",), ("capacity", "plan"), ("policy", "check"),
                    ("tenant", "create", "acme", "--aws-account", "111122223333")]:
        result = run(*command)
        assert_one_line_error(result, 2, "Pulumi.dev.yaml: is not UTF-8 text (byte 0xe9 at offset")
    assert path.read_bytes() == before


def test_a_plans_file_that_is_not_utf8_is_one_line_exit_2(world, monkeypatch, tmp_path):
    plans = tmp_path / "plans.yaml"
    plans.write_bytes((REPO_STACKS / "plans.yaml").read_bytes() + b"\xff\xfe")
    monkeypatch.setenv("PRIVEND_PLANS", str(plans))
    for command in [("billing", "reconcile", "--period", "2025-03"),
                    ("endpoint", "update", "chat-bot", "--plan", "scale", "--no-deploy")]:
        assert_one_line_error(run(*command), 2, f"{plans}: is not UTF-8 text (byte 0xff at offset")


def test_a_stack_file_that_is_a_directory_is_one_line_exit_2(monkeypatch, tmp_path):
    stacks = private_stacks(monkeypatch, tmp_path)
    (stacks / "Pulumi.dev.yaml").unlink()
    (stacks / "Pulumi.dev.yaml").mkdir()
    assert_one_line_error(run("plan"), 2, "environment 'dev' has no stack file")


def test_export_manifests_to_a_directory_that_cannot_be_created_is_one_line_exit_2(world, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("keep\n")
    result = run("export", "manifests", "--endpoint", "chat-bot", "--out", str(blocker / "out"))
    assert_one_line_error(result, 2, f"--out {blocker / 'out'} cannot be created")
    assert blocker.read_text() == "keep\n"


def test_export_manifests_to_a_read_only_directory_leaves_no_partial_file(world, tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    real_mkstemp = __import__("tempfile").mkstemp
    calls = []

    def mkstemp(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise PermissionError(13, "Permission denied")
        return real_mkstemp(*args, **kwargs)

    monkeypatch.setattr("privend.manifests.tempfile.mkstemp", mkstemp)
    result = run("export", "manifests", "--endpoint", "chat-bot", "--out", str(out))
    assert_one_line_error(result, 1, "(Permission denied); 2 of")
    assert not [p for p in out.iterdir() if p.name.startswith(".tmp-")]


def test_billing_export_to_a_path_that_cannot_be_written_is_one_line_exit_2(world, tmp_path):
    ok("billing", "reconcile", "--period", "2025-03")
    target = tmp_path / "missing-dir" / "invoices.json"
    result = run("billing", "export", "--period", "2025-03", "--format", "json", "--output", str(target))
    assert_one_line_error(result, 2, f"--output {target} cannot be written")
    assert not target.parent.exists()


@pytest.mark.parametrize("period", ["9999-12", "1999-12", "3000-01"])
def test_a_period_outside_the_billing_range_is_one_line_exit_2(world, period):
    before = ok("billing", "alerts", "--period", "2025-03", "--format", "json").stdout
    result = run("billing", "reconcile", "--period", period)
    assert_one_line_error(result, 2, f"--period '{period}' is outside the billing periods 2000-01 to 2999-12")
    assert ok("billing", "alerts", "--period", "2025-03", "--format", "json").stdout == before


@pytest.mark.parametrize("period", ["٢٠٢٥-٠٣", "2025-03\n"])
def test_a_period_in_other_digits_or_with_a_newline_is_refused(world, period):
    result = run("billing", "reconcile", "--period", period)
    assert_one_line_error(result, 2, "must be a month as YYYY-MM")


def test_the_last_billing_period_reconciles(world):
    ok("billing", "reconcile", "--period", "2999-12")




def test_capacity_apply_into_a_stack_directory_that_cannot_be_written_is_one_line_exit_1(world, monkeypatch,
                                                                                          tmp_path):
    stacks = private_stacks(monkeypatch, tmp_path)
    before = (stacks / "Pulumi.dev.yaml").read_bytes()

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("privend.stackfile.tempfile.mkstemp", refuse)
    result = run("capacity", "apply", "--yes")
    assert_one_line_error(result, 1, "Pulumi.dev.yaml cannot be written (Permission denied); nothing changed")
    assert (stacks / "Pulumi.dev.yaml").read_bytes() == before
