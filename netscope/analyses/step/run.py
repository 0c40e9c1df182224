"""One training step on fake tensors: the real forward, backward and optimizer step, no memory used.

The model is copied with fake parameters (``FakeTensorMode``: shapes, dtypes and storages, no data)
and the inputs likewise, so the user's model is never touched. Then:

- the optimizer runs one step on zero gradients first, so its state exists as in every later step;
- the measured step runs under ``MemTracker`` (live bytes by category after every operator);
- the trace's call recorder (``recording_calls``) keeps the stack of open module calls; a dispatch mode charges
  each forward operator's multiply-adds to the innermost call, as ``netscope summary`` does;
- a function mode tags every autograd node created during the forward with the call that created
  it (node ``metadata``); during backward, the dispatch mode reads the running node
  (``torch._C._current_autograd_node``) and charges the backward operator to that call;
- ``saved_tensors_hooks`` sees every tensor saved for backward: each storage is counted once, charged
  to the call running when it was first saved; parameter and buffer storages are not activations.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from dataclasses import dataclass
from typing import Dict, FrozenSet, List, Optional, Tuple

import torch
import torch.nn as nn
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.weak import WeakIdKeyDictionary

from netscope.checkpoints.identity import held_bytes
from netscope.errors import ForwardError, InputSpecError, NetscopeError, UsageError
from netscope.collector import paused_gc
from netscope.run.model_state import function_modes_aside, kept_hooks, preserved_model, under_user_function_modes
from netscope.operators.registry import UNSEEN, OpResolver
from netscope.run.no_memory import meta_copy
from netscope.run.module_tree import module_tree
from netscope.run.prepare import needs_values as meta_cannot_run, quiet_fake_tensor_log
from netscope.run.trace import (TraceResult, _build_result, _forward_error, _Recorder, _under, call_model,
                               recording_calls)
from netscope.run.user_inputs import own_inputs
from netscope.analyses.step.options import OPTIMIZERS, PRECISIONS, StepOptions
from netscope.analyses.step.torch_parts import current_autograd_node, fake_tensor_mode, timeline_tracker

TAG = "netscope_call"  # key in an autograd node's metadata: index of the call whose forward created it
OUTSIDE = -1  # created or saved outside every module call (the loss)


@dataclass(frozen=True)
class ParamInfo:
    """One distinct parameter of the model and what training it costs."""

    name: str
    shape: Tuple[int, ...]
    element_size: int
    trainable: bool
    grad_bytes: int  # of its gradient after backward (0 when it got none)
    state: Tuple[Tuple[Tuple[int, ...], int], ...]  # optimizer state tensors: (shape, bytes)

    @property
    def bytes(self) -> int:
        numel = 1
        for d in self.shape:
            numel *= d
        return numel * self.element_size


@dataclass(frozen=True)
class StepRun:
    """What one fake step measured. Per-call lists are indexed like ``trace.calls``; ``OUTSIDE``
    figures (the loss) are kept apart."""

    trace: TraceResult
    backward_own: List[int]
    saved_own: List[int]
    backward_outside: int
    saved_outside: int
    params: List[ParamInfo]
    buffer_bytes: int
    input_bytes: int
    timeline: List[Tuple[int, int, int, int]]  # after each operator: live (total, params, grads, optimizer) bytes
    device: str
    backward_uncounted: Tuple[str, ...] = ()  # backward operators without a formula: backward_macs is a lower bound
    backward_uncounted_at: FrozenSet[int] = frozenset()  # the calls whose own backward ran one (OUTSIDE: the loss)
    forward_operators: FrozenSet[str] = frozenset()  # every aten operator the forward ran (``workspaces`` reads it)
    loss_note: Optional[str] = None  # which outputs the backpropagated sum holds, when the output is not one tensor
    recomputed_macs: int = 0  # of backward_own: forward operators torch.utils.checkpoint re-ran during backward


def run_step(model: nn.Module, args: tuple, kwargs: dict, options: StepOptions, *,
             device: str = "cpu", values: bool = False) -> StepRun:
    """Run one step of ``model`` on fake copies of it and of ``(args, kwargs)`` (real, meta or fake).

    ``values``: run on real copies instead, for a forward that reads tensor values (``.item()``): real
    tensors are copied, meta ones get random values (``args``/``kwargs`` must then be real)."""
    node_of = current_autograd_node()
    fake = contextlib.nullcontext() if values else fake_tensor_mode()
    tracker = timeline_tracker(device)
    autocast_dtype = PRECISIONS[options.precision].autocast
    generator = torch.Generator().manual_seed(0)

    def empty(tensor):
        if values:
            return _real_twin(tensor, device, generator)
        with fake:
            return torch.empty_strided(tensor.shape, tensor.stride(), dtype=tensor.dtype, device=device)

    copy_ = meta_copy(model, empty)
    args, kwargs, refused = own_inputs((args, kwargs), lambda label, tensor: empty(tensor))
    if refused:  # it would carry the user's tensors into the step, and take what the step appends to it
        raise UsageError(f"netscope step runs on copies of the inputs, and {', '.join(refused)} refused a copy "
                         "(copy.deepcopy): pass the tensors it holds instead")
    names = _param_names(copy_)
    params = list(names)
    trainable = [p for p in params if p.requires_grad]
    if not trainable:
        raise InputSpecError(f"{type(model).__name__} has no trainable parameter (requires_grad=True): "
                             "a training step would change nothing")
    own_storages = {id(t.untyped_storage()) for t in params + list(copy_.buffers())}
    tree = module_tree(copy_)
    recorder = _Recorder(tree.names, None)
    backward: Dict[int, int] = {}
    saved: Dict[int, int] = {}
    seen = WeakIdKeyDictionary()

    def current() -> int:
        """The innermost open call; in backward, the call charged with the running node (what a reentrant
        ``torch.utils.checkpoint`` recomputes there belongs to the call that made its node)."""
        if recorder.stack:
            return recorder.stack[-1].index
        node = node_of()
        return OUTSIDE if node is None else node.metadata.get(TAG, OUTSIDE)

    def pack(tensor):
        storage = tensor.untyped_storage()
        if id(storage) not in own_storages and storage not in seen:
            seen[storage] = True
            index = current()
            saved[index] = saved.get(index, 0) + storage.nbytes()
        return tensor

    if options.activation_checkpointing:
        _checkpoint_blocks(copy_, pack, type(model).__name__)
    ops = OpResolver()
    counter = _Counter(recorder, backward, node_of, ops)
    tagger = _Tagger(current)
    start = time.perf_counter()
    with paused_gc(), kept_hooks(module_tree(model)), preserved_model(copy_, train=True), torch.enable_grad(), fake:
        optimizer = OPTIMIZERS[options.optimizer].build(trainable)
        eager = {id(p) for p in optimizer.state}  # state made when built (Adagrad's sum): kept, used or not
        _initial_state(optimizer, trainable)
        reached = _kept_grads(trainable) if options.keep_grads else None
        tracker.track_step(copy_, optimizer, (args, kwargs))
        with tracker, quiet_fake_tensor_log():  # netscope names a failing operator itself
            output, error = _forward(copy_, args, kwargs, recorder, counter, tagger, pack, autocast_dtype, device, tree)
            if error is not None:
                raise _step_forward_error(copy_, _build_result(tree, recorder, ops, None, 0.0, None), error) from error
            result = _build_result(tree, recorder, ops, output, 0.0, None)
            loss, loss_note = _loss(output, type(model).__name__)
            with counter, tagger, _foreign_grads_kept(loss, params + torch.utils._pytree.tree_leaves((args, kwargs))):
                try:
                    with under_user_function_modes():  # the backward is the model's: a user's mode sees it
                        loss.backward()
                except RuntimeError as err:  # the model's own backward (a custom op without a gradient formula)
                    first = str(err).splitlines()[0].rstrip(".") if str(err) else ""
                    raise ForwardError(
                        f"the model's backward pass failed: {type(err).__name__}: {first}. The forward ran; an "
                        "operator or autograd.Function in it has no backward that torch can run",
                        original=err) from err
            del loss, output
            unreached = 0
            if reached is not None:  # a real loop's gradient of a parameter backward never reached stays None
                unreached, cut = _drop_unreached(trainable, reached), len(tracker.timeline)
            grads = {id(p): p.grad.untyped_storage().nbytes() if p.grad is not None else 0 for p in params}
            got_grad = {id(p) for p in params if p.grad is not None}
            optimizer.step()
            optimizer.zero_grad(set_to_none=not options.keep_grads)
    timeline = tracker.timeline
    if unreached:  # they lived (zeros) from the start of the step to the drop: never, in the real loop
        timeline = [(total - unreached, p, g - unreached, s) if i < cut else (total, p, g, s)
                    for i, (total, p, g, s) in enumerate(timeline)]
    timeline = _without_state_of_gradless(timeline, optimizer, trainable, got_grad | eager)
    infos = [ParamInfo(name, tuple(p.shape), p.element_size(), p.requires_grad, grads[id(p)],
                       tuple((tuple(v.shape), v.untyped_storage().nbytes())
                             for v in optimizer.state.get(p, {}).values() if isinstance(v, torch.Tensor)))
             for p, name in names.items()]
    calls = len(result.calls)
    result = dataclasses.replace(result, seconds=time.perf_counter() - start)
    return StepRun(
        trace=result,
        backward_own=[backward.get(i, 0) for i in range(calls)],
        saved_own=[saved.get(i, 0) for i in range(calls)],
        backward_outside=backward.get(OUTSIDE, 0),
        saved_outside=saved.get(OUTSIDE, 0),
        params=infos,
        buffer_bytes=held_bytes(copy_.buffers(), beyond=params),  # a buffer viewing a parameter: counted there
        input_bytes=sum(t.untyped_storage().nbytes() for t in torch.utils._pytree.tree_leaves((args, kwargs))
                        if isinstance(t, torch.Tensor)),
        timeline=timeline,
        device=device,
        backward_uncounted=tuple(sorted(counter.backward_uncounted)),
        backward_uncounted_at=frozenset(counter.backward_uncounted_at),
        forward_operators=frozenset(str(packet) for packet in set(recorder.op_packets)),
        loss_note=loss_note,
        recomputed_macs=counter.recomputed_macs,
    )


# fake tensors raise these where the forward needs a value (``.item()``, a branch on data, a nonzero())
_NEEDS_VALUES = ("DataDependentOutputException", "DynamicOutputShapeException", "UnsupportedOperatorException")


def reads_values(original: Optional[BaseException]) -> bool:
    """A fake tensor's refusal of a forward that reads a value (``.item()``, a branch on the data, ``nonzero``)."""
    return type(original).__name__ in _NEEDS_VALUES


def needs_values(error: BaseException) -> bool:
    """The step failed only because fake tensors carry no values, or their kernel refuses what the real one runs
    (``_grouped_mm``'s takes bf16/fp16 only): the cases the meta device has too (``run.prepare.needs_values``)."""
    original = getattr(error, "original", None)
    return reads_values(original) or meta_cannot_run(original)


def _real_twin(tensor, device: str, generator) -> torch.Tensor:
    """A real copy of ``tensor``; a meta or fake one (no values) gets small random values (integers: zeros)."""
    if tensor.device.type != "meta" and not isinstance(tensor, torch._subclasses.fake_tensor.FakeTensor):
        return tensor.detach().clone()
    twin = torch.empty_strided(tensor.shape, tensor.stride(), dtype=tensor.dtype, device="cpu")
    if twin.is_floating_point():
        twin.normal_(0.0, 0.02, generator=generator)
    else:
        twin.zero_()
    return twin.to(device)


# A forward that differentiates itself, which the step's own machinery cannot follow: (a text of torch's error,
# what the forward does and what refuses it)
_SELF_DIFFERENTIATING = (
    ("_will_engine_execute_node",  # torch.autograd.graph.register_multi_grad_hook under .grad()
     "it calls torch.autograd.grad on a leaf tensor (an input it makes require grad: forces from an energy, a "
     "physics-informed residual), and torch's MemTracker, which the step uses for its memory timeline, hooks "
     "gradients in a way torch.autograd.grad refuses there"),
    ("don't yet support saved tensor hooks",  # torch._functorch's disable_saved_tensors_hooks
     "it runs torch.func.grad, vjp, jacrev or hessian, which refuse the saved-tensor hooks the step measures saved "
     "activations with"),
)


def _step_forward_error(model, result, error) -> NetscopeError:
    """The summary's forward error (names the layer), plus why a fake-tensor step cannot read values; or why
    torch's memory tracker or saved-tensor hooks cannot follow a forward that differentiates itself."""
    text = str(error)
    for marker, why in _SELF_DIFFERENTIATING:
        if marker in text:
            return UsageError(f"netscope step cannot follow this forward: {why} ({type(error).__name__}: "
                              f"{text.splitlines()[0]}). netscope summary counts such a forward, the gradient it "
                              "takes included")
    err = _forward_error(model, result, error)
    if not reads_values(error) and not meta_cannot_run(error):
        return err
    hint = ("; netscope step runs on fake tensors, which carry shapes but no values, so a forward that reads a "
            "value (.item(), a branch on the data, nonzero) cannot be planned: make that code shape-only, or "
            "plan the step of the part of the model that is")
    return ForwardError(str(err) + hint, original=error, layer=err.layer)


def _checkpoint_blocks(model: nn.Module, pack, model_name: str) -> None:
    """Run each block of ``model`` (a copy) under non-reentrant ``torch.utils.checkpoint``: the block saves
    nothing for backward but keeps its inputs (charged to it through ``pack``), and backward recomputes
    its forward (charged, like any backward operator, to the call whose node needed it)."""
    from torch.utils.checkpoint import checkpoint

    from netscope.analyses.step.units import block_units

    blocks = block_units(model)
    if blocks == [model]:
        raise InputSpecError(f"{model_name} has no repeated blocks (an nn.ModuleList) to checkpoint; "
                             "drop --activation-checkpointing")

    def checkpointed(forward):
        def run(*args, **kwargs):
            for tensor in torch.utils._pytree.tree_leaves((args, kwargs)):
                if isinstance(tensor, torch.Tensor):
                    pack(tensor)
            return checkpoint(forward, *args, use_reentrant=False, **kwargs)

        return run

    for block in blocks:
        block.forward = checkpointed(block.forward)


def _param_names(model: nn.Module) -> Dict[nn.Parameter, str]:
    """Each distinct parameter and its first name (tied parameters once)."""
    names: Dict[int, Tuple[nn.Parameter, str]] = {}
    for name, param in model.named_parameters():
        names.setdefault(id(param), (param, name))
    return {param: name for param, name in names.values()}


def _initial_state(optimizer, params) -> None:
    """One step on zero gradients: the optimizer's state then exists, as it does in every later step."""
    for param in params:
        param.grad = torch.zeros_like(param)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def _kept_grads(trainable) -> set:
    """Gradients left allocated by the step before (``zero_grad(set_to_none=False)``): zeros, there when the step
    starts. Returns the set that will hold the ids of the parameters backward reaches."""
    reached: set = set()
    for param in trainable:
        param.grad = torch.zeros_like(param)
        param.register_post_accumulate_grad_hook(lambda p: reached.add(id(p)))
    return reached


def _drop_unreached(trainable, reached: set) -> int:
    """Set the gradient of each parameter backward did not reach back to None (a real loop never made one: zeroing
    in place keeps None), so the optimizer skips it as it would; returns their bytes."""
    gone = 0
    for param in trainable:
        if id(param) not in reached and param.grad is not None:
            gone += param.grad.untyped_storage().nbytes()
            param.grad = None
    return gone


def _without_state_of_gradless(timeline, optimizer, trainable, got_grad):
    """Drop the warm-up's optimizer state of the trainable parameters the measured backward gave no gradient
    (unused in this forward): torch's optimizers skip a parameter whose ``.grad`` is None, so a real run
    never makes state for it (``got_grad`` also holds those whose state the optimizer made when built). That
    state lived through the whole tracked step, so every timeline entry loses its bytes."""
    gone = 0
    for param in trainable:
        if id(param) not in got_grad and param in optimizer.state:
            state = optimizer.state.pop(param)
            gone += sum(v.untyped_storage().nbytes() for v in state.values() if isinstance(v, torch.Tensor))
    if not gone:
        return timeline
    return [(total - gone, params, grads, max(state - gone, 0)) for total, params, grads, state in timeline]


def _forward(model, args, kwargs, recorder, counter, tagger, pack, autocast_dtype, device, tree):
    # the step's --precision decides, also over an autocast the caller has in effect (fp32: none)
    autocast = (torch.autocast(device, dtype=getattr(torch, autocast_dtype)) if autocast_dtype
                else torch.autocast(device, enabled=False))
    try:
        with recording_calls(recorder), torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor), \
                tagger, counter, autocast, tagger.outputs_tagged(recorder.stack):
            return call_model(recorder, model, args, kwargs, tree), None
    except Exception as exc:  # the user's forward failed: named by layer like in summary
        return None, exc


@contextlib.contextmanager
def _foreign_grads_kept(loss: torch.Tensor, own_leaves: list):
    """The backward leaves alone the ``.grad`` of every leaf tensor it reaches beyond ``own_leaves`` (the model
    copy's parameters and the copied inputs): a user's module outside the model, called by a hook or through a
    closure, gets the same arithmetic, and its ``.grad`` is put back as it was, never left holding a fake one."""
    own = {id(t) for t in own_leaves}
    foreign, seen, pending = [], set(), [loss.grad_fn]
    while pending:
        node = pending.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        variable = getattr(node, "variable", None)  # an AccumulateGrad node: the leaf it writes .grad of
        if isinstance(variable, torch.Tensor) and id(variable) not in own:
            foreign.append(variable)
        pending.extend(next_node for next_node, _ in node.next_functions)
    kept = [(tensor, tensor.grad) for tensor in foreign]
    for tensor in foreign:
        tensor.grad = None  # accumulated into a fresh tensor, not into the user's gradient in place
    try:
        yield
    finally:
        for tensor, grad in kept:
            tensor.grad = grad


def _loss(output, model_name: str):
    """The sum of every float output that depends on a trainable parameter: a stand-in for the user's
    loss whose backward costs no multiply-adds and saves nothing. Returns it and a note naming the outputs
    summed, when there are several (None for one)."""
    pytree = torch.utils._pytree
    try:
        named = [(pytree.keystr(path), leaf) for path, leaf in pytree.tree_flatten_with_path(output)[0]]
    except (ValueError, NotImplementedError):  # a pytree type registered without key paths: leaves by position
        named = [(f"#{i}", leaf) for i, leaf in enumerate(pytree.tree_leaves(output))]
    paths, leaves = [], []
    for path, leaf in named:
        if isinstance(leaf, torch.Tensor) and leaf.is_floating_point() and leaf.requires_grad:
            paths.append(path)
            leaves.append(leaf)
    if not leaves:
        raise InputSpecError(f"{model_name}'s output has no float tensor that depends on a trainable parameter, "
                             "so there is nothing to backpropagate")
    loss = leaves[0].sum()
    for tensor in leaves[1:]:
        loss = loss + tensor.sum()
    if len(leaves) == 1:
        return loss, None
    return loss, (f"the backward is that of the sum of the outputs {', '.join(paths)}: a training loop that "
                  "backpropagates only one of them (a model's own loss) runs a slightly different backward")


class _Tagger(TorchFunctionMode):
    """Tags every autograd node that a torch call creates with the module call running it."""

    def __init__(self, current):
        super().__init__()
        self.current = current

    @contextlib.contextmanager
    def outputs_tagged(self, stack: list):
        """Also tag the nodes a custom ``torch.autograd.Function.apply`` made (no torch function mode sees it:
        else the first operator to read its output, in the next call, would take them and their backward):
        as each module call returns, those behind its output are its own; as one opens, those behind its
        inputs are its caller's (a reentrant ``torch.utils.checkpoint`` in the caller's code). ``stack``: the
        recorder's open calls."""
        def tag(value, index: int) -> None:
            if torch.is_grad_enabled():
                for tensor in torch.utils._pytree.tree_leaves(value):
                    if isinstance(tensor, torch.Tensor) and tensor.grad_fn is not None:
                        _tag(tensor.grad_fn, index)

        def tag_inputs(module, args):
            caller = stack[-2] if len(stack) > 1 and stack[-1].module is module else (stack[-1] if stack else None)
            tag(args, OUTSIDE if caller is None else caller.index)

        def tag_output(module, args, output):
            tag(output, self.current())

        # netscope's bookkeeping, out of sight of a user's TorchFunctionMode (around the model's call, not this)
        handles = [nn.modules.module.register_module_forward_pre_hook(_under(function_modes_aside, tag_inputs)),
                   nn.modules.module.register_module_forward_hook(_under(function_modes_aside, tag_output))]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if torch.is_grad_enabled():
            index = self.current()
            if isinstance(out, torch.Tensor):
                _tag(out.grad_fn, index)
            elif isinstance(out, (tuple, list)):
                for item in out:
                    if isinstance(item, torch.Tensor):
                        _tag(item.grad_fn, index)
        return out


def _tag(node, index: int) -> None:
    """Tag ``node`` and the untagged nodes behind it (those a composite call created on the way)."""
    pending = [node]
    while pending:
        node = pending.pop()
        if node is None:
            continue
        metadata = node.metadata
        if TAG in metadata:
            continue
        metadata[TAG] = index
        pending.extend(next_node for next_node, _ in node.next_functions)


class _Counter(TorchDispatchMode):
    """Multiply-adds per operator: forward ones to the innermost open call, backward ones to the call
    whose forward created the running autograd node."""

    def __init__(self, recorder: _Recorder, backward: Dict[int, int], node_of, ops: OpResolver):
        super().__init__()
        self.recorder = recorder
        self.backward = backward
        self.node_of = node_of
        self.ops = ops  # the formula registry, resolved once per operator, as the summary's trace does
        self.backward_uncounted = set()
        self.backward_uncounted_at = set()  # the calls (OUTSIDE: the loss) whose backward ran one of them
        # backward kernels run with grad mode off; torch.utils.checkpoint re-runs forward code with it on
        self.recomputed_macs = 0

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        packet = func._overloadpacket
        formula = self.ops.get(packet, UNSEEN)
        if formula is UNSEEN:
            formula = self.ops.first_sight(func)
        node = self.node_of()
        recorder = self.recorder
        if node is None:  # forward: recorded like the summary's trace (operator calls, uncounted ones)
            call = recorder.stack[-1] if recorder.stack else recorder.outside
            recorder.op_calls.append(call.index)
            recorder.op_packets.append(packet)
        elif formula is None and self.ops.kinds.get(packet) == "uncounted":
            self.backward_uncounted.add(str(packet))
            self.backward_uncounted_at.add(node.metadata.get(TAG, OUTSIDE))
        if formula is None:
            return out
        macs = formula(*args, **(kwargs or {}), out_val=out)
        if node is not None:
            index = node.metadata.get(TAG, OUTSIDE)
            self.backward[index] = self.backward.get(index, 0) + macs
            if torch.is_grad_enabled():
                self.recomputed_macs += macs
        else:
            call.own_macs += macs
            recorder.mac_calls.append(call.index)
            recorder.mac_packets.append(packet)
            recorder.mac_values.append(macs)
        return out

