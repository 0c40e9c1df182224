"""Leave the user's model exactly as it was: mode flags, buffers, tensor slots, requires_grad, RNG and
grad mode; and the process-wide state a pass touches (the wrapped module call path, patched constructors) behind one lock."""

from __future__ import annotations

import contextlib
import gc
import itertools
import operator
import threading
from dataclasses import dataclass, field
from typing import FrozenSet, Iterator, List, Optional

import torch
import torch.nn as nn
from torch.nn.parameter import UninitializedTensorMixin

from netscope.collector import FROZEN
from netscope.run.module_tree import TORCH_INTERNAL, ModuleTree, is_plain_value, tree_of

# Held while netscope has process-wide state changed: the wrapped module call path of a trace and the
# constructor patches of the no-memory build. Two threads summarizing at once take turns.
GLOBAL_STATE_LOCK = threading.RLock()


@dataclass
class ModelChanges:
    """What a pass changed in the model that could not be undone without a copy of every weight."""

    changed_in_place: List[str] = field(default_factory=list)  # parameter names whose values the forward wrote
    modules_changed: bool = False  # the forward added, removed or replaced a registered submodule
    # plain attributes (not parameters, buffers or submodules) of non-torch.nn modules that the forward set,
    # removed, resized or wrote in place: a cache filled on first use, a step counter ("blocks.0.attn.cache")
    changed_attributes: List[str] = field(default_factory=list)
    hooks: Optional["HookState"] = None  # the modules' hooks as the block began (kept_hooks), for the pass's calls
    # every module's _parameters size and the slots' values, flat (module_tree.param_census's ``read``), as the
    # block left them: the tables as they were before it
    parameters: Optional[tuple] = None


@contextlib.contextmanager
def preserved_model(model: nn.Module, *, train: bool, tree: Optional[ModuleTree] = None,
                    children: Optional["_Slots"] = None) -> Iterator[ModelChanges]:
    """Run the block with ``model`` in train or eval mode and without autograd, then restore everything.

    Restored: each submodule's ``training`` flag (not just the root's), the tensor objects in every
    ``_parameters``/``_buffers`` slot, buffer values (BatchNorm running stats and
    ``num_batches_tracked`` change in a train-mode pass), each parameter's ``requires_grad``, the plain-value
    attributes of non-``torch.nn`` modules (:class:`PlainAttributes`: a counter, a window size a forward
    adapted to its input), the global CPU and CUDA RNG states (dropout draws from them), Python's and numpy's
    global generators (:func:`host_generators_kept`: Hugging Face's LayerDrop draws from them), the state of each
    ``torch.Generator`` a module holds, buffer version counters (a pending backward checks them) and grad mode; also
    when the block raises. Other attributes the forward changed (a dict cache it filled) are named. Parameter
    values written in place are detected through the tensor version counter (restoring them would need a
    copy of every weight) and listed in the yielded :class:`ModelChanges`, which also says whether the
    forward changed the registered submodules (left as the forward made them).
    ``tree``: ``model``'s :class:`ModuleTree`, when the caller has walked it already; ``children``: its
    :func:`children_snapshot`, when the caller took one (to put the children back after the block).
    """
    changes = ModelChanges()
    tree = tree_of(model, tree)
    modules = tree.modules
    flags = _flags(tree)
    parameters = _Slots(tree.tables("_parameters"))
    buffers = _Slots(tree.tables("_buffers"))
    children = children if children is not None else children_snapshot(tree)
    buffer_values = []
    seen = set()
    with outside_user_modes():
        for buffer in buffers.values:
            if buffer is None or id(buffer) in seen or isinstance(buffer, UninitializedTensorMixin) \
                    or buffer.device.type == "meta":
                continue
            seen.add(id(buffer))
            buffer_values.append((buffer, version_of(buffer), buffer.detach().clone()))
    params = [p for p in {id(p): p for p in parameters.values}.values()  # by id: Tensor.__hash__ is Python code
              if p is not None and not isinstance(p, UninitializedTensorMixin)]  # lazy: no values yet
    grads = list(map(_REQUIRES_GRAD, params))
    versions = _versions(params)
    attributes = _own_attributes(tree)
    plain = PlainAttributes(model, tree)
    generators = _generator_states(tree)
    cuda_devices = []
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        cuda_devices = list(range(torch.cuda.device_count()))
    try:
        with kept_hooks(tree) as changes.hooks, torch.random.fork_rng(devices=cuda_devices, enabled=True), \
                host_generators_kept(), torch.no_grad():
            if any(flag != train for flag in flags):  # model.train() visits every module: skip when moot
                _set_mode(model, modules, train)
            yield changes
    finally:
        if _flags(tree) != flags:
            for module, flag in zip(modules, flags):
                if module.training != flag:
                    module.__dict__["training"] = flag  # a plain attribute: what Module.__setattr__ ends up doing
        parameters.restore(tree.tables("_parameters"))
        changes.parameters = (parameters.sizes, parameters.values)
        buffers.restore(tree.tables("_buffers"))
        changes.modules_changed = children.changed(tree.tables("_modules"))
        # read before the buffer values are copied back: a buffer that is also a parameter
        # (register_buffer(name, p)) gets a version bump from that copy, not from the forward
        now = _versions(params)
        with outside_user_modes():
            _restore_buffers(buffer_values)
        for generator, state in generators:
            generator.set_state(state)
        if list(map(_REQUIRES_GRAD, params)) != grads:
            for param, requires_grad in zip(params, grads):
                if param.requires_grad != requires_grad:
                    param.requires_grad_(requires_grad)
        plain.restore()  # numbers, strings and tuples the forward set (a counter, a window size) are put back
        now_attributes = _own_attributes(tree)
        if now_attributes != attributes:
            changes.changed_attributes.extend(_changed_names(tree, attributes, now_attributes))
        if now != versions:
            written = {id(p) for p, before, after in zip(params, versions, now) if before != after}
            changes.changed_in_place.extend(name for name, param in model.named_parameters()
                                            if id(param) in written)


@contextlib.contextmanager
def host_generators_kept() -> Iterator[None]:
    """Put back the global generators of Python's ``random`` and of numpy (when imported) after the block: a forward
    may draw from them (Hugging Face's LayerDrop: ``random.uniform(0, 1)`` in MusicGen, ``np.random.random()`` in
    Wav2Vec2, SpecAugment's masks), as dropout draws from torch's, restored by ``torch.random.fork_rng``."""
    import random
    import sys

    numpy = sys.modules.get("numpy")
    python_state = random.getstate()
    numpy_state = numpy.random.get_state() if numpy is not None else None
    try:
        yield
    finally:
        random.setstate(python_state)
        if numpy_state is not None:
            numpy.random.set_state(numpy_state)


def outside_user_modes():
    """netscope's own copies of the user's tensors are made (and written back) with the dispatch modes the user
    has active set aside: under a user's ``FakeTensorMode`` a copy of a real buffer was refused (a raw
    AssertionError) or made fake, and a user's logging or counting mode saw netscope's bookkeeping."""
    from torch.utils._python_dispatch import _disable_current_modes

    return _disable_current_modes()


class _FunctionModes(threading.local):
    aside: Optional[list] = None  # the user's TorchFunctionModes (bottom first) while netscope's own code runs


_FUNCTION_MODES = _FunctionModes()


def _is_device_context(mode) -> bool:
    """``with torch.device(...)``'s mode: it picks where new tensors go (netscope's too) and sits at the bottom."""
    from torch.utils._device import DeviceContext

    return isinstance(mode, DeviceContext)


@contextlib.contextmanager
def function_modes_aside():
    """The block out of sight of the TorchFunctionModes the user has active (a counting or logging mode
    around ``netscope.summary``): netscope's own tensor work (input building, the guard's copies and compares,
    shape and size reads) is not theirs to see. The user's code runs under them again inside
    :func:`under_user_function_modes`. ``with torch.device(...)`` stays in force; a no-op when already aside."""
    from torch.overrides import _get_current_function_mode, _pop_mode, _push_mode

    state = _FUNCTION_MODES
    if state.aside is not None:
        yield
        return
    popped = []
    while (top := _get_current_function_mode()) is not None and not _is_device_context(top):
        popped.append(_pop_mode())
    if not popped:
        yield
        return
    state.aside = popped[::-1]
    try:
        yield
    finally:
        state.aside = None
        for mode in popped[::-1]:
            _push_mode(mode)


def function_modes_set_aside() -> bool:
    """:func:`function_modes_aside` holds some of the user's modes in this thread now."""
    return _FUNCTION_MODES.aside is not None


@contextlib.contextmanager
def under_user_function_modes():
    """Around the user's code (a module's call) inside :func:`function_modes_aside`: the modes it set aside are
    active again, as they were, for the block."""
    from torch.overrides import _pop_mode, _push_mode

    state = _FUNCTION_MODES
    modes = state.aside
    if modes is None:
        yield
        return
    state.aside = None
    for mode in modes:
        _push_mode(mode)
    try:
        yield
    finally:
        for _ in modes:
            _pop_mode()
        state.aside = modes


def _restore_buffers(saved: List[tuple]) -> None:
    """Copy back the values of the buffers the block changed, then set each one's version counter back to
    what it was: autograd compares it when a backward the user has pending (a forward run before netscope's:
    BatchNorm saves its running stats) reads the buffer, and the values are the same again. Buffers whose
    values did not change are not written (a copy would bump their counter). Changed is told by value, not
    by the counter alone: BatchNorm's CPU kernel updates its running stats under no_grad without a bump.
    A buffer the forward resized in place (``resize_``: the per-channel observers of ``torch.ao.quantization``
    grow ``min_val`` from ``[0]`` to ``[channels]`` on their first call) gets its shape back first."""
    written = [entry for entry in saved if entry[0].shape != entry[2].shape
               or version_of(entry[0]) != entry[1] or not _same(entry[0], entry[2])]
    if not written:
        return
    with torch.no_grad():
        for buffer, version, value in written:
            with torch.inference_mode() if version is None else contextlib.nullcontext():
                # an inference tensor (a model built under inference_mode) is written only there
                if buffer.shape != value.shape:
                    buffer.resize_(value.shape)
                buffer.copy_(value)
    counted = [(buffer, version) for buffer, version, _ in written if version is not None]
    if counted and _SET_VERSION is not None:
        try:  # (tensors, versions) tuples as on torch 2.14; an older signature leaves the counters bumped
            _SET_VERSION(tuple(b for b, _ in counted), tuple(v for _, v in counted))
        except (TypeError, RuntimeError):
            pass


def _versions(tensors: List[torch.Tensor]) -> List[Optional[int]]:
    """:func:`version_of` of each tensor; read as plain attributes while no inference tensor is among them."""
    try:
        return list(map(_VERSION, tensors))
    except RuntimeError:
        return list(map(version_of, tensors))


_VERSION, _REQUIRES_GRAD = operator.attrgetter("_version"), operator.attrgetter("requires_grad")  # (C loops)


def version_of(tensor: torch.Tensor) -> Optional[int]:
    """The tensor's version counter (bumped by every in-place write); None for an inference tensor (made
    under ``torch.inference_mode``: a model built there, or netscope's copy when the user calls it there),
    which has none."""
    try:
        return tensor._version
    except RuntimeError:
        return None


def _same(tensor: torch.Tensor, value: torch.Tensor) -> bool:
    """Equal values (a NaN statistic reads as changed: copied back, harmless); a fake tensor (a step's
    replica) has no values to differ."""
    if type(tensor) not in _VALUE_TYPES:
        from torch._subclasses.fake_tensor import is_fake

        if is_fake(tensor):
            return True
    try:
        return torch.equal(tensor, value)
    except (RuntimeError, TypeError, NotImplementedError):  # a tensor type without equal: copied back, as always
        return False


_VALUE_TYPES = (torch.Tensor, nn.Buffer) if hasattr(nn, "Buffer") else (torch.Tensor,)
_SET_VERSION = getattr(torch._C._autograd, "_unsafe_set_version_counter", None)  # torch >= 2.4


def _generator_states(tree: ModuleTree) -> List[tuple]:
    """``(generator, its state)`` for each ``torch.Generator`` a non-``torch.nn`` module holds as an attribute
    (a forward drawing noise from its own generator): put back after the block like the global RNG."""
    out, seen = [], set()
    for index in tree.custom:
        for value in tree.states[index].values():
            if isinstance(value, torch.Generator) and id(value) not in seen and value.device.type != "meta":
                seen.add(id(value))
                out.append((value, value.get_state()))
    return out


# The hook tables a forward can change: its own (a hook registered on each call, a one-shot hook that
# removes itself through its handle) and, through a handle, those of the model a copy was made from.
HOOK_TABLES = ("_forward_hooks", "_forward_hooks_with_kwargs", "_forward_hooks_always_called", "_forward_pre_hooks",
               "_forward_pre_hooks_with_kwargs", "_backward_hooks", "_backward_pre_hooks")
_GLOBAL_HOOK_TABLES = ("_global_forward_hooks", "_global_forward_hooks_with_kwargs",
                       "_global_forward_hooks_always_called", "_global_forward_pre_hooks",
                       "_global_backward_hooks", "_global_backward_pre_hooks")


@dataclass(frozen=True)
class HookState:
    """Which modules held a forward or backward (pre-)hook when :func:`kept_hooks`' block began, and torch's handle
    counter then: a module outside ``hooked`` has none of those hooks while the counter has not moved (every
    registration takes the next id), which spares each call of the pass reading its four hook tables."""

    hooked: FrozenSet[int]  # id() of each module with a hook in one of CALL_HOOK_TABLES
    next_id: int  # torch.utils.hooks.RemovableHandle.next_id


# The tables torch's module call runs hooks from (what the pass checks before calling forward directly)
CALL_HOOK_TABLES = ("_forward_pre_hooks", "_forward_hooks", "_backward_hooks", "_backward_pre_hooks")


@contextlib.contextmanager
def kept_hooks(tree: ModuleTree) -> Iterator[Optional[HookState]]:
    """Put back, after the block, every module's hook tables (:data:`HOOK_TABLES`) and torch's process-wide
    module hook tables as they were, in their order: a pass must neither consume a one-shot hook of the user's
    (it runs during the pass, as every hook does, and its ``handle.remove()`` would take it off for the user's
    own next forward; a copy's hook holds the original's handle) nor keep one a forward registered.
    Cheap when nothing changed: only the tables holding hooks are copied, and a hook added anywhere shows in
    torch's handle counter (every registration takes the next id). Yields the :class:`HookState` of ``tree``'s
    modules (None when some module keeps its tables elsewhere: TorchScript, an older torch's pickle)."""
    from torch.nn.modules import module as torch_module
    from torch.utils.hooks import RemovableHandle

    uniform = [True]

    def all_tables() -> list:
        """Every hook table holding a hook: the modules' (filtered in C loops, as most are empty), then torch's."""
        try:
            found = list(filter(None, itertools.chain.from_iterable(map(_hook_tables, tree.states))))
        except KeyError:  # a module lacking one (unpickled from an older torch) or keeping them elsewhere (TorchScript)
            uniform[0] = False
            found = [t for module in tree.modules for t in (getattr(module, n, _NO_TABLE) for n in HOOK_TABLES) if t]
        return found + [t for t in (getattr(torch_module, n, _NO_TABLE) for n in _GLOBAL_HOOK_TABLES) if t]

    held = [(table, list(table.items())) for table in all_tables()]
    next_id = RemovableHandle.next_id
    state = None
    if uniform[0]:  # which modules have call hooks: asked module by module only when some table holds a hook
        hooked = frozenset(id(module) for module, module_state in zip(tree.modules, tree.states)
                           if any(module_state[name] for name in CALL_HOOK_TABLES)) if held else frozenset()
        state = HookState(hooked, next_id)
    try:
        yield state
    finally:
        if RemovableHandle.next_id != next_id:  # a hook was registered: take off those not held before
            known = {id(table) for table, _ in held}
            for table in all_tables():
                if id(table) not in known:
                    table.clear()
        for table, items in held:
            if len(table) != len(items) or any(table.get(key, _NO_TABLE) is not value for key, value in items):
                _restore_slots(table, dict(items))


_NO_TABLE: dict = {}  # stands for a table a module lacks (one unpickled from an older torch): always empty
_hook_tables = operator.itemgetter(*HOOK_TABLES)


class PlainAttributes:
    """The plain-value attributes (scalars, tuples of them) of a model's non-``torch.nn`` modules as they are now,
    put back by :func:`preserved_model` after every pass: a forward that adapts itself to its input (Hugging Face
    Swin sets ``window_size`` to a smaller input's size, for good) would otherwise leave the user's model so,
    and carry one solver probe's setting into the next. Tensors and containers are not touched."""

    __slots__ = ("states", "values")

    def __init__(self, model: nn.Module, tree: Optional[ModuleTree] = None):
        tree = tree_of(model, tree)
        self.states = [tree.states[index] for index in tree.custom]  # each module's __dict__, for its life
        # per module: (its plain attributes' values, every attribute name it had)
        self.values = [({name: value for name, value in state.items()
                         if name not in TORCH_INTERNAL and is_plain_value(value)}, frozenset(state))
                       for state in self.states]

    def restore(self) -> None:
        """Set every saved attribute back to its value; remove plain ones a run added."""
        for state, (values, names) in zip(self.states, self.values):
            for name, value in values.items():
                if state.get(name, _ABSENT) is not value:
                    state[name] = value
            if len(state) != len(names) or state.keys() != names:
                for name in [n for n, v in state.items() if n not in names and is_plain_value(v)]:
                    del state[name]


_ABSENT = object()


def children_snapshot(tree: ModuleTree) -> "_Slots":
    """The registered children of every module of ``tree`` as they are now: ``.changed(tree.tables("_modules"))``
    tells whether a forward added, removed or replaced one, ``.restore(...)`` puts them back."""
    return _Slots(tree.tables("_modules"))


def _own_attributes(tree: ModuleTree) -> List[tuple]:
    """``(module index, name, identity, size)`` of each attribute a module holds beside torch's bookkeeping and
    the plain values :class:`PlainAttributes` puts back, for modules whose class is not a stock ``torch.nn`` one
    (stock forwards set no Python attributes): what tells that a forward set, removed, resized (a dict cache
    filled in place) or wrote (a plain tensor's version) one."""
    out = []
    states = tree.states
    for index in tree.custom:
        state = states[index]
        if len(state) <= _INTERNAL_COUNT:
            continue
        for name in state.keys() - TORCH_INTERNAL:
            value = state[name]
            if is_plain_value(value):  # restored by PlainAttributes before the second snapshot: never a change
                continue
            # by identity (a tuple of tensors compared by value would ask a tensor for its truth)
            size = len(value) if type(value) in (dict, list, set) else \
                version_of(value) if isinstance(value, torch.Tensor) else None
            out.append((index, name, id(value), size))
    out.sort(key=operator.itemgetter(0, 1))
    return out


def _changed_names(tree: ModuleTree, before: List[tuple], after: List[tuple]) -> List[str]:
    """Qualified names (``blocks.0.attn.cache``) of the attributes that differ between two snapshots."""
    was = {(index, name): rest for index, name, *rest in before}
    now = {(index, name): rest for index, name, *rest in after}
    names = sorted(key for key in was.keys() | now.keys() if was.get(key) != now.get(key))
    return [".".join(filter(None, (tree.names[id(tree.modules[index])], name))) for index, name in names]


def _flags(tree: ModuleTree) -> List[bool]:
    """Every module's ``training`` flag, in ``tree.modules`` order."""
    try:
        return list(map(_training, tree.states))
    except KeyError:  # a module keeping the flag elsewhere (TorchScript)
        return [m.training for m in tree.modules]


_training = operator.itemgetter("training")
_INTERNAL_COUNT = len(TORCH_INTERNAL)
_keys, _values = operator.methodcaller("keys"), operator.methodcaller("values")  # TorchScript tables: no __iter__


class _Slots:
    """The entries of one slot table (``_parameters``, ``_buffers``, ``_modules``) of every module, kept
    flat, so that telling "nothing changed" costs three list comparisons instead of a loop per module."""

    __slots__ = ("sizes", "keys", "values")

    def __init__(self, tables: List):
        self.sizes = list(map(len, tables))  # equal sizes: the same tables are empty, so the rest line up
        self.keys = list(itertools.chain.from_iterable(map(_keys, filter(None, tables))))
        self.values = list(itertools.chain.from_iterable(map(_values, filter(None, tables))))

    def changed(self, tables: List) -> bool:
        now = _Slots(tables)
        return (now.sizes != self.sizes or now.keys != self.keys  # lengths and names: ints and strings
                or not all(map(operator.is_, now.values, self.values)))  # objects, by identity only

    def restore(self, tables: List) -> None:
        """Put back the saved objects in every table the block reassigned, added to or removed from."""
        if not self.changed(tables):
            return
        start = 0
        for table, size in zip(tables, self.sizes):
            saved = dict(zip(self.keys[start:start + size], self.values[start:start + size]))
            start += size
            _restore_slots(table, saved)


def _set_mode(model: nn.Module, modules, train: bool) -> None:
    """``model.train(train)``; done as direct flag writes when no module overrides ``train`` (deep models
    spend most of ``Module.train``'s recursion in ``__setattr__``)."""
    if any(type(m).train is not nn.Module.train for m in modules):
        model.train(train)  # a custom train() (e.g. one that keeps BatchNorm frozen) must run
        return
    for module in modules:
        module.__dict__["training"] = train


def _restore_slots(current, saved: dict) -> None:
    """Put back the saved tensor objects if the forward pass reassigned, added or removed any.
    (A TorchScript module's slots are a fixed-key mapping without ``clear``: only values can differ.)"""
    if current.keys() == saved.keys() and all(current[k] is v for k, v in saved.items()):
        return
    if not isinstance(current, dict):
        for key, value in saved.items():
            if current[key] is not value:
                current[key] = value
        return
    current.clear()
    current.update(saved)


_FROZEN = FROZEN  # frozen_heap blocks open that froze the heap themselves (netscope.collector's count)


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """Around the user's forward: move every object that exists now (the model) out of the collector's
    sight with ``gc.freeze()``, so collections during the pass stay cheap while the collector keeps
    running; ``gc.unfreeze()`` afterwards. Left alone inside another such block, and when the process has
    frozen objects itself (asked only then: ``gc.get_freeze_count`` walks every frozen object)."""
    if _FROZEN[0] or gc.get_freeze_count():
        yield
        return
    gc.freeze()
    _FROZEN[0] += 1
    try:
        yield
    finally:
        _FROZEN[0] -= 1
        gc.unfreeze()
