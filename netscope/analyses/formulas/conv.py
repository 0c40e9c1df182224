"""Convolutions: Conv1d/2d/3d (and their Lazy variants once materialized)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple, Union

import torch.nn as nn

from netscope.records import Finding, Severity

from netscope.analyses.formulas.registry import (
    CHANNELS, FORMULAS, KERNEL_TOO_LARGE, PADDING_EXCEEDS_INPUT, Prediction, as_tuple,
    dim_names, first_shape, invalid, shape_text, spatial_rank_problem,
)
from netscope.analyses.formulas.window import Window, window_notes


def is_unmaterialized(module) -> bool:
    """A lazy layer whose parameters have not been created yet (its sizes are still unknown)."""
    if not hasattr(type(module), "has_uninitialized_params") and "has_uninitialized_params" not in vars(module):
        return False  # asked without getattr's miss through nn.Module.__getattr__, which raises and catches
    check = getattr(module, "has_uninitialized_params", None)
    return bool(check and check())


@dataclass(frozen=True)
class ConvInput:
    """The parts of a convolution's input every formula in this family reads."""

    shape: Tuple[int, ...]
    nd: int  # number of spatial dimensions
    name: str  # the layer's class name, for messages
    sizes: Tuple[int, ...]  # spatial sizes
    channels: int
    names: Tuple[str, ...]  # "H", "W", ...


def read_conv_input(module, args: tuple, kwargs: dict) -> Union[None, Prediction, ConvInput]:
    """None when there is nothing to check, an invalid Prediction for a wrong rank, else the ConvInput."""
    shape = first_shape(args, kwargs)
    if shape is None or is_unmaterialized(module):
        return None
    nd = len(module.kernel_size)
    name = type(module).__name__
    problem = spatial_rank_problem(name, nd, shape)
    if problem is not None:
        return problem
    return ConvInput(tuple(shape), nd, name, tuple(shape[-nd:]), shape[-nd - 1], dim_names(nd))


def conv_windows(module, sizes: Tuple[int, ...]) -> Tuple[Window, ...]:
    nd = len(module.kernel_size)
    kernels, strides, dilations = module.kernel_size, as_tuple(module.stride, nd), as_tuple(module.dilation, nd)
    if isinstance(module.padding, str):
        if module.padding == "valid":
            pads = [(0, 0)] * nd
        else:  # "same": PyTorch puts the odd extra position on the right
            totals = [d * (k - 1) for d, k in zip(dilations, kernels)]
            pads = [(t // 2, t - t // 2) for t in totals]
    else:
        pads = [(p, p) for p in as_tuple(module.padding, nd)]
    return tuple(Window(k, s, left, right, d) for k, s, (left, right), d in zip(kernels, strides, pads, dilations))


def padding_mode_problem(mode: str, windows, sizes, names) -> Optional[Prediction]:
    """reflect needs padding < size; circular needs padding <= size (F.pad checks this before the conv)."""
    for window, size, name in zip(windows, sizes, names):
        pad = max(window.pad_left, window.pad_right)
        if mode == "reflect" and pad >= size:
            return invalid(PADDING_EXCEEDS_INPUT,
                           f"{name}: reflect padding {pad} must be smaller than the input size {size}",
                           expected=f"{name} > {pad}", arrived=f"{name} = {size}")
        if mode == "circular" and pad > size:
            return invalid(PADDING_EXCEEDS_INPUT,
                           f"{name}: circular padding {pad} wraps around an input of size {size} more than once",
                           expected=f"{name} >= {pad}", arrived=f"{name} = {size}")
    return None


@FORMULAS.register(nn.Conv1d, nn.Conv2d, nn.Conv3d)
def conv_output(module, args: tuple, kwargs: dict) -> Optional[Prediction]:
    conv_input = read_conv_input(module, args, kwargs)
    if not isinstance(conv_input, ConvInput):
        return conv_input
    shape, nd, name = conv_input.shape, conv_input.nd, conv_input.name
    sizes, channels, names = conv_input.sizes, conv_input.channels, conv_input.names
    windows = conv_windows(module, sizes)
    if module.padding_mode != "zeros":
        problem = padding_mode_problem(module.padding_mode, windows, sizes, names)
        if problem is not None:
            return problem
    if channels != module.in_channels:
        return invalid(CHANNELS,
                       f"{name} expected {module.in_channels} input channels, got {channels} "
                       f"(input {shape_text(shape)})",
                       expected=f"in_channels={module.in_channels}", arrived=f"{channels} channels")
    for window, size, dim in zip(windows, sizes, names):
        if size + window.pad_left + window.pad_right < window.span:
            return invalid(KERNEL_TOO_LARGE,
                           f"{dim}: the padded input ({size} + {window.pad_left + window.pad_right}) is smaller than "
                           f"the kernel's reach {window.dilation}*({window.kernel}-1)+1 = {window.span}; "
                           f"{window.text(dim, size).split(': ', 1)[1]}",
                           expected=f"{dim} >= {window.span - window.pad_left - window.pad_right}",
                           arrived=f"{dim} = {size}")
    dims = tuple(w.formula(n, s) for w, n, s in zip(windows, names, sizes))
    notes = window_notes(windows, sizes, names)
    if module.padding_mode != "zeros":
        notes += (Finding(Severity.INFO, "padding-mode",  # chosen by the layer's author, like ceil_mode
                          f"padding_mode={module.padding_mode!r}: borders are filled by {module.padding_mode} "
                          "padding, not zeros",
                          fix="intended for this layer? checkpoints from zero-padded models will behave differently"),)
    out = tuple(d.expected for d in dims)
    return Prediction(shape[:-nd - 1] + (module.out_channels,) + out, dims, notes)
