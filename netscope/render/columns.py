"""The summary table's columns, in one registry: key -> title, how to read a call, numeric or not."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Sequence

from netscope.errors import UsageError
from netscope.records import LayerCall
from netscope.shapes import format_shape_tree


@dataclass(frozen=True)
class Column:
    title: str
    value: Callable[[LayerCall, Mapping[str, Any]], Any]  # (call, context) -> cell value
    numeric: bool = False


def _tree_name(call: LayerCall, ctx) -> str:
    return "  " * call.depth + call.display_name


def _params(call: LayerCall, ctx):
    return "(shared)" if call.is_repeat and call.subtree_params else call.subtree_params


def _hyper(key):
    return lambda call, ctx: _fmt_hyper(call.hyperparams.get(key))


def _fmt_hyper(value):
    if value is None:
        return None
    if isinstance(value, tuple):
        return "x".join(str(v) for v in value)
    return str(value)


def _macs(key):
    """Mult-adds; a row that misses an uncounted operator shows its lower bound as ``>=N``."""
    def value(call: LayerCall, ctx):
        number = getattr(call, key)
        return f">={number:,}" if call.index in ctx.get("partial_macs", ()) else number

    return value


def _check(call: LayerCall, ctx):
    return ctx.get("check_status", {}).get(call.index)


COLUMNS: Dict[str, Column] = {
    "layer": Column("Layer", _tree_name),
    "name": Column("Name", lambda c, ctx: c.name),
    "type": Column("Type", lambda c, ctx: c.class_name),
    "depth": Column("Depth", lambda c, ctx: c.depth, numeric=True),
    "input": Column("Input shape", lambda c, ctx: format_shape_tree(c.input_shapes)),
    "output": Column("Output shape", lambda c, ctx: format_shape_tree(c.output_shapes)),
    "params": Column("Params", _params, numeric=True),
    "own_params": Column("Own params", lambda c, ctx: c.own_params, numeric=True),
    "trainable": Column("Trainable", lambda c, ctx: c.trainable),
    "macs": Column("Mult-adds", _macs("macs"), numeric=True),
    "own_macs": Column("Own mult-adds", _macs("own_macs"), numeric=True),
    "kernel": Column("Kernel", _hyper("kernel_size")),
    "stride": Column("Stride", _hyper("stride")),
    "padding": Column("Padding", _hyper("padding")),
    "dilation": Column("Dilation", _hyper("dilation")),
    "check": Column("Check", _check),
}

DEFAULT_COLUMNS = ("layer", "type", "input", "output", "params", "macs")


def parse_columns(spec) -> Sequence[str]:
    """``"layer,output,params"`` or a list -> validated column keys."""
    if spec is None:
        return DEFAULT_COLUMNS
    keys = [k.strip() for k in (spec.split(",") if isinstance(spec, str) else spec) if k.strip()]
    unknown = [k for k in keys if k not in COLUMNS]
    if unknown or not keys:
        raise UsageError(
            f"unknown column(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(COLUMNS)} "
            "(comma-separated, e.g. --columns layer,output,params,macs)"
        )
    return keys
