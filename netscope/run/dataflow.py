"""Which module call produced each tensor a call receives: the dataflow edges of one traced pass.

Each tensor a call returns is *claimed* by that call (the latest call to return it: a container returning
its last child's output claims it). An operator that runs in a container's own code (``x + identity``,
``torch.cat``, ``view``) passes on the union of its tensor arguments' producers, so a residual add gives a
value with two producers. Operators inside a leaf module are not followed: the leaf claims its output.
Tensors are held by weak reference only (an id-keyed map checked against a ``weakref``), so nothing is kept
alive. ``MODEL_INPUT`` (-1) stands for the model's own inputs; a tensor made from nothing the pass
recorded (a parameter, ``torch.arange``) has no producer. An operator whose tensor arguments come from
different producers is a *merge* (a residual add, a concat of branches, a gate's multiply), recorded
against the call whose own code ran it.
"""

from __future__ import annotations

import weakref
from typing import Any, Dict, FrozenSet, Optional, Tuple

import torch

from netscope.records import MODEL_INPUT  # noqa: F401  (re-exported: the dataflow's "model input")

NO_SOURCES: FrozenSet[int] = frozenset()
_NONE = NO_SOURCES


class DataflowTracker:
    """Producers of live tensors, filled by the recorder's hooks and an operator observer."""

    __slots__ = ("made", "stack", "merges")

    def __init__(self, stack: list):
        self.made: Dict[int, Tuple[Any, FrozenSet[int]]] = {}  # id(tensor) -> (weakref to it, producers)
        self.stack = stack  # the recorder's open calls (innermost last)
        self.merges: Dict[int, list] = {}  # call index -> [(operator name, producers), ...] in its own code

    def _of(self, tensor) -> FrozenSet[int]:
        entry = self.made.get(id(tensor))
        if entry is not None and entry[0]() is tensor:
            return entry[1]
        return _NONE

    def _set(self, tensor, producers: FrozenSet[int]) -> None:
        try:
            self.made[id(tensor)] = (weakref.ref(tensor), producers)
        except TypeError:  # pragma: no cover - a tensor type without weak references
            pass

    def producers(self, value, before: Optional[int] = None) -> FrozenSet[int]:
        """The producers of every tensor in ``value`` (tensors, lists, tuples, dicts), those below ``before`` only."""
        if type(value) is tuple and len(value) == 1 and isinstance(value[0], torch.Tensor):  # the usual call
            entry = self.made.get(id(value[0]))
            if entry is None or entry[0]() is not value[0]:
                return _NONE
            found = entry[1]
            return found if before is None else frozenset(p for p in found if p < before)
        if isinstance(value, torch.Tensor):
            found = self._of(value)
            return found if before is None or not found else frozenset(p for p in found if p < before)
        found = _NONE
        for tensor in _tensors(value):
            got = self._of(tensor)
            if got:
                found = found | got
        if before is not None and found:
            found = frozenset(p for p in found if p < before)
        return found

    def claim(self, value, producers: FrozenSet[int]) -> None:
        """Every tensor in ``value`` now comes from ``producers`` (a call's index: the call returned it)."""
        if isinstance(value, torch.Tensor):
            self._set(value, producers)
            return
        for tensor in _tensors(value):
            self._set(tensor, producers)

    def observe(self, func, args, kwargs, out) -> None:
        """An operator ran: outside a leaf module, its outputs come from its tensor arguments' producers."""
        stack = self.stack
        if not stack or not stack[-1].module._modules:
            return
        found = _NONE
        merged = False
        for arg in args:
            items = arg if isinstance(arg, (list, tuple)) else (arg,)
            for item in items:
                if isinstance(item, torch.Tensor):
                    got = self._of(item)
                    if got and got != found:
                        merged = merged or bool(found) and not got <= found
                        found = found | got
        if not found:
            return
        if merged:
            self.merges.setdefault(stack[-1].index, []).append((func._overloadpacket.__name__, found))
        if isinstance(out, torch.Tensor):
            self._set(out, found)
        elif isinstance(out, (list, tuple)):
            for item in out:
                if isinstance(item, torch.Tensor):
                    self._set(item, found)


def _tensors(value, depth: int = 0):
    """The tensors inside a call's arguments or output (containers followed a few levels deep)."""
    if isinstance(value, torch.Tensor):
        yield value
    elif depth < 4:
        if isinstance(value, dict):
            value = value.values()
        elif not isinstance(value, (list, tuple)):
            return
        for item in value:
            yield from _tensors(item, depth + 1)


def edge_tuple(producers: FrozenSet[int]) -> Tuple[int, ...]:
    """Producers as a sorted tuple (``MODEL_INPUT`` first), what a ``LayerCall`` stores."""
    return tuple(producers) if len(producers) < 2 else tuple(sorted(producers))
