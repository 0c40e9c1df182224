"""Receptive fields against the gradient oracle of ``rf_oracle`` (positive float64 twin, one output element
back-propagated): random layer stacks per layer, resampling at every output position, and models the
rules were not written for."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import HealthCheck, assume, given, settings, strategies as st

import netscope
from netscope.analyses.receptive_field import Field

from rf_oracle import extent, module_outputs, positive_input


def _fields(model, shape):
    report = netscope.summary(model, shape, dtype="float64", device="cpu", audit_names=False, checks=False,
                              receptive_field=True)
    return {c.name: c.receptive_field for c in report.layers if c.call_number == 1}


def _interval(axis, index):
    centre = axis.start + index * axis.jump
    return centre - (axis.size - 1) / 2, centre + (axis.size - 1) / 2


class Resize(nn.Module):
    def __init__(self, nd, **options):
        super().__init__()
        self.conv = (nn.Conv1d if nd == 1 else nn.Conv2d)(1, 1, 3, stride=2)
        self.options = options

    def forward(self, x):
        return F.interpolate(self.conv(x), **self.options)


RESIZES = [(1, "nearest", {}), (1, "nearest-exact", {}), (1, "linear", {}), (1, "linear", {"align_corners": True}),
           (2, "bicubic", {}), (2, "bicubic", {"align_corners": True}), (2, "bilinear", {"antialias": True}),
           (2, "bicubic", {"antialias": True}), (2, "bilinear", {"antialias": True, "align_corners": True})]


@pytest.mark.parametrize("nd, mode, extra", RESIZES)
def test_resize_bound_holds_at_every_output_position(nd, mode, extra):
    # the bound used to assume every mode reads at most 2 positions either side of (o + 1/2) * in/out - 1/2:
    # downscaling by 4 with nearest reads floor(4o) (1.5 from that centre, more as the factor grows),
    # antialias reads the whole downscaled support, and a scale_factor that rounded the output size
    # (9 * 0.3 -> 2) samples at o / 0.3, not o * 9/2
    for length in (9, 23):
        for scale in (0.25, 0.3, 0.7, 2.5):
            for by_size in (False, True):
                size = max(1, int(length * scale))
                options = dict(mode=mode, **extra)
                if nd == 1:
                    options.update({"size": size} if by_size else {"scale_factor": scale})
                else:
                    options.update({"size": (size, 3)} if by_size else {"scale_factor": (scale, 1.0)})
                model = Resize(nd, **options).double()
                shape = (1, 1, 2 * length + 1) + ((3,) if nd == 2 else ())
                field = _fields(model, shape)[""]
                assert isinstance(field, Field) and not field.exact
                x = positive_input(shape)
                out = module_outputs(model, x, [""])[""]
                for o in range(out.shape[2]):
                    (low, high), = extent(out, x, (o,) + (0,) * (nd - 1))[:1]
                    bound = _interval(field.axes[0], o)
                    assert bound[0] <= low + 1e-9 and high <= bound[1] + 1e-9, (length, scale, by_size, o, bound)


# ---- random stacks, every layer against the oracle ---------------------------------------------------------
# A layer: (kind, kernel, stride, dilation, padding fraction, ceil_mode / count_include_pad / output_padding).
LAYER = st.tuples(st.sampled_from(["conv", "conv", "tconv", "max", "avg"]), st.integers(1, 5), st.integers(1, 3),
                  st.integers(1, 3), st.floats(0, 1), st.booleans())
CAPS = {1: 3000, 2: 320, 3: 44}  # input positions per axis the oracle may use


def _layer(nd, kind, kernel, stride, dilation, fraction, flag):
    if kind == "conv":
        pad = int(fraction * ((kernel - 1) * dilation // 2))  # every window reads the input at least once
        return getattr(nn, f"Conv{nd}d")(1, 1, kernel, stride, pad, dilation)
    if kind == "tconv":
        kernel, dilation = min(kernel, 4), min(dilation, 2)
        pad = int(fraction * ((kernel - 1) * dilation // 2))
        extra = min(stride, dilation) - 1 if flag else 0  # output_padding below max(stride, dilation)
        return getattr(nn, f"ConvTranspose{nd}d")(1, 1, kernel, stride, pad, extra, dilation=dilation)
    kernel = min(kernel, 4)
    pad = int(fraction * (kernel // 2))
    if kind == "max":
        return getattr(nn, f"MaxPool{nd}d")(kernel, stride, pad, min(dilation, 2), ceil_mode=flag)
    return getattr(nn, f"AvgPool{nd}d")(kernel, stride, pad, ceil_mode=flag, count_include_pad=not flag)


def _input_length(stack) -> int:
    """An input long enough for the centre element of every layer to see no border: an upper bound on each
    field's reach (kernel span and both paddings at the largest jump so far) plus a few largest jumps."""
    reach, jump = 1, 1
    for layer in stack:
        kernel, stride = _first(layer.kernel_size), _first(layer.stride)
        dilation, pad = _first(getattr(layer, "dilation", 1)), _first(layer.padding)
        reach += ((kernel - 1) * dilation + 2 * pad + stride) * jump
        if not isinstance(layer, nn.modules.conv._ConvTransposeNd):
            jump *= stride
    return reach + 6 * jump + 8


def _first(value):
    return value[0] if isinstance(value, (tuple, list)) else value


def _check_element(field, out_index, got, sizes):
    """``got``: the oracle's (first, last) per axis for the output element ``out_index``."""
    predicted = tuple(_interval(a, i) for a, i in zip(field.axes, out_index))
    inside = all(0 <= low and high <= n - 1 for (low, high), n in zip(predicted, sizes))
    if field.exact and inside:
        assert got == predicted, (out_index, got, predicted, field)
    elif got is not None:  # a bound, or a field reaching into padding: the positions read lie within it
        assert all(p[0] <= g[0] + 1e-9 and g[1] <= p[1] + 1e-9 for p, g in zip(predicted, got)), \
            (out_index, got, predicted, field)
    return inside


@settings(max_examples=120, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.filter_too_much])
@given(st.integers(1, 3), st.lists(LAYER, min_size=1, max_size=5))
def test_random_stacks_match_the_gradient_oracle_per_layer(nd, layers):
    """Size, jump and start of every layer's field (unclipped, as published tables give it) equal the
    oracle's at a centre element and its neighbour; at the first and last elements the field the oracle
    sees (clipped by the border) lies within the reported one, and equals it where it fits the input."""
    layers = layers[:3] if nd == 3 else layers
    stack = nn.Sequential(*(_layer(nd, *layer) for layer in layers))
    length = _input_length(stack)
    assume(length + nd <= CAPS[nd])
    shape = (1, 1) + tuple(length + axis for axis in range(nd))  # a different length per axis
    try:
        stack(torch.zeros(shape))
    except RuntimeError:
        assume(False)  # a window larger than its padded input: not a model
    fields = _fields(stack, shape)
    names = [str(i) for i in range(len(stack))]
    x = positive_input(shape)
    outputs = module_outputs(stack, x, names)
    for name in names:
        field, out = fields[name], outputs[name]
        assert isinstance(field, Field), (name, field)  # windows only: never whole, never unknown
        sizes = out.shape[2:]
        centre = tuple(s // 2 for s in sizes)
        assert _check_element(field, centre, extent(out, x, centre), shape[2:]), "input too short for the test"
        if field.exact:
            assert not any(isinstance(layer, nn.modules.conv._ConvTransposeNd) for layer in stack[:int(name) + 1])
        for index in (tuple(min(c + 1, s - 1) for c, s in zip(centre, sizes)), (0,) * nd,
                      tuple(s - 1 for s in sizes)):
            _check_element(field, index, extent(out, x, index), shape[2:])
