"""Unfold (image -> sliding blocks) and Fold (sliding blocks -> image); 2 spatial dimensions only."""

from __future__ import annotations

from typing import Optional, Tuple

import torch.nn as nn

from netscope.analyses.formulas.registry import (
    BLOCK_COUNT_MISMATCH, FORMULAS, INPUT_RANK, NOT_DIVISIBLE, OUTPUT_TOO_SMALL, DimFormula, Prediction,
    as_tuple, first_shape, invalid, product_text, shape_text,
)
from netscope.analyses.formulas.window import Window, window_notes

NAMES = ("H", "W")


def block_windows(module) -> Tuple[Window, ...]:
    return tuple(Window(k, s, p, p, d) for k, s, p, d in zip(
        as_tuple(module.kernel_size, 2), as_tuple(module.stride, 2), as_tuple(module.padding, 2),
        as_tuple(module.dilation, 2)))


@FORMULAS.register(nn.Unfold)
def unfold_output(module, args: tuple, kwargs: dict) -> Optional[Prediction]:
    shape = first_shape(args, kwargs)
    if shape is None:
        return None
    if len(shape) not in (3, 4):
        return invalid(INPUT_RANK, f"Unfold needs a 3D (C, H, W) or 4D (N, C, H, W) input, got {shape_text(shape)}",
                       expected="3D or 4D input", arrived=f"{len(shape)}D")
    windows = block_windows(module)
    sizes = shape[-2:]
    counts = [DimFormula(n, w.text(n, s), w.output_size(s)) for w, n, s in zip(windows, NAMES, sizes)]
    for d in counts:
        if d.expected < 1:
            return invalid(OUTPUT_TOO_SMALL, f"{d.text}: no sliding block fits (input {shape_text(shape)})",
                           expected=f"{d.dim} blocks >= 1", arrived=str(d.expected))
    kernels = [w.kernel for w in windows]
    channels = shape[-3] * kernels[0] * kernels[1]
    blocks = counts[0].expected * counts[1].expected
    dims = (DimFormula("C", f"C: {shape[-3]} * {product_text(kernels)} = {channels}", channels), *counts,
            DimFormula("L", f"L: {counts[0].expected} * {counts[1].expected} = {blocks}", blocks))
    return Prediction(shape[:-3] + (channels, blocks), dims, window_notes(windows, sizes, NAMES))


@FORMULAS.register(nn.Fold)
def fold_output(module, args: tuple, kwargs: dict) -> Optional[Prediction]:
    shape = first_shape(args, kwargs)
    if shape is None:
        return None
    if len(shape) not in (2, 3):
        return invalid(INPUT_RANK, f"Fold needs a 2D (C*kh*kw, L) or 3D (N, C*kh*kw, L) input, got "
                       f"{shape_text(shape)}", expected="2D or 3D input", arrived=f"{len(shape)}D")
    windows = block_windows(module)
    kernels = [w.kernel for w in windows]
    per_block = kernels[0] * kernels[1]
    columns, blocks_in = shape[-2], shape[-1]
    if columns % per_block:
        return invalid(NOT_DIVISIBLE, f"{columns} columns are not divisible by the kernel's "
                       f"{product_text(kernels)} = {per_block} positions",
                       expected=f"a multiple of {per_block}", arrived=str(columns))
    targets = as_tuple(module.output_size, 2)
    counts = [w.output_size(t) for w, t in zip(windows, targets)]
    if counts[0] * counts[1] != blocks_in:
        return invalid(BLOCK_COUNT_MISMATCH,
                       f"output_size={tuple(targets)} gives {counts[0]} * {counts[1]} sliding blocks, but the input "
                       f"has L = {blocks_in}", expected=f"L = {counts[0] * counts[1]}", arrived=f"L = {blocks_in}")
    if min(counts) < 1:
        return invalid(OUTPUT_TOO_SMALL, f"output_size={tuple(targets)} fits no sliding block "
                       f"({counts[0]} x {counts[1]})", expected="blocks >= 1", arrived=f"{counts[0]} x {counts[1]}")
    channels = columns // per_block
    dims = (DimFormula("C", f"C: {columns} / {product_text(kernels)} = {channels}", channels),
            *(DimFormula(n, f"{n}: blocks {w.text(n, t).split(': ', 1)[1]}; output_size = {t}", int(t))
              for w, n, t in zip(windows, NAMES, targets)))
    return Prediction(shape[:-2] + (channels,) + tuple(int(t) for t in targets), dims)
