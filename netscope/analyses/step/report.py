"""The training-step report: the forward summary's layer records plus backward cost and memory per call,
totals per rank, rendered by the same column registry and row renderer as ``netscope summary``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Dict, FrozenSet, List, Optional, Sequence, Tuple

from netscope.report import Report
from netscope.render.columns import COLUMNS, csv_text, parse_columns, text_row
from netscope.render.rows import check_depth, check_format, json_document
from netscope.analyses.step.memory import RankMemory
from netscope.units import megabytes, si

STEP_COLUMNS = ("layer", "type", "output", "params", "macs", "bwd_macs", "saved")
STEP_FIGURES = ("backward_macs", "own_backward_macs", "saved_bytes", "own_saved_bytes")


@dataclass(frozen=True)
class StepTotals:
    """One step's figures. Bytes are per rank (rank 0, the largest) under ``fsdp``/``ddp``; ``ranks`` has each."""

    forward_macs: int
    backward_macs: int
    param_bytes: int
    grad_bytes: int
    optimizer_bytes: int
    activation_bytes: int  # tensors saved for backward, each storage once (parameters excluded)
    buffer_bytes: int
    input_bytes: int
    peak_bytes: int  # estimate (see netscope.analyses.step.memory)
    optimizer: str
    precision: str
    layout: str  # "single", "ddp" or "fsdp"
    world_size: int
    ranks: Tuple[RankMemory, ...]
    measured_peak_bytes: Optional[int] = None  # a real CUDA step's torch.cuda.max_memory_allocated
    tensors: str = "fake"  # what the step ran on: "fake" (planned, no memory) or "real" (the forward reads values)
    backward_uncounted: Tuple[str, ...] = ()  # backward operators without a formula: backward_macs is a lower bound
    # forward operators whose saved workspace fake tensors leave unsized: activation_bytes and peak_bytes are lower bounds
    unsized_workspaces: Tuple[str, ...] = ()

    def to_dict(self) -> dict:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "ranks"}
        out["ranks"] = [r.to_dict() for r in self.ranks]
        return out


@dataclass(frozen=True)
class StepReport:
    """What ``netscope.step`` returns. ``forward`` is the forward pass as ``netscope.summary`` reports it
    (from the same fake step); the four per-call lists are indexed like ``forward.layers``."""

    forward: Report
    totals: StepTotals
    backward_macs: List[int]  # the call's and every nested call's
    own_backward_macs: List[int]
    saved_bytes: List[int]
    own_saved_bytes: List[int]
    # calls whose own backward ran an operator without a formula: their figure, and every enclosing call's, is a
    # lower bound (shown ``>=N``)
    partial_own_backward: FrozenSet[int] = frozenset()

    def partial_backward(self) -> FrozenSet[int]:
        """Calls whose backward figure (their own and their nested calls') misses an uncounted operator."""
        found = set()
        layers = self.forward.layers
        for index in self.partial_own_backward:
            while index is not None and index not in found:
                found.add(index)
                index = layers[index].parent
        return frozenset(found)

    @property
    def layers(self):
        return self.forward.layers

    @property
    def run(self):
        return self.forward.run

    def __str__(self) -> str:
        return self.render()

    def render(self, fmt: str = "table", *, columns=None, depth: Optional[int] = None,
               table_style: str = "simple", width: Optional[int] = None) -> str:
        """Text in ``table``, ``markdown``, ``csv`` or ``json``, like ``Report.render``: with the default
        columns, a table wider than ``width`` (default 120) leaves out the type column, and says so."""
        from netscope.report import TEXT_WIDTH

        check_format(fmt, table_style)
        check_depth(depth)
        if fmt == "json":
            return json.dumps(self.to_dict(columns=columns, depth=depth), indent=2)
        keys = list(parse_columns(columns if columns is not None else STEP_COLUMNS, step=True))
        if fmt == "csv":
            return csv_text([c for c in self.layers if depth is None or c.depth <= depth], keys, self._context(),
                            chosen=columns is not None)
        rows = self.rows(keys, depth=depth)
        width = width or TEXT_WIDTH
        body, dropped = self.forward._fit(rows, keys, fmt, table_style, width if columns is None else None)
        if dropped:
            body += ("\n\n" if fmt == "markdown" else "\n") + f"(left out to fit {width} columns: {', '.join(dropped)}; choose with --columns)"
        return body + "\n\n" + self.totals_text(markdown=(fmt == "markdown"), width=width)

    def rows(self, columns: Sequence[str] = STEP_COLUMNS, *, depth: Optional[int] = None) -> List[Dict[str, Any]]:
        """Table cells per call (every call, indented by depth), from the summary's column registry."""
        ctx = self._context()
        out = []
        for call in self.layers:
            if depth is not None and call.depth > depth:
                continue
            row = text_row(call, columns, ctx, short=True)
            if "layer" in row:
                row["layer"] = "  " * call.depth + row["layer"]
            out.append(row)
        return out

    def _context(self) -> Dict[str, Any]:
        """The summary's column context plus the step's per-call figures."""
        return {**self.forward._context(), **{key: getattr(self, key) for key in STEP_FIGURES},
                "partial_backward": self.partial_backward(), "partial_own_backward": self.partial_own_backward}

    def totals_text(self, *, markdown: bool = False, width: Optional[int] = None) -> str:
        from netscope.report import TEXT_WIDTH, _wrapped

        t = self.totals
        per = f" per rank ({t.layout}, {t.world_size} ranks)" if t.layout != "single" else ""
        low = ">=" if t.unsized_workspaces else ""
        lines = [
            f"Forward mult-adds: {si(t.forward_macs)} ({t.forward_macs:,})" + self.forward._partial_text(),
            f"Backward mult-adds: {si(t.backward_macs)} ({t.backward_macs:,})" + (
                f" -- PARTIAL, a lower bound: no multiply-add formula for {', '.join(t.backward_uncounted)} "
                "(register one with netscope.register_macs, or netscope.ignore_macs if it is 0)"
                if t.backward_uncounted else ""),
            f"Memory{per}, {t.optimizer}, {t.precision}:",
            f"  params {megabytes(t.param_bytes)}, grads {megabytes(t.grad_bytes)}, "
            f"optimizer state {megabytes(t.optimizer_bytes)}, saved activations {low}{megabytes(t.activation_bytes)}, "
            f"buffers {megabytes(t.buffer_bytes)}, inputs {megabytes(t.input_bytes)}",
            f"  estimated peak of one step: {low}{megabytes(t.peak_bytes)}" + (
                f" -- a lower bound: {', '.join(t.unsized_workspaces)} saves a workspace fake tensors cannot size"
                if low else ""),
        ]
        if t.layout == "fsdp" and len({(r.param_bytes, r.grad_bytes, r.optimizer_bytes) for r in t.ranks}) > 1:
            lines.append("  ranks differ (dim-0 shards): " + "; ".join(
                f"rank {r.rank}: params {megabytes(r.param_bytes)}, optimizer {megabytes(r.optimizer_bytes)}"
                for r in t.ranks))
        if t.measured_peak_bytes is not None:
            lines.append(f"  measured CUDA peak of a real step: {megabytes(t.measured_peak_bytes)}")
        r = self.run
        lines.append(f"Run: {r.model}, {t.tensors} tensors on {r.device}, one training step, {r.seconds:.2f} s")
        lines += [f"Note: {note}" for note in r.notes]
        lines = _wrapped(lines, width or TEXT_WIDTH)
        return "\n".join(("- " + l if markdown and not l.startswith("  ") else l) for l in lines)

    def to_dict(self, *, columns=None, depth: Optional[int] = None) -> Dict[str, Any]:
        """The summary's JSON layout with the step's totals. No ``columns``: every data column plus the step
        figures per layer; ``columns`` (summary or step keys) and ``depth`` choose fields and rows, as in the
        table."""
        from netscope.render.columns import data_row
        from netscope.report import _jsonable

        check_depth(depth)
        keys = parse_columns(columns, step=True) if columns is not None else None
        data = self.forward.to_dict(depth=depth)
        data.update(json_document("step", {}))  # the summary's layout, with the step's own totals
        data["forward_totals"] = data.pop("totals")
        data["totals"] = self.totals.to_dict()
        if keys is not None:
            ctx = self._context()
            data["columns"] = [COLUMNS[k].name for k in keys]
            data["layers"] = [_jsonable(data_row(call, keys, ctx)) for call in self.layers
                              if depth is None or call.depth <= depth]
        else:
            partial = self.partial_backward()
            for layer in data["layers"]:
                for key in STEP_FIGURES:
                    layer[key] = getattr(self, key)[layer["index"]]
                layer["backward_macs_partial"] = layer["index"] in partial  # backward_macs is then a lower bound
                layer["own_backward_macs_partial"] = layer["index"] in self.partial_own_backward  # own_backward_macs
        data["backward_partial"] = bool(self.totals.backward_uncounted)
        return data

    def to_json(self, **kwargs) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    def to_dataframe(self):
        """pandas DataFrame: the summary's columns plus the backward and saved-activation figures, and
        ``backward_macs_partial`` and ``own_backward_macs_partial`` (as in JSON: that figure is then a lower bound)."""
        from netscope.report import int_column

        frame = self.forward.to_dataframe()
        for key in STEP_FIGURES:
            frame[key] = int_column(getattr(self, key))
        partial = self.partial_backward()
        frame["backward_macs_partial"] = [call.index in partial for call in self.layers]
        frame["own_backward_macs_partial"] = [call.index in self.partial_own_backward for call in self.layers]
        return frame

    def to_html(self) -> str:
        from netscope.render.step_html import step_html

        return step_html(self)

    def __repr__(self) -> str:
        """One headline: ``ResNet · step adamw fp32 · 4.09 G fwd + 8.18 G bwd MACs · peak 2.1 GB``."""
        from netscope.render.headline import short_number

        t = self.totals
        name = self.layers[0].class_name if self.layers else self.run.model
        ranks = f" · per rank of {t.world_size} ({t.layout})" if t.layout != "single" else ""
        bound = ">=" if self.forward.partial else ""
        backward_bound = ">=" if t.backward_uncounted else ""
        return (f"{name} · step {t.optimizer} {t.precision}{ranks} · {bound}{short_number(t.forward_macs)} fwd + "
                f"{backward_bound}{short_number(t.backward_macs)} bwd MACs · peak "
                f"{'>=' if t.unsized_workspaces else ''}{short_number(t.peak_bytes, 'B')}")

    def _repr_html_(self) -> str:
        return self.to_html()
