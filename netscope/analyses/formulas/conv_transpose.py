"""Transposed convolutions: ConvTranspose1d/2d/3d, with output_padding and the ``output_size=`` argument."""

from __future__ import annotations

from typing import Optional

import torch.nn as nn

from netscope.records import Finding, Severity

from netscope.analyses.formulas.conv import ConvInput, read_conv_input
from netscope.analyses.formulas.registry import (
    CHANNELS, FORMULAS, OUTPUT_PADDING_TOO_LARGE, OUTPUT_SIZE_OUT_OF_RANGE, OUTPUT_TOO_SMALL, DimFormula,
    Prediction, as_tuple, invalid, shape_text,
)


def requested_output_size(args: tuple, kwargs: dict):
    value = args[1] if len(args) > 1 else kwargs.get("output_size")
    return None if value is None else [int(v) for v in value]


@FORMULAS.register(nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
def conv_transpose_output(module, args: tuple, kwargs: dict) -> Optional[Prediction]:
    conv_input = read_conv_input(module, args, kwargs)
    if not isinstance(conv_input, ConvInput):
        return conv_input
    shape, nd, name = conv_input.shape, conv_input.nd, conv_input.name
    sizes, channels, names = conv_input.sizes, conv_input.channels, conv_input.names
    kernels, strides = module.kernel_size, as_tuple(module.stride, nd)
    pads, dilations = as_tuple(module.padding, nd), as_tuple(module.dilation, nd)
    base = [(n - 1) * s - 2 * p + d * (k - 1) + 1 for n, s, p, d, k in zip(sizes, strides, pads, dilations, kernels)]
    output_padding = list(as_tuple(module.output_padding, nd))
    requested = requested_output_size(args, kwargs)
    if requested is not None:
        if len(requested) == len(shape):
            requested = requested[len(shape) - nd:]
        if len(requested) != nd:
            return invalid(OUTPUT_SIZE_OUT_OF_RANGE,
                           f"output_size={requested} must have {nd} or {len(shape)} elements for a {len(shape)}D input")
        for dim, want, low, s in zip(names, requested, base, strides):
            if not low <= want <= low + s - 1:
                return invalid(OUTPUT_SIZE_OUT_OF_RANGE,
                               f"{dim}: output_size {want} is not reachable; with this input the output can be "
                               f"{low} to {low + s - 1}",
                               expected=f"{dim} output in [{low}, {low + s - 1}]", arrived=f"{want}")
        output_padding = [want - low for want, low in zip(requested, base)]
    if channels != module.in_channels:
        return invalid(CHANNELS,
                       f"{name} expected {module.in_channels} input channels, got {channels} (input {shape_text(shape)})",
                       expected=f"in_channels={module.in_channels}", arrived=f"{channels} channels")
    for dim, op, s, d in zip(names, output_padding, strides, dilations):
        if op >= s and op >= d:
            return invalid(OUTPUT_PADDING_TOO_LARGE,
                           f"{dim}: output_padding {op} must be smaller than the stride ({s}) or the dilation ({d})",
                           expected=f"output_padding < {max(s, d)}", arrived=f"output_padding = {op}")
    dims = []
    for dim, n, s, p, d, k, op in zip(names, sizes, strides, pads, dilations, kernels, output_padding):
        dims.append(transposed_dim(dim, n, s, p, d, k, op))
        out = dims[-1].expected
        if out < 1:
            return invalid(OUTPUT_TOO_SMALL, f"{dims[-1].text}: the output would be empty",
                           expected=f"{dim} output >= 1", arrived=f"{out}")
    notes = []
    uneven = [f"{dim}: kernel {k} is not a multiple of stride {s}" for dim, k, s in zip(names, kernels, strides)
              if s > 1 and k % s]
    if uneven:
        notes.append(Finding(Severity.INFO, "uneven-overlap",
                             "; ".join(uneven) + " (output positions get unequal numbers of contributions, "
                             "a known source of checkerboard artifacts)",
                             fix="use a kernel size divisible by the stride, or upsample + conv"))
    out_shape = shape[:-nd - 1] + (module.out_channels,) + tuple(d.expected for d in dims)
    return Prediction(out_shape, tuple(dims), tuple(notes))


def transposed_dim(dim: str, size: int, stride: int, padding: int, dilation: int, kernel: int,
                   output_padding: int) -> DimFormula:
    """One output dimension of a transposed convolution: ``(in-1)*stride - 2*padding + dilation*(kernel-1) +
    output_padding + 1``."""
    out = (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1
    return DimFormula(dim, f"{dim}: ({size}-1)*{stride} - 2*{padding} + {dilation}*({kernel}-1) + {output_padding} + 1 "
                           f"= {out}", out)
