"""Adaptive pools: AdaptiveAvgPool1d/2d/3d and AdaptiveMaxPool1d/2d/3d (``None`` keeps the input size)."""

from __future__ import annotations

from typing import Optional

import torch.nn as nn

from netscope.records import Finding, Severity

from netscope.analyses.formulas.registry import (
    FORMULAS, DimFormula, Prediction, as_tuple, dim_names, first_shape, spatial_rank_problem,
)

ADAPTIVE_DIMS = {nn.AdaptiveAvgPool1d: 1, nn.AdaptiveAvgPool2d: 2, nn.AdaptiveAvgPool3d: 3,
                 nn.AdaptiveMaxPool1d: 1, nn.AdaptiveMaxPool2d: 2, nn.AdaptiveMaxPool3d: 3}


@FORMULAS.register(*ADAPTIVE_DIMS)
def adaptive_output(module, args: tuple, kwargs: dict) -> Optional[Prediction]:
    shape = first_shape(args, kwargs)
    if shape is None:
        return None
    nd = next(n for klass, n in ADAPTIVE_DIMS.items() if isinstance(module, klass))
    problem = spatial_rank_problem(type(module).__name__, nd, shape)
    if problem is not None:
        return problem
    sizes, names = shape[-nd:], dim_names(nd)
    targets = as_tuple(module.output_size, nd)
    dims = []
    for dim, size, target in zip(names, sizes, targets):
        if target is None:
            dims.append(DimFormula(dim, f"{dim}: output_size None keeps the input = {size}", size))
        else:
            dims.append(DimFormula(dim, f"{dim}: adaptive from {size} to output_size = {target}", int(target)))
    grows = [f"{d.dim}: {size} -> {d.expected}" for d, size in zip(dims, sizes) if d.expected > size]
    notes = ()
    if grows:
        notes = (Finding(Severity.WARNING, "adaptive-pool-upsamples",
                         "the input is smaller than the pool's output, so values are repeated, not pooled ("
                         + "; ".join(grows) + ")",
                         fix="feed a larger input, or expect this layer to copy values"),)
    return Prediction(shape[:-nd] + tuple(d.expected for d in dims), tuple(dims), notes)
