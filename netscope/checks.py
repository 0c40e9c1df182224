"""Formula checks over a traced pass: every size-changing call explained, compared, and warned about."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

from netscope.formulas import DimFormula, Invalid, predict
from netscope.records import Finding, Severity

FAILED = "(failed)"
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
            "invalid": self.invalid.to_dict() if self.invalid else None,
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


def check_call(index: int, call, module, values) -> Optional[FormulaCheck]:
    """The check of one recorded call, or None when its module type has no formula."""
    args, kwargs = values
    prediction = predict(module, args, kwargs)
    if prediction is None:
        return None
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


def _fix_for(reason: Invalid) -> str:
    if reason.expected and reason.arrived:
        return f"the layer expects {reason.expected} but got {reason.arrived}; change the input size or the layer"
    return "change the input size or the layer's hyperparameters"


def check_trace(result) -> List[FormulaCheck]:
    """Formula checks for every call of a layer type with a registered formula, in call order."""
    checks = []
    for index, (call, module, values) in enumerate(zip(result.calls, result.modules, result.call_values,
                                                        strict=True)):
        check = check_call(index, call, module, values)
        if check is not None:
            checks.append(check)
    return checks


def check_findings(checks: Sequence[FormulaCheck], *, include_info: bool = True) -> List[Finding]:
    """Every finding of every check, errors first, then in call order."""
    order = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}
    findings = [f for c in checks for f in c.findings if include_info or f.severity is not Severity.INFO]
    return sorted(findings, key=lambda f: (order[f.severity], f.call_index if f.call_index is not None else -1))


def has_problems(checks: Sequence[FormulaCheck]) -> bool:
    return any(c.status != PASS for c in checks)
