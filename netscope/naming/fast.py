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
import functools
import itertools
import operator
from typing import Dict, List, Optional, Sequence, Set, Tuple

import torch
import torch.nn as nn

from netscope.naming.findings import (derived_weight_findings, non_persistent_buffer_findings,
                                      numbered_sequential_finding)
from netscope.naming.segments import NON_PERSISTENT_BUFFER, SEQUENTIAL_INDEX, child_step, is_index
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
_NON_PERSISTENT = operator.itemgetter("_non_persistent_buffers_set")


def audit_findings(model: nn.Module, tree: Optional[ModuleTree] = None) -> List[Finding]:
    """``audit_names(model).findings``; fast when the model is plain (see the module docstring).
    ``tree``: ``model``'s :class:`ModuleTree`, when the caller has walked it."""
    tree = tree_of(model, tree)
    if not is_plain(tree):
        from netscope.naming.audit import audit_names

        return list(audit_names(model).findings)
    try:
        owners = list(itertools.compress(tree.modules, map(_NON_PERSISTENT, tree.states)))
    except KeyError:  # a module torch's own __init__ did not set up
        owners = [m for m in tree.modules if m._non_persistent_buffers_set]
    visits = _Visits(tree)
    leaves = [leaf for m in owners for leaf in leaf_visits(visits.of(m)) if leaf.kind == NON_PERSISTENT_BUFFER]
    hooked = itertools.compress(tree.modules, map(_PRE_HOOKS, tree.states))  # pruning, weight_norm, ...
    return [*non_persistent_buffer_findings(leaves),
            *(numbered_sequential_finding(parent, paths, first)
              for parent, (paths, first) in visits.numbered_sequentials().items()),
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
    (told from data pointers and sizes, or meta storages): then no tie, shared storage or overlapping view.
    Each property is read for all tensors in one C loop (``map`` over torch's own methods)."""
    if len(set(map(id, tensors))) != len(tensors) or not set(map(type, tensors)) <= _PLAIN_TENSOR_TYPES:
        return False
    try:
        if not all(map(_NUMEL, tensors)) or not all(map(_CONTIGUOUS, tensors)):
            return False
        meta = list(map(_IS_META, tensors))
        if any(meta):
            storages = {t.untyped_storage()._cdata for t in itertools.compress(tensors, meta)}
            if len(storages) != sum(meta):
                return False
            tensors = list(itertools.compress(tensors, map(operator.not_, meta)))
        starts = list(map(_DATA_PTR, tensors))
        devices = set(map(_DEVICE, tensors))
        ends = list(map(operator.add, starts, map(_NBYTES, tensors)))
    except (RuntimeError, NotImplementedError, TypeError, AttributeError):  # no plain storage to look at
        return False
    if len(devices) <= 1:  # the usual case
        # Non-empty spans are disjoint exactly when, starts and ends sorted apart, the k-th end is at most the
        # (k+1)-th start (if span j starts inside span i, fewer than k ends precede j's start, at position k+1 at
        # least): two sorts of ints instead of one of tuples.
        starts.sort()
        return all(map(operator.le, sorted(ends), itertools.islice(starts, 1, None)))
    spans = sorted(zip(map(_DEVICE, tensors), starts, ends))
    return all(a[0] != b[0] or a[2] <= b[1] for a, b in zip(spans, spans[1:]))


_PLAIN_TENSOR_TYPES = frozenset(_PLAIN_TENSORS)
_NUMEL, _CONTIGUOUS = torch.Tensor.numel, torch.Tensor.is_contiguous
_DATA_PTR, _DEVICE = torch.Tensor.data_ptr, torch.Tensor.get_device
_IS_META, _NBYTES = operator.attrgetter("is_meta"), operator.attrgetter("nbytes")


class _Visits:
    """:class:`ModuleVisit` records (with the audit's own segment rules) for the few modules a plain model's
    findings need, each built from its parent's, which is built once."""

    def __init__(self, tree: ModuleTree):
        self.tree = tree
        self.built: Dict[int, ModuleVisit] = {id(tree.root): ModuleVisit(tree.root, (), None, "", "")}
        self.positions: Dict[int, Dict[str, int]] = {}
        self.origins: Dict[tuple, str] = {}  # (parent path, child name or "" for any index name) -> origin

    @functools.cached_property
    def by_path(self) -> Dict[str, nn.Module]:
        return dict(self.tree.named)

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

    def numbered_sequentials(self) -> Dict[str, Tuple[List[str], nn.Module]]:
        """The groups :func:`numbered_sequential_findings` forms, as enclosing path -> (the paths of the numbered
        Sequentials it holds through Sequential indexes, in module order; the first of them), worked out per
        class and per run of siblings, not per module: a module is a candidate when its class is a Sequential
        and its table holds an index name (both told in C loops), and every child rule gives the numbered
        children of one parent the same origin (which index it is only changes the accessor)."""
        tree = self.tree
        modules = tree.modules
        sequential = {cls for cls in set(map(type, modules)) if issubclass(cls, nn.Sequential)}
        if not sequential:
            return {}
        children = tree.tables("_modules")
        indexes = _index_names(set(itertools.chain.from_iterable(children)))
        flags = list(map(sequential.__contains__, map(type, modules)))
        numbered = list(map(operator.not_, map(indexes.isdisjoint, itertools.compress(children, flags))))
        candidates = list(itertools.compress(itertools.compress(modules, flags), numbered))
        paths = list(map(tree.names.__getitem__, map(id, candidates)))  # in module order
        split = list(map(str.rpartition, paths, itertools.repeat(".")))  # names hold no dots in a plain model
        parents = list(map(_FIRST, split))
        if paths and not paths[0]:
            parents[0] = None  # the root (first in module order): a run of its own, with no parent
        groups: Dict[str, Tuple[List[str], nn.Module]] = {}
        start = 0
        for parent_path, run in itertools.groupby(parents):  # runs of siblings
            end = start + len(list(run))
            names = list(map(_LAST, split[start:end]))
            if parent_path is None:
                parent_path, origins = "", [self.built[id(tree.root)].origin]
            elif indexes.issuperset(names):  # numbered siblings: one origin
                origins = [self._origin(parent_path, names[0])] * len(names)
            else:
                origins = [self._origin(parent_path, n) for n in names]
            chosen = list(itertools.compress(paths[start:end], map(SEQUENTIAL_INDEX.__eq__, origins)))
            if chosen:
                if parent_path not in groups:
                    groups[parent_path] = ([], candidates[start + origins.index(SEQUENTIAL_INDEX)])
                groups[parent_path][0].extend(chosen)
            start = end
        return groups

    def _origin(self, parent_path: str, name: str) -> str:
        """The origin of child ``name``'s step below the module at ``parent_path`` (one per parent for the
        numbered children: every child rule gives them the same)."""
        key = (parent_path, name if not is_index(name) else "")
        origin = self.origins.get(key)
        if origin is None:
            parent = self.by_path[parent_path]
            position = list(parent._modules).index(name)
            origin = self.origins[key] = child_step(parent, name, position, self.of(parent).origin).segment.origin
        return origin


def _index_names(names: Set[str]) -> Set[str]:
    """The names in ``names`` that :func:`is_index` accepts, told in C loops (a deep stack's parent has thousands)."""
    digits = set(filter(str.isascii, filter(str.isdigit, names)))
    padded = set(itertools.compress(digits, map(str.startswith, digits, itertools.repeat("0"))))
    return digits - padded | ({"0"} & digits)


_FIRST, _LAST = operator.itemgetter(0), operator.itemgetter(2)
