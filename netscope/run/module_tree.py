"""One walk of a model's module tree, shared by every step of a summary that needs it (placement, the
model-state guard, the trace, the parameter table, totals, owners and the naming audit) instead of each
walking the model again: on a 12,000-module model each walk costs about a millisecond per thousand modules."""

from __future__ import annotations

import functools
import itertools
import operator
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Dict, Optional, Tuple

import torch
import torch.nn as nn


# What a module's ``__dict__`` holds: torch's bookkeeping every module has (tables, hooks, ``training``), the
# prefix of the classes torch.nn itself defines, and the plain values a configuration attribute may hold.
TORCH_INTERNAL = frozenset(vars(nn.Module()))
STOCK_PREFIX = "torch.nn.modules."
SCALARS = (int, float, bool, str, type(None))


def is_plain_value(value) -> bool:
    """A scalar, or a tuple of them (nested too): a value compared and hashed by value."""
    return type(value) in SCALARS or (type(value) is tuple and all(map(is_plain_value, value)))


_HOOK_TABLES = ("_forward_pre_hooks", "_forward_hooks", "_backward_pre_hooks", "_backward_hooks")


def behaviour_key(module: nn.Module, classes: Dict[type, Any]):
    """What two modules of one class may differ in beyond their tensors' shapes, hashable (None: nothing): a
    ``torch.nn`` layer's training flag and configuration attributes (``p``, ``approximate``, ``dilation``, an
    ``activation`` function; an unhashable value by its type's name), and the module's own hooks (each table's
    callables by name). A class of the user's own is compared by its children and
    tensors only: its attributes may count calls (``layer_idx``) without changing what a call computes.
    ``classes``: the pass's memo, class -> its first instance's attribute names (read at once from the next)."""
    state = module.__dict__
    config = None
    cls = type(module)
    names = classes.get(cls)
    if names is None:
        names = classes[cls] = _config_names(state) if cls.__module__.startswith(STOCK_PREFIX) else False
    if names:
        values = None
        if len(state) == names[0]:
            try:
                values = names[2](state)
            except KeyError:
                pass
        if values is None:  # an instance with other attributes than its class's first one
            names = _config_names(state)
            values = names[2](state)
        try:  # values compared as they are (an object without value equality only ever equals itself)
            hash(values)
        except TypeError:  # a list, a dict: by what it is
            values = tuple(map(_described, values))
        config = (names[1], values)
    hooks = None
    if (state.get("_forward_pre_hooks") or state.get("_forward_hooks") or state.get("_backward_pre_hooks")
            or state.get("_backward_hooks")):
        hooks = tuple((table, tuple(_described(hook) for hook in state[table].values()))
                      for table in _HOOK_TABLES if state.get(table))
    return None if config is None and hooks is None else (config, hooks)


def _config_names(state: dict) -> tuple:
    """(size of ``__dict__``, the names of the training flag and every configuration attribute, their reader)."""
    names = ("training",) + tuple(sorted(state.keys() - TORCH_INTERNAL))
    return len(state), names, operator.itemgetter(*names) if len(names) > 1 else (lambda got: (got["training"],))


def _described(value):
    """A plain value itself; a function (a hook, ``activation=F.gelu``) by its qualified name; else its type's."""
    if is_plain_value(value):
        return value
    target = getattr(value, "__func__", None) or getattr(value, "func", None) or value  # a bound method, a partial
    name = getattr(target, "__qualname__", None)
    if callable(target) and isinstance(name, str):
        return f"{getattr(target, '__module__', '')}.{name}"
    return type(value).__qualname__


def class_name_of(module: nn.Module) -> str:
    """The class a report names a module by: for a scripted module (every one is a RecursiveScriptModule)
    the class it was scripted from."""
    if isinstance(module, torch.jit.ScriptModule):
        return getattr(module, "original_name", None) or type(module).__name__
    return type(module).__name__


@dataclass(frozen=True)
class ModuleTree:
    """The modules of ``root`` as ``named_modules`` sees them, walked once; tensors gathered on first use."""

    root: nn.Module
    named: Tuple[Tuple[str, nn.Module], ...]  # every path, as ``named_modules(remove_duplicate=False)``
    modules: Tuple[nn.Module, ...]  # each module once, at its first path: ``modules()`` order
    names: Dict[int, str]  # id(module) -> its first path
    # per entry of ``named``, where its subtree's run of ``named`` ends (the next entry no deeper than it)
    ends: Tuple[int, ...] = ()

    @property
    def shares_modules(self) -> bool:
        """Some module is registered under more than one path."""
        return len(self.named) != len(self.modules)

    @cached_property
    def states(self) -> Tuple[dict, ...]:
        """Each module's ``__dict__`` (one object for the module's life), in ``modules`` order: its slot tables
        read by key cost a fraction of an attribute access, which goes through ``nn.Module.__getattr__``'s hook."""
        return tuple(map(vars, self.modules))

    @cached_property
    def custom(self) -> Tuple[int, ...]:
        """Indexes in ``modules`` of the modules whose class ``torch.nn`` does not define (a model's own blocks,
        a library's layers): the ones whose forward may set plain attributes (the model-state guard's scan)."""
        stock: Dict[type, bool] = {}
        out = []
        for index, module in enumerate(self.modules):
            cls = type(module)
            known = stock.get(cls)
            if known is None:
                known = stock[cls] = cls.__module__.startswith(STOCK_PREFIX)
            if not known:
                out.append(index)
        return tuple(out)

    def tables(self, name: str) -> list:
        """Every module's ``_parameters``, ``_buffers`` or ``_modules`` table as it is now, in ``modules`` order."""
        try:
            return list(map(operator.itemgetter(name), self.states))
        except KeyError:  # a module that keeps its tables elsewhere (TorchScript reads them through its C++ twin)
            return [getattr(m, name) for m in self.modules]

    @cached_property
    def parameters(self) -> Tuple[nn.Parameter, ...]:
        """Each parameter object once, in ``model.parameters()`` order."""
        # keyed by id: a tensor's __hash__ is a Python-level function, costly on deep models
        return tuple({id(p): p for table in self.tables("_parameters") if table
                      for p in table.values() if p is not None}.values())

    @cached_property
    def buffers(self) -> Tuple[torch.Tensor, ...]:
        """Each buffer object once, in ``model.buffers()`` order."""
        return tuple({id(b): b for table in self.tables("_buffers") if table
                      for b in table.values() if b is not None}.values())


def tree_of(model: nn.Module, tree: "ModuleTree | None" = None) -> ModuleTree:
    """``tree`` when it was walked from ``model`` (a caller's shared walk), else a fresh walk of ``model``."""
    return tree if tree is not None and tree.root is model else module_tree(model)


def module_tree(root: nn.Module) -> ModuleTree:
    """Walk ``root`` once, in the pre-order of ``named_modules``: a module reached under two paths is listed
    under both in ``named``. Recursive, one frame per level of nesting: far fewer than the forward pass
    itself needs (several frames per level), so any model that runs can be walked."""
    named = [("", root)]
    ends = [0]
    _walk(root, "", named, ends)
    ends[0] = len(named)
    names: Dict[int, str] = {}
    for path, module in reversed(named):  # the first path of each module is the last one written
        names[id(module)] = path
    if len(names) == len(named):  # the usual case: no module is registered twice
        modules = tuple(module for _, module in named)
    else:
        firsts: Dict[int, nn.Module] = {}
        for _, module in named:
            firsts.setdefault(id(module), module)
        modules = tuple(firsts.values())
    return ModuleTree(root, tuple(named), modules, names, tuple(ends))


def _walk(module: nn.Module, prefix: str, named: list, ends: list) -> None:
    """``module_tree``'s walk below ``module``, noting where each entry's subtree ends (a module-level function: a
    closure that calls itself is a reference cycle, which kept every walk's list of paths alive until the
    collector's next full pass)."""
    for name, child in module._modules.items():
        if child is not None:
            path = prefix + name
            index = len(named)
            named.append((path, child))
            ends.append(index + 1)
            if child._modules:
                _walk(child, path + ".", named, ends)
                ends[index] = len(named)


@dataclass(frozen=True)
class ParamCensus:
    """Every module's parameter slots read once, as flat lists in ``modules`` order, for the steps that count
    parameters after a pass (the row table, totals, owners) instead of each walking the tables again."""

    params: list  # every filled slot, module by module (a parameter registered twice appears twice)
    counts: list  # per module, how many of ``params`` are its own
    numels: list  # numel() of each of ``params``
    trainable: list  # requires_grad of each of ``params``

    @cached_property
    def distinct(self) -> int:
        """How many different parameter objects fill the slots (fewer than ``params``: one is shared)."""
        return len(set(map(id, self.params)))

    @cached_property
    def own(self) -> list:
        """Per module, the elements of its own parameters (each slot counted)."""
        return _sums(self.numels, self.counts)

    @cached_property
    def own_trainable(self) -> list:
        """Per module, how many of its own parameters require grad."""
        return _sums(self.trainable, self.counts)


def param_census(tree: ModuleTree, read: Optional[Tuple[list, list]] = None) -> ParamCensus:
    """``tree``'s parameter slots as they are now (read in C loops: ``map`` over the tables). ``read``: every table's
    size and the slots' values, flat, in ``modules`` order, when the caller has just read them (the model-state
    guard, which put them back as they were)."""
    if read is not None:
        sizes, slots = read
    else:
        tables = tree.tables("_parameters")
        sizes, slots = None, list(itertools.chain.from_iterable(map(_values, filter(None, tables))))
    params = list(filter(_NOT_NONE, slots))
    if len(params) == len(slots):
        counts = sizes if sizes is not None else list(map(len, tables))
    else:  # an empty slot (``register_parameter(name, None)``)
        counts = [sum(1 for p in _values(t) if p is not None) if t else 0 for t in tree.tables("_parameters")]
    return ParamCensus(params, counts, list(map(_NUMEL, params)), list(map(_REQUIRES_GRAD, params)))


def _sums(values: list, counts: list) -> list:
    """``values`` summed in consecutive runs of ``counts`` lengths."""
    running = [0]
    running.extend(itertools.accumulate(values))
    ends = list(itertools.accumulate(counts))
    starts = [0] + ends[:-1]
    return list(map(operator.sub, map(running.__getitem__, ends), map(running.__getitem__, starts)))


_values = operator.methodcaller("values")  # TorchScript tables have no __iter__ over values
_NOT_NONE = functools.partial(operator.is_not, None)
_NUMEL = torch.Tensor.numel
_REQUIRES_GRAD = operator.attrgetter("requires_grad")
