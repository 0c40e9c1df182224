"""The user's ``input_data`` as a pass receives it: containers rebuilt, and objects holding tensors (a KV cache)
copied with their tensors replaced or shared, so a forward that appends to a cache leaves the user's as given."""

from __future__ import annotations

import copy
from typing import Any, Callable, List, Tuple

import torch
import torch.nn as nn

# values passed as they are: immutable ones, and objects whose copy would not be the user's (a module)
KEPT_AS_GIVEN = (str, bytes, int, float, complex, bool, type(None), type, nn.Module)


def own_inputs(inputs: Tuple[tuple, dict], replace: Callable[[str, torch.Tensor], torch.Tensor]
               ) -> Tuple[tuple, dict, List[str]]:
    """``(args, kwargs, refused)``: ``inputs`` with every tensor ``t`` at input ``label`` (``args[0]``,
    ``kwargs['past_key_values']``) turned into ``replace(label, t)``; pytree containers are rebuilt and other
    objects holding tensors deep-copied around them. ``refused``: the labels of objects that refused a copy
    (passed as given)."""
    pytree = torch.utils._pytree
    args, kwargs = inputs
    leaves, structure = pytree.tree_flatten_with_path((tuple(args), dict(kwargs)))
    out: List[Any] = []
    refused: List[str] = []
    for path, leaf in leaves:
        label = _label(path)
        if isinstance(leaf, torch.Tensor):
            leaf = replace(label, leaf)
        elif not isinstance(leaf, KEPT_AS_GIVEN):
            found: dict = {}
            tensors_inside(leaf, found)
            if found:
                try:
                    leaf = copy.deepcopy(leaf, {key: replace(f"a tensor in {label}", tensor)
                                                for key, tensor in found.items()})
                except Exception:  # an object that refuses a copy: passed as given
                    refused.append(f"{label} ({type(leaf).__name__})")
        out.append(leaf)
    new_args, new_kwargs = pytree.tree_unflatten(out, structure)
    return new_args, new_kwargs, refused


def tensors_inside(value, found: dict, depth: int = 0) -> None:
    """``id -> tensor`` of the tensors ``value`` holds in its attributes, lists, tuples and dicts (a few levels)."""
    if isinstance(value, torch.Tensor):
        found[id(value)] = value
        return
    if depth >= 6 or isinstance(value, KEPT_AS_GIVEN):
        return
    if isinstance(value, dict):
        items = list(value.values())
    elif isinstance(value, (list, tuple, set, frozenset)):
        items = list(value)
    else:
        state = getattr(value, "__dict__", None)
        if not isinstance(state, dict):
            return
        items = list(state.values())
    for item in items:
        tensors_inside(item, found, depth + 1)


def _label(path) -> str:
    """``args[0]``, ``kwargs['past_key_values']``: where a leaf sits in (args, kwargs)."""
    text = torch.utils._pytree.keystr(path)  # "[0][1]", "[1]['past_key_values']"
    return ("args" + text[3:]) if text.startswith("[0]") else ("kwargs" + text[3:])
