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


class Count(click.ParamType):
    """A whole number written in ASCII digits, at least `min`: click's INT takes whatever int() takes,
    which includes other scripts' digits (`١:٢`) and underscores."""

    name = "integer"

    def __init__(self, min: int = 0) -> None:
        self.min = min

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            number = value
        elif isinstance(value, str) and value.isascii() and value.isdigit():
            number = int(value)
        else:
            self.fail(f"{value!r} is not a whole number in digits 0-9", param, ctx)
        if number < self.min:
            self.fail(f"{number} is not in the range x>={self.min}.", param, ctx)  # as click.IntRange says it
        return number

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "INTEGER" if self.min == 0 else f"INTEGER>={self.min}"


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def emit_table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]],
               drop: Sequence[str] = ()) -> None:
    """A table that fits the console and never cuts a value.

    Every word of a cell stays whole (a dollar figure, a status, a model id): a column
    is at least as wide as its longest word and wraps between words (a word longer than
    WHOLE_WORD_MAX, a hash or an ARN, is folded across lines, never cut). When the columns
    cannot all fit at that, columns are left out, those named in `drop` first (in that
    order), then from the right, never the first; a line under the table names them.
    """
    out = console()
    cells = [["" if v is None else str(v) for v in row] for row in rows]
    names = list(columns)
    shown = list(range(len(names)))
    order = [names.index(name) for name in drop] + [i for i in reversed(range(1, len(names)))
                                                    if names[i] not in drop]
    texts = [[name, *(row[i] for row in cells)] for i, name in enumerate(names)]
    floor = [max(_longest_word(text) for text in column) for column in texts]
    natural = [max(len(line) for text in column for line in text.splitlines() or [""]) for column in texts]
    # A table with n columns takes 3 characters per column (padding and a rule) and one more.
    while sum(floor[i] for i in shown) + 3 * len(shown) + 1 > out.width and len(shown) > 1:
        shown.remove(next(i for i in order if i in shown))
    widths = _fit({i: (floor[i], natural[i]) for i in shown}, out.width - 3 * len(shown) - 1)
    table = Table(title=title)
    for i in shown:
        table.add_column(names[i], width=widths[i], overflow="fold")
    for row in cells:
        table.add_row(*(row[i] for i in shown))
    out.print(table)
    left_out = [names[i] for i in range(len(names)) if i not in shown]
    if left_out:
        out.print(f"(left out at {out.width} columns: {', '.join(left_out)}; --format json has every field)",
                  soft_wrap=True, highlight=False)


def _fit(bounds: dict[int, tuple[int, int]], room: int) -> dict[int, int]:
    """Column widths from (floor, natural) that fill `room`: every column at least its floor, the
    space left given a character at a time to the column furthest below its natural width."""
    widths = {i: low for i, (low, _) in bounds.items()}
    spare = room - sum(widths.values())
    while spare > 0:
        i = max(widths, key=lambda k: (bounds[k][1] - widths[k], -k))
        if widths[i] >= bounds[i][1]:
            break
        widths[i] += 1
        spare -= 1
    return widths


# Words up to this long are never broken (figures, statuses, model ids); longer ones (hashes,
# ARNs) are folded across lines rather than forcing every other column out.
WHOLE_WORD_MAX = 40


def _longest_word(text: str) -> int:
    return min(max((len(word) for word in text.split()), default=0), WHOLE_WORD_MAX)


def console() -> Console:
    """A console as wide as the terminal; when output is not a terminal (pipes, CI logs), 200 columns,
    so cells are not wrapped in logs."""
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
