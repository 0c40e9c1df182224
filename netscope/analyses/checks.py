"""Formula checks over a traced pass: every size-changing call explained, compared, and warned about."""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch.nn as nn

from netscope.analyses.formulas import DimFormula, Invalid, predict
from netscope.analyses.formulas.pool import POOL_DIMS
from netscope.analyses.formulas.registry import FORMULAS, dim_names
from netscope.analyses.formulas.window import WINDOW_CODES, window_notes
from netscope.records import FAILED, Finding, Severity, record_from_fields

PASS, MISMATCH, INVALID = "pass", "mismatch", "invalid"


@dataclass(frozen=True)
class FormulaCheck:
    """One call of a size-changing layer: what the formula expects against what PyTorch produced."""

    call_index: int
    layer: str
    class_name: str
    status: str  # "pass" | "mismatch" | "invalid" (the formula says the layer must reject this input)
    expected_shape: Optional[Tuple[int, ...]]
    observed_shape: object  # shape tree, or "(failed)"
    dims: Tuple[DimFormula, ...]
    findings: Tuple[Finding, ...]
    invalid: Optional[Invalid] = None
    operator: Optional[str] = None  # the aten operator checked (its real input and arguments), if any

    @property
    def formula_text(self) -> str:
        return "; ".join(d.text for d in self.dims)

    @property
    def compact(self) -> str:
        """Short text for a summary column: ``ok``, ``ok (2 warnings)``, ``MISMATCH``, ``INVALID``."""
        if self.status != PASS:
            return self.status.upper()
        warnings = sum(1 for f in self.findings if f.severity is not Severity.INFO)
        return f"ok ({warnings} warning{'s' if warnings != 1 else ''})" if warnings else "ok"

    def to_dict(self) -> dict:
        return {
            "call_index": self.call_index, "layer": self.layer, "class_name": self.class_name,
            "status": self.status,
            "expected_shape": list(self.expected_shape) if self.expected_shape is not None else None,
            "observed_shape": _jsonable(self.observed_shape),
            "dims": [d.to_dict() for d in self.dims], "findings": [f.to_dict() for f in self.findings],
            "invalid": self.invalid.to_dict() if self.invalid else None, "operator": self.operator,
        }


def _jsonable(tree):
    if isinstance(tree, tuple):
        return list(tree)
    if isinstance(tree, list):
        return [_jsonable(t) for t in tree]
    if isinstance(tree, dict):
        return {k: _jsonable(v) for k, v in tree.items()}
    return tree


def first_tensor_shape(tree) -> Optional[Tuple[int, ...]]:
    """The shape of a call's main output: the tensor itself, or the first of (values, indices)."""
    if isinstance(tree, tuple):
        return tree
    if isinstance(tree, list) and tree and isinstance(tree[0], tuple):
        return tree[0]
    return None


WINDOWED_MODULES = (nn.Conv1d, nn.Conv2d, nn.Conv3d) + tuple(POOL_DIMS)


def check_call(index: int, call, module, values, ops: Sequence = ()) -> List[FormulaCheck]:
    """The checks of one recorded call: its module's formula, judged at the convolution/pool operator the
    call ran when there is exactly one (``ops``: the call's own ``WindowOp`` records), and one check per
    operator that a module without a formula ran itself (``F.conv2d``, ``F.max_pool2d`` in a forward)."""
    args, kwargs = values
    prediction = predict(module, args, kwargs)
    if prediction is None:  # F.conv_transpose2d too: its formula on the operator's arguments
        return [_operator_check(index, call, op, None) for op in ops]
    ops = [op for op in ops if not op.transposed]
    if len(ops) == 1 and call.output_shapes != FAILED and isinstance(module, WINDOWED_MODULES):
        op = ops[0].spatial(len(prediction.dims) if prediction.dims else ops[0].nd)
        if op is not None:
            return [_operator_check(index, call, op, prediction)]
    return [_module_check(index, call, prediction)]


def _module_check(index: int, call, prediction) -> FormulaCheck:
    label = call.name or "(root)"
    where = dict(layer=call.name, call_index=index)
    findings = [dataclasses.replace(note, **where) for note in prediction.notes]
    observed = call.output_shapes
    failed = observed == FAILED
    if prediction.invalid is not None:
        status = INVALID if failed else MISMATCH
        message = (f"{label} ({call.class_name}) rejects its input: {prediction.invalid.message}" if failed else
                   f"{label} ({call.class_name}) ran, but the formula says it should have failed: "
                   f"{prediction.invalid.message}")
        findings.insert(0, Finding(Severity.ERROR, "formula-invalid" if failed else "formula-mismatch", message,
                                   fix=_fix_for(prediction.invalid), **where))
    else:
        shape = first_tensor_shape(observed)
        if not failed and shape == prediction.shape:
            status = PASS
        else:
            status = MISMATCH
            what = "raised" if failed else f"produced {list(shape) if shape else observed}"
            formulas = "; ".join(d.text for d in prediction.dims)
            findings.insert(0, Finding(
                Severity.ERROR, "formula-mismatch",
                f"{label} ({call.class_name}) {what} but the formula expects {list(prediction.shape)} ({formulas})",
                fix="this layer behaves unlike its documented formula (a subclass with a custom forward?); "
                    "please report it", **where))
    return FormulaCheck(index, call.name, call.class_name, status, prediction.shape, observed, prediction.dims,
                        tuple(findings), prediction.invalid)


def _operator_check(index: int, call, op, prediction) -> FormulaCheck:
    """The window formula on what the operator received; the module's output must be the operator's.

    ``prediction``: the module's own formula (its non-window notes, e.g. ``padding_mode``, are kept), or
    None for an operator the module's forward called itself."""
    label = call.name or "(root)"
    where = dict(layer=call.name, call_index=index)
    dims = op.dims()
    notes = [] if op.transposed else list(window_notes(op.windows, op.sizes, dim_names(op.nd)))
    if op.forward_pad:  # positions an F.pad in forward added are not the input's: count unread ones without them
        real = op.unpadded()
        notes = [n for n in notes if n.code != "stride-skips-input"] + [
            n for n in window_notes(real.windows, real.sizes, dim_names(op.nd)) if n.code == "stride-skips-input"]
    if prediction is not None and prediction.is_valid:
        notes += [n for n in prediction.notes if n.code not in WINDOW_CODES]
    findings = [dataclasses.replace(note, **where) for note in notes]
    expected = op.expected_shape()
    formulas = "; ".join(d.text for d in dims)
    observed = call.output_shapes if prediction is not None else op.output_shape
    received = first_tensor_shape(call.input_shapes[0]) if call.input_shapes else None
    if prediction is not None and received is not None and tuple(received) != op.input_shape:
        findings.append(Finding(
            Severity.INFO, "padded-in-forward",
            f"{label} ({call.class_name}) ran aten.{op.op} on {list(op.input_shape)}, not on its own input "
            f"{list(received)}: the formula is checked on what the operator received",
            fix="expected for layers that pad inside forward (TF 'same' padding, causal convolutions)", **where))
    status = PASS
    if expected != op.output_shape:
        status = MISMATCH
        findings.insert(0, Finding(
            Severity.ERROR, "formula-mismatch",
            f"{label} ({call.class_name}): aten.{op.op} produced {list(op.output_shape)} but the formula expects "
            f"{list(expected)} ({formulas})", fix="please report it: the operator disagrees with its formula",
            **where))
    elif first_tensor_shape(observed) != op.output_shape:
        status = MISMATCH
        findings.insert(0, Finding(
            Severity.ERROR, "formula-mismatch",
            f"{label} ({call.class_name}) produced {_shape_text(observed)} but the formula expects "
            f"{list(expected)} ({formulas}), which its aten.{op.op} did produce: its forward changes the "
            "result after the operator",
            fix="this layer behaves unlike its documented formula (a subclass with a custom forward?)", **where))
    return FormulaCheck(index, call.name, call.class_name, status, expected, observed, dims, tuple(findings),
                        operator=op.op)


def _shape_text(tree) -> str:
    shape = first_tensor_shape(tree)
    return str(list(shape)) if shape is not None else str(tree)


def _fix_for(reason: Invalid) -> str:
    if reason.expected and reason.arrived:
        return f"the layer expects {reason.expected} but got {reason.arrived}; change the input size or the layer"
    return "change the input size or the layer's hyperparameters"


def check_trace(result) -> List[FormulaCheck]:
    """Formula checks for every call of a layer type with a registered formula, and for every convolution/pool
    operator a module without one ran, in call order."""
    checks = []
    ops = getattr(result, "window_ops", {})
    same_as = getattr(result, "same_as", {})
    forward_outputs = getattr(result, "forward_outputs", {})  # a forward hook replaced these calls' outputs
    single: Dict[int, FormulaCheck] = {}  # call index -> its one check, for the replayed calls of the same signature
    calls, modules, values_of = result.calls, result.modules, result.call_values
    if not len(calls) == len(modules) == len(values_of):
        raise ValueError(f"a trace result with {len(calls)} calls, {len(modules)} modules and {len(values_of)} values")
    classes = list(map(type, modules))
    has_formula = {cls: FORMULAS.lookup(cls) is not None for cls in set(classes)}  # each class's MRO looked up once
    for index in _checked_calls(classes, has_formula, ops, same_as):
        call, module = calls[index], modules[index]
        source = same_as.get(index)
        if source is not None:  # a stock leaf called like an earlier one (netscope.run.leaf_replay)
            earlier = single.get(source)
            if earlier is not None and not earlier.findings and earlier.observed_shape == call.output_shapes:
                checks.append(_as_call(earlier, index, call))
                continue
        call_ops = ops.get(index, ())
        if not call_ops and not has_formula[type(module)]:  # check_call would return no check
            continue
        values = values_of[index]
        if index in forward_outputs:  # the layer is judged on what its forward returned, not on its hook's output
            call = dataclasses.replace(call, output_shapes=forward_outputs[index])
        made = check_call(index, call, module, values, call_ops)
        if len(made) == 1:
            single[index] = made[0]
        checks += made
    return checks


def _checked_calls(classes: List[type], has_formula: Dict[type, bool], ops: Dict[int, list],
                   same_as: Dict[int, int]) -> List[int]:
    """Indexes of the calls that can have a check, in call order (``classes``: each call's module class): those of a
    class with a registered formula, those that ran a convolution/pool operator (``ops``), and the replays of the
    latter (a replay takes its source's check). The others (containers, activations) are passed over in C loops."""
    chosen = set(itertools.compress(range(len(classes)), map(has_formula.__getitem__, classes)))
    chosen.update(ops)
    if ops:
        chosen.update(index for index, source in same_as.items() if source in ops)
    return sorted(chosen)


def _as_call(check: FormulaCheck, index: int, call) -> FormulaCheck:
    """``check`` (without findings) as the check of another call with the same signature and output."""
    fields = check.__dict__.copy()  # (a copy and three stores: half the time of a dict display with ``**``)
    fields["call_index"], fields["layer"], fields["class_name"] = index, call.name, call.class_name
    return record_from_fields(FormulaCheck, fields)


def check_findings(checks: Sequence[FormulaCheck], *, include_info: bool = True) -> List[Finding]:
    """Every finding of every check, errors first, then in call order."""
    order = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}
    findings = [f for c in checks for f in c.findings if include_info or f.severity is not Severity.INFO]
    return sorted(findings, key=lambda f: (order[f.severity], f.call_index if f.call_index is not None else -1))


def has_problems(checks: Sequence[FormulaCheck]) -> bool:
    return any(c.status != PASS for c in checks)
