"""The per-call columns, in one registry: table, markdown, CSV, JSON, DataFrame and the HTML page all read it.

Each column gives a *typed* value (what JSON and the DataFrame carry: ints, shape tuples, a nullable
boolean) and the *text* a table cell shows. Adding a column is one ``Column`` entry below.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

from netscope.errors import UsageError
from netscope.records import NOT_RECORDED, LayerCall
from netscope.registry import Registry
from netscope.run.shapes import format_shape_tree
from netscope.units import si


def _text(call: LayerCall, value: Any, ctx=None) -> str:
    if value is None:
        return ""
    if type(value) is int:
        return f"{value:,}"
    if type(value) is bool:
        return "yes" if value else "no"
    return str(value)


@dataclass(frozen=True)
class Column:
    """One column. ``field`` names it in JSON and the DataFrame; ``dtype`` is its pandas dtype."""

    key: str  # what --columns takes
    title: str  # the table header
    value: Callable[[LayerCall, Mapping[str, Any]], Any]  # (call, context) -> typed value
    dtype: str = "object"
    text: Callable[..., str] = _text  # (call, value, context) -> cell
    numeric: bool = False  # right-aligned in tables
    field: str = ""  # defaults to ``key``
    data: bool = True  # part of JSON / DataFrame when no columns are chosen
    short: Optional[Callable[..., str]] = None  # a tighter cell for table/markdown (CSV keeps ``text``)
    lower_bound: str = ""  # a mult-add count: the context key of the calls where it is a lower bound (``>=N``)
    step_only: bool = False  # a figure of ``netscope step`` (backward pass): refused by summary

    @property
    def name(self) -> str:
        return self.field or self.key


def tuples(tree):
    """A shape tree with every list turned into a tuple (hashable, as a DataFrame cell should be)."""
    if isinstance(tree, list):
        return tuple(tuples(t) for t in tree)
    if isinstance(tree, dict):
        return {k: tuples(v) for k, v in tree.items()}
    return tree


def _shape_text(call: LayerCall, tree, ctx=None) -> str:
    if not tree and call.output_shapes == NOT_RECORDED:  # inputs of a layer inside TorchScript
        return NOT_RECORDED
    return format_shape_tree(tree)


SHORT_SHAPE = 18  # characters; a longer shape cell in a table shows its first tensor and a count of the rest


def _short_shape_text(call: LayerCall, tree, ctx=None) -> str:
    text = _shape_text(call, tree)
    if len(text) <= SHORT_SHAPE:
        return text
    tensors = _tensor_shapes(tree)
    if not tensors:
        return text[:SHORT_SHAPE - 1] + "…"
    first = format_shape_tree(tensors[0])
    return f"{first} +{len(tensors) - 1}" if len(tensors) > 1 else first  # "+2": two more tensors


def _tensor_shapes(tree) -> list:
    if isinstance(tree, tuple) and all(isinstance(d, int) for d in tree) or isinstance(tree, dict) and tree.keys() == {"nested"}:
        return [tree]  # a tensor's shape, or a nested tensor's (run.shapes.nested_shapes): one tensor
    items = tree.values() if isinstance(tree, dict) else tree if isinstance(tree, (list, tuple)) else ()
    return [shape for item in items for shape in _tensor_shapes(item)]


def _params_text(call: LayerCall, value: int, ctx=None) -> str:
    return "(shared)" if call.is_repeat and value else f"{value:,}"


def _trainable(call: LayerCall, ctx) -> Optional[bool]:
    """True or False when every parameter of the subtree agrees; None when it holds none or is mixed."""
    return {"yes": True, "no": False}.get(call.trainable)


def _trainable_text(call: LayerCall, value, ctx=None) -> str:
    return call.trainable  # "yes", "no", "partial" or ""


def _hyper(key: str):
    return lambda call, ctx: call.hyperparams.get(key)


def _hyper_text(call: LayerCall, value, ctx=None) -> str:
    if value is None:
        return ""
    return "x".join(str(v) for v in value) if isinstance(value, tuple) else str(value)


def relative_name(name: str, parent_name: str) -> str:
    """The name's last part when it extends the enclosing call's name (a tree shows the rest), else the full name."""
    if parent_name and name.startswith(parent_name + "."):
        return name[len(parent_name) + 1:]
    return name


def _tree_label(call: LayerCall, value, ctx=None) -> str:
    """``conv1`` under ``layer1.0`` (the tree gives the prefix); the root is ``(root)``."""
    names = (ctx or {}).get("names")
    if names is None or call.parent is None:
        return value
    text = relative_name(call.name, names[call.parent]) or value
    return f"{text} (call {call.call_number})" if call.is_repeat else text


def _check(call: LayerCall, ctx) -> Optional[str]:
    """The compact status of the call's formula check (``ctx["checks"]``: call index -> check), or None."""
    check = ctx.get("checks", {}).get(call.index)
    return None if check is None else check.compact


def _step(key):
    """A training-step figure of the call (``netscope step``): ``ctx[key]`` is indexed like the calls."""
    return lambda call, ctx: ctx[key][call.index] if key in ctx else None


def _field(part):
    def value(call: LayerCall, ctx):
        from netscope.analyses.receptive_field import field_text

        return field_text(call.receptive_field, part)

    return value


def _field_full_text(call: LayerCall, value, ctx=None) -> str:
    """``7x7, jump 2x2, first centre 0x0`` (JSON's size, jump and start; ``<=`` before an enclosing bound's
    size), ``whole``, ``?`` or empty."""
    from netscope.analyses.receptive_field import field_text

    size = field_text(call.receptive_field, "size")
    if not isinstance(value, dict):
        return size
    return f"{size}, jump {field_text(call.receptive_field, 'jump')}, first centre {field_text(call.receptive_field, 'start')}"


def field_dict(call: LayerCall, ctx=None):
    """The call's receptive field as JSON: a dict (size, jump, start per axis; exact), ``"whole input"`` or None."""
    value = call.receptive_field
    return value.to_dict() if hasattr(value, "to_dict") else value


def _sources_text(call: LayerCall, value, ctx=None) -> str:
    """Producer call indexes (``netscope.run.dataflow``): ``input, 4`` (-1 is the model's input)."""
    return ", ".join("input" if p < 0 else str(p) for p in value)


def _merges_text(call: LayerCall, value, ctx=None) -> str:
    return "; ".join(f"{op}({_sources_text(call, sources)})" for op, sources in value)


def _si_text(call: LayerCall, value, ctx=None) -> str:
    return "" if value is None else si(value)


def _recorded(field: str):
    """A count the pass recorded; None (JSON null, DataFrame <NA>, "(not recorded)" in text) for a layer inside
    a TorchScript module, whose code runs without hooks: its count is in the module's row, not a 0 here."""
    def value(call: LayerCall, ctx=None):
        return None if call.output_shapes == NOT_RECORDED else getattr(call, field)

    return value


def _or_not_recorded(text):
    def draw(call: LayerCall, value, ctx=None) -> str:
        return NOT_RECORDED if value is None and call.output_shapes == NOT_RECORDED else text(call, value, ctx)

    return draw


def _misses_ops(call: LayerCall, ctx, key: str = "partial_macs") -> bool:
    """Whether the call's mult-adds miss an uncounted operator: one that ran in it or below (``partial_macs``),
    or in the call itself (``partial_own_macs``). Then the count is a lower bound."""
    return call.index in (ctx or {}).get(key, ())


def _partial(text, key: str):
    """Mult-adds text; a row that misses an uncounted operator shows its count as a lower bound, ``>=N``."""
    def draw(call: LayerCall, value, ctx=None) -> str:
        cell = text(call, value, ctx)
        return f">={cell}" if cell and _misses_ops(call, ctx, key) else cell

    return draw


_COLUMN_LIST: Tuple[Column, ...] = (
    Column("layer", "Layer", lambda c, ctx: c.display_name, "string", data=False, short=_tree_label),  # a tree
    Column("index", "Index", lambda c, ctx: c.index, "int64", numeric=True),
    Column("name", "Name", lambda c, ctx: c.name, "string"),
    Column("type", "Type", lambda c, ctx: c.class_name, "string"),
    Column("depth", "Depth", lambda c, ctx: c.depth, "int64", numeric=True),
    Column("parent", "Parent", lambda c, ctx: c.parent, "Int64", numeric=True),
    Column("call_number", "Call", lambda c, ctx: c.call_number, "int64", numeric=True),
    Column("input", "Input shape", lambda c, ctx: c.input_shapes, text=_shape_text, field="input_shapes",
           short=_short_shape_text),
    Column("output", "Output shape", lambda c, ctx: c.output_shapes, text=_shape_text,
           field="output_shapes", short=_short_shape_text),
    Column("params", "Params", lambda c, ctx: c.subtree_params, "int64", text=_params_text, numeric=True),
    Column("own_params", "Own params", lambda c, ctx: c.own_params, "int64", numeric=True),
    Column("trainable", "Trainable", _trainable, "boolean", text=_trainable_text),
    Column("trainable_partial", "Partly trainable", lambda c, ctx: c.trainable == "partial", "bool"),
    Column("macs", "Mult-adds", _recorded("macs"), "int64",
           text=_or_not_recorded(_partial(_si_text, "partial_macs")), numeric=True, lower_bound="partial_macs"),
    Column("own_macs", "Own mult-adds", _recorded("own_macs"), "int64",
           text=_or_not_recorded(_partial(_text, "partial_own_macs")), numeric=True, lower_bound="partial_own_macs"),
    Column("macs_partial", "Partial mult-adds", _misses_ops, "bool"),  # macs is a lower bound on this row
    Column("own_macs_partial", "Partial own mult-adds", lambda c, ctx: _misses_ops(c, ctx, "partial_own_macs"),
           "bool"),  # own_macs is a lower bound: the uncounted operator ran in this call itself
    Column("output_bytes", "Output bytes", _recorded("output_bytes"), "int64", text=_or_not_recorded(_text),
           numeric=True),
    Column("is_leaf", "Leaf", lambda c, ctx: c.is_leaf, "bool"),
    Column("kernel", "Kernel", _hyper("kernel_size"), text=_hyper_text, field="kernel_size"),
    Column("stride", "Stride", _hyper("stride"), text=_hyper_text),
    Column("padding", "Padding", _hyper("padding"), text=_hyper_text),
    Column("dilation", "Dilation", _hyper("dilation"), text=_hyper_text),
    Column("groups", "Groups", _hyper("groups"), "Int64", text=_hyper_text, numeric=True),
    Column("output_padding", "Output padding", _hyper("output_padding"), text=_hyper_text),
    Column("check", "Check", _check, "string"),
    # receptive field on the model input, per spatial axis (tracked when asked for)
    Column("rf", "Receptive field", _field("size"), "string", data=False),
    Column("jump", "Jump", _field("jump"), "string", data=False),  # input positions between neighbouring outputs
    Column("receptive_field", "Receptive field (exact)", field_dict, text=_field_full_text),
    # dataflow: the calls whose outputs this call received (-1: the model input), the merges in its own code
    Column("inputs_from", "Inputs from", lambda c, ctx: c.inputs_from, text=_sources_text),
    Column("merges", "Merges", lambda c, ctx: c.merges, text=_merges_text),
    # netscope step's figures (``ctx`` carries them); not part of summary's JSON/DataFrame
    Column("bwd_macs", "Backward mult-adds", _step("backward_macs"), "Int64", text=_partial(_si_text, "partial_backward"),
           numeric=True, data=False, step_only=True, lower_bound="partial_backward"),
    Column("own_bwd_macs", "Own backward mult-adds", _step("own_backward_macs"), "Int64",
           text=_partial(_text, "partial_own_backward"), numeric=True, data=False, step_only=True,
           lower_bound="partial_own_backward"),
    Column("saved", "Saved for backward (B)", _step("saved_bytes"), "Int64", numeric=True, data=False, step_only=True),
    Column("own_saved", "Own saved (B)", _step("own_saved_bytes"), "Int64", numeric=True, data=False, step_only=True),
)


COLUMNS: Registry[str, Column] = Registry("column")
for _column in _COLUMN_LIST:
    COLUMNS.add(_column.key, _column)
DEFAULT_COLUMNS = ("layer", "type", "input", "output", "params", "macs")
DATA_COLUMNS = tuple(k for k, c in COLUMNS.items() if c.data)  # JSON and DataFrame, when none are chosen
ALL = "all"


def parse_columns(spec, *, default: Sequence[str] = DEFAULT_COLUMNS, step: bool = False) -> Sequence[str]:
    """``"layer,output,params"``, ``"all"`` or a list -> validated column keys. ``step``: for ``netscope step``,
    whose backward-pass columns a summary (forward only) refuses instead of showing them empty."""
    if spec is None:
        return tuple(default)
    offered = [k for k, column in COLUMNS.items() if step or not column.step_only]
    keys = chosen_columns(spec, offered, known=COLUMNS, example="layer,output,params,macs")
    backward = [k for k in keys if k not in offered]
    if backward:
        raise UsageError(
            f"column(s) {', '.join(backward)} hold figures of a training step (the backward pass), which a summary "
            "does not run; use netscope step (netscope.step() in Python) for them")
    return tuple(keys)


def chosen_columns(spec, offered: Sequence[str], *, known=None, example: str) -> Tuple[str, ...]:
    """``"a,b"``, ``"all"`` or a list -> the keys, each one of ``known`` (default: ``offered``, what ``all``
    gives); an unknown or empty choice is refused naming what is offered. The one parser of every table's
    ``--columns`` (``example``: a choice to show in the refusal)."""
    keys = [k.strip() for k in (spec.split(",") if isinstance(spec, str) else spec) if k.strip()]
    if keys == [ALL]:
        return tuple(offered)
    unknown = [k for k in keys if k not in (offered if known is None else known)]
    if unknown or not keys:
        raise UsageError(
            f"unknown column(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(offered)} or 'all' "
            f"(comma-separated, e.g. --columns {example})"
        )
    return tuple(keys)


def data_row(call: LayerCall, keys: Sequence[str], ctx: Mapping[str, Any]) -> Dict[str, Any]:
    """Typed values, keyed by each column's field name (JSON and DataFrame)."""
    return {COLUMNS[k].name: COLUMNS[k].value(call, ctx) for k in keys}


def csv_row(call: LayerCall, keys: Sequence[str], ctx: Mapping[str, Any]) -> Dict[str, Any]:
    """CSV cells, keyed by each column's JSON name: numbers as plain digits (no separators, no SI prefixes; ``>=``
    before a lower bound, as in the table), booleans as they are (``render_rows`` writes JSON's ``true``/``false``),
    a boolean JSON leaves null as an empty cell, everything else as its full text."""
    out: Dict[str, Any] = {}
    for k in keys:
        column = COLUMNS[k]
        value = column.value(call, ctx)
        kind = type(value)
        if kind is int:
            out[column.name] = (">=" if column.lower_bound and _misses_ops(call, ctx, column.lower_bound) else "") + str(value)
        elif kind is bool or value is None and column.dtype in ("bool", "boolean"):
            out[column.name] = value
        else:
            out[column.name] = column.text(call, value, ctx)
    return out


def csv_text(calls, keys: Sequence[str], ctx: Mapping[str, Any], *, chosen: bool) -> str:
    """The CSV of ``calls``: one row per call, a header of JSON's names for the columns. Without columns ``chosen``,
    the calls are named as JSON names them (``name``: the root's is empty), not by the table's ``layer``."""
    from netscope.render.rows import render_rows

    keys = list(keys) if chosen else ["name" if k == "layer" else k for k in keys]
    rows = [csv_row(call, keys, ctx) for call in calls]
    return render_rows(rows, [COLUMNS[k].name for k in keys], "csv")


def text_row(call: LayerCall, keys: Sequence[str], ctx: Mapping[str, Any], *, short: bool = False) -> Dict[str, str]:
    """Cells, keyed by column key: ``short`` for a table or markdown, full text for CSV."""
    out = {}
    for k in keys:
        column = COLUMNS[k]
        draw = column.short if short and column.short is not None else column.text
        out[k] = draw(call, column.value(call, ctx), ctx)
    return out
