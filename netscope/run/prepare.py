"""Running a model, the one way: :func:`prepared` (device, dtype, inputs) then :func:`run_pass` (the trace).

``summary``, ``check``, the CLI and the failure diagnosis all go through here, so placement, dummy-input
building, the memory check, lazy modules and the meta -> fake-tensor retry exist once. The user's model is
never changed: work that would change it (a dtype cast, materializing lazy modules) runs on a copy.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import operator
import re
from dataclasses import dataclass
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from netscope.errors import ForwardError, InputSpecError, MetaDeviceError, OutOfMemory
from netscope.inputs import InputSpec, normalize_float_dtype
from netscope.run.model_state import kept_hooks, version_of
from netscope.run.module_tree import ModuleTree, module_tree, tree_of
from netscope.run.trace import TraceResult, model_device, model_float_dtype, paused_outer_pass, trace
from netscope.run.user_inputs import own_inputs

# Dummy inputs this many times smaller than the free memory never trigger the activation estimate (a
# meta pass); above it, the pass is estimated before anything is allocated.
ESTIMATE_ABOVE_FRACTION = 1 / 256


@dataclass(frozen=True)
class Prepared:
    """A model ready to run: where, in which dtype, on which inputs, and what the report must say about it."""

    model: nn.Module  # the user's model, or netscope's copy of it
    args: tuple
    kwargs: dict
    device: torch.device
    dtype: str  # float dtype of the pass
    spec: Optional[InputSpec]  # the dummy-input spec the inputs were built from (None: the user's tensors)
    notes: Tuple[str, ...] = ()
    tree: Optional[ModuleTree] = None  # ``model``'s modules, walked once for the pass and the analyses after it
    lazy_copy: bool = False  # ``model`` is a copy of the user's whose lazy modules the pass initializes
    users_model: bool = False  # ``model`` is the user's own object (not a copy, not one netscope built)
    # the user's input tensors the pass receives as they are: (label, tensor, version before the pass)
    watched: Tuple[Tuple[str, torch.Tensor, int], ...] = ()


@contextlib.contextmanager
def prepared(model: nn.Module, inputs, *, device: torch.device, dtype: Optional[str] = None, owned: bool = False,
             fallback_to_meta: bool = False) -> Iterator[Prepared]:
    """Yield ``model`` placed on ``device`` in float ``dtype`` with its inputs built there.

    ``inputs``: an :class:`InputSpec` (dummy tensors; integer ranges fitted to the model's embeddings) or
    ``(args, kwargs)`` of the user's values (copied to ``device``, never moved). ``owned``: netscope built
    the model and may move or cast it. Dummy inputs that cannot fit with the pass they start raise
    :class:`OutOfMemory` before anything is allocated, or with ``fallback_to_meta`` run on the meta device.
    """
    with paused_outer_pass():  # called from a forward netscope is tracing: that pass does not see this one
        with _prepared(model, inputs, device=device, dtype=dtype, owned=owned,
                       fallback_to_meta=fallback_to_meta) as prep:
            yield prep


@contextlib.contextmanager
def _prepared(model: nn.Module, inputs, *, device: torch.device, dtype: Optional[str], owned: bool,
              fallback_to_meta: bool) -> Iterator[Prepared]:
    notes: List[str] = []
    given, given_owned = model, owned
    float_dtype = normalize_float_dtype(dtype) if dtype else model_float_dtype(model)
    spec = inputs.for_model(model) if isinstance(inputs, InputSpec) else None
    if spec is not None and device.type != "meta":
        device = _fitting_device(model, spec, device, float_dtype, fallback_to_meta, notes)
    tree = given_tree = module_tree(model)
    lazy = uninitialized_lazy(model, tree.modules)
    if lazy:
        notes.append(f"lazy module(s) {', '.join(lazy)} create their parameters in their first forward: the pass "
                     "ran on a copy, so the model itself is left uninitialized")
        model, owned = _lazy_copy(model, device), True
        tree = module_tree(model)
    with _placed(model, device, float_dtype, owned, tree, explicit=bool(dtype)) as runnable, \
            (kept_hooks(given_tree) if runnable is not given else contextlib.nullcontext()):
        run_dtype = model_float_dtype(runnable) if any(True for _ in runnable.parameters()) else float_dtype
        watched: list = []
        if spec is not None:
            args, kwargs = _built(spec, device, run_dtype)
        else:  # an explicit dtype= converts the float tensors of input_data too (copies), as it converts the model
            cast = getattr(torch, run_dtype) if dtype else None
            args, kwargs = _moved_inputs(inputs, device, notes, watched, cast)
        yield Prepared(runnable, args, kwargs, device, run_dtype, spec, tuple(notes),
                       tree if runnable is model else module_tree(runnable), lazy_copy=bool(lazy),
                       users_model=runnable is given and not given_owned, watched=tuple(watched))


def run_pass(prep: Prepared, *, mode: str = "eval", progress: Optional[Callable[[int], None]] = None,
             receptive_field: bool = False, operators: bool = True) -> TraceResult:
    """Trace the prepared model once. On the meta device, a forward that reads a value (``.item()``, a
    data-dependent branch) is retried under fake tensors, which carry shapes like meta ones and let
    libraries that know them (transformers' masking) skip such reads. ``operators=False``: module calls
    only, no multiply-adds (``trace``'s)."""
    run = lambda fake=False: trace(prep.model, (prep.args, prep.kwargs), mode=mode, progress=progress, fake=fake,
                                   receptive_field=receptive_field, tree=prep.tree, operators=operators)
    if prep.device.type != "meta":
        result = run()
    else:
        try:
            result = run()
        except ForwardError as err:
            if not needs_values(err.original):
                raise
            result = _run_fake(run)
    result.notes[:0] = prep.notes
    if prep.device.type == "meta" and result.operators is not None:
        from netscope.operators.formulas import capacity_note

        note = capacity_note(result.operators)
        if note:
            result.notes.append(note)
    if result.operators is not None:
        from netscope.operators.registry import complex_note

        note = complex_note(result.operators.complex_packets)
        if note:
            result.notes.append(note)
    written = list(dict.fromkeys(label for label, tensor, version in prep.watched if version_of(tensor) != version))
    if written:
        result.notes.append(f"the forward pass wrote into these inputs in place, which were your own tensors (netscope "
                            f"passes input_data as given): {', '.join(written)}")
    if result.changed_attributes and prep.users_model:
        shown = result.changed_attributes[:5]
        more = len(result.changed_attributes) - len(shown)
        result.notes.append(
            "the forward pass changed these plain attributes of the model (not parameters or buffers, which are "
            f"restored), which netscope cannot undo: {', '.join(shown)}{f' and {more} more' if more else ''} "
            "(a cache filled on first use, a counter): the model's own forward would do the same")
    return result


@contextlib.contextmanager
def quiet_fake_tensor_log():
    """torch's fake-tensor logger kept from printing an operator's error, with its traceback, on stderr: netscope
    names the failure itself."""
    logger = logging.getLogger("torch._subclasses.fake_tensor")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _run_fake(run) -> TraceResult:
    """The retry under fake tensors; an operator they cannot run either is named (``MetaDeviceError``)."""
    try:
        with quiet_fake_tensor_log():
            return run(fake=True)
    except ForwardError as err:
        if not needs_values(err.original):
            raise
        where = f" in layer {err.layer}" if err.layer else ""
        meta_err = MetaDeviceError(
            f"the meta device cannot run this model: {meta_operator(str(err.original))}{where}, and fake tensors "
            f"cannot stand in for it. {_meta_advice(str(err.original))}", original=err.original, layer=err.layer)
        meta_err.partial, meta_err.failed_index = getattr(err, "partial", None), getattr(err, "failed_index", None)
        raise meta_err from err.original


def materialized(model: nn.Module, spec: InputSpec) -> nn.Module:
    """``model`` itself, or, when it has uninitialized lazy modules, a copy of it materialized by one pass
    on the meta device on ``spec`` (the user's model stays uninitialized)."""
    if not uninitialized_lazy(model):
        return model
    with prepared(model, spec, device=torch.device("meta")) as prep:
        run_pass(prep)
        return prep.model


# A meta kernel stricter than the CPU one: torch._grouped_mm's (a mixture-of-experts layer's, as transformers runs
# Mixtral, Qwen-MoE, ...) takes bfloat16/float16 operands only
_HALF_ONLY_META = "Expected mat_a to be BFloat16 or supported Float16"


def _meta_advice(error: str) -> str:
    """What to do when the meta device cannot run a model (``error``: the operator's): a real device; also
    bfloat16 when the operator's meta kernel refused float32 operands."""
    if _HALF_ONLY_META in error:
        return ("Run it on meta in bfloat16, which that kernel takes (--dtype bfloat16; dtype=\"bfloat16\" in the "
                "API), or on a real device (--device cpu)")
    return "Run on a real device instead (--device cpu)"


# Errors of an operator that needs tensor values (meta and fake tensors have none), not of a wrong size.
META_CANNOT_RUN = re.compile(r"meta tensor|data-dependent|DynamicOutputShape|Could not run '[^']+' with arguments "
                             r"from the '\w*Meta' backend|register_meta function for \S+ raises unimplemented"
                             r"|attempted to run this operator with Meta tensors"  # no meta kernel (nested tensors)
                             # a custom or quantized operator without a fake kernel (quantized::linear_dynamic)
                             r"|could not find the fake impl for this operator|There was no fake impl registered"
                             r"|" + re.escape(_HALF_ONLY_META) +
                             r"|aten\.(nonzero|_local_scalar_dense|masked_select|unique\w*)")


def needs_values(error: Optional[BaseException]) -> bool:
    """Whether ``error`` says an operator needed tensor values the meta device (or fake tensors) lack."""
    return bool(META_CANNOT_RUN.search(f"{type(error).__name__}: {error}"))


def meta_operator(error: str) -> str:
    """The operator a meta/fake failure names (``torch.nonzero() needs tensor values``), else the error."""
    match = re.search(r"(?:torch|Tensor)\.\w+\(\)|aten\.\w+(?:\.\w+)?", error)
    return f"{match.group(0)} needs tensor values" if match else error.splitlines()[0].split(". ")[0][:200].rstrip(".")


@contextlib.contextmanager
def _placed(model: nn.Module, device: torch.device, float_dtype: str, owned: bool,
            tree: Optional[ModuleTree] = None, explicit: bool = False) -> Iterator[nn.Module]:
    """Yield a model on ``device`` in ``float_dtype`` without ever leaving the user's model changed
    (``tree``: ``model``'s, when the caller has walked it). ``explicit``: the caller chose the dtype, so every
    floating parameter is converted (a model of mixed dtypes too); otherwise the model runs in its own dtypes."""
    from netscope.run.no_memory import meta_copy

    target_dtype = getattr(torch, float_dtype)
    needs_cast = target_dtype.is_floating_point and (
        any(p.is_floating_point() and p.dtype != target_dtype for p in model.parameters()) if explicit
        else target_dtype != getattr(torch, model_float_dtype(model)))
    if device.type == "meta":
        if not owned:
            copy_ = meta_copy(model)
        else:  # netscope's own copy (the solver's, probed thousands of times): moved only when it is not there yet
            copy_ = model if _all_on(tree_of(model, tree), device) else model.to("meta")
        yield copy_.to(target_dtype) if needs_cast else copy_
        return
    if owned:
        yield model.to(device=device, dtype=target_dtype if needs_cast else None)
        return
    tree = tree_of(model, tree)
    _refuse_meta_tensors(tree.parameters + tree.buffers, device)
    if needs_cast:  # never cast the user's tensors: run on a converted copy
        from netscope.run.no_memory import seed_derived_tensors

        replica = copy.deepcopy(model, seed_derived_tensors(model, {}, torch.Tensor.clone))
        yield replica.to(device=device, dtype=target_dtype)
        return
    if _all_on(tree, device):
        yield model
        return
    homes = [(t, t.data) for t in {id(t): t for t in tree.parameters + tree.buffers}.values()]
    try:
        for tensor, data in homes:
            tensor.data = data.to(device)
        yield model
    finally:
        for tensor, data in homes:
            tensor.data = data


_IS_CPU = operator.attrgetter("is_cpu")
_IS_META = operator.attrgetter("is_meta")


def _all_on(tree: ModuleTree, device: torch.device) -> bool:
    """Every parameter and buffer of the tree is on ``device``."""
    tensors = tree.parameters + tree.buffers
    if device.type in ("cpu", "meta"):
        return all(map(_IS_CPU if device.type == "cpu" else _IS_META, tensors))
    return all(t.device == device for t in tensors)


def _refuse_meta_tensors(tensors: Sequence[torch.Tensor], device: torch.device) -> None:
    """A model whose weights live on the meta device has no values to copy to ``device``."""
    if not any(map(_IS_META, tensors)):  # the usual model: one C loop
        return
    meta = sum(map(_IS_META, tensors))
    raise InputSpecError(
        f"{meta} of the model's {len(tensors)} parameters and buffers live on the meta device, which holds "
        f"no values to copy to {device}. Run on the meta device (device='meta', or leave device unset), or "
        "materialize the weights first (model.to_empty(device=...) and initialise or load them).")


def _moved_inputs(inputs, device: torch.device, notes: List[str], watched: list,
                  cast: Optional[torch.dtype] = None):
    """The user's (args, kwargs) on ``device``: copies, never the user's tensors moved; meta gets empty twins.
    ``cast``: the pass's float dtype when the caller chose one; floating tensors of another dtype are converted
    copies (named in ``notes``).
    A cache object the forward appends to is a copy (:mod:`netscope.run.user_inputs`); one that refuses a copy is
    named in ``notes``. The user's own tensors the pass receives (on ``device`` already) go to ``watched`` as
    ``(label, tensor, version)``: a forward that writes into one in place is named after the pass (:func:`run_pass`)."""

    converted: List[str] = []

    def move(label: str, tensor):
        dtype = cast if cast is not None and tensor.is_floating_point() and tensor.dtype != cast else tensor.dtype
        if dtype is not tensor.dtype:
            converted.append(f"{label} ({str(tensor.dtype).removeprefix('torch.')})")
        elif tensor.device == device:
            version = version_of(tensor)
            if version is not None:
                watched.append((label, tensor, version))
            return tensor
        if tensor.device.type == "meta" and device.type != "meta":
            raise InputSpecError(f"input_data holds meta tensors, which have no values to copy to {device}: "
                                 "run on the meta device (device=\"meta\"), or pass real tensors")
        return (torch.empty_like(tensor, device="meta", dtype=dtype) if device.type == "meta"
                else tensor.to(device=device, dtype=dtype))

    args, kwargs, refused = own_inputs(inputs, move)
    if converted:
        notes.append(f"input_data's floating tensors were converted to {str(cast).removeprefix('torch.')} for the pass "
                     f"(dtype=), as the model was (copies; yours are unchanged): {', '.join(converted[:5])}"
                     + (f" and {len(converted) - 5} more" if len(converted) > 5 else ""))
    for label in refused:
        notes.append(f"input {label} could not be copied, so the pass used yours: a forward that changes it (a cache "
                     "it appends to) changed it")
    return args, kwargs


def _built(spec: InputSpec, device: torch.device, float_dtype: str):
    try:
        return spec.build(device, float_dtype)
    except (MemoryError, torch.OutOfMemoryError, RuntimeError) as exc:
        if isinstance(exc, RuntimeError) and "memory" not in str(exc):
            raise
        raise OutOfMemory(f"the dummy input ({_gib(spec.nbytes(float_dtype))}) could not be allocated on {device}: "
                          f"{type(exc).__name__}. Use a smaller input, or --device meta (device=\"meta\") for a "
                          "run without memory", original=exc) from None


def _fitting_device(model, spec: InputSpec, device: torch.device, float_dtype: str, fallback: bool,
                    notes: List[str]) -> torch.device:
    """``device`` when the pass can fit there, else meta (``fallback``) or :class:`OutOfMemory`.

    The estimate is a lower bound, so a refusal is never wrong: the input, the largest single layer output
    (from a pass on the meta device, done only for inputs large next to the free memory) and, when the
    model is elsewhere, its weights.
    """
    from netscope.run.devices import available_memory_bytes
    from netscope.run.no_memory import weight_bytes

    available = available_memory_bytes(device)
    if available is None:
        return device
    input_bytes = spec.nbytes(float_dtype)
    weights = weight_bytes(model, float_dtype) if model_device(model) != device else 0
    if (input_bytes + weights) <= available * ESTIMATE_ABOVE_FRACTION:
        return device
    needed = input_bytes + weights
    if needed <= available:
        needed += _largest_output_bytes(model, spec, float_dtype)
    if needed <= available:
        return device
    what = f"the input ({_gib(input_bytes)})" + (f", the weights ({_gib(weights)})" if weights else "")
    message = (f"a pass on {device} needs at least {_gib(needed)} ({what} and the largest layer output) but "
               f"{device} has {_gib(available)} available")
    if fallback:
        notes.append(message + "; ran on the meta device instead (no memory; shapes, parameters and multiply-adds "
                     "are exact)")
        return torch.device("meta")
    raise OutOfMemory(message + ". Use a smaller input, or --device meta (device=\"meta\") for a run without memory: "
                      "shapes, parameters and multiply-adds are exact")


def _largest_output_bytes(model, spec: InputSpec, float_dtype: str) -> int:
    """The largest output of one leaf call, from a pass on the meta device (0 when that pass fails)."""
    try:
        with prepared(model, spec, device=torch.device("meta"), dtype=float_dtype) as prep:
            result = run_pass(prep)
    except ForwardError:
        return 0
    return max((c.output_bytes for c in result.calls if c.is_leaf), default=0)


def uninitialized_lazy(model: nn.Module, modules: Optional[Sequence[nn.Module]] = None) -> List[str]:
    """``name (Class)`` of each lazy module whose parameters do not exist yet (made by its first forward).
    ``modules``: ``model.modules()``, when the caller has them."""
    from torch.nn.modules.lazy import LazyModuleMixin

    if not any(isinstance(m, LazyModuleMixin) for m in (model.modules() if modules is None else modules)):
        return []
    return [f"{name or '(root)'} ({type(m).__name__})" for name, m in model.named_modules()
            if isinstance(m, LazyModuleMixin) and m.has_uninitialized_params()]


def _lazy_copy(model: nn.Module, device: torch.device) -> nn.Module:
    """A deep copy to materialize. Uninitialized parameters and buffers cannot be deep-copied, so fresh
    ones take their place (on the meta device for a meta pass, where they would otherwise materialize on
    the CPU next to meta inputs)."""
    from torch.nn.parameter import UninitializedBuffer, UninitializedParameter

    memo = {}
    for module in model.modules():
        for tensor in list(module._parameters.values()) + list(module._buffers.values()):
            if isinstance(tensor, (UninitializedParameter, UninitializedBuffer)) and id(tensor) not in memo:
                where = torch.device("meta") if device.type == "meta" else tensor.device
                if isinstance(tensor, UninitializedParameter):
                    memo[id(tensor)] = UninitializedParameter(tensor.requires_grad, device=where, dtype=tensor.dtype)
                else:
                    memo[id(tensor)] = UninitializedBuffer(tensor.requires_grad, device=where, dtype=tensor.dtype)
    from netscope.run.no_memory import seed_derived_tensors

    return copy.deepcopy(model, seed_derived_tensors(model, memo, torch.Tensor.clone))


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"
