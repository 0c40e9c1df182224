"""Render a list of row dicts in any of the text formats every command shares."""

from __future__ import annotations

import csv
import io
import json
from typing import Any, Dict, List, Optional, Sequence

from netscope.errors import UsageError

TEXT_FORMATS = ("table", "markdown", "csv", "json")


def check_format(fmt: str, table_style: str = "simple") -> None:
    """Raise a UsageError for an unknown output format or tabulate style."""
    if fmt not in TEXT_FORMATS:
        raise UsageError(f"unknown format {fmt!r}; use one of {', '.join(TEXT_FORMATS)}")
    import tabulate

    if table_style not in tabulate.tabulate_formats:
        raise UsageError(
            f"unknown table style {table_style!r}; tabulate knows {', '.join(sorted(tabulate.tabulate_formats))}"
        )


def render_rows(rows: Sequence[Dict[str, Any]], columns: Sequence[str], fmt: str = "table",
                *, headers: Optional[Dict[str, str]] = None, table_style: str = "simple",
                numeric: Sequence[str] = ()) -> str:
    """Rows (dicts) -> text. ``headers`` maps column keys to display titles; ``numeric`` columns are right-aligned."""
    check_format(fmt, table_style)
    headers = headers or {}
    if fmt == "json":
        return json.dumps([{c: row.get(c) for c in columns} for row in rows], indent=2, default=str)
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow(["" if row.get(c) is None else row.get(c) for c in columns])
        return buffer.getvalue()
    import tabulate

    style = "github" if fmt == "markdown" else table_style
    body = [[_cell(row.get(c)) for c in columns] for row in rows]
    align = ["right" if c in numeric else "left" for c in columns]
    return tabulate.tabulate(body, headers=[headers.get(c, c) for c in columns], tablefmt=style,
                             colalign=align, disable_numparse=True)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.4g}"
    return str(value)
