"""Which module call produced each tensor a call receives: the dataflow edges of one traced pass.

Each tensor a call returns is *claimed* by that call (the latest call to return it: a container returning
its last child's output claims it). An operator that runs in a container's own code (``x + identity``,
``torch.cat``, ``view``) passes on the union of its tensor arguments' producers, so a residual add gives a
value with two producers. Operators inside a leaf module are not followed: the leaf claims its output.
Tensors are held by weak reference only (an id-keyed map checked against a ``weakref``), so nothing is kept
alive. ``MODEL_INPUT`` (-1) stands for the model's own inputs; a tensor made from nothing the pass
recorded (a parameter, ``torch.arange``) has no producer. An operator whose tensor arguments come from
different producers is a *merge* (a residual add, a concat of branches, a gate's multiply), recorded
against the call whose own code ran it. An operator that reads only its arguments' shape, dtype and device
(``new_zeros``, ``zeros_like``) passes on no producer, nor does one that overwrites its first argument with
constants (``fill_``, ``zero_``); ``copy_`` passes on its source's. An in-place write into a view (``out[:, :4] =
a(x)``) adds its producers to the tensor viewed, so a buffer filled slice by slice comes from what was written.
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

    __slots__ = ("made", "stack", "merges", "kinds")

    def __init__(self, stack: list):
        self.made: Dict[int, Tuple[Any, FrozenSet[int]]] = {}  # id(tensor) -> (weakref to it, producers)
        self.stack = stack  # the recorder's open calls (innermost last)
        self.merges: Dict[int, list] = {}  # call index -> [(operator name, producers), ...] in its own code
        self.kinds: Dict[Any, int] = {}  # operator overload -> _READS, _LIKE, _OVERWRITES or _INPLACE

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
        kind = self.kinds.get(func)
        if kind is None:
            kind = self.kinds[func] = _kind(func)
        if kind == _LIKE:
            return  # a new tensor shaped like its argument: none of its values
        found = _NONE
        merged = False
        for position, arg in enumerate(args):
            if position == 0 and kind == _OVERWRITES:
                continue  # its old values are gone
            items = arg if isinstance(arg, (list, tuple)) else (arg,)
            for item in items:
                if isinstance(item, torch.Tensor):
                    got = self._of(item)
                    if got and got != found:
                        merged = merged or bool(found) and not got <= found
                        found = found | got
        if merged:
            self.merges.setdefault(stack[-1].index, []).append((func._overloadpacket.__name__, found))
        if kind != _READS and args and isinstance(args[0], torch.Tensor):
            self._written(args[0], found, kind == _OVERWRITES)
            return
        if not found:
            return
        if isinstance(out, torch.Tensor):
            self._set(out, found)
        elif isinstance(out, (list, tuple)):
            for item in out:
                if isinstance(item, torch.Tensor):
                    self._set(item, found)

    def _written(self, target, found: FrozenSet[int], overwritten: bool) -> None:
        """``target`` was written in place with values from ``found``: it comes from them now (and from its old
        values unless overwritten); the tensor it views holds them beside its other values (a merge when new)."""
        self._set(target, found if overwritten else self._of(target) | found)
        base = target._base
        if base is None or not found:
            return
        before = self._of(base)
        if before and not found <= before:
            self.merges.setdefault(self.stack[-1].index, []).append(("copy_", before | found))
        self._set(base, before | found)


_READS, _LIKE, _OVERWRITES, _INPLACE = 0, 1, 2, 3
# operators whose tensor argument gives only shape, dtype and device; those overwriting their first argument
LIKE = frozenset({"new_zeros", "new_ones", "new_empty", "new_full", "new_empty_strided", "zeros_like", "ones_like",
                  "empty_like", "full_like", "rand_like", "randn_like", "randint_like"})
OVERWRITES = frozenset({"copy_", "fill_", "zero_", "normal_", "uniform_", "random_", "exponential_", "geometric_",
                        "log_normal_", "cauchy_"})


def _kind(func) -> int:
    name = func._overloadpacket.__name__
    if name in LIKE:
        return _LIKE
    if name in OVERWRITES:
        return _OVERWRITES
    arguments = func._schema.arguments
    writes = bool(arguments) and arguments[0].alias_info is not None and arguments[0].alias_info.is_write
    return _INPLACE if writes else _READS


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
