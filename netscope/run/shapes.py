"""Shape trees: a module's inputs and outputs with every tensor replaced by its shape."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import torch

MAX_ITEMS = 64  # longer containers are cut, with a marker, so a report never explodes


def nested_shapes(value: torch.Tensor) -> dict:
    """A nested tensor (``torch.nested``, also what ``nn.TransformerEncoder`` makes of a padding mask) as
    ``{"nested": [shape of each component]}``: its own ``.shape`` raises (strided layout) or holds a ragged
    symbol (jagged layout). Read with dispatch modes off, so the trace's operator count does not see it."""
    from torch.utils._python_dispatch import _disable_current_modes

    with _disable_current_modes():
        return {"nested": [component.shape for component in value.unbind()]}


def shape_tree(value: Any):
    """Tensor -> tuple of ints; list/tuple -> list; dict, namedtuple, dataclass, ModelOutput -> dict; else a type name.
    A nested tensor -> ``{"nested": [its components' shapes]}``."""
    if type(value) is torch.Size:  # what a trace keeps of a tensor (shapes_only): the usual leaf, tested first
        return tuple(value)
    if isinstance(value, torch.Tensor):
        return shape_tree(nested_shapes(value)) if value.is_nested else tuple(value.shape)
    if isinstance(value, torch.Size):  # a tensor already reduced to its shape by shapes_only
        return tuple(value)
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return {f: shape_tree(getattr(value, f)) for f in value._fields}
    if isinstance(value, (list, tuple)):
        items = [shape_tree(v) for v in value[:MAX_ITEMS]]
        if len(value) > MAX_ITEMS:
            items.append(f"... {len(value) - MAX_ITEMS} more")
        return items
    if isinstance(value, Mapping):
        return {str(k): shape_tree(v) for k, v in list(value.items())[:MAX_ITEMS]}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: shape_tree(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if value is None:
        return "None"
    return type(value).__name__


def shapes_only(value: Any):
    """Like the value, with tensors replaced by ``torch.Size`` and every other leaf kept as it is.

    A namedtuple becomes a dict of its fields (what :func:`shape_tree` makes of it anyway): rebuilding the
    namedtuple would run its constructor on sizes, which e.g. ``PackedSequence``'s rejects. A nested tensor
    becomes :func:`nested_shapes`'s dict."""
    if isinstance(value, torch.Tensor):
        return nested_shapes(value) if value.is_nested else value.shape
    if type(value) is tuple:  # positional arguments: a module call's usual container, built without a generator
        return tuple([v.shape if isinstance(v, torch.Tensor) and not v.is_nested else shapes_only(v) for v in value])
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return {f: shapes_only(getattr(value, f)) for f in value._fields}
    if isinstance(value, (list, tuple)):
        return type(value)(shapes_only(v) for v in value) if type(value) in (list, tuple) else [shapes_only(v) for v in value]
    if isinstance(value, Mapping):
        return {k: shapes_only(v) for k, v in value.items()}
    return value


def stored_bytes(tensor: torch.Tensor) -> int:
    """Bytes a tensor holds (a parameter, buffer, input or activation): elements x element size, or for a sparse
    layout its stored values and indices (a sparse tensor's ``numel()`` is its dense size: 10^10 for a 100k-node
    adjacency holding 10^6 edges). The parts are read with dispatch modes off, so a trace does not count them."""
    layout = tensor.layout
    if layout is torch.strided:
        return tensor.numel() * tensor.element_size()
    if layout not in _SPARSE_PARTS:  # a jagged nested tensor, mkldnn: their elements are stored as counted
        return tensor.numel() * tensor.element_size()
    from torch.utils._python_dispatch import _disable_current_modes

    with _disable_current_modes():
        parts = _SPARSE_PARTS[layout](tensor)
    return sum(part.numel() * part.element_size() for part in parts)


# per sparse layout, the tensors it stores: values and indices
_SPARSE_PARTS = {
    torch.sparse_coo: lambda t: (t._values(), t._indices()),
    torch.sparse_csr: lambda t: (t.values(), t.crow_indices(), t.col_indices()),
    torch.sparse_bsr: lambda t: (t.values(), t.crow_indices(), t.col_indices()),
    torch.sparse_csc: lambda t: (t.values(), t.ccol_indices(), t.row_indices()),
    torch.sparse_bsc: lambda t: (t.values(), t.ccol_indices(), t.row_indices()),
}


def tensor_bytes(value: Any) -> int:
    """Bytes of every distinct tensor inside a nested value (:func:`stored_bytes` of each): in lists, tuples, dicts
    and dataclasses, and in the attributes of other objects that hold tensors (a KV cache passed in or returned:
    :func:`netscope.run.user_inputs.tensors_inside`)."""
    if isinstance(value, torch.Tensor):  # a module's usual output
        return stored_bytes(value)
    seen = set()
    total = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, torch.Tensor):
            if id(item) not in seen:
                seen.add(id(item))
                total += stored_bytes(item)
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
        elif isinstance(item, Mapping):
            stack.extend(item.values())
        elif dataclasses.is_dataclass(item) and not isinstance(item, type):
            stack.extend(getattr(item, f.name) for f in dataclasses.fields(item))
        elif hasattr(item, "__dict__"):
            from netscope.run.user_inputs import tensors_inside

            held: dict = {}
            tensors_inside(item, held)
            stack.extend(held.values())
    return total


def format_shape_tree(tree) -> str:
    """Readable text: ``[1, 64, 56, 56]``; ``([1, 10], [1, 5])``; ``{logits: [1, 2], hidden: [1, 8, 4]}``."""
    if isinstance(tree, tuple):
        return "[" + ", ".join(str(d) for d in tree) + "]"
    if isinstance(tree, list):
        if len(tree) == 1:
            return format_shape_tree(tree[0])
        return "(" + ", ".join(format_shape_tree(t) for t in tree) + ")"
    if isinstance(tree, dict) and tree.keys() == {"nested"}:  # nested_shapes: one tensor, its components' shapes
        return "nested(" + ", ".join(format_shape_tree(t) for t in tree["nested"]) + ")"
    if isinstance(tree, dict):  # keyword arguments left at None carry nothing to see: leave them out
        return "{" + ", ".join(f"{k}: {format_shape_tree(v)}" for k, v in tree.items() if v != "None") + "}"
    return str(tree)
