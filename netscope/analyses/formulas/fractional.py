"""Fractional max pools: FractionalMaxPool2d/3d (``output_size``, or ``int(input * output_ratio)``)."""

from __future__ import annotations

from typing import Optional

import torch.nn as nn

from netscope.analyses.formulas.registry import (
    FORMULAS, KERNEL_TOO_LARGE, DimFormula, Prediction, as_tuple, dim_names, first_shape, invalid,
    spatial_rank_problem,
)

FRACTIONAL_DIMS = {nn.FractionalMaxPool2d: 2, nn.FractionalMaxPool3d: 3}


@FORMULAS.register(*FRACTIONAL_DIMS)
def fractional_pool_output(module, args: tuple, kwargs: dict) -> Optional[Prediction]:
    shape = first_shape(args, kwargs)
    if shape is None:
        return None
    nd = next(n for klass, n in FRACTIONAL_DIMS.items() if isinstance(module, klass))
    problem = spatial_rank_problem(type(module).__name__, nd, shape)
    if problem is not None:
        return problem
    sizes, names = shape[-nd:], dim_names(nd)
    kernels = as_tuple(module.kernel_size, nd)
    if module.output_size is not None:
        dims = tuple(DimFormula(dim, f"{dim}: output_size = {int(out)}", int(out))
                     for dim, out in zip(names, as_tuple(module.output_size, nd)))
    else:  # F.fractional_max_pool2d/3d: int(size * ratio), in Python floats
        dims = tuple(DimFormula(dim, f"{dim}: int({size} * {ratio}) = {int(size * ratio)}", int(size * ratio))
                     for dim, size, ratio in zip(names, sizes, as_tuple(module.output_ratio, nd)))
    slack = 1 if nd == 2 else 0  # the kernels' own checks: output + kernel - 1 <= input in 2d, < input in 3d
    for d, size, kernel in zip(dims, sizes, kernels):
        least = d.expected + kernel - slack
        if size < least:
            return invalid(KERNEL_TOO_LARGE,
                           f"{d.dim}: {d.expected} outputs with a {kernel}-wide window need an input of at least "
                           f"{d.expected} + {kernel}{' - 1' if slack else ''} = {least} in {type(module).__name__}, "
                           f"got {size}", expected=f"{d.dim} >= {least}", arrived=f"{d.dim} = {size}")
    return Prediction(shape[:-nd] + tuple(d.expected for d in dims), dims)
