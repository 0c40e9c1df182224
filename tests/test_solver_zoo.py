"""The solver against brute force: every size 1..N run for real, on a zoo of periodic, bounded and irregular models.

The oracle is independent of netscope: each model is called on a CPU tensor of every size and the sizes
whose forward returns are the truth. For the torchvision/timm models the brute force runs on a meta copy
(plain forward, no netscope code) to keep the test fast; meta is exact for the errors those models hit
(kernel larger than the input, a fixed token count, attention bias tables), which the CPU spot checks
in ``test_torchvision_models_meta_brute_force_agrees_with_cpu`` back.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from netscope import solve_input_size
from netscope.inputs import InputSpec, TensorSpec

N = 300  # brute force covers 1..N


def spec(*shape):
    return InputSpec([TensorSpec(tuple(shape))])


class Mult7(nn.Module):
    """Splits the width into groups of 7: only multiples of 7 work."""

    def forward(self, x):
        return x.unflatten(-1, (-1, 7)).sum(-1)


class PoolsWithSkip(nn.Module):
    """Pools of 2, 2 and 3, upsampled back and added to the input: multiples of 12."""

    def __init__(self, dim=2):
        super().__init__()
        self.pools = nn.Sequential(*[(nn.MaxPool2d if dim == 2 else nn.MaxPool1d)(k) for k in (2, 2, 3)])
        self.up = nn.Upsample(scale_factor=12)

    def forward(self, x):
        return x + self.up(self.pools(x))


class PositionTable(nn.Module):
    """A Conv1d front end (stride 5) and a learned position table of 32 frames: bounded above."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(1, 4, 10, stride=5)
        self.table = nn.Parameter(torch.zeros(1, 4, 32))

    def forward(self, x):
        y = self.conv(x)
        return y + self.table[:, :, :y.shape[-1]] if y.shape[-1] <= 32 else y + self.table


class TinyUNet(nn.Module):
    """Two 2x poolings and skip concatenations: only multiples of 4 line up."""

    def __init__(self):
        super().__init__()
        self.enc = nn.Conv2d(1, 2, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.mid = nn.Conv2d(2, 2, 3, padding=1)
        self.up = nn.Upsample(scale_factor=2)
        self.dec = nn.Conv2d(4, 1, 3, padding=1)

    def forward(self, x):
        a = self.enc(x)
        b = self.mid(self.pool(self.mid(self.pool(a))))
        b = self.up(self.up(b))
        return self.dec(torch.cat([b, a], 1))


class OddOnly(nn.Module):
    """A stride-2 conv (k=3, no padding) added to a 2x pool: lengths agree only for odd s."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(1, 1, 3, stride=2)
        self.pool = nn.AvgPool1d(2)

    def forward(self, x):
        return self.conv(x) + self.pool(x)


class TwoResidues(nn.Module):
    """2*floor(s/2) == 3*floor(s/3): s mod 6 in {0, 1}."""

    def __init__(self):
        super().__init__()
        self.a = nn.Sequential(nn.MaxPool1d(2), nn.Upsample(scale_factor=2))
        self.b = nn.Sequential(nn.AvgPool1d(3), nn.Upsample(scale_factor=3))

    def forward(self, x):
        return self.a(x) + self.b(x)


class PatchTokens(nn.Module):
    """A 4x4 patch embedding and a position table of 16 tokens: s in 16..19, and 4..7 (one token broadcasts)."""

    def __init__(self):
        super().__init__()
        self.patch = nn.Conv2d(1, 2, 4, stride=4)
        self.pos = nn.Parameter(torch.zeros(1, 16, 2))

    def forward(self, x):
        return self.patch(x).flatten(2).transpose(1, 2) + self.pos


class TwoWindows(nn.Module):
    """Valid where the conv output fits one of two tables: lengths 1..40 or exactly 60 frames."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(1, 1, 5, stride=2)
        self.small = nn.Parameter(torch.zeros(1, 1, 40))
        self.large = nn.Parameter(torch.zeros(1, 1, 60))

    def forward(self, x):
        y = self.conv(x)
        return y + (self.small[..., :y.shape[-1]] if y.shape[-1] <= 40 else self.large)


class Unshuffle1dCausal(nn.Module):
    """A causal conv (F.pad on the left), then groups of 5 frames folded into channels."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(1, 2, 4)

    def forward(self, x):
        y = self.conv(F.pad(x, (3, 0)))
        return y.unflatten(-1, (-1, 5)).flatten(1, 2)


class LeNetTiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 2, 5), nn.MaxPool2d(2), nn.Conv2d(2, 2, 5), nn.MaxPool2d(2))
        self.fc = nn.Linear(2 * 5 * 5, 3)

    def forward(self, x):
        return self.fc(self.features(x).flatten(1))


def dilated():
    return nn.Sequential(nn.Conv1d(1, 2, 3, dilation=4), nn.Conv1d(2, 1, 3, stride=3, dilation=2))


def strided_chain():
    return nn.Sequential(nn.Conv1d(2, 3, 3, stride=2, padding=1), nn.Conv1d(3, 3, 3, stride=2))


def reflect_pad():
    return nn.Sequential(nn.ReflectionPad1d(6), nn.Conv1d(1, 1, 3))  # reflection needs pad < size: s >= 7


def bilinear_quarter():
    return nn.Sequential(nn.Conv2d(1, 1, 3), nn.Upsample(scale_factor=0.25, mode="bilinear"))


def unshuffle3():
    return nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.PixelUnshuffle(3))


def adaptive_then_linear():
    return nn.Sequential(nn.Conv2d(1, 2, 7, stride=3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 2))


def transposed():
    return nn.Sequential(nn.Conv1d(1, 1, 4, stride=3), nn.ConvTranspose1d(1, 1, 3, stride=2, output_padding=1))


def fold_window():
    return nn.Sequential(nn.MaxPool1d(5, stride=4, ceil_mode=True), nn.Conv1d(1, 1, 9))


# (id, factory, reference shape, a second starting size): small channel counts so brute force is cheap
ZOO = [
    ("multiple-of-7", Mult7, (1, 1, 14), 50),
    ("pools-2-2-3-skip", lambda: PoolsWithSkip(dim=1), (1, 1, 24), 100),
    ("pools-2-2-3-skip-2d", PoolsWithSkip, (1, 1, 24, 24), 36),
    ("pixel-unshuffle-3", unshuffle3, (1, 1, 9, 9), 40),
    ("position-table-32", PositionTable, (1, 1, 160), 16000),
    ("tiny-unet", TinyUNet, (1, 1, 16, 16), 30),
    ("odd-only", OddOnly, (1, 1, 31), 64),
    ("two-residues", TwoResidues, (1, 1, 12), 97),
    ("patch-tokens", PatchTokens, (1, 1, 16, 16), 224),
    ("two-windows", TwoWindows, (1, 1, 50), 125),
    ("causal-fold-5", Unshuffle1dCausal, (1, 1, 20), 33),
    ("lenet-flatten-linear", LeNetTiny, (1, 1, 32, 32), 64),
    ("dilated", dilated, (1, 1, 40), 3),
    ("strided-chain", strided_chain, (1, 2, 50), 2),
    ("reflect-pad", reflect_pad, (1, 1, 20), 4),
    ("bilinear-quarter", bilinear_quarter, (1, 1, 32, 32), 3),
    ("adaptive-linear", adaptive_then_linear, (1, 1, 30, 30), 2),
    ("transposed", transposed, (1, 1, 30), 1),
    ("ceil-pool", fold_window, (1, 1, 60), 10),
]


def brute_force(model, shape, sizes, device="cpu"):
    """The sizes whose plain forward returns, varying every dimension after batch and channels together."""
    model = copy.deepcopy(model).to(device).eval()
    works = []
    for s in sizes:
        x = torch.randn(shape[:2] + (s,) * (len(shape) - 2)) if device == "cpu" else \
            torch.empty(shape[:2] + (s,) * (len(shape) - 2), device=device)
        try:
            with torch.no_grad():
                model(x)
        except Exception:  # noqa: BLE001 - any failure is a "no"
            continue
        works.append(s)
    return tuple(works)


@pytest.mark.parametrize("name,factory,shape,other", ZOO, ids=[z[0] for z in ZOO])
def test_solver_equals_brute_force_from_two_starting_sizes(name, factory, shape, other):
    torch.manual_seed(0)
    model = factory().eval()
    truth = brute_force(model, shape, range(1, N + 1))
    for start in (shape[-1], other):
        reference = shape[:2] + (start,) * (len(shape) - 2)
        result = solve_input_size(model, spec(*reference), max_size=N, per_axis=False)
        scan = result.main
        assert scan.complete and scan.probed == tuple(range(1, N + 1)), (name, start)
        assert scan.valid == truth, (name, start, result.render())


def test_zoo_is_not_trivial():
    """The zoo covers every kind of set the issue names: periodic, bounded above, several runs, empty below."""
    kinds = {}
    for name, factory, shape, _ in ZOO:
        torch.manual_seed(0)
        truth = brute_force(factory().eval(), shape, range(1, N + 1))
        kinds[name] = truth
    assert kinds["multiple-of-7"] == tuple(range(7, N + 1, 7))
    assert kinds["pools-2-2-3-skip"] == tuple(range(12, N + 1, 12))
    assert kinds["pixel-unshuffle-3"] == tuple(range(3, N + 1, 3))
    assert kinds["position-table-32"] == tuple(range(10, 5 * 31 + 10 + 5))  # floor((s-10)/5)+1 <= 32
    assert kinds["patch-tokens"] == (4, 5, 6, 7, 16, 17, 18, 19)  # 1 token broadcasts over the table
    assert kinds["two-residues"] == tuple(s for s in range(2, N + 1) if s % 6 in (0, 1))
    assert kinds["bilinear-quarter"][0] == 6  # conv 3 -> s-2; floor((s-2)/4) >= 1 on the CPU kernel


# Torchvision and timm models: brute force on a meta copy (plain forward), solver from two starting sizes.
BIG = [
    ("alexnet", (1, 3, 224, 224), 100, 120),
    ("squeezenet1_1", (1, 3, 224, 224), 50, 120),
    ("vit-tiny", (1, 3, 32, 32), 40, 64),
    ("timm:levit_128", (1, 3, 224, 224), 256, 240),
]


def build_big(name):
    import torchvision

    if name == "vit-tiny":
        return torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=1, num_heads=1,
                                                     hidden_dim=8, mlp_dim=8, num_classes=3)
    if name.startswith("timm:"):
        timm = pytest.importorskip("timm")
        return timm.create_model(name[5:], pretrained=False)
    return getattr(torchvision.models, name)(weights=None)


@pytest.mark.parametrize("name,shape,other,limit", BIG, ids=[b[0] for b in BIG])
def test_zoo_models_solver_equals_meta_brute_force(name, shape, other, limit):
    from netscope.run.no_memory import meta_copy

    model = build_big(name).eval()
    truth = brute_force(meta_copy(model), shape, range(1, limit + 1), device="meta")
    for start in (shape[-1], other):
        reference = shape[:2] + (start,) * 2
        result = solve_input_size(model, spec(*reference), max_size=limit, per_axis=False)
        assert result.main.valid == truth, (name, start, result.render())
    if name == "timm:levit_128":
        assert truth == tuple(range(209, 225))


hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies

LAYER = st.one_of(
    st.tuples(st.just("conv"), st.integers(1, 5), st.integers(1, 3), st.integers(0, 2), st.integers(1, 3)),
    st.tuples(st.just("max"), st.integers(1, 4), st.integers(1, 3), st.integers(0, 1), st.just(1)),
    st.tuples(st.just("avg"), st.integers(1, 4), st.integers(1, 3), st.integers(0, 1), st.just(1)),
    st.tuples(st.just("up"), st.integers(2, 3), st.just(1), st.just(0), st.just(1)),
)


def chain(layers, skip: bool) -> nn.Module:
    modules = []
    for kind, kernel, stride, padding, dilation in layers:
        if kind == "conv":
            modules.append(nn.Conv1d(1, 1, kernel, stride=stride, padding=padding, dilation=dilation))
        elif kind == "up":
            modules.append(nn.Upsample(scale_factor=kernel))
        else:
            pad = min(padding, kernel // 2)  # PyTorch requires pad <= kernel / 2
            modules.append((nn.MaxPool1d if kind == "max" else nn.AvgPool1d)(kernel, stride=stride, padding=pad))
    body = nn.Sequential(*modules)
    return Skip(body) if skip else body


class Skip(nn.Module):
    def __init__(self, body):
        super().__init__()
        self.body = body

    def forward(self, x):
        return x + self.body(x)  # works only where the chain gives the input's length back (or 1)


@hypothesis.settings(max_examples=20, deadline=None, derandomize=True)
@hypothesis.given(layers=st.lists(LAYER, min_size=1, max_size=4), skip=st.booleans(), start=st.integers(1, 60))
def test_random_conv_pool_chains_equal_brute_force(layers, skip, start):
    model = chain(layers, skip).eval()
    truth = brute_force(model, (1, 1, 8), range(1, 61))
    result = solve_input_size(model, spec(1, 1, start), max_size=60)
    assert result.valid_sizes == truth, (layers, skip, start, result.render())


class UNet3d(nn.Module):
    """Two 2x max pools, transposed-conv upsampling and concatenated skips in 3-D: every axis a multiple of 4,
    failing at the concatenation (a shape mismatch), not in a convolution."""

    def __init__(self):
        super().__init__()
        self.enc = nn.Conv3d(1, 1, 3, padding=1)
        self.down = nn.Sequential(nn.MaxPool3d(2), nn.Conv3d(1, 1, 3, padding=1))
        self.up = nn.ConvTranspose3d(1, 1, 2, stride=2)
        self.dec = nn.Conv3d(2, 1, 3, padding=1)

    def forward(self, x):
        a = self.enc(x)
        b = self.down(a)
        b = self.dec(torch.cat([self.up(self.dec(torch.cat([self.up(self.down(b)), b], 1))), a], 1))
        return b


def brute_force_axis(model, shape, dim, sizes):
    """The sizes of axis ``dim`` (the others as in ``shape``) whose plain CPU forward returns."""
    works = []
    for s in sizes:
        try:
            with torch.no_grad():
                model(torch.randn(shape[:dim] + (s,) + shape[dim + 1:]))
        except RuntimeError:
            continue
        works.append(s)
    return tuple(works)


def test_a_3d_unet_square_and_per_axis_scans_equal_brute_force():
    torch.manual_seed(0)
    model = UNet3d().eval()
    limit = 9
    result = solve_input_size(model, spec(1, 1, 8, 8, 8), max_size=limit)
    truth = brute_force(model, (1, 1, 8, 8, 8), range(1, limit + 1))
    assert truth == (4, 8)  # the oracle itself: two 2x pools, then shapes must meet again at each concat
    assert [s.label for s in result.scans] == ["s", "D", "H", "W"]
    assert result.main.valid == truth
    for scan, dim in zip(result.scans[1:], (2, 3, 4)):
        assert scan.valid == brute_force_axis(model, result.anchor_shape, dim, range(1, limit + 1)), scan
