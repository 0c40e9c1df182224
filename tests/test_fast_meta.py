"""The solver's meta shortcuts give exactly what PyTorch's meta kernels give: same shapes and dtypes, same refusals."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from netscope.run.fast_meta import SHORTCUTS, fast_meta_kernels


def meta(*shape, dtype=torch.float32):
    return torch.empty(shape, device="meta", dtype=dtype)


CASES = {
    "bn eval": lambda: F.batch_norm(meta(2, 3, 5, 5), meta(3), meta(3), meta(3), meta(3), training=False),
    "bn train": lambda: F.batch_norm(meta(2, 3, 5), None, None, meta(3), meta(3), training=True),
    "bn no stats train": lambda: F.batch_norm(meta(2, 3, 5), None, None, None, None, training=True),
    "bn module": lambda: nn.BatchNorm2d(3, device="meta").eval()(meta(1, 3, 2, 2)),
    "bn channels differ": lambda: F.batch_norm(meta(2, 4, 5, 5), meta(3), meta(3), training=False),
    "bn weight differs": lambda: F.batch_norm(meta(2, 3, 5), meta(3), meta(3), meta(4), training=False),
    "bn dtype differs": lambda: F.batch_norm(meta(2, 3, 5), meta(3), meta(3), meta(3, dtype=torch.float64),
                                             training=False),
    "ln": lambda: F.layer_norm(meta(2, 7, 8), (8,), meta(8), meta(8)),
    "ln two dims": lambda: F.layer_norm(meta(2, 7, 8), (7, 8)),
    "ln shape differs": lambda: F.layer_norm(meta(2, 7, 8), (7,)),
    "ln weight differs": lambda: F.layer_norm(meta(2, 7, 8), (8,), meta(7)),
    "linear": lambda: F.linear(meta(4, 6), meta(5, 6), meta(5)),
    "linear 3d": lambda: F.linear(meta(2, 4, 6), meta(5, 6), meta(5)),
    "linear features differ": lambda: F.linear(meta(4, 7), meta(5, 6), meta(5)),
    "addmm row bias": lambda: torch.addmm(meta(1, 5), meta(4, 6), meta(6, 5)),
    "addmm full bias": lambda: torch.addmm(meta(4, 5), meta(4, 6), meta(6, 5)),
    "addmm scalar bias": lambda: torch.addmm(meta(1), meta(4, 6), meta(6, 5)),
    "addmm bad bias": lambda: torch.addmm(meta(3), meta(4, 6), meta(6, 5)),
    "addmm dtypes": lambda: torch.addmm(meta(5), meta(4, 6, dtype=torch.float16), meta(6, 5, dtype=torch.float16)),
}


def outcome(case):
    try:
        out = case()
    except Exception as exc:  # noqa: BLE001 - the refusal is the outcome compared
        return type(exc).__name__
    outs = out if isinstance(out, tuple) else (out,)
    return [(tuple(t.shape), t.dtype, t.device.type) for t in outs]


@pytest.mark.parametrize("name", list(CASES))
def test_shortcut_equals_the_meta_kernel(name):
    expected = outcome(CASES[name])
    with fast_meta_kernels():
        assert outcome(CASES[name]) == expected


def test_shortcuts_are_taken_on_well_formed_arguments():
    x = meta(2, 3, 5, 5)
    taken = [SHORTCUTS[torch.ops.aten.native_batch_norm.default](x, meta(3), meta(3), meta(3), meta(3), False, 0.1, 1e-5),
             SHORTCUTS[torch.ops.aten.native_layer_norm.default](x, [5], None, None, 1e-5),
             SHORTCUTS[torch.ops.aten.addmm.default](meta(5), meta(4, 6), meta(6, 5))]
    assert all(out is not None for out in taken)
    assert SHORTCUTS[torch.ops.aten.addmm.default](meta(3), meta(4, 6), meta(6, 5)) is None  # left to PyTorch
