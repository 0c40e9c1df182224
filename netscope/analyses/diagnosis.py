"""Explain a failed forward pass: which layer, what it expected, what arrived, how it got there, what works."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional, Tuple

from netscope.analyses.formulas import predict
from netscope.analyses.formulas.registry import FEATURES, product_text, shape_text
from netscope.records import FAILED
from netscope.run.failures import dtype_advice

DIAGNOSIS_PROBES = 300  # runs the solver may spend on "Input sizes that work"


@dataclass(frozen=True)
class ChainStep:
    """One size change on the way to the failure."""

    layer: str
    class_name: str
    input_shape: str
    output_shape: str


@dataclass(frozen=True)
class Diagnosis:
    """Why the pass failed, in terms a user can act on."""

    layer: str  # qualified name of the failing module ("" for the root)
    class_name: str
    error: str  # the original exception, one line
    expected: str  # e.g. "in_features=400"
    arrived: str  # e.g. "2704 = 16*13*13"
    explanation: str  # the formula's reason, when a formula explains the failure
    chain: Tuple[ChainStep, ...]
    input_shape: str
    working_sizes: str  # the solver's summary, or why it found none

    def render(self) -> str:
        where = f"{self.layer or '(root)'} ({self.class_name})"
        lines = [f"The forward pass failed in {where} for input {self.input_shape}.",
                 f"  error:    {self.error}"]
        if self.expected or self.arrived:
            lines.append(f"  expected: {self.expected or '?'}")
            lines.append(f"  arrived:  {self.arrived or '?'}")
        if self.explanation:
            lines.append(f"  why:      {self.explanation}")
        if self.chain:
            lines.append("How the sizes got there:")
            lines.append(f"  input {self.input_shape}")
            for step in self.chain:
                lines.append(f"  -> {step.layer or '(root)'} ({step.class_name}): {step.output_shape}")
        if self.working_sizes:
            lines.append(f"Input sizes that work: {self.working_sizes}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"layer": self.layer, "class_name": self.class_name, "error": self.error, "expected": self.expected,
                "arrived": self.arrived, "explanation": self.explanation, "input_shape": self.input_shape,
                "chain": [step.__dict__ for step in self.chain], "working_sizes": self.working_sizes}


def _shape_str(tree) -> str:
    if isinstance(tree, tuple):
        return shape_text(tree)
    if isinstance(tree, list) and tree and isinstance(tree[0], tuple):
        return shape_text(tree[0]) if len(tree) == 1 else "(" + ", ".join(_shape_str(t) for t in tree) + ")"
    return str(tree)


def _size_chain(partial, failed_index: Optional[int]) -> Tuple[ChainStep, ...]:
    """Completed leaf calls that changed the shape, in order, then the failing call."""
    steps = []
    for call in partial.calls:  # a failure in the root's own code comes after its children ran: keep them
        if call.index == failed_index or not call.is_leaf or call.output_shapes == FAILED:
            continue
        inputs = call.input_shapes[0] if call.input_shapes else None
        if _shape_str(inputs) != _shape_str(call.output_shapes):
            steps.append(ChainStep(call.name, call.class_name, _shape_str(inputs), _shape_str(call.output_shapes)))
    if failed_index is not None:
        call = partial.calls[failed_index]
        inputs = call.input_shapes[0] if call.input_shapes else None
        steps.append(ChainStep(call.name, call.class_name, _shape_str(inputs), "fails"))
    return tuple(steps)


def _factored(features: int, partial, before: Optional[int]) -> str:
    """``2704 = 16*13*13`` when an earlier output had exactly that many elements per sample."""
    limit = before if before is not None else len(partial.calls)
    for call in reversed(partial.calls[:limit]):
        shape = call.output_shapes
        if isinstance(shape, tuple) and len(shape) >= 3:
            per_sample = 1
            for d in shape[1:]:
                per_sample *= d
            if per_sample == features:
                return f"{features} = {product_text(shape[1:])}"
    return str(features)


# PyTorch messages of failures that happen outside a layer with a formula (functional code in a forward).
MESSAGE_PATTERNS = (
    (re.compile(r"mat1 and mat2 shapes cannot be multiplied \((\d+)x(\d+) and (\d+)x(\d+)\)"),
     lambda m: (f"in_features={m.group(3)}", int(m.group(2)))),
    (re.compile(r"shape '\[(.*?)\]' is invalid for input of size (\d+)"),
     lambda m: (f"a size that fits view/reshape [{m.group(1)}]", int(m.group(2)))),
)


def diagnose_failure(model, input_spec, error, *, solve: bool = True, mode: str = "eval") -> "Diagnosis":
    """Turn a :class:`netscope.errors.ForwardError` from ``trace`` into a :class:`Diagnosis`; the sizes that work are
    searched in ``mode``, the failed pass's."""
    partial = getattr(error, "partial", None)
    index = getattr(error, "failed_index", None)
    original = getattr(error, "original", None) or error
    message = f"{type(original).__name__}: {original}".splitlines()[0]
    layer, class_name, expected, arrived, explanation = getattr(error, "layer", "") or "", type(model).__name__, "", "", ""
    chain: Tuple[ChainStep, ...] = ()
    if partial is not None and index is not None:
        call = partial.calls[index]
        layer, class_name = call.name, call.class_name
        prediction = predict(partial.modules[index], *partial.call_values[index])
        if prediction is not None and prediction.invalid is not None:
            reason = prediction.invalid
            expected, arrived, explanation = reason.expected, reason.arrived, reason.message
            if reason.reason == FEATURES and arrived.isdigit():
                arrived = _factored(int(arrived), partial, index)
        else:
            for pattern, parse in MESSAGE_PATTERNS:
                match = pattern.search(str(original))
                if match:
                    expected, features = parse(match)
                    arrived = _factored(features, partial, index)
                    break
        chain = _size_chain(partial, index)
    input_shape = "?"
    if input_spec is not None and input_spec.args:
        input_shape = _shape_str(tuple(input_spec.args[0].shape))
    elif input_spec is not None and input_spec.kwargs:  # keyword inputs only (--input NAME=SHAPE)
        input_shape = "{" + ", ".join(f"{k}: {_shape_str(tuple(t.shape))}" for k, t in input_spec.kwargs.items()) + "}"
    working = ""
    if solve and input_spec is not None:
        working = ("not searched: the failure is about a dtype, which no input size changes"
                   if dtype_advice(original) else _working_sizes(model, input_spec, mode))
    return Diagnosis(layer, class_name, message, expected, arrived, explanation, chain, input_shape, working)


def _working_sizes(model, input_spec, mode: str) -> str:
    from netscope.errors import NetscopeError
    from netscope.analyses.solver import solve_input_size

    try:  # the square scan only, with a budget: a failed summary should not wait for a full solve
        return solve_input_size(model, input_spec, per_axis=False, max_probes=DIAGNOSIS_PROBES, mode=mode).summary()
    except NetscopeError as err:
        return f"not searched ({err})"
