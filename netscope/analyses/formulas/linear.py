"""Linear (and LazyLinear after materialization) and Bilinear: the input-feature checks."""

from __future__ import annotations

from typing import Optional

import torch.nn as nn

from netscope.analyses.formulas.conv import is_unmaterialized
from netscope.analyses.formulas.registry import (
    BATCH_MISMATCH, FEATURES, FORMULAS, INPUT_RANK, DimFormula, Prediction, first_shape, invalid, shape_text,
)


@FORMULAS.register(nn.Linear)
def linear_output(module, args: tuple, kwargs: dict) -> Optional[Prediction]:
    shape = first_shape(args, kwargs)
    if shape is None or is_unmaterialized(module):
        return None
    if not shape:
        return invalid(INPUT_RANK, "Linear needs at least a 1D input, got a 0-d tensor",
                       expected="at least 1D input", arrived="0-d tensor")
    features = shape[-1]
    if features != module.in_features:
        return invalid(FEATURES, f"the input's last dimension is {features} but in_features={module.in_features} "
                       f"(input {shape_text(shape)})",
                       expected=f"in_features={module.in_features}", arrived=str(features))
    dims = (DimFormula("F", f"F: in_features {features} matches; out_features = {module.out_features}", module.out_features),)
    return Prediction(shape[:-1] + (module.out_features,), dims)


@FORMULAS.register(nn.Bilinear)
def bilinear_output(module, args: tuple, kwargs: dict) -> Optional[Prediction]:
    first = first_shape(args, kwargs, "input1")
    second = first_shape(args[1:], kwargs, "input2")
    if first is None or second is None:
        return None
    if first[:-1] != second[:-1]:
        return invalid(BATCH_MISMATCH, f"input1 {shape_text(first)} and input2 {shape_text(second)} differ in their "
                       "leading dimensions", expected=shape_text(first[:-1]), arrived=shape_text(second[:-1]))
    for label, shape, want in (("input1", first, module.in1_features), ("input2", second, module.in2_features)):
        if not shape or shape[-1] != want:
            got = shape[-1] if shape else "a 0-d tensor"
            return invalid(FEATURES, f"{label}'s last dimension is {got} but in{label[-1]}_features={want}",
                           expected=f"in{label[-1]}_features={want}", arrived=str(got))
    dims = (DimFormula("F", f"F: ({first[-1]}, {second[-1]}) features match; out_features = {module.out_features}",
                       module.out_features),)
    return Prediction(first[:-1] + (module.out_features,), dims)
