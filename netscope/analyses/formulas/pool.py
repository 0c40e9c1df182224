"""Pools: MaxPool1d/2d/3d, AvgPool1d/2d/3d, LPPool1d/2d/3d (ceil_mode, dilation, the last-window rule)."""

from __future__ import annotations

from typing import Optional, Tuple

import torch.nn as nn

from netscope.analyses.formulas.registry import (
    FORMULAS, KERNEL_TOO_LARGE, OUTPUT_TOO_SMALL, PADDING_TOO_LARGE, Prediction, as_tuple, dim_names, first_shape,
    invalid, shape_text, spatial_rank_problem,
)
from netscope.analyses.formulas.window import Window, window_notes

POOL_DIMS = {nn.MaxPool1d: 1, nn.MaxPool2d: 2, nn.MaxPool3d: 3, nn.AvgPool1d: 1, nn.AvgPool2d: 2, nn.AvgPool3d: 3,
             nn.LPPool1d: 1, nn.LPPool2d: 2}
if hasattr(nn, "LPPool3d"):
    POOL_DIMS[nn.LPPool3d] = 3


def spatial_dims(module) -> int:
    for klass in type(module).__mro__:
        if klass in POOL_DIMS:
            return POOL_DIMS[klass]
    raise KeyError(type(module).__name__)


def pool_windows(module, nd: int) -> Tuple[Window, ...]:
    kernels = as_tuple(module.kernel_size, nd)
    strides = as_tuple(module.stride if module.stride is not None else module.kernel_size, nd)
    pads = as_tuple(getattr(module, "padding", 0), nd)
    dilations = as_tuple(getattr(module, "dilation", 1), nd)
    ceil_mode = bool(module.ceil_mode)
    return tuple(Window(k, s, p, p, d, ceil_mode) for k, s, p, d in zip(kernels, strides, pads, dilations))


@FORMULAS.register(*POOL_DIMS)
def pool_output(module, args: tuple, kwargs: dict) -> Optional[Prediction]:
    shape = first_shape(args, kwargs)
    if shape is None:
        return None
    nd = spatial_dims(module)
    name = type(module).__name__
    problem = spatial_rank_problem(name, nd, shape)
    if problem is not None:
        return problem
    sizes, names = shape[-nd:], dim_names(nd)
    windows = pool_windows(module, nd)
    for window, dim in zip(windows, names):
        if window.pad_left > window.kernel // 2:  # PyTorch checks the plain kernel, dilation or not
            return invalid(PADDING_TOO_LARGE,
                           f"{dim}: padding {window.pad_left} is more than half the kernel size {window.kernel}",
                           expected=f"padding <= {window.kernel // 2}", arrived=f"padding = {window.pad_left}")
    if nd == 3 and not isinstance(module, nn.MaxPool3d):  # avg_pool3d also wants the unpadded input >= kernel
        for window, size, dim in zip(windows, sizes, names):
            if size < window.kernel:
                return invalid(KERNEL_TOO_LARGE, f"{dim}: {type(module).__name__} needs an input of at least "
                               f"the kernel size {window.kernel} (padding does not count), got {size}",
                               expected=f"{dim} >= {window.kernel}", arrived=f"{dim} = {size}")
    for window, size, dim in zip(windows, sizes, names):
        if window.output_size(size) < 1:
            return invalid(OUTPUT_TOO_SMALL,
                           f"{window.text(dim, size)}: the output would be empty (input {shape_text(shape)})",
                           expected=f"{dim} >= {smallest_input(window)}", arrived=f"{dim} = {size}")
    dims = tuple(w.formula(n, s) for w, n, s in zip(windows, names, sizes))
    return Prediction(shape[:-nd] + tuple(d.expected for d in dims), dims, window_notes(windows, sizes, names))


def smallest_input(window: Window) -> int:
    """The smallest input size that gives at least one window."""
    size = 1
    while window.output_size(size) < 1:
        size += 1
    return size
