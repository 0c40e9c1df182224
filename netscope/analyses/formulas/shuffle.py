"""PixelShuffle (channels -> space) and PixelUnshuffle (space -> channels)."""

from __future__ import annotations

from typing import Optional

import torch.nn as nn

from netscope.analyses.formulas.registry import (
    FORMULAS, INPUT_RANK, NOT_DIVISIBLE, DimFormula, Prediction, first_shape, invalid, shape_text,
)


def _rank_problem(name: str, shape) -> Optional[Prediction]:
    if len(shape) < 3:
        return invalid(INPUT_RANK, f"{name} needs at least 3 dimensions (C, H, W), got {shape_text(shape)}",
                       expected="at least 3D input", arrived=f"{len(shape)}D")
    return None


@FORMULAS.register(nn.PixelShuffle)
def pixel_shuffle_output(module, args: tuple, kwargs: dict) -> Optional[Prediction]:
    shape = first_shape(args, kwargs)
    if shape is None:
        return None
    problem = _rank_problem("PixelShuffle", shape)
    if problem:
        return problem
    r = module.upscale_factor
    c, h, w = shape[-3:]
    if c % (r * r):
        return invalid(NOT_DIVISIBLE, f"C: {c} channels are not divisible by upscale_factor**2 = {r * r}",
                       expected=f"C divisible by {r * r}", arrived=f"C = {c}")
    dims = (DimFormula("C", f"C: {c} / {r}**2 = {c // (r * r)}", c // (r * r)),
            DimFormula("H", f"H: {h} * {r} = {h * r}", h * r), DimFormula("W", f"W: {w} * {r} = {w * r}", w * r))
    return Prediction(shape[:-3] + tuple(d.expected for d in dims), dims)


@FORMULAS.register(nn.PixelUnshuffle)
def pixel_unshuffle_output(module, args: tuple, kwargs: dict) -> Optional[Prediction]:
    shape = first_shape(args, kwargs)
    if shape is None:
        return None
    problem = _rank_problem("PixelUnshuffle", shape)
    if problem:
        return problem
    r = module.downscale_factor
    c, h, w = shape[-3:]
    for dim, size in (("H", h), ("W", w)):
        if size % r:
            return invalid(NOT_DIVISIBLE, f"{dim}: {size} is not divisible by downscale_factor {r}",
                           expected=f"{dim} divisible by {r}", arrived=f"{dim} = {size}")
    dims = (DimFormula("C", f"C: {c} * {r}**2 = {c * r * r}", c * r * r),
            DimFormula("H", f"H: {h} / {r} = {h // r}", h // r), DimFormula("W", f"W: {w} / {r} = {w // r}", w // r))
    return Prediction(shape[:-3] + tuple(d.expected for d in dims), dims)
