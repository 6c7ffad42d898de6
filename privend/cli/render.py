"""Output helpers shared by the command modules: tables for people, JSON for machines."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Any, Iterable, Sequence

import click
from rich.console import Console
from rich.table import Table

from privend.errors import InputError


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def emit_table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    console().print(table)


def console() -> Console:
    """A console that never truncates cells when output is not a terminal (pipes, CI logs)."""
    return Console(width=None if sys.stdout.isatty() else 200)


def parse_time(value: str | None, option: str) -> datetime | None:
    """ISO 8601 with an offset; a naive time is refused rather than guessed."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"{option} {value!r} is not an ISO 8601 time (like 2026-12-01T00:00:00Z)") from None
    if parsed.tzinfo is None:
        raise InputError(f"{option} {value!r} has no UTC offset (add Z or +01:00)")
    return parsed
