"""The Python API: ``netscope.summary(model, ...) -> Report`` and ``netscope.check``."""

from __future__ import annotations

import contextlib
import copy
from typing import Any, Iterator, List, Optional, Sequence

import torch
import torch.nn as nn

from netscope.devices import resolve_device
from netscope.errors import ForwardError, InputSpecError
from netscope.guard import paused_gc
from netscope.inputs import InputSpec, TensorSpec, normalize_dtype, normalize_float_dtype
from netscope.records import RunInfo
from netscope.report import Report
from netscope.shapes import shape_tree, tensor_bytes
from netscope.totals import compute_totals
from netscope.progress import progress, progress_enabled
from netscope.trace import model_device, model_float_dtype, module_count, trace


def summary(model: nn.Module, input_size=None, input_data=None, *, device=None, dtype: Optional[str] = None,
            input_dtypes: Optional[Sequence[str]] = None, mode: str = "eval", label: Optional[str] = None,
            checks: bool = True, audit_names: bool = True) -> Report:
    """Run ``model`` once on a dummy input and return a :class:`Report`.

    input_size: a shape ``(1, 3, 224, 224)`` or a list of shapes (one per positional input).
    input_data: a tensor, a tuple/list of positional tensors, or a dict of keyword tensors (instead of input_size).
    device: ``None`` runs where the model lives; ``"meta"`` runs on a meta copy (no memory, the model untouched);
    another device moves the model there for the pass and back afterwards.
    dtype: float dtype of the pass; when it differs from the model's, the pass runs on a converted copy.
    mode: ``"eval"`` (default) or ``"train"``; either way the model's own flags are restored.
    """
    if not isinstance(model, nn.Module):
        raise InputSpecError(f"summary() needs a torch.nn.Module, got {type(model).__name__}")
    inputs = _input_spec(model, input_size, input_data, input_dtypes)
    run_device = model_device(model) if device is None else resolve_device(device)
    return run_summary(model, inputs, device=run_device, dtype=dtype, mode=mode,
                       label=label or type(model).__name__, owned=False, checks=checks, audit_names=audit_names)


def run_summary(model: nn.Module, inputs, *, device: torch.device, dtype: Optional[str], mode: str, label: str,
                owned: bool, checks: bool = True, audit_names: bool = True, quiet: bool = True) -> Report:
    """Shared by the API and the CLI. ``owned``: the model was built by netscope and may be moved or cast.
    ``quiet=False`` shows a progress bar on stderr (a terminal only) when the pass takes more than a moment."""
    if mode not in ("eval", "train"):
        raise InputSpecError(f"mode must be 'eval' or 'train', not {mode!r}")
    float_dtype = normalize_float_dtype(dtype) if dtype else model_float_dtype(model)
    with paused_gc(), _placed(model, device, float_dtype, owned) as runnable:
        run_dtype = model_float_dtype(runnable) if any(True for _ in runnable.parameters()) else float_dtype
        if isinstance(inputs, InputSpec):
            args, kwargs = inputs.build(device, run_dtype)
        else:
            args, kwargs = _move_inputs(inputs, device)
        try:
            show = progress_enabled(quiet=quiet)
            with progress("netscope: tracing", total=module_count(runnable) if show else None, unit="call",
                          quiet=not show) as advance:
                result = trace(runnable, (args, kwargs), mode=mode, progress=advance if show else None)
        except ForwardError as err:
            _attach_diagnosis(runnable, inputs, err)
            raise
        input_tree = [shape_tree(a) for a in args] + ([shape_tree(kwargs)] if kwargs else [])
        totals = compute_totals(runnable, result.calls, result.modules, input_bytes=tensor_bytes((args, kwargs)),
                                peak_memory_bytes=result.peak_memory_bytes, packed=result.packed)
        formula_checks = _formula_checks(result) if checks else []
        findings = _naming_findings(runnable) if audit_names else []
    run = RunInfo(model=label, device=str(device), dtype=run_dtype, mode=mode, input_shapes=input_tree,
                  seconds=result.seconds)
    return Report(layers=result.calls, totals=totals, run=run, checks=formula_checks, findings=findings,
                  model_output=result.model_output, operators=result.operators)


def check(model: nn.Module, input_size=None, input_data=None, **kwargs) -> List[Any]:
    """The formula checks of one pass (``report.checks``)."""
    return summary(model, input_size, input_data, **kwargs).checks


@contextlib.contextmanager
def _placed(model: nn.Module, device: torch.device, float_dtype: str, owned: bool) -> Iterator[nn.Module]:
    """Yield a model on ``device`` in ``float_dtype`` without ever leaving the user's model changed."""
    from netscope.meta import meta_copy

    target_dtype = getattr(torch, float_dtype)
    current_dtype = getattr(torch, model_float_dtype(model))
    needs_cast = target_dtype != current_dtype and target_dtype.is_floating_point
    if device.type == "meta":
        copy_ = meta_copy(model) if not owned else model.to("meta")
        yield copy_.to(target_dtype) if needs_cast else copy_
        return
    if owned:
        yield model.to(device=device, dtype=target_dtype if needs_cast else None)
        return
    if needs_cast:  # never cast the user's tensors: run on a converted copy
        yield copy.deepcopy(model).to(device=device, dtype=target_dtype)
        return
    tensors = list(model.parameters()) + list(model.buffers())
    if all(t.device == device for t in tensors):
        yield model
        return
    homes = [(t, t.data) for t in {id(t): t for t in tensors}.values()]
    try:
        for tensor, data in homes:
            tensor.data = data.to(device)
        yield model
    finally:
        for tensor, data in homes:
            tensor.data = data


def _input_spec(model, input_size, input_data, input_dtypes):
    if input_data is not None and input_size is not None:
        raise InputSpecError("give either input_size or input_data, not both")
    if input_data is not None:
        if isinstance(input_data, torch.Tensor):
            return (input_data,), {}
        if isinstance(input_data, dict):
            return (), dict(input_data)
        if isinstance(input_data, (list, tuple)):
            if len(input_data) == 2 and isinstance(input_data[1], dict) and isinstance(input_data[0], (list, tuple)):
                return tuple(input_data[0]), dict(input_data[1])
            return tuple(input_data), {}
        raise InputSpecError(f"input_data must be a tensor, a tuple of tensors or a dict, not {type(input_data).__name__}")
    if input_size is None:
        from netscope.specs import default_inputs_for

        return default_inputs_for(model)
    if isinstance(input_size, InputSpec):
        return input_size
    shapes = [input_size] if input_size and all(isinstance(d, int) for d in input_size) else list(input_size)
    dtypes = list(input_dtypes or [None] * len(shapes))
    if len(dtypes) != len(shapes):
        raise InputSpecError(f"input_dtypes has {len(dtypes)} entries for {len(shapes)} input shapes")
    specs = []
    for shape, dt in zip(shapes, dtypes):
        if not all(isinstance(d, int) and d > 0 for d in shape):
            raise InputSpecError(f"input shape {shape!r} must be positive whole numbers, e.g. (1, 3, 224, 224)")
        dt = normalize_dtype(dt) if dt else None
        high = 1000 if dt and not dt.startswith(("float", "bfloat")) else 2
        specs.append(TensorSpec(tuple(shape), dt, high))
    return InputSpec(specs)


def _move_inputs(inputs, device):
    """The user's (args, kwargs) on ``device``: copies, never the user's tensors moved; meta gets empty twins."""
    args, kwargs = inputs

    def move(tensor):
        if tensor.device == device:
            return tensor
        return torch.empty_like(tensor, device="meta") if device.type == "meta" else tensor.to(device)

    return torch.utils._pytree.tree_map_only(torch.Tensor, move, (tuple(args), dict(kwargs)))


def _formula_checks(result) -> List[Any]:
    from netscope.checks import check_trace

    return check_trace(result)


def _naming_findings(model) -> List[Any]:
    from netscope.naming import audit_names

    return list(audit_names(model).findings)


def _attach_diagnosis(model, inputs, err: ForwardError) -> None:
    from netscope.diagnosis import diagnose_failure

    if not isinstance(inputs, InputSpec):
        return
    try:
        err.diagnosis = diagnose_failure(model, inputs, err)
    except Exception:  # a diagnosis is a bonus: never hide the user's original error behind ours
        err.diagnosis = None
