"""Receptive fields against the gradient oracle of ``rf_oracle`` (positive float64 twin, one output element
back-propagated): random layer stacks per layer, resampling at every output position, and models the
rules were not written for."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

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
