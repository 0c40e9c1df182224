"""Max unpooling: MaxUnpool1d/2d/3d, the inverse of a max pool, with the ``output_size=`` argument."""

from __future__ import annotations

from typing import Optional

import torch.nn as nn

from netscope.analyses.formulas.registry import (
    FORMULAS, OUTPUT_SIZE_OUT_OF_RANGE, OUTPUT_TOO_SMALL, DimFormula, Prediction, as_tuple, dim_names, first_shape,
    invalid, spatial_rank_problem,
)

UNPOOL_DIMS = {nn.MaxUnpool1d: 1, nn.MaxUnpool2d: 2, nn.MaxUnpool3d: 3}


@FORMULAS.register(*UNPOOL_DIMS)
def unpool_output(module, args: tuple, kwargs: dict) -> Optional[Prediction]:
    shape = first_shape(args, kwargs)
    if shape is None:
        return None
    nd = next(n for klass, n in UNPOOL_DIMS.items() if isinstance(module, klass))
    problem = spatial_rank_problem(type(module).__name__, nd, shape)
    if problem is not None:
        return problem
    sizes, names = shape[-nd:], dim_names(nd)
    windows = tuple(zip(as_tuple(module.kernel_size, nd), as_tuple(module.stride, nd), as_tuple(module.padding, nd)))
    dims = tuple(DimFormula(dim, f"{dim}: ({n}-1)*{s} - 2*{p} + {k} = {(n - 1) * s - 2 * p + k}",
                            (n - 1) * s - 2 * p + k) for dim, n, (k, s, p) in zip(names, sizes, windows))
    value = args[2] if len(args) > 2 else kwargs.get("output_size")
    if value is not None:  # F.max_unpool*d: N, C may lead; each size strictly within a stride of the default
        requested = [int(v) for v in value]
        if len(requested) == nd + 2:
            requested = requested[2:]
        if len(requested) != nd:
            return invalid(OUTPUT_SIZE_OUT_OF_RANGE, f"output_size={requested} must have {nd} or {nd + 2} elements",
                           expected=f"{nd} or {nd + 2} sizes", arrived=f"{len(requested)}")
        for d, want, (_, s, _) in zip(dims, requested, windows):
            if not d.expected - s < want < d.expected + s:
                return invalid(OUTPUT_SIZE_OUT_OF_RANGE,
                               f"{d.dim}: output_size {want} is not reachable; with this input it must be between "
                               f"{d.expected - s} and {d.expected + s}, exclusive",
                               expected=f"{d.dim} in ({d.expected - s}, {d.expected + s})", arrived=f"{want}")
        dims = tuple(DimFormula(d.dim, f"{d.dim}: output_size (default {d.text.split(': ', 1)[1]}) = {want}", want)
                     for d, want in zip(dims, requested))
    for d in dims:
        if d.expected < 0:
            return invalid(OUTPUT_TOO_SMALL, f"{d.text}: a negative size",
                           expected=f"{d.dim} output >= 0", arrived=f"{d.expected}")
    return Prediction(shape[:-nd] + tuple(d.expected for d in dims), dims)
