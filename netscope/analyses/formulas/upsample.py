"""Upsample modules (``nn.Upsample``, ``UpsamplingNearest2d``, ``UpsamplingBilinear2d``): size or scale_factor."""

from __future__ import annotations

import math
from typing import Optional

import torch.nn as nn

from netscope.records import Finding, Severity

from netscope.analyses.formulas.registry import (
    FORMULAS, INPUT_RANK, OUTPUT_TOO_SMALL, DimFormula, Prediction, as_tuple, dim_names, first_shape, invalid,
    shape_text,
)

# mode -> the input ranks it accepts
MODE_RANKS = {"linear": (3,), "bilinear": (4,), "bicubic": (4,), "trilinear": (5,)}
ANY_RANK = (3, 4, 5)


@FORMULAS.register(nn.Upsample)
def upsample_output(module, args: tuple, kwargs: dict) -> Optional[Prediction]:
    shape = first_shape(args, kwargs)
    if shape is None:
        return None
    nd = len(shape) - 2
    given = module.size if module.size is not None else module.scale_factor
    if isinstance(given, (tuple, list)) and len(given) != nd:
        what = "size" if module.size is not None else "scale_factor"
        return invalid(INPUT_RANK, f"{what}={tuple(given)} has {len(given)} entries but the input "
                       f"{shape_text(shape)} has {nd} spatial dimensions",
                       expected=f"{len(given) + 2}D input", arrived=f"{len(shape)}D {shape_text(shape)}")
    ranks = MODE_RANKS.get(module.mode, ANY_RANK)
    if len(shape) not in ranks:
        return invalid(INPUT_RANK, f"mode {module.mode!r} needs a {' or '.join(f'{r}D' for r in ranks)} input, "
                       f"got {len(shape)}D {shape_text(shape)}",
                       expected=" or ".join(f"{r}D" for r in ranks) + " input", arrived=f"{len(shape)}D")
    names = dim_names(nd)
    dims = []
    if module.size is not None:
        for dim, target in zip(names, as_tuple(module.size, nd)):
            dims.append(DimFormula(dim, f"{dim}: size = {target}", int(target)))
    else:
        for dim, size, scale in zip(names, shape[2:], as_tuple(module.scale_factor, nd)):
            out = math.floor(float(size) * float(scale))
            dims.append(DimFormula(dim, f"{dim}: floor({size} * {float(scale):g}) = {out}", out))
    empty = [d.text for d in dims if d.expected < 1]
    notes = ()
    if empty and module.mode != "area":  # area mode is an adaptive pool: it returns an empty tensor instead
        return invalid(OUTPUT_TOO_SMALL, f"{empty[0]}: the output would be empty",
                       expected="output sizes >= 1", arrived=empty[0])
    if empty:
        notes = (Finding(Severity.WARNING, "empty-output", f"{'; '.join(empty)}: the output is an empty tensor",
                         fix="use a larger input or scale_factor"),)
    return Prediction(shape[:2] + tuple(d.expected for d in dims), tuple(dims), notes)
