"""Editing a stack file: the GPU pools' bounds written in as text, checked, replaced atomically.

Only minSize, maxSize, desiredSize, warmHeadroomGpus and warmHeadroomPodGpus are
rewritten, as text: every other byte of the stack file (comments, order, quoting)
stays as it was; a headroom key a pool lacks is added on a line of its own after
the pool's maxSize. The result is checked
to parse to the old document with exactly those values changed, and to load
through the same models as `load_environment`, before it replaces the file.
"""

from __future__ import annotations

import difflib
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path

import yaml

from privend.config import (
    EnvironmentConfig,
    GpuPool,
    display_path,
    load_environment,
    namespace_values,
    parse_environment,
    stack_file,
)
from privend.demand import PoolBounds
from privend.errors import PrivendError
from privend.files import read_text

BOUND_KEYS = {"min_size": "minSize", "max_size": "maxSize", "desired_size": "desiredSize",
              "warm_headroom_gpus": "warmHeadroomGpus", "warm_headroom_pod_gpus": "warmHeadroomPodGpus"}
# Keys `rewrite_pool_bounds` may add when a pool lacks them (they have defaults).
INSERTABLE_KEYS = ("warmHeadroomGpus", "warmHeadroomPodGpus")


def apply_bounds(cfg: EnvironmentConfig, bounds: list[PoolBounds], path: Path | str,
                 headroom: Mapping[str, Mapping[str, int]] | None = None) -> tuple[str, str]:
    """The stack file at `path` with the pools' new `bounds` written in, and the unified diff.

    `headroom` maps a pool to the headroom keys to set (warmHeadroomGpus, warmHeadroomPodGpus). Nothing is
    written here (see `write_stack_file`). The diff is empty when nothing changes.
    """
    path = Path(path)
    old = read_text(path, display_path(path))
    values = bound_values(bounds, headroom)
    shown = display_path(path)
    new = rewrite_pool_bounds(old, values, source=shown)
    _same_but_bounds(old, new, values, shown)
    check_stack_text(new, cfg.environment, shown, values)
    return new, unified_diff(old, new, shown)


def bound_values(bounds: list[PoolBounds],
                 headroom: Mapping[str, Mapping[str, int]] | None = None) -> dict[str, dict[str, int]]:
    """The stack file values per pool: the bounds' new values, and the headroom keys given per pool."""
    values = {b.pool: dict(b.new_values()) for b in bounds}
    for pool, keys in (headroom or {}).items():
        values.setdefault(pool, {}).update(keys)
    return values


_POOLS_KEY = re.compile(r"""^(?P<indent> *)(?P<q>["']?)privend:gpuPools(?P=q) *:(?P<rest>.*)$""")
_ITEM = re.compile(r"^(?P<indent> *)-(?: +|$)")
_KEY = re.compile(r"""^(?P<q>["']?)(?P<key>[A-Za-z_][\w-]*)(?P=q) *:(?: +|$)(?P<value>.*)$""")
_SCALAR = re.compile(r"^(?P<value>[^\s#][^#]*?)(?P<tail> *(?:#.*)?)$")


def rewrite_pool_bounds(text: str, values: Mapping[str, Mapping[str, int]], *, source: str = "stack file") -> str:
    """Set `values[pool][key]` (minSize, maxSize, desiredSize) in the `privend:gpuPools` block list of `text`.

    Line-level surgery: only the value token of those keys changes; comments,
    order, quoting and line endings of everything else stay. Every key must
    already be on a line of its own in its pool's block mapping.
    """
    lines = text.splitlines(keepends=True)
    located = _locate_pool_keys(lines, source)
    inserts: list[tuple[int, str]] = []
    for pool, keys in values.items():
        if pool not in located:
            raise PrivendError(f"{source}: pool {pool!r} not found under privend:gpuPools")
        for key, value in keys.items():
            if key not in located[pool]:
                anchor = located[pool].get("maxSize")
                if key not in INSERTABLE_KEYS or anchor is None:
                    raise PrivendError(f"{source}: pool {pool!r} has no {key} line to rewrite")
                line = lines[anchor[0]]
                eol = line[len(line.rstrip("\r\n")):] or "\n"
                inserts.append((anchor[0], " " * anchor[1] + f"{key}: {int(value)}" + eol))
                continue
            index, column = located[pool][key]
            lines[index] = _replace_value(lines[index], column, str(int(value)), source)
    for index in sorted({index for index, _ in inserts}, reverse=True):
        if not lines[index].endswith(("\n", "\r")):
            lines[index] += "\n"
        lines[index + 1:index + 1] = [text for at, text in inserts if at == index]
    return "".join(lines)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _is_content(line: str) -> bool:
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith("#")


def _locate_pool_keys(lines: list[str], source: str) -> dict[str, dict[str, tuple[int, int]]]:
    """pool name -> stack file key -> (line index, column where the key starts), for the bound keys."""
    start = None
    for i, line in enumerate(lines):
        match = _POOLS_KEY.match(line.rstrip("\r\n"))
        if match:
            rest = match.group("rest").strip()
            if rest and not rest.startswith("#"):
                raise PrivendError(
                    f"{source}: privend:gpuPools is not a block list (one `- name: ...` item per pool); "
                    "rewrite it in block style to let `capacity apply` edit it"
                )
            start, key_indent = i, len(match.group("indent"))
            break
    if start is None:
        raise PrivendError(f"{source}: no privend:gpuPools key")

    items: list[list[tuple[int, int, str]]] = []  # per item: (line index, column, text from column)
    item_indent = None
    for i in range(start + 1, len(lines)):
        raw = lines[i].rstrip("\r\n")
        if not _is_content(raw):
            continue
        indent = _indent(raw)
        item = _ITEM.match(raw)
        if item_indent is None:
            if not item or indent < key_indent:
                break
            item_indent = indent
        if indent < item_indent:
            break
        if indent == item_indent:
            if not item:
                break  # back at the items' indent with something other than an item: the list ended
            column = item.end()
            items.append([(i, column, raw[column:])] if raw[column:].strip() else [])
            continue
        if items:
            items[-1].append((i, indent, raw[indent:]))

    located: dict[str, dict[str, tuple[int, int]]] = {}
    for entries in items:
        if not entries:
            continue
        column = entries[0][1]  # the item's first key: on the dash line, or the line below a bare dash
        name, keys = None, {}
        for index, col, rest in entries:
            if col != column:
                continue  # deeper: nested mappings and lists (labels, instanceTypes)
            match = _KEY.match(rest)
            if not match:
                continue
            key = match.group("key")
            if key == "name":
                name = _plain_value(match.group("value"), source)
            elif key in BOUND_KEYS.values():
                keys[key] = (index, col)
        if name is not None:
            located[str(name)] = keys
    return located


def _plain_value(text: str, source: str):
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        raise PrivendError(f"{source}: cannot read pool name {text!r}") from None


def _replace_value(line: str, column: int, value: str, source: str) -> str:
    body = line.rstrip("\r\n")
    eol = line[len(body):]
    match = _KEY.match(body[column:])
    scalar = _SCALAR.match(match.group("value")) if match else None
    if match is None or scalar is None:
        raise PrivendError(f"{source}: cannot rewrite {body.strip()!r}: expected `key: <integer>`")
    at = column + match.start("value")
    return body[:at] + value + scalar.group("tail") + eol


def _load_stack_text(text: str, env: str, source: str):
    """The document and the validated config of a stack file's text, exactly as `load_environment` reads them."""
    try:
        document = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise PrivendError(f"{source}: the rewritten file is not valid YAML ({exc})") from None
    config = document.get("config") if isinstance(document, dict) else None
    if not isinstance(config, dict):
        raise PrivendError(f"{source}: has no `config:` mapping")
    return document, parse_environment(namespace_values(config), env, source)


def check_stack_text(text: str, env: str, source: str, values: Mapping[str, Mapping[str, int]]) -> EnvironmentConfig:
    """Check that `text` is a valid stack file whose pools carry `values`; returns its config."""
    _, cfg = _load_stack_text(text, env, source)
    _check_pool_values(cfg.gpu_pools, values, source)
    return cfg


def _check_pool_values(pools: list[GpuPool], values: Mapping[str, Mapping[str, int]], source: str) -> None:
    by_name = {p.name: p for p in pools}
    attr = {v: k for k, v in BOUND_KEYS.items()}
    for pool, keys in values.items():
        for key, value in keys.items():
            got = getattr(by_name[pool], attr[key])
            if got != value:
                raise PrivendError(f"{source}: pool {pool!r}: {key} reads back as {got}, not {value}")


def _same_but_bounds(old: str, new: str, values: Mapping[str, Mapping[str, int]], source: str) -> None:
    """The rewritten document must equal the old one with exactly the bound keys replaced."""
    before, after = yaml.safe_load(old), yaml.safe_load(new)
    for pool in before["config"]["privend:gpuPools"]:
        pool.update(values.get(pool.get("name"), {}))
    if before != after:
        raise PrivendError(f"{source}: rewriting the pool bounds would change other values; nothing written")


def unified_diff(old: str, new: str, shown: str) -> str:
    before, after = (shown, shown) if os.path.isabs(shown) else (f"a/{shown}", f"b/{shown}")
    lines = difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                 fromfile=before, tofile=after)
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)


def write_stack_file(cfg: EnvironmentConfig, path: Path | str, text: str,
                     values: Mapping[str, Mapping[str, int]], stacks_dir: Path | None = None) -> EnvironmentConfig:
    """Replace the stack file with `text` atomically, after checking it, and load it back.

    `values` are the bounds the text must carry. When the file is the
    environment's own stack file (in `stacks_dir`), the result is read back through
    `load_environment`; if that disagrees, the old file is put back.
    """
    path = Path(path)
    shown = display_path(path)
    old = read_text(path, display_path(path))
    _same_but_bounds(old, text, values, shown)
    check_stack_text(text, cfg.environment, shown, values)
    _atomic_write(path, text)
    if path.resolve() == stack_file(cfg.environment, stacks_dir).resolve():
        try:
            loaded = load_environment(cfg.environment, stacks_dir)
            _check_pool_values(loaded.gpu_pools, values, shown)
        except PrivendError:
            _atomic_write(path, old)
            raise
        return loaded
    return check_stack_text(read_text(path, shown), cfg.environment, shown, values)


def _atomic_write(path: Path, text: str) -> None:
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise PrivendError(f"{display_path(path)} cannot be written ({exc.strerror or exc}); nothing changed") from None
    try:
        with os.fdopen(fd, "w", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
