"""The summary report: layer records, totals, run info and findings, with every rendering."""

from __future__ import annotations

import itertools
import json
import operator
import textwrap
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from netscope.records import Finding, LayerCall, RunInfo, Severity, Totals
from netscope.render.columns import (COLUMNS, DATA_COLUMNS, DEFAULT_COLUMNS, csv_text, data_row, parse_columns,
                                     text_row, tuples)
from netscope.render.folding import Fold, find_folds, fold_row, visible_calls
from netscope.render.headline import estimated_total_bytes
from netscope.render.rows import (check_depth, check_format, check_width, fitted_table, json_document,
                                  render_rows)
from netscope.run.shapes import format_shape_tree
from netscope.units import megabytes, si_exact


TEXT_WIDTH = 120  # totals and finding lines are wrapped to this (or to the terminal's width)
DROP_ORDER = ("input", "type")  # default columns left out, in this order, when a table must fit a width


@dataclass(frozen=True)
class Report:
    """What ``netscope.summary`` returns. ``print(report)`` shows the table and totals."""

    layers: List[LayerCall]
    totals: Totals
    run: RunInfo
    checks: List[Any] = field(default_factory=list)  # netscope.analyses.checks.FormulaCheck records
    findings: List[Finding] = field(default_factory=list)  # naming and other findings about the model
    model_output: Any = None
    param_owners: Tuple[Any, ...] = ()  # netscope.analyses.totals.OwnedParams: who owns each parameter, counted once
    operators: Any = field(default=None, repr=False)  # netscope.operators.breakdown.OperatorTable: operator calls and multiply-adds per call
    # the error of a forward pass that raised, on the report of what it recorded up to there (ForwardError.report):
    # the HTML views put it in a banner saying the figures count only the calls that ran; "" for a full pass
    failure: str = field(default="", repr=False)

    # ---- rendering -------------------------------------------------------------------------
    def __str__(self) -> str:
        return self.render()

    def render(self, fmt: str = "table", *, columns=None, depth: Optional[int] = None,
               table_style: str = "simple", expand: bool = False, width: Optional[int] = None) -> str:
        """Text in ``table`` (tabulate style ``table_style``), ``markdown``, ``csv`` or ``json``.

        Table and markdown fold runs of identical repeated blocks into one row unless ``expand``; CSV and
        JSON keep every call. ``width`` (default 120): with the default columns, leave out the least needed
        ones (input shape, then type) until the table fits, and say so under it; chosen columns
        (``columns=...``, ``"all"``) are never left out.
        """
        from netscope.collector import paused_gc

        check_width(width)
        with paused_gc():  # thousands of small row objects: cyclic GC passes over a big heap would dominate
            return self._render(fmt, columns=columns, depth=depth, table_style=table_style, expand=expand,
                                width=width or TEXT_WIDTH)

    def _render(self, fmt: str, *, columns, depth: Optional[int], table_style: str, expand: bool,
                width: Optional[int]) -> str:
        check_format(fmt, table_style)
        check_depth(depth)
        if fmt == "json":
            return json.dumps(self.to_dict(columns=columns, depth=depth), indent=2)
        keys = list(parse_columns(columns))
        if columns is None and self.checks and "check" not in keys:
            keys.append("check")
        if columns is None and any(c.receptive_field is not None for c in self.layers):  # asked for: shown
            keys += [k for k in ("rf", "jump") if k not in keys]
        if fmt == "csv":
            return csv_text([c for c in self.layers if depth is None or c.depth <= depth], keys, self._context(),
                            chosen=columns is not None)
        rows = self.table_rows(keys, depth=depth, expand=expand)
        body, dropped = self._fit(rows, keys, fmt, table_style, width if columns is None else None)
        notes = []
        if dropped:
            notes.append(f"(left out to fit {width} columns: {', '.join(dropped)}; choose with --columns)")
        folded = sum(1 for row in rows if row.get("_fold"))
        if folded:
            notes.append(f"({folded:,} run(s) of identical blocks folded, one row each; --expand shows every call)")
        gap = "\n\n" if fmt == "markdown" else "\n"  # markdown: a line right under a table is one more row
        text = body + (gap + "\n".join(_wrapped(notes, width)) if notes else "")
        return text + "\n\n" + self.totals_text(markdown=(fmt == "markdown"), width=width)

    def _fit(self, rows, keys, fmt, table_style, width):
        """The table, with optional columns dropped (in ``DROP_ORDER``) while it is wider than ``width``."""
        return fitted_table(
            lambda shown: render_rows(rows, shown, fmt, headers={k: COLUMNS[k].title for k in shown},
                                      table_style=table_style, numeric=[k for k in shown if COLUMNS[k].numeric]),
            keys, DROP_ORDER, width)

    def table_rows(self, columns: Sequence[str] = DEFAULT_COLUMNS, *, depth: Optional[int] = None,
                   expand: bool = False) -> List[Dict[str, Any]]:
        """Table cells (text), indented by depth, with runs of identical blocks folded unless ``expand``."""
        ctx = self._context()
        folds = [] if expand else self.folds()
        by_index = self.layers
        out = []
        for item in visible_calls(self.layers, folds, depth=depth):
            if isinstance(item, Fold):
                members = list(map(by_index.__getitem__, item.members))
                row = fold_row(item, members, by_index[item.first], columns, ctx)
                indent = members[0].depth
            else:
                row = text_row(item, columns, ctx, short=True)
                indent = item.depth
            if "layer" in row:
                row["layer"] = "  " * indent + row["layer"]
            out.append(row)
        return out

    def folds(self) -> List[Fold]:
        """Runs of identical repeated blocks; calls with a failed check or a finding never fold."""
        pinned = {c.call_index for c in self.checks if getattr(c, "status", "pass") != "pass"}
        pinned |= {f.call_index for c in self.checks for f in getattr(c, "findings", ()) or ()
                   if f.call_index is not None and f.severity is not Severity.INFO}
        pinned.update(f.call_index for f in self.findings if f.call_index is not None)
        pinned.update(self._first_calls({f.layer for f in self.findings if f.call_index is None}).values())
        return find_folds(self.layers, pinned)

    def _first_calls(self, names) -> Dict[str, int]:
        """Call index of the first call (``call_number`` 1) of each module named in ``names``: the names of every
        call compared in C loops, the few calls that match read in Python."""
        if not names:
            return {}
        layers = self.layers
        matching = itertools.compress(range(len(layers)), map(names.__contains__, map(_NAME, layers)))
        return {layers[i].name: i for i in matching if layers[i].call_number == 1}

    def rows(self, columns: Sequence[str] = DATA_COLUMNS, *, depth: Optional[int] = None) -> List[Dict[str, Any]]:
        """Typed values per call (every call; no folding), keyed by each column's JSON/DataFrame name."""
        ctx = self._context()
        keys = parse_columns(columns, default=DATA_COLUMNS)
        return [data_row(call, keys, ctx) for call in self.layers if depth is None or call.depth <= depth]

    def _context(self) -> Dict[str, Any]:
        return {"checks": {check.call_index: check for check in self.checks},
                "names": list(map(_NAME, self.layers)), "partial_macs": self.partial_calls(),
                "partial_own_macs": self.operators.uncounted_calls() if self.partial else set()}

    def totals_text(self, *, markdown: bool = False, width: Optional[int] = None) -> str:
        t = self.totals
        lines = [
            f"Total params: {t.total_params:,}"
            + (f" ({t.shared_params:,} in {t.shared_param_tensors} shared tensor(s), counted once)" if t.shared_param_tensors else ""),
            f"Trainable params: {t.trainable_params:,}",
            f"Non-trainable params: {t.non_trainable_params:,}",
        ]
        if t.uncalled_params:
            lines.append(f"Params in modules not called by this pass: {t.uncalled_params:,} (counted in the total; "
                         "a forward may still use them directly, as nn.MultiheadAttention uses its out_proj)")
        lines += [
            f"Total mult-adds: {si_exact(t.total_macs)}" + self._partial_text(),
            f"Input size: {megabytes(t.input_bytes)}",
            f"Forward activations (innermost outputs, est.): {megabytes(t.activation_bytes)}",
            f"Params size: {megabytes(t.param_bytes)}; buffers: {megabytes(t.buffer_bytes)} ({t.buffer_elements:,} elements)",
            f"Estimated total size: {megabytes(estimated_total_bytes(t))}",
        ]
        if t.peak_memory_bytes is not None:
            lines.append(f"Measured CUDA peak memory of the pass: {megabytes(t.peak_memory_bytes)}")
        r = self.run
        lines.append(f"Run: {r.model} on {r.device}, {r.dtype}, {r.mode} mode, input {format_shape_tree(r.input_shapes)}, {r.seconds:.2f} s")
        lines += [f"Note: {note}" for note in r.notes]
        if self.findings:
            lines.append(f"Naming findings: {len(self.findings)} (run 'netscope names' for details)")
        warnings = self.check_warnings()
        if warnings:
            lines.append("")
            lines.append(f"Formula checks: {len(warnings)} finding(s)")
            lines += [f"  - {w}" for w in warnings]
        lines = _wrapped(lines, width or TEXT_WIDTH)
        return "\n".join(("- " + l if markdown and l and not l.startswith("  ") else l) for l in lines)

    def notable_findings(self) -> List[Finding]:
        """Errors and warnings, from the formula checks and the naming audit (informational notes left out):
        what the headline, the totals and the HTML page count as findings."""
        from netscope.analyses.checks import check_findings

        naming = [f for f in self.findings if f.severity is not Severity.INFO]
        return check_findings(self.checks, include_info=False) + naming

    # ---- operator accounting ---------------------------------------------------------------
    @property
    def partial(self) -> bool:
        """True when an operator without a multiply-add formula ran: mult-add totals are lower bounds."""
        return self.operators is not None and self.operators.partial

    def uncounted_ops(self) -> List[Any]:
        """``netscope.operators.breakdown.UncountedOp`` records: operators without a formula, calls, layers."""
        if not self.partial:
            return []
        return self.operators.uncounted([c.display_name for c in self.layers])

    def partial_calls(self) -> set:
        """Indexes of the rows whose mult-adds miss an uncounted operator (that ran in them or below)."""
        if not self.partial:
            return set()
        marked = set()
        for index in self.operators.uncounted_calls():
            while index is not None and index not in marked:
                marked.add(index)
                index = self.layers[index].parent if index < len(self.layers) else None
        return marked

    def _partial_text(self) -> str:
        uncounted = self.uncounted_ops()
        if not uncounted:
            return ""
        return (" -- PARTIAL, a lower bound: no multiply-add formula for " + "; ".join(str(u) for u in uncounted)
                + " (rows marked >=; register one with netscope.register_macs, or netscope.ignore_macs if it is 0)")

    def by_operator(self, per_module: bool = False):
        """pandas DataFrame of operators: ``op, kind, calls, macs`` over the whole pass, heaviest first;
        ``per_module=True``: one row per module call and operator it ran itself (``index, layer, type``
        first). ``kind`` is ``formula``, ``zero`` (by convention) or ``uncounted`` (the total is partial)."""
        import pandas as pd

        columns = ["op", "kind", "calls", "macs"]
        if per_module:
            records = [dict(index=c.index, layer=c.display_name, type=c.class_name, **use.to_dict())
                       for c in self.layers for use in self.operators.call_ops(c.index)] if self.operators else []
            columns = ["index", "layer", "type"] + columns
        else:
            records = [use.to_dict() for use in self.operators.overall()] if self.operators else []
        frame = pd.DataFrame.from_records(records, columns=columns)
        for name in ("calls", "macs"):
            frame[name] = int_column([record[name] for record in records])
        return frame

    def operators_dict(self) -> Dict[str, Any]:
        """The JSON section ``operators``: overall, per module call, and the uncounted ones."""
        if self.operators is None:
            return {"partial": False, "uncounted": [], "total": [], "per_layer": []}
        return {
            "partial": self.partial,
            "uncounted": [u.to_dict() for u in self.uncounted_ops()],
            "total": [use.to_dict() for use in self.operators.overall()],
            "per_layer": [dict(index=c.index, name=c.name, ops=[u.to_dict() for u in self.operators.call_ops(c.index)])
                          for c in self.layers],
        }

    def by_operator_text(self, fmt: str = "table", *, table_style: str = "simple") -> str:
        """The ``--by-op`` view: operators over the whole pass, then per module call."""
        total = [use.to_dict() for use in self.operators.overall()] if self.operators else []
        keys = ["op", "kind", "calls", "macs"]
        if fmt == "json":  # a document of its own, versioned like every command's JSON
            return json.dumps(json_document("operators", self.operators_dict()), indent=2)
        titles = {"op": "Operator", "kind": "Counted", "calls": "Calls", "macs": "Mult-adds", "layer": "Layer"}
        body = render_rows(total, keys, fmt, headers=titles, table_style=table_style, numeric=["calls", "macs"])
        if fmt == "csv":  # one row per operator of each call, named as JSON's per_layer names the call
            return render_rows([dict(name=c.name, **use.to_dict()) for c in self.layers if self.operators
                                for use in self.operators.call_ops(c.index)], ["name"] + keys, fmt)
        per_layer = [dict(layer=c.display_name, **use.to_dict()) for c in self.layers if self.operators
                     for use in self.operators.call_ops(c.index)]
        per = render_rows(per_layer, ["layer"] + keys, fmt, headers=titles, table_style=table_style,
                          numeric=["calls", "macs"])
        partial = self._partial_text().removeprefix(" -- ")
        return (body + "\n\nPer module call (operators it ran itself):\n" + per
                + (f"\n\nTotal mult-adds are {partial}" if partial else ""))

    def check_warnings(self) -> List[str]:
        """One line per formula mismatch (each check carries it as an error finding) and per warning;
        informational notes are left to ``netscope check``."""
        from netscope.analyses.checks import check_findings

        return [f"{finding.layer or '(root)'}: {finding.message}"
                for finding in check_findings(self.checks, include_info=False)]

    # ---- data ------------------------------------------------------------------------------
    def to_dict(self, *, columns=None, depth: Optional[int] = None) -> Dict[str, Any]:
        """A JSON-able dict: run, totals, one entry per layer call (every call, never folded; ``columns`` and
        ``depth`` choose fields and rows, as in the table), checks and findings. Versioned by ``schema``."""
        check_depth(depth)
        keys = parse_columns(columns, default=DATA_COLUMNS)
        return json_document("summary", {
            "run": _jsonable(self.run.to_dict()),
            "totals": self.totals.to_dict(),
            "columns": [COLUMNS[k].name for k in keys],
            "layers": [_jsonable(row) for row in self.rows(keys, depth=depth)],
            "checks": self.checks_dicts(),
            "findings": [f.to_dict() for f in self.findings],
            "output": _jsonable(self.model_output),
            "partial": self.partial,
            "operators": self.operators_dict(),
        })

    def to_json(self, **kwargs) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    def checks_dicts(self) -> List[Dict[str, Any]]:
        """The formula checks as JSON (shapes as lists of ints): the summary's ``checks`` and ``netscope check``'s."""
        return [_jsonable(c.to_dict()) if hasattr(c, "to_dict") else str(c) for c in self.checks]

    def to_dataframe(self, columns=None):
        """pandas DataFrame, one row per module call (never folded), typed by the column registry:
        counts ``int64`` (nullable ``Int64`` where a count was not recorded: layers inside TorchScript; exact
        Python ints, ``object``, beyond int64's range), ``parent``
        nullable ``Int64``, shapes as tuples, ``trainable`` a nullable boolean
        (``<NA>`` when the subtree has no parameters or is partly trainable: ``trainable_partial`` says which)."""
        import pandas as pd

        keys = parse_columns(columns, default=DATA_COLUMNS)
        records = self.rows(keys)
        shaped = [COLUMNS[k].name for k in keys if k in ("input", "output")]
        for row in records:  # shape trees with tuples for containers too: hashable, comparable cells
            for name in shaped:
                row[name] = tuples(row[name])
        frame = pd.DataFrame.from_records(records, columns=[COLUMNS[k].name for k in keys])
        dtypes = {COLUMNS[k].name: COLUMNS[k].dtype for k in keys}
        for name, dtype in dtypes.items():
            if dtype in ("int64", "Int64"):  # from the Python ints: pandas would infer float64 or uint64 and round
                frame[name] = int_column([row[name] for row in records], dtype)  # or wrap big counts
        return frame.astype({name: dtype for name, dtype in dtypes.items() if dtype not in ("int64", "Int64")})

    def to_html(self) -> str:
        """A self-contained HTML page: collapsible tree, shape flow, bar charts, search."""
        from netscope.render.html import report_html

        return report_html(self)

    def __repr__(self) -> str:
        """One headline: ``ResNet · 25.6 M params · 4.09 G MACs · 231 MB · 0 findings``."""
        from netscope.render.headline import headline

        return headline(self)

    def _repr_html_(self) -> str:
        """Jupyter's view: a compact, script-free version of :meth:`to_html`."""
        from netscope.render.html import notebook_html

        return notebook_html(self)


INT64_MAX = 2 ** 63 - 1
_NAME = operator.attrgetter("name")


def int_column(values: Sequence[Optional[int]], dtype: str = "int64"):
    """A DataFrame count column, exact: ``int64``; nullable ``Int64`` when a count was not recorded (None: inside
    TorchScript, <NA> not 0); ``object`` (Python ints) when a count is beyond int64 (a meta-device plan of a
    huge pass), which int64 would wrap to a negative number."""
    import pandas as pd

    if any(v is not None and not -INT64_MAX - 1 <= v <= INT64_MAX for v in values):
        return pd.array(list(values), dtype=object)
    return pd.array(list(values), dtype="Int64" if dtype == "Int64" or None in values else "int64")


def _wrapped(lines: List[str], width: int) -> List[str]:
    """Lines longer than ``width`` wrapped, continuation lines indented under their text."""
    out = []
    for line in lines:
        if len(line) <= width:
            out.append(line)
            continue
        lead = len(line) - len(line.lstrip(" -"))
        out += textwrap.wrap(line, width, subsequent_indent=" " * (lead + 2), break_on_hyphens=False)
    return out


def _jsonable(value):
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if value is None or isinstance(value, (int, float, str, bool)):
        return value
    return str(value)

