"""``netscope.step(model, ...) -> StepReport``: cost and memory of one training step, per rank when sharded."""

from __future__ import annotations

import copy
from typing import List, Optional

import torch
import torch.nn as nn

from netscope.errors import ForwardError, InputSpecError, UsageError
from netscope.records import RunInfo
from netscope.report import Report
from netscope.run.shapes import shape_tree
from netscope.analyses.totals import compute_totals
from netscope.run.model_state import function_modes_aside, outside_user_modes
from netscope.run.trace import model_device, model_float_dtype, paused_outer_pass
from netscope.analyses.step.memory import rank_memory
from netscope.analyses.step.options import OPTIMIZERS, PRECISIONS, StepOptions
from netscope.analyses.step.report import StepReport, StepTotals
from netscope.analyses.step.run import OUTSIDE, needs_values, reads_values, run_step


def step(model: nn.Module, input_size=None, input_data=None, *, optimizer: str = "adamw", precision: str = "fp32",
         fsdp: Optional[int] = None, ddp: Optional[int] = None, activation_checkpointing: bool = False,
         input_dtypes=None, measure: bool = False, label: Optional[str] = None, set_to_none: bool = True) -> StepReport:
    """Plan one training step of ``model`` (forward, backward on the sum of its outputs, optimizer step)
    on fake tensors, and return a :class:`StepReport`.

    input_size / input_data / input_dtypes: as for ``netscope.summary`` (per rank under fsdp/ddp).
    optimizer: a name in ``netscope.analyses.step.options.OPTIMIZERS`` (``sgd``, ``sgd-momentum``, ``adam``,
    ``adamw``, ``adam-amsgrad``, ``adamw-amsgrad``, ``adamax``, ``nadam``, ``radam``, ``adagrad``, ``adadelta``,
    ``rmsprop`` and its ``-momentum``/``-centered`` variants, ``rprop``); LBFGS and the like are refused with the
    reason. precision: ``fp32``, ``bf16-mixed`` or
    ``fp16-mixed`` (``torch.autocast``; parameters, gradients and optimizer state keep the model's dtype).
    fsdp / ddp: ranks of a FSDP2 (``fully_shard``, dim-0 shards) or DDP (replicated) job.
    activation_checkpointing: each block of the model's largest ``nn.ModuleList`` runs under
    ``torch.utils.checkpoint`` (non-reentrant): it keeps only its inputs, and backward recomputes it.
    set_to_none: as ``optimizer.zero_grad(set_to_none=...)`` in the loop planned: False keeps every gradient
    allocated (zeroed in place) through the next forward, which raises the peak.
    measure: also run the real step on a copy of the model on CUDA and report its measured peak.
    The model itself is never run, changed or moved.
    """
    from netscope.inputs import inputs_from

    if not isinstance(model, nn.Module):
        raise InputSpecError(f"step() needs a torch.nn.Module, got {type(model).__name__}")
    refuse_script(model)
    options = StepOptions(optimizer=optimizer, precision=precision, fsdp=fsdp, ddp=ddp,
                          activation_checkpointing=activation_checkpointing,
                          keep_grads=not set_to_none if isinstance(set_to_none, bool) else set_to_none)
    with function_modes_aside():  # a TorchFunctionMode of the user's sees the model's forward and the backward only
        inputs = inputs_from(model, input_size, input_data, input_dtypes)
        with torch.inference_mode(False):  # called inside the user's inference_mode: the planned step needs autograd
            return run_step_report(model, inputs, options, label=label or type(model).__name__, measure=measure)


def refuse_script(model: nn.Module) -> None:
    """A TorchScript module cannot be planned: its compiled code runs without module hooks, and its copy on
    fake tensors holds no leaf parameters an optimizer could take."""
    scripted = next(((name, m) for name, m in model.named_modules() if isinstance(m, torch.jit.ScriptModule)), None)
    if scripted is not None:
        name, module = scripted
        where = f"{type(module).__name__} ({getattr(module, 'original_name', 'module')})" + (
            f", the submodule {name}," if name else "")
        raise UsageError(
            f"{where} is a TorchScript module: netscope step plans the step on fake tensors with module hooks, which "
            "compiled TorchScript code does not run, and its copy holds no leaf parameters an optimizer could take. "
            "Pass the eager nn.Module the script was made from (netscope summary reads the scripted one: "
            "parameters, and its shapes and multiply-adds as a whole)")


def _refuse_quantized(model: nn.Module) -> None:
    """Quantized modules keep packed weights that take no gradient (backward does not reach the layers before
    them) and have no fake kernels: there is no training step to plan (torch raised a bare NotImplementedError)."""
    from netscope.operators.packed import packed_by_module

    named = dict(model.named_modules(remove_duplicate=False))
    packed = packed_by_module(named.values())
    if packed:
        names = [f"{name or '(root)'} ({type(module).__name__})" for name, module in named.items() if id(module) in packed]
        raise UsageError(
            f"netscope step plans a training step, and quantized module(s) {', '.join(names[:5])}"
            f"{f' and {len(names) - 5} more' if len(names) > 5 else ''} (torch.ao.nn.quantized) hold packed weights "
            "that take no gradient and stop the backward, so a training step of this model trains nothing behind "
            "them. Plan the step of the float model before quantization (netscope summary counts the quantized one)")


def _refuse_lazy(model: nn.Module) -> None:
    """Lazy modules have no parameter shapes before their first forward, so a fake copy of them cannot be
    made (torch raised a bare RuntimeError from the copy)."""
    from netscope.run.prepare import uninitialized_lazy

    lazy = uninitialized_lazy(model)
    if lazy:
        raise UsageError(
            f"lazy module(s) {', '.join(lazy)} create their parameters in their first forward, and netscope step plans "
            "the step on fake copies of the parameters, which need their shapes: run the model once on a real input "
            "and pass it then (netscope summary runs such a model on a copy and leaves it uninitialized)")


def _refuse_packed(args, kwargs) -> None:
    """torch's MemTracker rebuilds every input it tracks from its tensors, which a PackedSequence refuses
    (its batch sizes come back empty): say so, rather than blame the model's forward."""
    from torch.nn.utils.rnn import PackedSequence

    leaves = torch.utils._pytree.tree_leaves((args, kwargs), is_leaf=lambda v: isinstance(v, PackedSequence))
    if any(isinstance(v, PackedSequence) for v in leaves):
        raise UsageError(
            "netscope step cannot plan a step whose input is a PackedSequence: the memory tracker it uses "
            "(torch.distributed._tools.mem_tracker) rebuilds the inputs it tracks, which a PackedSequence does "
            "not allow. Pass the padded tensor (and the lengths) and pack it inside forward; netscope summary "
            "takes the PackedSequence as it is")


def _refuse_unstrided(model: nn.Module, args, kwargs) -> None:
    """A sparse (COO, CSR, ...) or nested tensor has no fake twin here: ``empty_strided`` of its shape and strides
    made a dense one (a sparse tensor reports strides (0, 0): one element), so the step planned a dense product
    and a 4-byte buffer; a sparse gradient (an embedding with ``sparse=True``) has no storage MemTracker can size.
    Refuse, naming the tensors, rather than plan another model."""
    named = [(f"model.{name}", t) for name, t in list(model.named_parameters()) + list(model.named_buffers())]
    from netscope.run.user_inputs import tensors_inside

    inputs: dict = {}  # the tensors the step copies, a cache object's too (run_step's own_inputs)
    tensors_inside((args, kwargs), inputs)
    named += [(f"input {i}", t) for i, t in enumerate(inputs.values())]
    odd = [f"{name} ({'nested' if t.is_nested else str(t.layout).removeprefix('torch.')})" for name, t in named
           if isinstance(t, torch.Tensor) and (t.layout != torch.strided or t.is_nested)]
    # nn.Embedding(sparse=True) / nn.EmbeddingBag(sparse=True): backward makes a sparse gradient, whose storage
    # torch's MemTracker cannot read (the step failed as if the model had no backward)
    odd += [f"model.{name} ({type(m).__name__} with sparse=True: sparse gradients)" for name, m in model.named_modules()
            if isinstance(m, (nn.Embedding, nn.EmbeddingBag)) and m.sparse and m.weight.requires_grad]
    if odd:
        raise UsageError(
            f"netscope step cannot plan a step with sparse or nested tensors: {', '.join(odd[:5])}"
            f"{f' and {len(odd) - 5} more' if len(odd) > 5 else ''}. It runs on fake tensors, which stand for "
            "dense ones only, so the figures would be those of a dense model. netscope summary counts them as "
            "they are")


def run_step_report(model: nn.Module, inputs, options: StepOptions, *, label: str, measure: bool = False) -> StepReport:
    """Shared by the API and the CLI; ``inputs`` is an ``InputSpec`` or ``(args, kwargs)``."""
    # called from a forward netscope is tracing: that pass does not see this one; the step runs on netscope's own
    # fake copies, which a dispatch mode the user has active (their FakeTensorMode: "mixing fake modes") must not
    # see, nor the user's anomaly detection (its NaN check reads gradient values fake tensors do not have); their
    # TorchFunctionModes see the model's code (each module call) and the backward, not netscope's copies and reads
    with paused_outer_pass(), outside_user_modes(), function_modes_aside(), torch.autograd.set_detect_anomaly(False):
        return _step_report(model, inputs, options, label=label, measure=measure)


def _step_report(model: nn.Module, inputs, options: StepOptions, *, label: str, measure: bool) -> StepReport:
    from netscope.inputs import InputSpec

    refuse_script(model)
    _refuse_lazy(model)
    _refuse_quantized(model)

    device = "cuda" if model_device(model).type == "cuda" else "cpu"
    if isinstance(inputs, InputSpec):
        args, kwargs = inputs.for_model(model).build(torch.device("meta"), model_float_dtype(model))
    else:
        args, kwargs = inputs
        _refuse_packed(args, kwargs)
    _refuse_unstrided(model, args, kwargs)
    measured = measured_cuda_peak(model, args, kwargs, options) if measure else None
    notes: tuple = ()
    tensors = "fake"
    try:
        run = run_step(model, args, kwargs, options, device=device)
    except ForwardError as err:
        if not needs_values(err):
            raise
        refusal = _real_step_refusal(model, options, device)
        if refusal:
            raise ForwardError(f"{err}. A real step on {device} was not tried instead: {refusal}",
                               original=err.original, layer=err.layer) from err
        if isinstance(inputs, InputSpec):
            args, kwargs = inputs.for_model(model).build(torch.device(device), model_float_dtype(model))
        run = run_step(model, args, kwargs, options, device=device, values=True)
        tensors = "real"
        reads = reads_values(err.original)  # else a fake kernel refused what the real one runs
        why = ("the forward reads tensor values ({}), which the fake tensors of a planned step do not have" if reads
               else "the fake tensors of a planned step cannot run this forward ({}), which real tensors can")
        notes = (why.format(f"{type(err.original).__name__}: {str(err.original).rstrip('.')}")
                 + f": this step ran for real on a copy of the model on {device} (random values where the model had "
                 "none); figures are that run's",)
    trace = run.trace
    forward_totals = compute_totals(model, trace.calls, _user_modules(model, trace), input_bytes=run.input_bytes)
    notes = tuple(trace.notes) + notes + tuple(filter(None, [run.loss_note, _recompute_note(run.recomputed_macs)]))
    if options.keep_grads:
        notes += ("gradients zeroed in place between steps (zero_grad(set_to_none=False)): they stay allocated "
                  "through the forward, and the peak counts them",)
    if tensors == "fake" and trace.operators is not None:  # the backward of the same operators likewise
        from netscope.operators.formulas import capacity_note

        notes += tuple(filter(None, [capacity_note(trace.operators)]))
    if trace.operators is not None:  # forward and backward operators counted on complex numbers
        from netscope.operators.registry import complex_note

        notes += tuple(filter(None, [complex_note(trace.operators.complex_packets)]))
    from netscope.analyses.step.workspaces import unsized_workspaces, workspace_note

    # a workspace the fake kernel leaves empty: saved bytes and the peak are lower bounds (a real run sizes it)
    unsized = unsized_workspaces(run.forward_operators) if tensors == "fake" else ()
    notes += tuple(filter(None, [workspace_note(unsized)]))
    info = RunInfo(model=label, device=device, dtype=model_float_dtype(model), mode="train",
                   input_shapes=[shape_tree(a) for a in args] + ([shape_tree(kwargs)] if kwargs else []),
                   seconds=trace.seconds, notes=notes)
    forward = Report(layers=trace.calls, totals=forward_totals, run=info, model_output=trace.model_output,
                     operators=trace.operators)
    backward_own = list(run.backward_own)
    saved_own = list(run.saved_own)
    if backward_own:  # the loss, outside every module: charged to the root call, as the forward does
        backward_own[0] += run.backward_outside
        saved_own[0] += run.saved_outside
    ranks = rank_memory(run, options, model)
    first = ranks[0]
    totals = StepTotals(
        forward_macs=trace.calls[0].macs if trace.calls else 0,
        backward_macs=sum(backward_own),
        param_bytes=first.param_bytes,
        grad_bytes=first.grad_bytes,
        optimizer_bytes=first.optimizer_bytes,
        activation_bytes=first.activation_bytes,
        buffer_bytes=run.buffer_bytes,
        input_bytes=run.input_bytes,
        peak_bytes=first.peak_bytes,
        optimizer=options.optimizer,
        precision=options.precision,
        layout=options.layout,
        world_size=options.world_size,
        ranks=ranks,
        measured_peak_bytes=measured,
        tensors=tensors,
        backward_uncounted=tuple(run.backward_uncounted),
        unsized_workspaces=unsized,
    )
    # calls whose own backward ran an operator without a formula (the loss's: the root's, as its figures are)
    partial_own = frozenset(0 if i == OUTSIDE else i for i in run.backward_uncounted_at) if trace.calls else frozenset()
    return StepReport(forward=forward, totals=totals, backward_macs=_rolled_up(trace.calls, backward_own),
                      own_backward_macs=backward_own, saved_bytes=_rolled_up(trace.calls, saved_own),
                      own_saved_bytes=saved_own, partial_own_backward=partial_own)


REAL_STEP_LIMIT_BYTES = 2 << 30  # weights, gradients and optimizer state a real fallback step may allocate


def _real_step_refusal(model: nn.Module, options: StepOptions, device: str) -> str:
    """Why a real step (for a forward that reads values) should not run here; "" when it may."""
    from netscope.run.devices import available_memory_bytes
    from netscope.run.no_memory import weight_bytes

    # weights, gradients, and the optimizer's parameter-sized state tensors
    needed = weight_bytes(model) * (2 + OPTIMIZERS[options.optimizer].state_tensors)
    available = available_memory_bytes(device)
    limit = REAL_STEP_LIMIT_BYTES if available is None else min(REAL_STEP_LIMIT_BYTES, available // 2)
    if needed > limit:
        return (f"its weights, gradients and optimizer state alone need {needed / 2**20:,.0f} MiB, over the "
                f"{limit / 2**20:,.0f} MiB netscope allows itself; make the value-reading code shape-only")
    return ""


def _user_modules(model: nn.Module, trace) -> List[nn.Module]:
    """The user's modules the fake copy's calls stand for (same qualified names)."""
    modules = dict(model.named_modules(remove_duplicate=False))
    return [modules[c.name] for c in trace.calls if c.name in modules]


def _rolled_up(calls, own: List[int]) -> List[int]:
    """Each call's figure plus those of every call nested inside it (children follow their parent)."""
    total = list(own)
    for call in reversed(calls):
        if call.parent is not None:
            total[call.parent] += total[call.index]
    return total


def measured_cuda_peak(model: nn.Module, args, kwargs, options: StepOptions) -> int:
    """``torch.cuda.max_memory_allocated`` of one real step of a copy of ``model`` on CUDA (the second
    step, once the optimizer state exists), less what was allocated before; the model and the global RNG
    are left as they were."""
    if not torch.cuda.is_available():
        raise UsageError("measure=True runs the real step on CUDA, and no CUDA device is available here; "
                         "the estimate needs no device")
    if options.layout != "single":
        raise UsageError("measure=True measures one device; drop fsdp/ddp to compare with a real step")
    from netscope.run.no_memory import meta_copy

    device = torch.device("cuda")
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()  # what the process held already (the user's own tensors)
    replica = (meta_copy(model).to_empty(device=device) if model_device(model).type == "meta"
               else copy.deepcopy(model).to(device))
    args, kwargs = torch.utils._pytree.tree_map_only(
        torch.Tensor, lambda t: torch.zeros_like(t, device=device) if t.device.type == "meta" else t.to(device),
        (tuple(args), dict(kwargs)))
    autocast_dtype = PRECISIONS[options.precision].autocast
    with torch.random.fork_rng(devices=[torch.cuda.current_device()]):
        replica.train()
        optimizer = OPTIMIZERS[options.optimizer].build([p for p in replica.parameters() if p.requires_grad])
        for index in range(2):
            if index == 1:  # the second step: optimizer state exists, as in every later step
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            with torch.autocast("cuda", dtype=getattr(torch, autocast_dtype), enabled=autocast_dtype is not None):
                output = replica(*args, **kwargs)
            leaves = [t for t in torch.utils._pytree.tree_leaves(output)
                      if isinstance(t, torch.Tensor) and t.is_floating_point() and t.requires_grad]
            sum(t.sum() for t in leaves).backward()
            del output, leaves
            optimizer.step()
            optimizer.zero_grad(set_to_none=not options.keep_grads)
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
    del replica, optimizer
    return peak - before


def _recompute_note(macs: int) -> Optional[str]:
    """What of the backward's multiply-adds is forward code re-run by activation checkpointing."""
    if not macs:
        return None
    return (f"the backward mult-adds include {macs:,} of recomputation: activation checkpointing "
            "(torch.utils.checkpoint) re-runs forward code during backward, charged to the call whose backward "
            "needed its result")
