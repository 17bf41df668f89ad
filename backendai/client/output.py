"""Terminal output of the CLI: plain tables, key/value blocks, and the two streams."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence

__all__ = ["err", "format_cell", "format_kv", "format_table", "out"]


def out(text: str = "") -> None:
    """Write one line (or block) to standard output."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def err(text: str) -> None:
    """Write one line to standard error."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def format_cell(value: object) -> str:
    """A value as one table cell: None is '-', containers are compact JSON."""
    if value is None or value == "":
        return "-"
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(value, separators=(",", ":"), default=str)
    return " ".join(str(value).splitlines())


def format_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Left-aligned columns two spaces apart, as wide as their widest cell."""
    cells = [[format_cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, cell in enumerate(row[: len(widths)]):
            widths[i] = max(widths[i], len(cell))
    lines = []
    for row in [list(headers), *cells]:
        padded = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  ".join(padded).rstrip())
    return "\n".join(lines)


def format_kv(items: Mapping[str, object]) -> str:
    """One ``key  value`` line per item, keys padded to one width."""
    if not items:
        return ""
    width = max(len(k) for k in items)
    return "\n".join(f"{k.ljust(width)}  {format_cell(v)}".rstrip() for k, v in items.items())
