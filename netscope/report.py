"""The summary report: layer records, totals, run info and findings, with every rendering."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

from netscope.records import Finding, LayerCall, RunInfo, Totals
from netscope.render.columns import COLUMNS, DEFAULT_COLUMNS, parse_columns
from netscope.render.rows import check_format, render_rows
from netscope.shapes import format_shape_tree
from netscope.units import megabytes, si


@dataclass(frozen=True)
class Report:
    """What ``netscope.summary`` returns. ``print(report)`` shows the table and totals."""

    layers: List[LayerCall]
    totals: Totals
    run: RunInfo
    checks: List[Any] = field(default_factory=list)  # netscope.checks.FormulaCheck records
    findings: List[Finding] = field(default_factory=list)  # naming and other findings about the model
    model_output: Any = None
    operators: Any = field(default=None, repr=False)  # netscope.operators.OperatorTable: operator calls and multiply-adds per call

    # ---- rendering -------------------------------------------------------------------------
    def __str__(self) -> str:
        return self.render()

    def render(self, fmt: str = "table", *, columns=None, depth: Optional[int] = None,
               table_style: str = "simple") -> str:
        """Text in ``table`` (tabulate style ``table_style``), ``markdown``, ``csv`` or ``json``."""
        from netscope.guard import paused_gc

        with paused_gc():  # thousands of small row objects: cyclic GC passes over a big heap would dominate
            return self._render(fmt, columns=columns, depth=depth, table_style=table_style)

    def _render(self, fmt: str, *, columns, depth: Optional[int], table_style: str) -> str:
        check_format(fmt, table_style)
        if fmt == "json":
            return json.dumps(self.to_dict(), indent=2)
        keys = list(parse_columns(columns))
        if columns is None and self.checks and "check" not in keys:
            keys.append("check")
        rows = self.rows(keys, depth=depth)
        body = render_rows(rows, keys, fmt, headers={k: COLUMNS[k].title for k in keys},
                           table_style=table_style, numeric=[k for k in keys if COLUMNS[k].numeric])
        if fmt == "csv":
            return body
        return body + "\n\n" + self.totals_text(markdown=(fmt == "markdown"))

    def rows(self, columns: Sequence[str] = DEFAULT_COLUMNS, *, depth: Optional[int] = None) -> List[Dict[str, Any]]:
        ctx = {"check_status": self._check_status(), "partial_macs": self.partial_calls()}
        return [{k: COLUMNS[k].value(call, ctx) for k in columns}
                for call in self.layers if depth is None or call.depth <= depth]

    def _check_status(self) -> Dict[int, str]:
        return {check.call_index: check.compact for check in self.checks}

    def totals_text(self, *, markdown: bool = False) -> str:
        t = self.totals
        lines = [
            f"Total params: {t.total_params:,}"
            + (f" ({t.shared_params:,} in {t.shared_param_tensors} shared tensor(s), counted once)" if t.shared_param_tensors else ""),
            f"Trainable params: {t.trainable_params:,}",
            f"Non-trainable params: {t.non_trainable_params:,}",
        ]
        if t.uncalled_params:
            lines.append(f"Params in modules not called by this pass: {t.uncalled_params:,}")
        lines += [
            f"Total mult-adds: {si(t.total_macs)} ({t.total_macs:,})" + self._partial_text(),
            f"Input size: {megabytes(t.input_bytes)}",
            f"Forward activations (leaf outputs, est.): {megabytes(t.activation_bytes)}",
            f"Params size: {megabytes(t.param_bytes)}; buffers: {megabytes(t.buffer_bytes)} ({t.buffer_elements:,} elements)",
            f"Estimated total size: {megabytes(t.input_bytes + t.activation_bytes + t.param_bytes + t.buffer_bytes)}",
        ]
        if t.peak_memory_bytes is not None:
            lines.append(f"Measured CUDA peak memory of the pass: {megabytes(t.peak_memory_bytes)}")
        r = self.run
        lines.append(f"Run: {r.model} on {r.device}, {r.dtype}, {r.mode} mode, input {format_shape_tree(r.input_shapes)}, {r.seconds:.2f} s")
        if self.findings:
            lines.append(f"Naming findings: {len(self.findings)} (run 'netscope names' for details)")
        warnings = self.check_warnings()
        if warnings:
            lines.append("")
            lines.append(f"Formula checks: {len(warnings)} finding(s)")
            lines += [f"  - {w}" for w in warnings]
        return "\n".join(("- " + l if markdown and l and not l.startswith("  ") else l) for l in lines)

    # ---- operator accounting ---------------------------------------------------------------
    @property
    def partial(self) -> bool:
        """True when an operator without a multiply-add formula ran: mult-add totals are lower bounds."""
        return self.operators is not None and self.operators.partial

    def uncounted_ops(self) -> List[Any]:
        """``netscope.operators.UncountedOp`` records: operators without a formula, calls, layers."""
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
        return frame.astype({"calls": "int64", "macs": "int64"})

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
        if fmt == "json":
            return json.dumps(self.operators_dict(), indent=2)
        titles = {"op": "Operator", "kind": "Counted", "calls": "Calls", "macs": "Mult-adds", "layer": "Layer"}
        body = render_rows(total, keys, fmt, headers=titles, table_style=table_style, numeric=["calls", "macs"])
        per_layer = [dict(layer=c.display_name, **use.to_dict()) for c in self.layers if self.operators
                     for use in self.operators.call_ops(c.index)]
        if fmt == "csv":
            return render_rows(per_layer, ["layer"] + keys, fmt)
        per = render_rows(per_layer, ["layer"] + keys, fmt, headers=titles, table_style=table_style,
                          numeric=["calls", "macs"])
        partial = self._partial_text().removeprefix(" -- ")
        return (body + "\n\nPer module call (operators it ran itself):\n" + per
                + (f"\n\nTotal mult-adds are {partial}" if partial else ""))

    def check_warnings(self) -> List[str]:
        """One line per formula mismatch (each check carries it as an error finding) and per warning;
        informational notes are left to ``netscope check``."""
        from netscope.checks import check_findings

        return [f"{finding.layer}: {finding.message}" for finding in check_findings(self.checks, include_info=False)]

    # ---- data ------------------------------------------------------------------------------
    def to_dict(self) -> Dict[str, Any]:
        """A JSON-able dict: run, totals, one entry per layer call, checks and findings."""
        return {
            "run": _jsonable(self.run.to_dict()),
            "totals": self.totals.to_dict(),
            "layers": [_layer_dict(c) for c in self.layers],
            "checks": [_jsonable(c.to_dict()) if hasattr(c, "to_dict") else str(c) for c in self.checks],
            "findings": [f.to_dict() for f in self.findings],
            "output": _jsonable(self.model_output),
            "partial": self.partial,
            "operators": self.operators_dict(),
        }

    def to_json(self, **kwargs) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    def to_dataframe(self):
        """pandas DataFrame, one row per module call; counts are integer columns."""
        import pandas as pd

        records = []
        status = self._check_status()
        for c in self.layers:
            records.append({
                "index": c.index, "name": c.name, "type": c.class_name, "depth": c.depth,
                "parent": c.parent, "call_number": c.call_number,
                "input_shape": format_shape_tree(c.input_shapes), "output_shape": format_shape_tree(c.output_shapes),
                "own_params": c.own_params, "params": c.subtree_params, "trainable": c.trainable,
                "own_macs": c.own_macs, "macs": c.macs, "output_bytes": c.output_bytes, "is_leaf": c.is_leaf,
                "kernel_size": _plain(c.hyperparams.get("kernel_size")), "stride": _plain(c.hyperparams.get("stride")),
                "padding": _plain(c.hyperparams.get("padding")), "dilation": _plain(c.hyperparams.get("dilation")),
                "check": status.get(c.index),
            })
        frame = pd.DataFrame.from_records(records)
        if not frame.empty:
            frame = frame.astype({"index": "int64", "depth": "int64", "call_number": "int64", "own_params": "int64",
                                  "params": "int64", "own_macs": "int64", "macs": "int64", "output_bytes": "int64",
                                  "parent": "Int64"})
        return frame

    def to_html(self) -> str:
        """A self-contained HTML page: collapsible tree, shape flow, bar charts, search."""
        from netscope.render.html import report_html

        return report_html(self)

    def _repr_html_(self) -> str:
        """Jupyter's view: a compact, script-free version of :meth:`to_html`."""
        from netscope.render.html import notebook_html

        return notebook_html(self)


def _plain(value):
    if isinstance(value, tuple):
        return "x".join(str(v) for v in value)
    return None if value is None else str(value)


def _layer_dict(c: LayerCall) -> Dict[str, Any]:
    return _jsonable({
        "index": c.index, "name": c.name, "type": c.class_name, "depth": c.depth, "parent": c.parent,
        "call_number": c.call_number, "input_shapes": c.input_shapes, "output_shapes": c.output_shapes,
        "own_params": c.own_params, "params": c.subtree_params, "trainable": c.trainable,
        "own_macs": c.own_macs, "macs": c.macs, "output_bytes": c.output_bytes, "is_leaf": c.is_leaf,
        "hyperparams": dict(c.hyperparams),
    })


def _jsonable(value):
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if value is None or isinstance(value, (int, float, str, bool)):
        return value
    return str(value)

