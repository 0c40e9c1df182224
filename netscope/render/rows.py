"""Render a list of row dicts in any of the text formats every command shares."""

from __future__ import annotations

import collections.abc
import csv
import io
import json
import re
from operator import itemgetter
from typing import Any, Callable, Dict, Hashable, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

from netscope.errors import UsageError

TEXT_FORMATS = ("table", "markdown", "csv", "json")
JSON_SCHEMA_VERSION = 2  # bump when a field of any command's JSON changes meaning or goes away


def json_document(kind: str, body: Dict[str, Any]) -> Dict[str, Any]:
    """Every command's JSON: ``{"schema": "netscope.KIND", "schema_version": N, ...body}``."""
    return {"schema": f"netscope.{kind}", "schema_version": JSON_SCHEMA_VERSION, **body}


def fitted_table(render: Callable[[Sequence[str]], str], columns: Sequence[str], droppable: Sequence[str],
                 width: Optional[int]) -> Tuple[str, List[str]]:
    """``render(columns)``, leaving out the ``droppable`` columns, in that order, while the text is wider than
    ``width`` (None: never); with the columns left out, for the note a table owes its reader."""
    columns = list(columns)
    dropped: List[str] = []
    while True:
        body = render(columns)
        if width is None or max(map(len, body.splitlines()), default=0) <= width:
            return body, dropped
        left = [c for c in droppable if c in columns]
        if not left:
            return body, dropped
        columns.remove(left[0])
        dropped.append(left[0])


def check_depth(depth) -> None:
    """Raise a UsageError unless ``depth`` (rows down to this nesting depth) is None or a whole number >= 0."""
    if depth is None:
        return
    if isinstance(depth, bool) or not isinstance(depth, int) and not hasattr(depth, "__index__"):
        raise UsageError(f"depth must be a whole number, 0 or more, not {depth!r}")
    if depth < 0:
        raise UsageError(f"depth must be 0 or more, got {depth}")


def check_width(width) -> None:
    """Raise a UsageError unless ``width`` (the columns a table and its notes fit in) is None or a whole number >= 1."""
    if width is None:
        return
    if isinstance(width, bool) or not hasattr(width, "__index__"):
        raise UsageError(f"width must be a whole number of columns, like 120, not {width!r}")
    if width < 1:
        raise UsageError(f"width must be at least 1 column, got {width}")


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
                numeric: Sequence[str] = (), wrap: Optional[str] = None, width: Optional[int] = None,
                min_wrap: int = 40) -> str:
    """Rows (dicts) -> text. ``headers`` maps column keys to display titles; ``numeric`` columns are right-aligned.
    A table (not markdown, CSV or JSON) wider than ``width`` wraps the cells of column ``wrap`` onto more lines
    (never narrower than ``min_wrap`` characters)."""
    return render_columns(_column_values(rows, columns), columns, fmt, headers=headers, table_style=table_style,
                          numeric=numeric, wrap=wrap, width=width, min_wrap=min_wrap)


def render_columns(values: Sequence[Sequence[Any]], columns: Sequence[str], fmt: str = "table",
                   *, headers: Optional[Dict[str, str]] = None, table_style: str = "simple",
                   numeric: Sequence[str] = (), wrap: Optional[str] = None, width: Optional[int] = None,
                   min_wrap: int = 40) -> str:
    """:func:`render_rows` from the cells of each column (``values[i]`` holds column ``columns[i]``, one cell
    per row, ``None`` blank): a listing of 100k rows needs no dict per row."""
    check_format(fmt, table_style)
    headers = headers or {}
    if fmt == "json":
        return json.dumps([dict(zip(columns, row)) for row in zip(*values)], indent=2, default=str)
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(zip(*(map(_csv_cell, column) for column in values)))
        return buffer.getvalue()
    style = "github" if fmt == "markdown" else table_style
    if fmt == "table":  # a line break or other control character of a name (a ModuleDict key) would spill
        values = [_printable_column(column) for column in values]
    cells = list(map(_text_column, values))
    if fmt == "markdown":  # a "|" or a line break in a cell (a ModuleDict key) would end the cell or the row
        cells = [_markdown_column(_printable_column(column, _CONTROL_BUT_BREAKS)) for column in cells]
    titles = [headers.get(c, c) for c in columns]
    right = [c in numeric for c in columns]
    if fmt == "table" and wrap in columns and width:
        body = [list(row) for row in zip(*cells)]
        _wrap_column(body, titles, columns.index(wrap), width, min_wrap)
        cells = [tuple(column) for column in zip(*body)] if body else cells
    if style == "simple":  # the default: drawn here, since tabulate's per-cell type sniffing dominates big tables
        return _simple_table(titles, cells, right)
    import tabulate

    body = [[_visible_indent(cell) for cell in row] for row in zip(*cells)]  # tabulate strips leading spaces
    return tabulate.tabulate(body, headers=titles, tablefmt=style,
                             colalign=["right" if r else "left" for r in right], disable_numparse=True)


def _csv_cell(cell: Any) -> Any:
    """A CSV cell as JSON writes the value: ``true``/``false`` for a boolean, empty for null (every command's CSV)."""
    if cell is None:
        return ""
    if type(cell) is bool:
        return "true" if cell else "false"
    return cell


def _column_values(rows: Sequence[Dict[str, Any]], columns: Sequence[str]) -> List[Sequence[Any]]:
    """Each column's cells, column by column (a missing cell is None): a 100k-row listing stays in C loops."""
    if not rows or not columns:
        return [() for _ in columns]
    try:
        return (list(zip(*map(itemgetter(*columns), rows))) if len(columns) > 1
                else [tuple(map(itemgetter(columns[0]), rows))])
    except KeyError:  # rows without every column: a missing cell is blank
        return [tuple(row.get(c) for row in rows) for c in columns]


class Coded(collections.abc.Sequence):
    """A column given as a code per row and the cell of each code, every code in ``cells`` occurring in
    ``codes``: a long column of a few distinct cells (a checkpoint's 100k tensors of a few shapes). Its cells
    are converted and measured once per code, and the simple table draws adjacent ``Coded`` columns over one
    ``codes`` as one block of text per code."""

    __slots__ = ("codes", "cells")

    def __init__(self, codes: Sequence[Hashable], cells: Mapping[Hashable, Any]):
        self.codes, self.cells = codes, cells

    def __len__(self) -> int:
        return len(self.codes)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self.cells[code] for code in self.codes[index]]
        return self.cells[self.codes[index]]

    def __iter__(self) -> Iterator[Any]:
        return map(self.cells.__getitem__, self.codes)


def _distinct(column: Sequence[Any]) -> Iterable[Any]:
    """The cells to measure or scan: each distinct one of a ``Coded`` column, else all."""
    return column.cells.values() if type(column) is Coded else column


def _text_column(column: Sequence[Any]) -> Sequence[str]:
    """A column's cells as text (``_cell``), in one C loop when the column holds only strings or only ints."""
    if type(column) is Coded:
        return Coded(column.codes, dict(zip(column.cells, _text_column(list(column.cells.values())))))
    kinds = set(map(type, column))
    return (column if kinds == {str} else tuple(map(_Thousands().__getitem__, column)) if kinds == {int}
            else tuple(map(_cell, column)))


class _Thousands(dict):
    """int -> ``"{:,}"`` text, each distinct value formatted once (long columns repeat a few counts)."""

    def __missing__(self, value: int) -> str:
        text = self[value] = f"{value:,}"
        return text


def _simple_table(titles: List[str], columns: List[Sequence[str]], right: List[bool]) -> str:
    """tabulate's "simple" layout: titles, a dashed rule per column, two spaces between columns."""
    if any("\n" in "".join(_distinct(column)) for column in columns):  # C-level scan: 100k-row listings stay fast
        return _simple_table_multiline(titles, columns, right)
    widths = [max(len(t) + 2, max(map(len, _distinct(column)), default=0))  # tabulate keeps two spare columns
              for t, column in zip(titles, columns)]                       # per title
    pattern = "  ".join(_field(w, r) for w, r in zip(widths, right))  # every cell is a str
    body = columns and columns[0]
    title_line = (pattern % tuple(titles) if body else "  ".join(t.ljust(w) for t, w in zip(titles, widths))).rstrip()
    out = [title_line, "  ".join("-" * w for w in widths)]
    if body:
        fields = _blocks(columns, widths, right)
        pattern = "  ".join(_field(w, r) for _, w, r in fields)
        rows = zip(*(iter(column) for column, _, _ in fields))
        out.extend(map(str.rstrip, map(pattern.__mod__, rows)))  # one %-format per row (faster than format)
    return "\n".join(out)


def _field(width: int, right: bool) -> str:
    """The %-format of one cell of ``width`` (a str), right- or left-aligned."""
    return f"%{'' if right else '-'}{width}s"


def _blocks(columns: List[Sequence[str]], widths: List[int],
            right: List[bool]) -> List[Tuple[Sequence[str], int, bool]]:
    """(column, width, right-aligned) to draw per row: adjacent ``Coded`` columns over one ``codes`` become one
    ``Coded`` column of their cells already padded and joined, once per code (the very text a row would get)."""
    fields: List[Tuple[Sequence[str], int, bool]] = []
    start = 0
    while start < len(columns):
        first, end = columns[start], start + 1
        while (type(first) is Coded and end < len(columns) and type(columns[end]) is Coded
               and columns[end].codes is first.codes):
            end += 1
        if end - start > 1:
            pattern = "  ".join(_field(w, r) for w, r in zip(widths[start:end], right[start:end]))
            group = columns[start:end]
            block = {code: pattern % tuple(column.cells[code] for column in group) for code in first.cells}
            fields.append((Coded(first.codes, block), sum(widths[start:end]) + 2 * (end - start - 1), False))
        else:
            fields.append((first, widths[start], right[start]))
        start = end
    return fields


def _simple_table_multiline(titles: List[str], columns: List[Sequence[str]], right: List[bool]) -> str:
    """The simple layout when some cells hold several lines: each row top-aligned, as tabulate draws it."""
    widths = [max([len(t) + 2] + [max(map(len, cell.split("\n"))) for cell in column])
              for t, column in zip(titles, columns)]

    def line(cells):
        return "  ".join(cell.rjust(w) if r else cell.ljust(w)
                         for cell, w, r in zip(cells, widths, right)).rstrip()

    out = [line(titles), "  ".join("-" * w for w in widths)]
    for cells in zip(*columns):
        parts = [cell.split("\n") for cell in cells]
        out.extend(line([p[i] if i < len(p) else "" for p in parts]) for i in range(max(map(len, parts))))
    return "\n".join(out)


def _wrap_column(body: List[List[str]], titles: List[str], index: int, width: int, min_wrap: int) -> None:
    """Wrap column ``index``'s cells (in place) so that a simple table fits ``width`` characters, keeping
    at least ``min_wrap`` characters for them; the other columns keep their width."""
    import textwrap

    others = sum(max([len(titles[i]) + 2] + [max(map(len, cells[i].split("\n"))) for cells in body]) + 2
                 for i in range(len(titles)) if i != index)
    room = max(width - others, min_wrap)
    for cells in body:  # lines the cell already has (one per axis, ...) are kept; each is wrapped on its own
        if any(len(line) > room for line in cells[index].split("\n")):
            cells[index] = "\n".join(part for line in cells[index].split("\n")
                                     for part in textwrap.wrap(line, room, break_on_hyphens=False) or [""])


class Lines(tuple):
    """A cell of several lines on purpose (``check --all``'s formula, one per axis): a table draws each on a line of
    its own, where a line break inside text (a name) is shown escaped (:func:`printable`)."""

    def __str__(self) -> str:
        return "\n".join(map(str, self))


# C0 and C1 control characters, DEL, and the Unicode line and paragraph separators: each would move the cursor,
# end the line or go unseen in a terminal; and the backslash, so that a name holding a backslash and an "n" never
# reads like one holding a line break
_CONTROL = re.compile("[\\\\\x00-\x1f\x7f-\x9f\u2028\u2029]")
# markdown writes a line break as <br> and escapes a backslash its own way (:func:`_markdown_column`)
_CONTROL_BUT_BREAKS = re.compile("[\x00-\x09\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029]")
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}


def printable(text: str, control: re.Pattern = _CONTROL) -> str:
    """``text`` with each control character written as Python writes it in a string literal (``\\n``, ``\\t``,
    ``\\x1b``, ``\\u2028``) and a backslash doubled (``\\\\``): how a plain table shows a name or key, so
    that each shown text reads back as one name."""
    if not control.search(text):
        return text
    return control.sub(lambda m: _ESCAPES.get(m.group()) or repr(m.group())[1:-1], text)


def _printable_column(column: Sequence[Any], control: re.Pattern = _CONTROL) -> Sequence[Any]:
    """A table column's text cells with control characters escaped, a ``Lines`` cell line by line (other cells as
    they are); the usual column, with none, is scanned once in C and returned as it is."""
    distinct = _distinct(column)
    kinds = set(map(type, distinct))
    if Lines not in kinds:
        if str not in kinds:
            return column
        texts = distinct if kinds == {str} else [cell for cell in distinct if type(cell) is str]
        if not control.search("".join(texts)):
            return column
    if type(column) is Coded:
        return Coded(column.codes, {code: _printable_cell(cell, control) for code, cell in column.cells.items()})
    return tuple(_printable_cell(cell, control) for cell in column)


def _printable_cell(cell: Any, control: re.Pattern = _CONTROL) -> Any:
    kind = type(cell)
    if kind is Lines:
        return "\n".join(printable(str(line), control) for line in cell)
    return printable(cell, control) if kind is str else cell


def _markdown_column(column: Sequence[str]) -> Sequence[str]:
    """Cells as a GitHub markdown table reads them back: ``|`` escaped, line breaks as ``<br>``."""
    if not any(("|" in cell or "\n" in cell or "\r" in cell or "\\" in cell) for cell in _distinct(column)):
        return column
    return tuple(cell.replace("\\", "\\\\").replace("|", "\\|").replace("\r\n", "<br>")
                 .replace("\n", "<br>").replace("\r", "<br>") for cell in column)


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


cell_text = _cell  # a value as a table cell shows it (yes/no, thousands separators), for other renderers
