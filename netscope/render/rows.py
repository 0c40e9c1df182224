"""Render a list of row dicts in any of the text formats every command shares."""

from __future__ import annotations

import csv
import io
import json
from typing import Any, Dict, List, Optional, Sequence

from netscope.errors import UsageError

TEXT_FORMATS = ("table", "markdown", "csv", "json")
JSON_SCHEMA_VERSION = 2  # bump when a field of any command's JSON changes meaning or goes away


def json_document(kind: str, body: Dict[str, Any]) -> Dict[str, Any]:
    """Every command's JSON: ``{"schema": "netscope.KIND", "schema_version": N, ...body}``."""
    return {"schema": f"netscope.{kind}", "schema_version": JSON_SCHEMA_VERSION, **body}


def check_format(fmt: str, table_style: str = "simple") -> None:
    """Raise a UsageError for an unknown output format or tabulate style."""
    if fmt not in TEXT_FORMATS:
        raise UsageError(f"unknown format {fmt!r}; use one of {', '.join(TEXT_FORMATS)}")
    if table_style == "simple":  # the default, drawn by _simple_table: no need to import tabulate
        return
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
    style = "github" if fmt == "markdown" else table_style
    body = [[value if type(value) is str else _cell(value) for value in map(row.get, columns)] for row in rows]
    titles = [headers.get(c, c) for c in columns]
    right = [c in numeric for c in columns]
    if style == "simple":  # the default: drawn here, since tabulate's per-cell type sniffing dominates big tables
        return _simple_table(titles, body, right)
    import tabulate

    body = [[_visible_indent(cell) for cell in cells] for cells in body]  # tabulate strips leading spaces
    return tabulate.tabulate(body, headers=titles, tablefmt=style,
                             colalign=["right" if r else "left" for r in right], disable_numparse=True)


def _simple_table(titles: List[str], body: List[List[str]], right: List[bool]) -> str:
    """tabulate's "simple" layout: titles, a dashed rule per column, two spaces between columns."""
    widths = [len(t) + 2 for t in titles]  # tabulate keeps two spare columns per title
    for i, column in enumerate(zip(*body)):
        widths[i] = max(widths[i], max(map(len, column)))

    pattern = "  ".join(f"{{:{'>' if r else '<'}{w}}}" for w, r in zip(widths, right))  # one format call per row

    def line(cells):
        return pattern.format(*cells).rstrip()

    title_line = line(titles) if body else "  ".join(t.ljust(w) for t, w in zip(titles, widths)).rstrip()
    out = [title_line, "  ".join("-" * w for w in widths)]
    out.extend(map(line, body))
    return "\n".join(out)


def _visible_indent(cell: str) -> str:
    """Leading spaces (a tree's indentation) as dots, which tabulate keeps: ``"    fc"`` -> ``"· · fc"``."""
    stripped = cell.lstrip(" ")
    depth = (len(cell) - len(stripped)) // 2
    return "· " * depth + stripped if depth else cell


def _cell(value: Any) -> str:
    kind = type(value)
    if kind is str:
        return value
    if kind is int:
        return f"{value:,}"
    if value is None:
        return ""
    if kind is bool:
        return "yes" if value else "no"
    if kind is float:
        return f"{value:,.4g}"
    return str(value)
