"""Flatten: dimensions start_dim..end_dim become one."""

from __future__ import annotations

from typing import Optional

import torch.nn as nn

from netscope.analyses.formulas.registry import (
    DIM_OUT_OF_RANGE, FORMULAS, DimFormula, Prediction, first_shape, invalid, product_text, shape_text,
)


@FORMULAS.register(nn.Flatten)
def flatten_output(module, args: tuple, kwargs: dict) -> Optional[Prediction]:
    shape = first_shape(args, kwargs)
    if shape is None:
        return None
    rank = max(len(shape), 1)  # a 0-d tensor flattens as if it had one dimension
    bounds = []
    for name in ("start_dim", "end_dim"):
        value = getattr(module, name)
        if not -rank <= value < rank:
            return invalid(DIM_OUT_OF_RANGE, f"{name}={value} is outside the input's dimensions "
                           f"[{-rank}, {rank - 1}] (input {shape_text(shape)})",
                           expected=f"{name} in [{-rank}, {rank - 1}]", arrived=f"{len(shape)}D input")
        bounds.append(value % rank)
    start, end = bounds
    if not shape:
        return Prediction((1,), (DimFormula("F", "F: a 0-d tensor flattens to size = 1", 1),))
    if start > end:
        return invalid(DIM_OUT_OF_RANGE, f"start_dim ({start}) comes after end_dim ({end}) for input "
                       f"{shape_text(shape)}", expected="start_dim <= end_dim", arrived=f"{start} > {end}")
    merged = shape[start:end + 1]
    size = 1
    for d in merged:
        size *= d
    dims = (DimFormula("F", f"F: {product_text(merged)} = {size}", size),)
    return Prediction(shape[:start] + (size,) + shape[end + 1:], dims)
