"""Reading the operator's text files (stack files, the plans catalog) so that a file that cannot be
read, or is not UTF-8, stops with one line naming it instead of a traceback."""

from __future__ import annotations

from pathlib import Path

from privend.errors import InputError


def read_text(path: Path | str, shown: str | None = None) -> str:
    """The UTF-8 text of `path`; InputError naming `shown` (default the path) when it is not readable text."""
    shown = shown if shown is not None else str(path)
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{shown}: is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})"
                         ) from None
    except OSError as exc:
        raise InputError(f"{shown}: cannot be read ({exc.strerror or exc})") from None
