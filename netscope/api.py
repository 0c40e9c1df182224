"""The Python API: ``netscope.summary(model, ...) -> Report`` and ``netscope.check``."""

from __future__ import annotations

import dataclasses
from typing import Any, List, Optional, Sequence

import torch
import torch.nn as nn

from netscope.run.devices import resolve_device
from netscope.errors import ForwardError, InputSpecError, MetaDeviceError
from netscope.collector import paused_gc
from netscope.run.model_state import frozen_heap, function_modes_aside
from netscope.inputs import InputSpec, inputs_from
from netscope.records import RunInfo
from netscope.report import Report
from netscope.run.shapes import shape_tree, tensor_bytes
from netscope.analyses.totals import compute_totals, owned_params
from netscope.progress import progress, progress_enabled
from netscope.run.prepare import prepared, run_pass
from netscope.run.trace import model_device, module_count


def summary(model: nn.Module, input_size=None, input_data=None, *, device=None, dtype: Optional[str] = None,
            input_dtypes: Optional[Sequence[str]] = None, mode: str = "eval", label: Optional[str] = None,
            checks: bool = True, audit_names: bool = True, receptive_field: bool = False) -> Report:
    """Run ``model`` once on a dummy input and return a :class:`Report`.

    input_size: a shape ``(1, 3, 224, 224)`` (numpy integers fine), a list of shapes (one per positional
    input), a dict of shapes by keyword (``{"input_ids": (1, 128)}``) or an :class:`netscope.InputSpec`.
    input_dtypes: the inputs' dtypes (names, ``torch.dtype`` or numpy dtypes), shaped like input_size (a dict for
    a dict); default: the model's default input's (int64 ids for a model that starts with an ``nn.Embedding``).
    input_data: a tensor, a tuple/list of positional tensors, or a dict of keyword tensors (instead of input_size);
    also accepted in input_size's place: ``summary(model, x)``. See :func:`netscope.inputs.inputs_from`.
    device: ``None`` runs where the model lives; ``"meta"`` runs on a meta copy (no memory, the model untouched);
    ``"auto"`` is cuda when available, else cpu, and meta when the pass cannot fit there; another device
    moves the model there for the pass and back afterwards.
    dtype: float dtype of the pass; when it differs from the model's, the pass runs on a converted copy (and
    input_data's float tensors are converted copies too).
    mode: ``"eval"`` (default) or ``"train"``; either way the model's own flags are restored.
    receptive_field: also track each call's receptive field on the input (``LayerCall.receptive_field``,
    columns ``rf``/``jump``); off by default because it costs 3-10% of the pass on conv-heavy models.
    """
    if not isinstance(model, nn.Module):
        raise InputSpecError(f"summary() needs a torch.nn.Module, got {type(model).__name__}")
    with function_modes_aside():  # a TorchFunctionMode of the user's sees the model's code only, not netscope's
        inputs = inputs_from(model, input_size, input_data, input_dtypes)
        run_device = model_device(model) if device is None else resolve_device(device)
        if device is None and _all_meta(inputs):  # meta example tensors carry no values: run where they live
            run_device = torch.device("meta")
        return run_summary(model, inputs, device=run_device, dtype=dtype, mode=mode,
                           label=label or type(model).__name__, owned=False, checks=checks, audit_names=audit_names,
                           fallback_to_meta=str(device) == "auto", receptive_field=receptive_field)


def _all_meta(inputs) -> bool:
    """``inputs`` are the user's (args, kwargs) and every tensor in them is on the meta device."""
    if not isinstance(inputs, tuple):
        return False
    tensors = [t for t in torch.utils._pytree.tree_leaves(inputs) if isinstance(t, torch.Tensor)]
    return bool(tensors) and all(t.device.type == "meta" for t in tensors)


def run_summary(model: nn.Module, inputs, *, device: torch.device, dtype: Optional[str], mode: str, label: str,
                owned: bool, checks: bool = True, audit_names: bool = True, quiet: bool = True,
                fallback_to_meta: bool = False, receptive_field: bool = False) -> Report:
    """Shared by the API and the CLI. ``owned``: the model was built by netscope and may be moved or cast.
    ``quiet=False`` shows a progress bar on stderr (a terminal only) when the pass takes more than a moment."""
    if mode not in ("eval", "train"):
        raise InputSpecError(f"mode must be 'eval' or 'train', not {mode!r}")
    # The model out of the collector's sight for the whole summary, not only the pass: on a big model every
    # collection otherwise walks it again, which costs more than the walks netscope itself makes.
    with frozen_heap(), prepared(model, inputs, device=device, dtype=dtype, owned=owned,
                                 fallback_to_meta=fallback_to_meta) as prep:
        runnable = prep.model
        # The naming audit describes the model as it was given, as `netscope names` does, not as its forward left
        # it (timm's attention-bias caches fill a plain dict with a tensor in the first eval forward); a copy
        # whose lazy modules the pass initializes is audited after the pass, once its parameters exist.
        findings = None
        if audit_names and not prep.lazy_copy:
            with paused_gc():  # netscope's own bookkeeping: no user code runs in here
                findings = _naming_findings(runnable, prep.tree)
        given = _inputs_as_given(prep)  # before the pass: a forward may append to a cache object it was given
        try:
            show = progress_enabled(quiet=quiet)
            with progress("netscope: tracing", total=module_count(runnable) if show else None, unit="call",
                          quiet=not show) as advance:
                result = run_pass(prep, mode=mode, progress=advance if show else None,
                                  receptive_field=receptive_field)
        except ForwardError as err:
            _attach_diagnosis(runnable, prep.spec, err, mode)
            _attach_partial_report(err, runnable, prep, label, mode, checks, findings, given)
            raise
        return _report(runnable, prep, result, label, mode, checks, audit_names, findings, given)


def _inputs_as_given(prep) -> tuple:
    """``(shape trees, bytes)`` of the pass's inputs, read before the forward runs on them."""
    args, kwargs = prep.args, prep.kwargs
    with paused_gc():
        return [shape_tree(a) for a in args] + ([shape_tree(kwargs)] if kwargs else []), tensor_bytes((args, kwargs))


def _report(runnable: nn.Module, prep, result, label: str, mode: str, checks: bool, audit_names: bool,
            findings, given: tuple) -> Report:
    """The report of a pass (``result``) over ``prep``'s model and inputs (``given``: :func:`_inputs_as_given`)."""
    input_tree, input_bytes = given
    with paused_gc():  # netscope's own bookkeeping over a big heap: no user code runs in here
        totals = compute_totals(runnable, result.calls, result.modules,
                                input_bytes=input_bytes,
                                peak_memory_bytes=result.peak_memory_bytes, packed=result.packed, tree=result.tree,
                                census=result.census)
        formula_checks = _formula_checks(result) if checks else []
        if findings is None:
            findings = _naming_findings(runnable, result.tree) if audit_names else []
        owners = owned_params(runnable, result.tree, result.census)
    run = RunInfo(model=label, device=str(prep.device), dtype=prep.dtype, mode=mode, input_shapes=input_tree,
                  seconds=result.seconds, notes=tuple(result.notes))
    return Report(layers=result.calls, totals=totals, run=run, checks=formula_checks, findings=findings,
                  model_output=result.model_output, param_owners=owners, operators=result.operators)


def _attach_partial_report(err: ForwardError, runnable: nn.Module, prep, label: str, mode: str, checks: bool,
                           findings, given: tuple) -> None:
    """``err.report``: the report of what the failed pass recorded up to the failure (``err.partial``), for a page
    that shows it beside the error; None when there is none, or it cannot be built (it never hides the error)."""
    partial = getattr(err, "partial", None)
    if partial is None or not partial.calls:
        return
    try:
        report = _report(runnable, prep, partial, label, mode, checks, False, findings or [], given)
        failed = (f"the forward pass failed in layer {err.layer!r}" if err.layer else "the forward pass failed")
        note = (f"{failed} ({type(err.original or err).__name__}): this report holds only the calls recorded before "
                "the failure, and its mult-adds and activations count only those")
        err.report = dataclasses.replace(report, run=dataclasses.replace(report.run, notes=report.run.notes + (note,)),
                                         failure=str(err))
    except Exception:  # a partial page is a bonus: never hide the user's original error behind ours
        err.report = None


def check(model: nn.Module, input_size=None, input_data=None, **kwargs) -> List[Any]:
    """The formula checks of one pass (``report.checks``)."""
    return summary(model, input_size, input_data, **kwargs).checks


def _formula_checks(result) -> List[Any]:
    from netscope.analyses.checks import check_trace

    return check_trace(result)


def _naming_findings(model, tree) -> List[Any]:
    from netscope.errors import StateDictError
    from netscope.naming.fast import audit_findings
    from netscope.records import Finding, Severity

    try:
        return audit_findings(model, tree)
    except StateDictError as err:  # the summary stands without the audit; the finding says why it is missing
        return [Finding(Severity.WARNING, "state-dict-raised", str(err),
                        fix="Run 'netscope names' once state_dict() works; the layer table above is unaffected.")]


def _attach_diagnosis(model, inputs: Optional[InputSpec], err: ForwardError, mode: str = "eval") -> None:
    from netscope.analyses.diagnosis import diagnose_failure
    from netscope.errors import OutOfMemory

    if inputs is None or isinstance(err, (OutOfMemory, MetaDeviceError)):  # no size would run on meta
        return
    try:
        err.diagnosis = diagnose_failure(model, inputs, err, mode=mode)
    except Exception:  # a diagnosis is a bonus: never hide the user's original error behind ours
        err.diagnosis = None
