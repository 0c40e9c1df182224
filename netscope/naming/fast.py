"""The naming audit's findings (what ``summary`` shows) without one record per key, for the common model.

:func:`audit_findings` first proves, in a few flat passes over the modules, that the model is *plain*: no
module under two paths, every key its registration path (no state_dict hook or override, no wrapper, no
extra state, no TorchScript tables), registration names plain ASCII without dots and hidden by no class or
instance attribute, no parameter and buffer under one name, every tensor a distinct object on its own
memory (no tied weights, shared storage or overlapping views, nothing lazy or empty), and nothing held
unregistered. On such a model every finding of the full audit is empty except the non-persistent buffers,
the numbered Sequentials and the weights a pre-hook derives (pruning), which are computed by the audit's own
functions on the few modules concerned. Any model that is not provably plain gets the full audit
(:func:`netscope.naming.audit_names`), so the findings are always the same.
"""

from __future__ import annotations

import dataclasses
import itertools
import operator
from typing import Dict, List, NamedTuple, Optional, Sequence, Set

import torch
import torch.nn as nn

from netscope.naming.findings import (derived_weight_findings, non_persistent_buffer_findings,
                                      numbered_sequential_findings)
from netscope.naming.segments import NON_PERSISTENT_BUFFER, child_step, is_index
from netscope.naming.unregistered import CONTAINERS, TORCH_INTERNAL, holds_unregistered, is_container
from netscope.naming.walk import ModuleVisit, leaf_visits
from netscope.records import Finding
from netscope.run.module_tree import ModuleTree, tree_of
from netscope.wrappers import wrapper_kind

# Methods whose override can make a key differ from the registration path (or add one).
_KEY_METHODS = ("state_dict", "_save_to_state_dict", "get_extra_state")
_PLAIN_TENSORS = (torch.Tensor, nn.Parameter)  # exact types: lazy and other subclasses take the full audit
_HOOK_TABLES = ("_state_dict_hooks", "_state_dict_pre_hooks")
_SUSPECT = CONTAINERS + (nn.Module, torch.Tensor)  # attribute values that may hold something unregistered
_values = operator.methodcaller("values")
_PRE_HOOKS = operator.itemgetter("_forward_pre_hooks")


def audit_findings(model: nn.Module, tree: Optional[ModuleTree] = None) -> List[Finding]:
    """``audit_names(model).findings``; fast when the model is plain (see the module docstring).
    ``tree``: ``model``'s :class:`ModuleTree`, when the caller has walked it."""
    tree = tree_of(model, tree)
    if not is_plain(tree):
        from netscope.naming.audit import audit_names

        return list(audit_names(model).findings)
    owners = [m for m in tree.modules if m._non_persistent_buffers_set]
    sequentials = [m for m in tree.modules if isinstance(m, nn.Sequential) and any(map(is_index, m._modules))]
    visits = _Visits(tree)
    leaves = [leaf for m in owners for leaf in leaf_visits(visits.of(m)) if leaf.kind == NON_PERSISTENT_BUFFER]
    hooked = itertools.compress(tree.modules, map(_PRE_HOOKS, tree.states))  # pruning, weight_norm, ...
    return [*non_persistent_buffer_findings(leaves),
            *numbered_sequential_findings([visits.last_step(m) for m in sequentials]),
            *derived_weight_findings((tree.names[id(m)], m) for m in hooked)]


def is_plain(tree: ModuleTree) -> bool:
    """Whether every state_dict key of the model is provably its registration path, with nothing for the
    audit to find but non-persistent buffers and numbered Sequentials (see the module docstring)."""
    if tree.shares_modules:
        return False
    modules = tree.modules
    first_of_class: Dict[type, nn.Module] = {}
    for module in modules:
        first_of_class.setdefault(type(module), module)
    for cls, example in first_of_class.items():
        if wrapper_kind(example) is not None or any(getattr(cls, name, None) is not getattr(nn.Module, name)
                                                     for name in _KEY_METHODS):
            return False
    states = tree.states
    params, buffers, children = tree.tables("_parameters"), tree.tables("_buffers"), tree.tables("_modules")
    try:
        if any(any(map(operator.itemgetter(name), states)) for name in _HOOK_TABLES):
            return False
    except KeyError:  # a module torch's own __init__ did not set up
        return False
    if set(map(type, itertools.chain(params, buffers, children))) != {dict}:
        return False  # TorchScript's tables, or something else that is not what state_dict iterates
    # each module's attribute names beside torch's bookkeeping (most modules: a few configuration numbers)
    extras = _extras(states)
    if _hidden_names(modules, states, extras, first_of_class, params, buffers, children):
        return False  # an empty name, or a class or instance attribute hiding a registered name
    names = "".join(itertools.chain.from_iterable(filter(None, itertools.chain(params, buffers, children))))
    if not names.isascii() or "." in names:
        return False  # dotted or non-ASCII names: the full audit says what they do to the keys
    if any(p and b and not p.keys().isdisjoint(b) for p, b in zip(params, buffers)):
        return False  # a parameter and a buffer under one name: one key for two tensors
    tensors = [t for t in itertools.chain.from_iterable(map(_values, filter(None, itertools.chain(params, buffers))))
               if t is not None]
    if not _distinct_memory(tensors):
        return False
    # modules holding anything that could be an unregistered module or tensor (most hold only numbers; a
    # module with nothing beside torch's bookkeeping is passed over at once)
    suspects = _suspects(states, extras)
    if not suspects:
        return True
    registered_modules = set(map(id, modules))
    registered_tensors = set(map(id, tensors))
    torch_attributes: Dict[type, Set[str]] = {}
    return not any(holds_unregistered(modules[i], registered_modules, registered_tensors, torch_attributes)
                   for i in suspects)


def _hidden_names(modules, states, extras, first_of_class, params, buffers, children) -> bool:
    """Some registered name is empty, or a class attribute (a property, a method) or an instance attribute of
    its module hides it. Asked of every module only when a model-wide test (in C loops: every registered name
    against every class's and every instance's attribute names, the latter as torch's bookkeeping and each
    module's ``extras`` beside it) finds a name in both."""
    registered = set(itertools.chain.from_iterable(filter(None, itertools.chain(params, buffers, children))))
    if "" in registered:
        return True
    class_names = {cls: frozenset().union(*map(vars, cls.__mro__)) for cls in first_of_class}
    if all(names.isdisjoint(registered) for names in class_names.values()) and \
            registered.isdisjoint(TORCH_INTERNAL) and registered.isdisjoint(itertools.chain.from_iterable(extras)):
        return False
    for module, state, *tables in zip(modules, states, params, buffers, children):
        names = class_names[type(module)]
        if any(table and not (names.isdisjoint(table) and state.keys().isdisjoint(table)) for table in tables):
            return True
    return False


def _plain_numbers(value) -> bool:
    """A tuple of ints (kernel_size, stride, ...): holds nothing unregistered."""
    return type(value) is tuple and all(type(item) is int for item in value)


def _extras(states) -> List[frozenset]:
    """Each module's attribute names beside :data:`TORCH_INTERNAL`, worked out once per distinct key layout
    (the modules of one class usually share theirs)."""
    by_layout: Dict[tuple, frozenset] = {}
    out = []
    for layout in map(tuple, states):
        extra = by_layout.get(layout)
        if extra is None:
            extra = by_layout[layout] = frozenset(layout) - TORCH_INTERNAL
        out.append(extra)
    return out


def _suspects(states, extras) -> List[int]:
    """Indexes of the modules holding an attribute (beside torch's bookkeeping: ``extras``) that could be or hold an
    unregistered module or tensor. The types of every such value are gathered first, in C loops: when none of
    them can hold anything (ints, floats, bools, strings: most models), no module is looked at one by one."""
    kinds = set(map(type, itertools.chain.from_iterable(map(map, map(_getter, states), extras))))
    if all(map(_inert_kind, kinds)):
        return []
    return sorted({i for i, (state, extra) in enumerate(zip(states, extras)) if extra for key in extra
                   if (isinstance(state[key], _SUSPECT) or is_container(state[key]))
                   and not _plain_numbers(state[key])})


_getter = operator.attrgetter("__getitem__")


def _inert_kind(kind: type) -> bool:
    """Values of exactly this type are never :data:`_SUSPECT` (nor claim to be: no ``__class__`` override) nor a
    dataclass (whose fields may hold a module)."""
    return not issubclass(kind, _SUSPECT) and not dataclasses.is_dataclass(kind) and \
        not any("__class__" in vars(base) for base in kind.__mro__[:-1])


def _distinct_memory(tensors: Sequence[torch.Tensor]) -> bool:
    """Every tensor a distinct object of a plain type, non-empty, and no two of them on overlapping memory
    (told from data pointers and sizes, or meta storages): then no tie, shared storage or overlapping view."""
    if len(set(map(id, tensors))) != len(tensors) or any(type(t) not in _PLAIN_TENSORS for t in tensors):
        return False
    spans = []
    meta = set()
    try:
        for t in tensors:
            if t.numel() == 0 or not t.is_contiguous():
                return False
            if t.is_meta:
                meta.add(t.untyped_storage()._cdata)
                continue
            start = t.data_ptr()
            spans.append((t.get_device(), start, start + t.nbytes))
    except (RuntimeError, NotImplementedError, TypeError, AttributeError):  # no plain storage to look at
        return False
    if len(meta) != len(tensors) - len(spans):
        return False
    spans.sort()
    return all(a[0] != b[0] or a[2] <= b[1] for a, b in zip(spans, spans[1:]))


class _Visits:
    """:class:`ModuleVisit` records (with the audit's own segment rules) for the few modules a plain model's
    findings need, each built from its parent's, which is built once."""

    def __init__(self, tree: ModuleTree):
        self.tree = tree
        self.by_path = {path: module for path, module in tree.named}
        self.built: Dict[int, ModuleVisit] = {id(tree.root): ModuleVisit(tree.root, (), None, "", "")}
        self.positions: Dict[int, Dict[str, int]] = {}
        self.numbered_origins: Dict[int, str] = {}  # id(parent) -> the origin of its numbered children

    def of(self, module: nn.Module) -> ModuleVisit:
        visit = self.built.get(id(module))
        if visit is not None:
            return visit
        path = self.tree.names[id(module)]
        parent_path, _, name = path.rpartition(".")  # names hold no dots in a plain model
        parent = self.by_path[parent_path]
        owner = self.of(parent)
        positions = self.positions.get(id(parent))
        if positions is None:
            positions = self.positions[id(parent)] = {key: i for i, key in enumerate(parent._modules)}
        step = child_step(parent, name, positions[name], owner.origin)
        visit = ModuleVisit(module, owner.steps + (step,), parent, name, path)
        self.built[id(module)] = visit
        return visit

    def last_step(self, module: nn.Module) -> "_LastStep":
        """What :func:`numbered_sequential_findings` reads of a visit (module, path, origin), without building
        the visit's steps from the root: the origin is the last step's, built from the parent's visit."""
        path = self.tree.names[id(module)]
        if not path:
            return _LastStep(module, path, self.built[id(module)].origin)
        parent_path, _, name = path.rpartition(".")
        parent = self.by_path[parent_path]
        # Every child rule gives the numbered children of one parent the same origin (which index it is only
        # changes the accessor), so a parent's numbered children share one computed step.
        numbered = is_index(name)
        if numbered and id(parent) in self.numbered_origins:
            return _LastStep(module, path, self.numbered_origins[id(parent)])
        positions = self.positions.get(id(parent))
        if positions is None:
            positions = self.positions[id(parent)] = {key: i for i, key in enumerate(parent._modules)}
        origin = child_step(parent, name, positions[name], self.of(parent).origin).segment.origin
        if numbered:
            self.numbered_origins[id(parent)] = origin
        return _LastStep(module, path, origin)


class _LastStep(NamedTuple):
    """The parts of a :class:`ModuleVisit` the numbered-Sequential finding reads."""

    module: nn.Module
    path: str
    origin: str
