"""One forward pass, recorded module call by module call, with operator-level multiply-adds.

Every call of a registered module goes through one wrapper of torch's call path (``recording_calls``), which
keeps a stack of open calls; a dispatch mode sees every aten operator and charges its multiply-adds
(``netscope.operators.registry``) to the innermost open call, counting each operator's calls there too
(``netscope.operators.breakdown``): an operator without a formula is recorded, never a silent 0. Stock
leaves called again with the same signature replay their first call's operators, and stock ``nn.Sequential``
blocks of such leaves like an earlier block copy its children's calls (``netscope.run.leaf_replay``). The call path is restored and the model left as it was
(``netscope.run.model_state``) whatever happens.
"""

from __future__ import annotations

import collections.abc
import contextlib
import functools
import itertools
import operator
import sys
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, FrozenSet, Iterable, List, Optional, Tuple

import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.nn.modules import module as module_globals
from torch.utils.hooks import RemovableHandle

from netscope.run.failures import dtype_advice
from netscope.run.dataflow import MODEL_INPUT, NO_SOURCES, DataflowTracker, edge_tuple
from netscope.errors import ForwardError, MacFormulaError, OutOfMemory
from netscope.collector import paused_gc
from netscope.run.leaf_replay import LeafReplay, exclude_python, replay_possible
from netscope.run.model_state import (GLOBAL_STATE_LOCK, HookState, children_snapshot, frozen_heap,
                                      function_modes_aside, function_modes_set_aside, preserved_model,
                                      under_user_function_modes)
from netscope.operators.registry import UNSEEN, OpResolver
from netscope.operators.breakdown import OperatorTable
from netscope.operators.packed import packed_by_module, packed_numel
from netscope.analyses.receptive_field import FieldTracker, input_field
from netscope.records import FAILED, NOT_RECORDED, LayerCall, record_from_fields
from netscope.run.module_tree import (ModuleTree, ParamCensus, behaviour_key, class_name_of, module_tree, param_census,
                                      tree_of)
from netscope.run.shapes import format_shape_tree, shape_tree, shapes_only, tensor_bytes
from netscope.operators.windows import WindowOpLog

HYPERPARAMETERS = ("kernel_size", "stride", "padding", "dilation", "groups", "output_padding")


@dataclass
class TraceResult:
    """What one pass recorded. ``modules[i]``, ``call_values[i]`` and ``outputs[i]`` belong to ``calls[i]``."""

    calls: List[LayerCall]
    modules: List[nn.Module]
    call_values: List[Tuple[tuple, dict]]
    outputs: List[Any]
    model_output: Any = None  # shape tree of the root's output
    failed_index: Optional[int] = None
    peak_memory_bytes: Optional[int] = None
    seconds: float = 0.0
    notes: List[str] = field(default_factory=list)  # what the report must say about how the pass ran
    window_ops: Dict[int, list] = field(default_factory=dict)  # call index -> its conv/pool operator calls
    operators: Optional[OperatorTable] = None  # operator calls and multiply-adds per call
    packed: Optional[Dict[int, tuple]] = None  # id(module) -> packed weight/bias of quantized modules
    tree: Optional[ModuleTree] = None  # the traced model's modules as they are after the pass
    # stock leaf calls whose operators were replayed (netscope.run.leaf_replay): call index -> the earlier call
    # with the same signature (class, configuration, tensors and inputs), whose operators it ran
    same_as: Dict[int, int] = field(default_factory=dict)
    # plain module attributes the forward changed, which no guard can restore (netscope.run.model_state)
    changed_attributes: List[str] = field(default_factory=list)
    # call index -> shape tree its forward returned, for calls whose own forward hooks replaced that output (the
    # row shows what the caller received; the layer's formula is checked on what its forward returned)
    forward_outputs: Dict[int, Any] = field(default_factory=dict)
    census: Optional[ParamCensus] = None  # tree's parameter slots after the pass, for totals and owners

    @property
    def replayed(self) -> int:
        return len(self.same_as)


_TENSOR = torch.Tensor
_STRIDED = torch.strided
_weak = weakref.ref


class _OpenCall:
    """One module call as the recorder sees it (slots: one object per call for the collector, not two)."""

    __slots__ = ("index", "module", "name", "parent", "depth", "call_number", "args", "kwargs", "inputs_from",
                 "output", "output_bytes", "own_macs", "failed", "finished", "origin", "error", "field", "replay",
                 "recording", "entry", "block")

    def __init__(self, index, module, name, parent, depth, call_number, args, kwargs, inputs_from=NO_SOURCES):
        self.index = index
        self.module = module
        self.name = name
        self.parent = parent
        self.depth = depth
        self.call_number = call_number
        self.args = args
        self.kwargs = kwargs
        self.inputs_from = inputs_from  # indexes of the calls that produced its tensor arguments (dataflow)
        self.output = None  # shapes_only(output): tensors are not kept alive past their call
        self.output_bytes = 0
        self.own_macs = 0
        self.failed = False
        self.finished = False
        self.origin = None  # when failed: the innermost call the exception came from
        self.error = None  # when failed: the exception that left this call
        self.field = None  # receptive field of the output (netscope.analyses.receptive_field), when tracked
        self.replay = None  # a stock leaf replaying a recorded call's operators (netscope.run.leaf_replay)
        self.recording = None  # a stock leaf whose operators are being recorded for replay
        self.entry = None  # a stock leaf's recorded operators, once it returned (recorded or replayed)
        self.block = None  # a stock nn.Sequential block's signature, while it runs to be recorded for replay


class _Recorder:
    """The stack of open module calls and what each one received and returned.

    :func:`recording_calls` routes every module call of the process through one wrapper around torch's own
    call path (modules outside ``names`` pass straight through), which opens and closes the call here
    (:meth:`arguments`, :meth:`output`, :meth:`_close` and :meth:`failed` for what it does not read itself):
    one wrapper instead of two global hooks, so it sees keyword arguments when a call opens and costs less
    per call than torch's hook machinery.
    """

    def __init__(self, names: Dict[int, str], advance: Optional[Callable[[int], None]] = None):
        self.names = names
        self.advance = advance
        self.calls: List[_OpenCall] = []
        self.stack: List[_OpenCall] = []
        self.call_counts: Dict[int, int] = {}
        self.outside = _OpenCall(-1, None, "", None, 0, 0, (), {})  # operators run outside every module call
        # One entry per operator call, flat (no per-call containers for the garbage collector to walk):
        # the innermost open call's index (-1 outside every call) and the op packet; and, for operators
        # with a formula, the same with their multiply-adds.
        self.op_calls: List[int] = []
        self.op_packets: List[Any] = []
        self.mac_calls: List[int] = []
        self.mac_packets: List[Any] = []
        self.mac_values: List[int] = []
        self.last_failed: Optional[_OpenCall] = None  # the call whose failure was the latest event
        self.field_of: Optional[Callable[[Any], Any]] = None  # output -> its receptive field
        self.flow = DataflowTracker(self.stack)  # which call produced each tensor (netscope.run.dataflow)
        self.replay: Optional[LeafReplay] = None  # set by the pass when identical stock leaves may be replayed
        self.forward_outputs: Dict[int, Any] = {}  # call index -> what its forward returned, before its forward hooks
        self.suspended = False  # a pass nested in this one's forward is running: it sees none of that pass
        # (module, its class's own __call__ bound) for the call about to open of a module whose class overrides
        # __call__ (call_model's _recorded_override): recording_calls' wrapper runs that instead of forward
        self.overriding: Optional[Tuple[nn.Module, Callable]] = None
        self.user_code: Optional[Callable] = None  # the context of the user's code (their function modes), or None
        self.call: Optional[Callable] = None  # recording_calls' module call, while it wraps torch's

    def arguments(self, args: tuple, kwargs: dict) -> Tuple[tuple, dict, FrozenSet[int]]:
        """What a call that opens keeps of its arguments: their shapes (positional, keyword) and the calls that
        produced them (the general case: :func:`recording_calls` reads one plain tensor itself)."""
        shapes = ((args[0].shape,) if len(args) == 1 and isinstance(args[0], torch.Tensor) and not args[0].is_nested
                  else shapes_only(args))
        sources = self.flow.producers(args)
        kept = {}
        if kwargs:
            kept = shapes_only(kwargs)
            sources = sources | self.flow.producers(kwargs)
        return shapes, kept, sources

    def _close(self, call: _OpenCall, raised: bool) -> None:
        stack = self.stack
        while stack:  # the call is on top (each call closes through here); popping to it is only defensive
            top = stack.pop()
            if top.replay is not None or top.recording is not None:
                self.replay.finish(top, raised=top is not call or raised)
            if top is call:
                break
        if self.advance is not None:
            self.advance(1)

    def output(self, call: _OpenCall, output) -> None:
        """What a call that returned keeps of ``output``, and its claim on the tensors in it (the general case:
        :func:`recording_calls` reads one plain tensor itself)."""
        if isinstance(output, torch.Tensor) and not output.is_nested and output.layout is _STRIDED:
            call.output = output.shape
            call.output_bytes = output.numel() * output.element_size()  # a sparse one: tensor_bytes, below
        else:
            call.output = shapes_only(output)
            call.output_bytes = tensor_bytes(output)
        self.flow.claim(output, frozenset((call.index,)))

    def failed(self, call: _OpenCall, error: BaseException) -> None:
        """The call raised ``error``. It came out of a child when that child's failure, with the same
        exception, was the last thing that happened; otherwise this call's own code raised it (a child's
        error the code caught and replaced, or a new one)."""
        self._close(call, True)
        call.failed = True
        call.error = error
        previous = self.last_failed
        same = previous is not None and previous.parent == call.index and previous.error is error
        call.origin = previous.origin if same else call
        self.last_failed = call


@contextlib.contextmanager
def recording_calls(recorder: _Recorder, hooks: Optional[HookState] = None):
    """Every module call in the process goes through ``recorder`` while the block runs: ``nn.Module._call_impl``
    (what ``module(...)`` runs, hooks and all) is wrapped process-wide and restored afterwards, whatever
    happens; under ``GLOBAL_STATE_LOCK`` (two threads tracing at once take turns). ``hooks``: which modules had
    call hooks as the block began (``kept_hooks``): a call of any other reads no hook table while torch's handle
    counter has not moved since; without it, every call reads its module's four tables."""
    original = nn.Module._call_impl
    names = recorder.names
    calls, stack, counts, made = recorder.calls, recorder.stack, recorder.call_counts, recorder.flow.made
    arguments, kept_output, close, failed = recorder.arguments, recorder.output, recorder._close, recorder.failed
    advance = recorder.advance
    # torch's process-wide hook tables (mutated in place by register_module_*_hook, never rebound)
    global_forward_pre, global_forward = module_globals._global_forward_pre_hooks, module_globals._global_forward_hooks
    global_backward, global_backward_pre = module_globals._global_backward_hooks, module_globals._global_backward_pre_hooks
    user_modes = function_modes_set_aside()  # the user's TorchFunctionModes see their code (module calls) only
    if user_modes:
        call_original = _under(under_user_function_modes, original)

        def tracing_state():  # every call through call_original: its forward runs under the user's modes
            return True
    else:
        call_original = original
        tracing_state = torch._C._get_tracing_state  # torch.jit.trace: forward goes through _slow_forward then
    handles = RemovableHandle  # its next_id moves with every hook registered anywhere
    hooked = hooks.hooked if hooks is not None else None
    # the handle counter as the pass left it: moved by _forward_output_kept's own hook, then by nothing else
    expected = [hooks.next_id] if hooks is not None else None

    def _call_impl(module, *args, **kwargs):
        key = id(module)
        name = names.get(key)
        if name is None or recorder.suspended:  # a module of some other model, one created during the pass, or
            # a call of a netscope pass the forward started (``netscope.summary`` of a submodule)
            return call_original(module, *args, **kwargs)
        # The call opens (before its own pre-hooks run): its place in the stack, its arguments' shapes and
        # producers (one plain tensor read here, the rest by the recorder), and a stock leaf's replay
        count = counts[key] = counts.get(key, 0) + 1
        first = args[0] if len(args) == 1 else None
        if type(first) is _TENSOR and not kwargs and not first.is_nested:
            shapes, kept = (first.shape,), {}
            entry = made.get(id(first))
            sources = entry[1] if entry is not None and entry[0]() is first else NO_SOURCES
        else:
            shapes, kept, sources = arguments(args, kwargs)
        overriding = recorder.overriding  # set by _recorded_override just before it calls this wrapper
        if overriding is not None:
            recorder.overriding = None
            if overriding[0] is not module:
                overriding = None
        call = _OpenCall(len(calls), module, name, stack[-1].index if stack else None, len(stack), count, shapes,
                         kept, sources)
        calls.append(call)
        stack.append(call)
        recorder.last_failed = None
        state = module.__dict__
        if hooked is None:
            has_hooks = (state.get("_forward_pre_hooks", True) or state.get("_forward_hooks", True)
                         or state.get("_backward_hooks", True) or state.get("_backward_pre_hooks", True))
        else:  # none unless it had some as the pass began or a hook was registered since
            has_hooks = key in hooked or handles.next_id != expected[0]
        replay = recorder.replay
        template = None
        if replay is not None:
            if not module._modules:
                replay.start(call, module, args, kwargs, bool(has_hooks))
            elif not has_hooks and not kept and len(shapes) == 1 and type(first) is _TENSOR and overriding is None:
                template = replay.block_start(call, module, first, hooked, names)
        try:
            # torch's own call runs forward straight away without hooks (one module call in deep models is
            # 1-2 us of Python): the same checks here, and torch's call path for everything else
            if overriding is not None:  # its class's own __call__: a super().__call__ inside passes through
                del names[key]  # unrecorded (the call is open already)
                try:
                    output = overriding[1](*args, **kwargs)
                finally:
                    names[key] = name
            elif (has_hooks or global_forward_pre or global_forward or global_backward or global_backward_pre
                    or tracing_state()):
                if state.get("_forward_hooks"):  # its own forward hooks may replace what forward returned
                    output = _forward_output_kept(call_original, module, args, kwargs, recorder.forward_outputs,
                                                  call.index, expected)
                else:
                    output = call_original(module, *args, **kwargs)
            elif template is not None:  # a stock block like an earlier one: its children's calls copied
                output = replayed_block(call, module, first, template)
            else:
                output = module.forward(*args, **kwargs)
        except BaseException as error:
            failed(call, error)
            raise
        # The call returned (after its own forward hooks): it closes, and keeps its output's shapes
        if stack and stack[-1] is call:  # the usual close (_close's, inlined)
            stack.pop()
            if call.replay is not None or call.recording is not None:
                replay.finish(call, raised=False)
            elif call.block is not None:
                replay.block_finish(call, calls)
            if advance is not None:
                advance(1)
        else:
            close(call, False)
        if type(output) is _TENSOR and not output.is_nested and output.layout is _STRIDED:  # the usual output,
            call.output = output.shape  # claimed here as flow.claim does (a sparse one's bytes: kept_output's)
            call.output_bytes = output.numel() * output.element_size()
            made[id(output)] = (_weak(output), frozenset((call.index,)))
        else:
            kept_output(call, output)
        call.finished = True
        recorder.last_failed = None
        if recorder.field_of is not None:
            call.field = recorder.field_of(output)
        return output

    def replayed_block(call: _OpenCall, module: nn.Module, x, template: tuple):
        """Run a stock block's children as torch's call path would (no hooks: straight to forward) without
        observing their operators, then open and close each child's call with what the template recorded. A child
        that raises (out of memory; an index out of range) gets its own failed call, as it would have."""
        children = list(module._modules.values())
        ran = 0
        exclude_python(True)
        try:
            for child in children:
                x = child.forward(x)
                ran += 1
        except BaseException as error:
            exclude_python(False)
            sources = copied_calls(call, children[:ran], template)
            shape = template[ran][0]
            failing = _OpenCall(len(calls), children[ran], names[id(children[ran])], call.index, call.depth + 1,
                                counted(children[ran]), (shape,), {}, sources)
            calls.append(failing)
            failing.failed, failing.error, failing.origin = True, error, failing
            recorder.last_failed = failing
            if advance is not None:
                advance(1)
            raise
        exclude_python(False)
        copied_calls(call, children, template)
        return x

    def counted(module: nn.Module) -> int:
        """The module's call number for a call that opens now."""
        key = id(module)
        number = counts[key] = counts.get(key, 0) + 1
        return number

    def copied_calls(call: _OpenCall, children: list, template: tuple) -> FrozenSet[int]:
        """Open and close a call of each child with what the template recorded, charged as a replayed leaf; the
        producers of the next child's input."""
        parent, depth, sources = call.index, call.depth + 1, call.inputs_from
        charge = recorder.replay.charge
        for child, (shape, output, output_bytes, entry) in zip(children, template):
            index = len(calls)
            done = _OpenCall(index, child, names[id(child)], parent, depth, counted(child), (shape,), {}, sources)
            done.output = output
            done.output_bytes = output_bytes
            done.finished = True
            calls.append(done)
            charge(done, entry)
            sources = frozenset((index,))
        if advance is not None and children:
            advance(len(children))
        return sources

    # torch before 2.1 bound __call__ to _call_impl itself (no _wrapped_call_impl in between): wrap both then
    direct = nn.Module.__dict__.get("__call__") is original
    if user_modes:  # a call the user's code makes: netscope's part out of their sight
        installed = _under(function_modes_aside, _call_impl)
        recorder.user_code = under_user_function_modes
    else:
        installed = _call_impl
    with GLOBAL_STATE_LOCK:
        nn.Module._call_impl = installed
        if direct:
            nn.Module.__call__ = installed
        recorder.call = installed
        try:
            yield
        finally:
            recorder.call = None  # (no reference cycle through the wrapper's closure left behind)
            recorder.user_code = None
            nn.Module._call_impl = original
            if direct:
                nn.Module.__call__ = original


_PASSES: List[Tuple[int, _Recorder]] = []  # (thread, recorder) of each pass running, innermost last


@contextlib.contextmanager
def paused_outer_pass():
    """Around a netscope call that a traced forward makes itself (a model whose forward calls
    ``netscope.summary`` or ``step`` on a submodule): the pass tracing that forward in this thread records none of
    the call's module calls and operators (its dummy inputs, its own pass) while it runs; a no-op otherwise."""
    outer = _PASSES[-1][1] if _PASSES and _PASSES[-1][0] == threading.get_ident() else None
    if outer is None or outer.suspended:
        yield
        return
    outer.suspended = True
    try:
        yield
    finally:
        outer.suspended = False


@contextlib.contextmanager
def _registered_pass(recorder: _Recorder):
    """``recorder``'s pass is the innermost of this thread (under GLOBAL_STATE_LOCK), an outer one paused."""
    with paused_outer_pass():
        _PASSES.append((threading.get_ident(), recorder))
        try:
            yield
        finally:
            _PASSES.pop()


def _forward_output_kept(original, module: nn.Module, args: tuple, kwargs: dict, kept: Dict[int, Any], index: int,
                         expected: Optional[List[int]] = None):
    """torch's call of a module that has forward hooks, keeping in ``kept[index]`` the shapes its forward returned,
    seen by a hook that runs before the module's own (a hook may return a replacement output). ``expected``:
    recording_calls' handle count, moved past this hook's own handle when nothing else had moved it."""

    def keep(_module, _args, output):
        with function_modes_aside():  # netscope's read, inside the user's code (their function modes)
            kept[index] = (output.shape if isinstance(output, torch.Tensor) and not output.is_nested
                           else shapes_only(output))

    before = RemovableHandle.next_id
    handle = module.register_forward_hook(keep, prepend=True)
    if expected is not None and expected[0] == before:
        expected[0] = RemovableHandle.next_id
    try:
        return original(module, *args, **kwargs)
    finally:
        handle.remove()


class _MacCounter(TorchDispatchMode):
    """Counts each operator call and charges its multiply-adds to the innermost open call (kept lean:
    it sees every op; ``ops`` resolves an operator against the formula registry once per pass)."""

    def __init__(self, recorder: _Recorder, ops: OpResolver, observers: Tuple[Callable, ...] = ()):
        super().__init__()
        self.recorder = recorder
        self.ops = ops
        self.observers = observers  # each called as observe(func, args, kwargs, out) after every operator
        self.stack = recorder.stack  # the recorder's lists themselves (mutated, never replaced)
        self.outside = recorder.outside
        self.op_call = recorder.op_calls.append
        self.op_packet = recorder.op_packets.append
        self.composite: Dict[Any, bool] = {}  # op overload -> has a CompositeImplicitAutograd decomposition

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # This mode never compiles anything; opting out of torch's dynamo-disable wrapper saves a
        # Python call per operator and the ~2 s first-use import of torch._dynamo.
        return False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if self.recorder.suspended:  # an operator of a netscope pass the forward started: not this model's work
            return func(*args, **kwargs) if kwargs else func(*args)
        whole = self.composite.get(func)
        if whole is None:
            whole = self.composite[func] = _composite(func)
        if whole and not _any_nested(args, kwargs):  # arrived whole (autograd skipped): decompose as outside
            with self:
                out = func.decompose(*args, **(kwargs or {}))
            if out is not NotImplemented:
                return out
        out = func(*args, **kwargs) if kwargs else func(*args)
        packet = func._overloadpacket
        formula = self.ops.get(packet, UNSEEN)
        if formula is UNSEEN:
            formula = self.ops.first_sight(func)
        stack = self.stack
        call = stack[-1] if stack else self.outside
        self.op_call(call.index)
        self.op_packet(packet)
        if formula is not None:
            macs = formula(*args, **(kwargs or {}), out_val=out)
            call.own_macs += macs
            recorder = self.recorder
            recorder.mac_calls.append(call.index)
            recorder.mac_packets.append(packet)
            recorder.mac_values.append(macs)
        for observe in self.observers:
            observe(func, args, kwargs, out)
        return out


def _composite(func) -> bool:
    """Whether ``func`` is one of torch's composite operators (``aten::conv2d``, ``aten::linear``): outside
    ``torch.inference_mode`` autograd decomposes them before any dispatch mode sees them (``aten::convolution``,
    ``aten::addmm``), inside it (or on inference tensors) they arrive whole. Decomposing them in the mode keeps
    the operators, and so the multiply-adds, those of the same pass outside the user's context."""
    try:
        return torch._C._dispatch_has_kernel_for_dispatch_key(func.name(), "CompositeImplicitAutograd")
    except RuntimeError:  # not a dispatcher operator (``aten::sym_size``, reaching a mode from Python)
        return False


def _any_nested(args, kwargs) -> bool:
    """A nested tensor among the operands: its composite operators have kernels of their own (counted whole)."""
    return any(isinstance(value, torch.Tensor) and value.is_nested
               for value in torch.utils._pytree.tree_leaves((args, kwargs)))


def trace(model: nn.Module, inputs: Tuple[tuple, dict], *, mode: str = "eval",
          progress: Optional[Callable[[int], None]] = None, fake: bool = False,
          receptive_field: bool = False, tree: Optional[ModuleTree] = None, operators: bool = True) -> TraceResult:
    """Run ``model`` once on ready ``(args, kwargs)`` and record every module call.

    Placement, dtype and dummy inputs are :mod:`netscope.run.prepare`'s job (``prepared`` then ``run_pass``, which
    also retries a meta pass under fake tensors); ``trace`` runs what it is given, where it is.
    ``fake``: run under a FakeTensorMode (inputs converted to fake tensors).
    ``progress``: called with 1 after each module call returns (``netscope.progress.progress``'s
    ``advance``; ``module_count(model)`` is the usual total). ``receptive_field``: track each call's
    receptive field (``netscope.analyses.receptive_field``). ``tree``: ``model``'s :class:`ModuleTree`, when the
    caller has walked it already. ``operators=False``: a pass that records module calls only (shapes), no
    operator is observed, so the result's multiply-adds, operator table and merges are empty: for the size
    solver's probes, which read shapes and whether the forward ran.
    """
    if mode not in ("eval", "train"):
        raise ValueError(f"mode must be 'eval' or 'train', not {mode!r}")
    args, kwargs = inputs
    device = model_device(model)
    for value in torch.utils._pytree.tree_leaves((args, kwargs)):
        if isinstance(value, torch.Tensor):
            device = value.device
            break
    tree = tree_of(model, tree)
    run = functools.partial(_run, model, tuple(args), dict(kwargs), train=(mode == "train"), device=device,
                            advance=progress, fake=fake, receptive_field=receptive_field, operators=operators)
    # A forward that adds, removes or replaces a submodule leaves the model with its children as given. The
    # snapshot is the one the model-state guard compares against: the children are walked once before the pass.
    children = children_snapshot(tree)
    intact = False
    try:
        result = run(tree=tree, children=children)
        intact = result.tree is tree  # the guard found every registered child where it was: nothing to put back
        if not intact:
            before, after = set(tree.names.values()), set(result.tree.names.values())
            added, removed = sorted(after - before), sorted(before - after)
            if added:  # created on first use (lazy init): the report from a second pass that finds them in place
                result = run(tree=result.tree)
            changed = "; ".join(filter(None, (f"added {', '.join(added)}" if added else "",
                                               f"removed {', '.join(removed)}" if removed else ""))) or "replaced some"
            result.notes.append(
                f"the forward pass changed the model's submodules ({changed})"
                + (": this report is of a second pass with them in place" if added else "")
                + ", and the model was left with its submodules as given (its own forward will change them again)")
    finally:
        if not intact:
            children.restore(tree.tables("_modules"))
    return result


def module_count(model: nn.Module) -> int:
    """Distinct modules in ``model``: the number of calls a pass usually records (a progress total)."""
    return sum(1 for _ in model.modules())


def model_device(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def model_float_dtype(model: nn.Module) -> str:
    for tensor in model.parameters():
        if tensor.is_floating_point():
            return str(tensor.dtype).removeprefix("torch.")
    return "float32"


def _run(model: nn.Module, args: tuple, kwargs: dict, *, train: bool, device: torch.device, tree: ModuleTree,
         advance: Optional[Callable[[int], None]] = None, fake: bool = False,
         receptive_field: bool = False, children=None, operators: bool = True) -> TraceResult:
    if receptive_field and not operators:
        raise ValueError("receptive fields are derived from the operators: they need operators=True")
    recorder = _Recorder(tree.names, advance)
    window_ops = WindowOpLog(recorder)
    observers = [window_ops.observe, recorder.flow.observe]
    # fields only when the first input is spatial (floating, rank >= 3): otherwise nothing to track
    fields = FieldTracker() if receptive_field and args and input_field(args[0]) is not None else None
    if fields is not None:
        recorder.field_of = fields.field_of
        observers.append(fields.observe)
    ops = OpResolver()
    cuda = device.type == "cuda"
    start = time.perf_counter()
    baseline = None
    error: Optional[BaseException] = None
    output = None
    script = isinstance(model, torch.jit.ScriptModule)
    try:
        with GLOBAL_STATE_LOCK, _registered_pass(recorder), frozen_heap(), \
                preserved_model(model, train=train, tree=tree, children=children) as changes, \
                recording_calls(recorder, changes.hooks):
            if operators and not fake and fields is None and not script and replay_possible():
                recorder.replay = LeafReplay(recorder, window_ops)
            if cuda:
                torch.cuda.synchronize(device)
                baseline = torch.cuda.memory_allocated(device)
                torch.cuda.reset_peak_memory_stats(device)
            try:
                fake_mode = _fake_mode(fake)
                counter = _MacCounter(recorder, ops, tuple(observers)) if operators else contextlib.nullcontext()
                with fake_mode, counter:
                    if fake:  # inputs as fake tensors, so code that checks for them (transformers) sees them
                        args, kwargs = torch.utils._pytree.tree_map_only(torch.Tensor, fake_mode.from_tensor,
                                                                         (args, kwargs))
                    recorder.flow.claim((args, kwargs), frozenset((MODEL_INPUT,)))
                    if fields is not None and args:
                        fields.add_input(args[0])
                    output = call_model(recorder, model, args, kwargs, tree)
            except Exception as exc:  # the user's forward failed: report where, then re-raise as ForwardError
                error = exc
            if cuda:
                torch.cuda.synchronize(device)
    finally:
        if recorder.replay is not None:
            recorder.replay.close(excluded_before=False)
    peak = torch.cuda.max_memory_allocated(device) - baseline if cuda else None
    built = module_tree(model) if changes.modules_changed else tree  # the modules as the forward left them
    with paused_gc():
        census = param_census(built, changes.parameters) if built is tree and changes.parameters is not None else None
        result = _build_result(built, recorder, ops, output, time.perf_counter() - start, peak,
                               structure_only=script, census=census)
    result.tree = built
    result.window_ops = window_ops.by_call()
    if recorder.replay is not None:
        result.same_as = recorder.replay.same_as
    if script:
        result.notes.append(
            "TorchScript module: its compiled code runs without module hooks, so only the whole model's input and "
            f"output shapes and multiply-adds are recorded; layers inside show parameters and {NOT_RECORDED} shapes")
    result.changed_attributes = list(changes.changed_attributes)
    autocast = _autocast_dtype(device)
    if autocast is not None:
        result.notes.append(
            f"the pass ran inside the caller's torch.autocast({device.type!r}, dtype=torch.{autocast}): the operators "
            f"it covers computed in {autocast}, and output sizes are those of that pass")
    if isinstance(output, collections.abc.Iterator) and not isinstance(output, torch.Tensor):
        result.notes.append(
            f"the forward returned a {type(output).__name__} that netscope does not consume: the work it would do when "
            "consumed did not run, so its layers and multiply-adds are not in this report")
    if changes.changed_in_place:
        result.notes.append(
            "the forward pass wrote these parameters in place (netscope cannot undo that without a copy of every "
            f"weight): {', '.join(changes.changed_in_place)}")
    if error is not None:
        raise _forward_error(model, result, error) from error
    return result


_SCRIPT_MODULE = torch.jit.ScriptModule


def _autocast_dtype(device: torch.device) -> Optional[str]:
    """The dtype of the caller's ``torch.autocast`` in effect for ``device``'s type, or None."""
    try:
        if not torch.is_autocast_enabled(device.type):
            return None
        return str(torch.get_autocast_dtype(device.type)).removeprefix("torch.")
    except RuntimeError:  # a device type autocast does not know (meta)
        return None


def _fake_mode(enabled: bool):
    """A FakeTensorMode that accepts the meta-device model and inputs as they are, or a no-op."""
    if not enabled:
        return contextlib.nullcontext()
    from torch._subclasses.fake_tensor import FakeTensorMode

    return FakeTensorMode(allow_non_fake_inputs=True)


def call_model(recorder: _Recorder, model: nn.Module, args: tuple, kwargs: dict, tree: Optional[ModuleTree] = None):
    """Run ``model`` (a ``torch.compile`` wrapper through its eager module) under ``recording_calls(recorder)``
    with the model as call 0; modules whose class overrides ``__call__`` (the root or a child) are recorded too
    (:func:`_recording_overridden_calls`). ``tree``: ``model``'s walk, when the caller has it."""
    with _eager_stance(), _recording_overridden_calls(recorder, tree_of(model, tree)):
        return _eager(model)(*args, **kwargs)


# What ``module(...)`` runs that a class may define in place of ``nn.Module``'s: its own ``__call__``, or its own
# ``_call_impl`` (which torch's ``__call__`` calls, so the one wrapped process-wide is not reached)
_CALL_PATH = ("__call__", "_call_impl")


def _call_overrides(tree: ModuleTree) -> Dict[Tuple[type, str], Any]:
    """``(class, attribute)`` -> what the class holds, for the classes among those of ``tree``'s modules and their
    bases that define their own ``__call__`` or ``_call_impl`` in place of ``nn.Module``'s (the first along each
    module's MRO, per attribute). Only classes ``torch.nn`` does not define are looked at (``tree.custom``, walked
    once for the model-state guard anyway), each once."""
    owners: Dict[Tuple[type, str], Any] = {}
    seen = set()
    modules = tree.modules
    for index in tree.custom:
        cls = type(modules[index])
        if cls in seen:
            continue
        seen.add(cls)
        for attribute in _CALL_PATH:
            for base in cls.__mro__:
                if attribute in base.__dict__:
                    if base is not nn.Module and (base, attribute) not in owners:
                        owners[base, attribute] = base.__dict__[attribute]
                    break
    return owners


@contextlib.contextmanager
def _recording_overridden_calls(recorder: _Recorder, tree: ModuleTree):
    """While the block runs, each class of ``tree`` that overrides ``__call__`` or ``_call_impl`` has it wrapped so that
    a call of one of the traced modules opens its own row, as ``nn.Module._call_impl`` would (torch's call path never
    sees such a module unless it goes back through ``nn.Module``'s); restored afterwards, whatever happens.
    Ordinary modules are not touched: their calls keep the one wrapper of ``recording_calls``."""
    owners = _call_overrides(tree)
    done = []
    try:
        for (owner, attribute), defined in owners.items():
            try:
                type.__setattr__(owner, attribute, _recorded_override(recorder, defined))
            except (TypeError, AttributeError):  # a class that refuses (an extension type): its calls go unseen,
                continue  # and a note names the modules without a row (_bypassed_note)
            done.append((owner, attribute))
        yield
    finally:
        for owner, attribute in done:
            type.__setattr__(owner, attribute, owners[owner, attribute])


def _recorded_override(recorder: _Recorder, defined):
    """A class's own ``__call__`` (``defined``, as the class holds it) that opens a call of a traced module through
    ``recording_calls``' wrapper, which runs it with the module out of ``recorder.names``: a ``super().__call__``
    inside passes through torch's call path unrecorded (the call is open already)."""
    names = recorder.names

    bind = getattr(type(defined), "__get__", None)  # a function binds to the module; a callable object does not

    def __call__(module, *args, **kwargs):
        run = defined if bind is None else bind(defined, module, type(module))
        key = id(module)
        name = names.get(key)
        if name is None or recorder.suspended:  # a module outside the traced model, or one already open
            return run(*args, **kwargs)
        if recorder.user_code is not None:  # the class's own __call__ is the user's code: under their modes
            run = _under(recorder.user_code, run)
        recorder.overriding = (module, run)  # recording_calls' wrapper opens the call and runs ``run`` in it
        return recorder.call(module, *args, **kwargs)

    if callable(defined) and hasattr(defined, "__name__"):
        functools.update_wrapper(__call__, defined)
    return __call__


def _under(context: Callable, run: Callable) -> Callable:
    """``run`` inside a fresh ``context()`` each time it is called."""
    def wrapped(*args, **kwargs):
        with context():
            return run(*args, **kwargs)

    return wrapped


def _eager_stance():
    """Functions the model compiled with ``torch.compile`` (a compiled forward method, a decorated helper) run
    eagerly during the pass: nothing is compiled (dynamo traced netscope's own dispatch mode otherwise) and every
    operator is seen. Without ``torch._dynamo`` imported, nothing can have been compiled."""
    if "torch._dynamo" not in sys.modules or not hasattr(torch.compiler, "set_stance"):
        return contextlib.nullcontext()
    return torch.compiler.set_stance("force_eager")


def _eager(model: nn.Module) -> nn.Module:
    """The module to call: a ``torch.compile`` wrapper is run through its original eager module, which
    keeps the ``_orig_mod.`` names of the wrapper's state_dict."""
    from netscope.wrappers import wrapper_kind

    kind = wrapper_kind(model)
    original = getattr(model, kind.attribute, None) if kind is not None and kind.label == "torch.compile" else None
    return original if isinstance(original, nn.Module) else model


def _build_result(tree: ModuleTree, recorder: _Recorder, ops: Optional[OpResolver], output, seconds: float, peak, *,
                  structure_only: bool = False, census: Optional[ParamCensus] = None) -> TraceResult:
    named = tree.named
    packed = packed_by_module(tree.modules)
    census = census if census is not None else param_census(tree)
    calls: List[LayerCall] = []
    open_calls = recorder.calls
    if structure_only:  # a TorchScript model: its submodules listed, never called through hooks
        called = {id(c.module) for c in open_calls}
        rows = {c.name: c.index for c in open_calls}
        for name, module in named:
            if id(module) not in called:
                called.add(id(module))
                parent = rows.get(name.rpartition(".")[0]) if name else None
                depth = name.count(".") + 1 if name else 0
                rows[name] = len(open_calls)
                open_calls.append(_OpenCall(len(open_calls), module, name, parent, depth, 0, (), {}))
    modules = list(map(_MODULE, open_calls))
    bypassed = _bypassed_note(tree, open_calls, modules)
    total_macs = [c.own_macs for c in open_calls]
    for call in reversed(open_calls):  # children follow their parent: roll multiply-adds up in reverse
        if call.parent is not None:
            total_macs[call.parent] += total_macs[call.index]
    outside = recorder.outside
    if open_calls:
        total_macs[0] += outside.own_macs
    failed_index = None
    if open_calls and open_calls[0].failed and open_calls[0].origin is not None:
        failed_index = open_calls[0].origin.index  # where the exception that ended the pass was raised
    merges = recorder.flow.merges
    windowed: Dict[type, bool] = {}  # class -> whether it has kernel_size (then read per module)
    behaviours: Dict[type, Any] = {}  # class -> its configuration attributes' names (behaviour_key's memo)
    class_names: Dict[type, str] = {}  # (not scripted classes: each scripted module has its own name)
    scripted: List[str] = []  # scripted submodules of an eager model: their layers ran unseen
    # a replayed stock leaf ran an earlier call's operators on the same signature (class, configuration, tensor
    # shapes, input): its class, input shapes, parameters, multiply-adds and hyperparameters are that call's row's
    same_as = recorder.replay.same_as if recorder.replay is not None else {}
    params = _call_params(tree, packed, census, modules)
    for call, module, (own, subtree, trainable) in zip(open_calls, modules, params):
        source = same_as.get(call.index) if same_as else None
        if source is not None and call.finished:
            index = call.index
            returned = call.output
            fields = calls[source].__dict__.copy()
            fields["index"] = index
            fields["name"] = call.name
            fields["depth"] = call.depth
            fields["parent"] = call.parent
            fields["call_number"] = call.call_number
            fields["input_shapes"] = list(fields["input_shapes"])
            fields["output_shapes"] = tuple(returned) if type(returned) is torch.Size else shape_tree(returned)
            fields["trainable"] = trainable
            fields["output_bytes"] = call.output_bytes
            fields["is_leaf"] = not module._modules
            fields["receptive_field"] = call.field
            sources = call.inputs_from
            fields["inputs_from"] = tuple(sources) if len(sources) < 2 else edge_tuple(sources)
            fields["merges"] = tuple((op, edge_tuple(s)) for op, s in merges[index]) if index in merges else ()
            calls.append(record_from_fields(LayerCall, fields))
            continue
        cls = type(module)
        if call.finished:
            returned = call.output
            output_tree = tuple(returned) if type(returned) is torch.Size else shape_tree(returned)
        else:
            output_tree = FAILED if call.failed else NOT_RECORDED
        args = call.args
        if type(args) is tuple and len(args) == 1 and type(args[0]) is torch.Size:  # the usual call
            input_shapes = [tuple(args[0])]
        else:
            input_shapes = [shape_tree(a) for a in args]
        if call.kwargs:
            input_shapes.append(shape_tree(call.kwargs))
        index = call.index
        windowed_class = windowed.get(cls)
        if windowed_class is None:
            windowed_class = windowed[cls] = hasattr(cls, "kernel_size")
        class_name = class_names.get(cls)
        if class_name is None:
            class_name = class_name_of(module)
            if not issubclass(cls, _SCRIPT_MODULE):
                class_names[cls] = class_name
            elif index and call.call_number == 1 and not structure_only:  # one class for every scripted module
                scripted.append(call.name)
        calls.append(record_from_fields(LayerCall, {
            "index": index,
            "name": call.name,
            "class_name": class_name,
            "depth": call.depth,
            "parent": call.parent,
            "call_number": call.call_number,
            "input_shapes": input_shapes,
            "output_shapes": output_tree,
            "own_params": own,
            "subtree_params": subtree,
            "trainable": trainable,
            "own_macs": call.own_macs + (outside.own_macs if index == 0 else 0),
            "macs": total_macs[index],
            "output_bytes": call.output_bytes,
            "is_leaf": not module._modules,
            # hasattr() on a module without the attribute goes through nn.Module.__getattr__ and an
            # AttributeError: the class (memoized) and the instance dict are asked first
            "hyperparams": _hyperparams(module) if windowed_class or "kernel_size" in module.__dict__ else {},
            "receptive_field": call.field,
            "inputs_from": edge_tuple(call.inputs_from),
            "merges": tuple((op, edge_tuple(s)) for op, s in merges[index]) if index in merges else (),
            "behaviour": behaviour_key(module, behaviours),
        }))
    forward_outputs = {}
    for index, returned in recorder.forward_outputs.items():
        tree = tuple(returned) if type(returned) is torch.Size else shape_tree(returned)
        if tree != calls[index].output_shapes:
            forward_outputs[index] = tree
    return TraceResult(
        calls=calls,
        modules=modules,
        call_values=list(map(_VALUES, open_calls)),
        outputs=[c.output if c.finished else None for c in open_calls],
        model_output=shape_tree(output) if output is not None else None,
        failed_index=failed_index,
        peak_memory_bytes=peak,
        seconds=seconds,
        packed=packed,
        operators=OperatorTable(len(open_calls), recorder.op_calls, recorder.op_packets, recorder.mac_calls,
                                recorder.mac_packets, recorder.mac_values, ops.kinds, ops.complex_packets),
        notes=([_scripted_note(scripted)] if scripted else []) + bypassed,
        forward_outputs=forward_outputs,
        census=census,
    )


_MODULE, _VALUES = operator.attrgetter("module"), operator.attrgetter("args", "kwargs")


def _bypassed_note(tree: ModuleTree, open_calls: List[_OpenCall], modules: List[nn.Module]) -> List[str]:
    """A note naming the modules with a ``forward`` of their own that have no row though a module inside them ran,
    called from the row above them: they were not called as modules (``.forward(x)`` called directly, a call path
    that skips ``nn.Module``'s, or a submodule reached from outside them), so their own operators, if any, are in
    the calling row. Containers without a forward (``ModuleList``) or with one that only chains its children
    (``nn.Sequential``) are not named. ``modules``: each call's module."""
    called = set(map(id, modules))
    if len(called) >= len(tree.modules):
        return []
    by_name = dict(tree.named)
    # a container's forward that only calls its children (nn.Sequential's): iterating it by hand loses nothing but
    # its row, so it is not named (timm's poolformer head, fastvit stages, hrnet downsampling)
    chaining = (nn.Module.forward, nn.Sequential.forward)
    bypassed: Dict[str, str] = {}
    for call in open_calls:
        if call.parent is None:
            continue
        caller = open_calls[call.parent].name
        prefix = caller + "." if caller else ""
        if not call.name.startswith(prefix):  # a shared module called under another path than its first
            continue
        path = call.name
        while True:
            path = path.rpartition(".")[0]
            if len(path) <= len(caller):
                break
            module = by_name.get(path)
            if (module is not None and id(module) not in called and path not in bypassed
                    and getattr(type(module), "forward", nn.Module.forward) not in chaining):
                bypassed[path] = class_name_of(module)
    if not bypassed:
        return []
    shown = ", ".join(f"{name} ({cls})" for name, cls in list(bypassed.items())[:5])
    more = f" and {len(bypassed) - 5} more" if len(bypassed) > 5 else ""
    return [f"{shown}{more} have no row though modules inside them ran: they were not called as modules (their "
            "forward called directly as .forward(...), a call path that skips nn.Module's, or their submodules called "
            "from outside them; torch's module hooks do not see them either), so the modules inside are listed under "
            "the calling row, which also counts any operators of their own"]


def _scripted_note(names: List[str]) -> str:
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return (f"TorchScript submodule(s) {shown}: compiled code runs without module hooks, so the layers inside are "
            "not listed; each row shows its whole input and output shapes, parameters and multiply-adds")


def _call_params(tree: ModuleTree, packed: Dict[int, tuple], census: ParamCensus,
                 modules: List[nn.Module]) -> Iterable[Tuple[int, int, str]]:
    """Each call's ``(own, subtree, trainable)`` parameter counts (:func:`_param_table`), ``modules`` being the calls'
    modules: the table's entries in order when the calls are ``tree.modules`` in order (each module called once, as
    registered), else found by module; a module outside ``tree`` (removed by the forward) counted on its own."""
    table = _param_table(tree, packed, census)
    if len(modules) <= len(tree.modules) and all(map(operator.is_, modules, tree.modules)):
        return itertools.islice(zip(*table), len(modules))
    by_module = dict(zip(map(id, tree.modules), zip(*table)))
    return [by_module.get(id(m)) or _param_counts(m) for m in modules]


def _param_table(tree: ModuleTree, packed: Dict[int, tuple], census: ParamCensus) -> Tuple[list, list, list]:
    """Every module's own and subtree parameter elements and whether they are trainable (``"yes"``, ``"no"``,
    ``"partial"``, ``""`` without parameters), three lists in ``tree.modules`` order, from ``census`` (its slots
    read once).

    Without sharing, a module's subtree is a run of ``tree.modules`` (registration pre-order), so its counts are
    differences of running sums. With a module or parameter under two paths, each module's deduplicated
    ``parameters()`` is counted instead, which is exact but quadratic in depth.
    """
    if tree.shares_modules or census.distinct != len(census.params):
        return tuple(map(list, zip(*map(_param_counts, tree.modules))))
    modules = tree.modules
    own, counts, trainable = census.own, census.counts, census.own_trainable
    if packed:  # a quantized module's packed weight and bias: frozen parameters
        own, counts = list(own), list(counts)
        for index, module in enumerate(modules):
            if id(module) in packed:
                own[index] += sum(t.numel() for t in packed[id(module)])
                counts[index] += 1
    ends = tree.ends  # where each module's run ends (no sharing: ``named`` is ``modules``)
    subtree, slots, trained = _run_sums(own, ends), _run_sums(counts, ends), _run_sums(trainable, ends)
    labels = ["" if not n else "yes" if t == n else "no" if not t else "partial" for n, t in zip(slots, trained)]
    return own, subtree, labels


def _run_sums(values: list, ends: List[int]) -> list:
    """``values[i:ends[i]]`` summed for every ``i``, from running sums."""
    running = [0]
    running.extend(itertools.accumulate(values))
    return list(map(operator.sub, map(running.__getitem__, ends), running[:-1]))


def _param_counts(module: nn.Module) -> Tuple[int, int, str]:
    own = sum(p.numel() for p in module._parameters.values() if p is not None) + packed_numel(module)
    subtree = 0
    flags = set()
    for p in module.parameters():
        subtree += p.numel()
        flags.add(p.requires_grad)
    for m in module.modules():
        packed = packed_numel(m)
        if packed:
            subtree += packed
            flags.add(False)
    trainable = "" if not flags else ("yes" if flags == {True} else "no" if flags == {False} else "partial")
    return own, subtree, trainable


def _hyperparams(module: nn.Module) -> Dict[str, Any]:
    """kernel_size, stride, padding, ... of a windowed layer (a convolution or a pool)."""
    values = {}
    for name in HYPERPARAMETERS:
        value = getattr(module, name, None)
        if value is not None and isinstance(value, (int, tuple, str)) and not isinstance(value, bool):
            values[name] = value
    return values


def _forward_error(model, result: TraceResult, error: BaseException) -> ForwardError:
    index = result.failed_index
    if index is None or not result.calls:
        where = f"the forward of {type(model).__name__} itself"
        layer = ""
    else:
        call = result.calls[index]
        layer = call.name
        shapes = ", ".join(format_shape_tree(s) for s in call.input_shapes) or "no tensors"
        where = f"layer {call.name or '(root)'} ({call.class_name}), called with input shape(s) {shapes}"
    if isinstance(error, MacFormulaError):  # netscope's (or the user's) formula failed, not the model
        err = MacFormulaError(f"{error} (it ran in {where})", original=error.original, layer=layer)
    elif _out_of_memory(error):
        err = OutOfMemory(
            f"the model's forward pass ran out of memory in {where}: {type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}. Use a smaller input, or --device meta "
            "(device=\"meta\") for a run without memory: shapes, parameters and multiply-adds are exact",
            original=error, layer=layer)
    else:
        advice = dtype_advice(error) or ("Check the input shape(s) (--input on the command line, input_size/input_data "
                                         "in the API) against what this layer expects")
        default, placed = torch.get_default_device(), model_device(model)
        if default.type != placed.type and default.type != "cpu":  # set by the caller (cpu is torch's own)
            advice += (f". torch's default device is {default.type} in the calling code (torch.set_default_device or "
                       f"`with torch.device(...)`): tensors the forward creates without a device land there, while "
                       f"the model runs on {placed.type}")
        text = str(error)
        if text.endswith(".") and not text.endswith(".."):  # one full stop before the advice, not two
            text = text[:-1]
        message = f"the model's forward pass failed in {where}: {type(error).__name__}: {text}. {advice}"
        err = ForwardError(message, original=error, layer=layer)
    err.partial = result
    err.failed_index = index
    return err


def _out_of_memory(error: BaseException) -> bool:
    """torch's CUDA/CPU allocator failures and Python's MemoryError."""
    if isinstance(error, (MemoryError, torch.OutOfMemoryError)):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)
