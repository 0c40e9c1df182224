"""Receptive field per layer call against a gradient oracle (``tests/rf_oracle.py``): the input positions one
central output position depends on, on a copy with every weight positive and max-pools and saturating
activations swapped for maps that read the same positions (so nothing cancels)."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from hypothesis import given, settings, strategies as st

import netscope
from netscope.analyses.receptive_field import WHOLE, Field
from rf_oracle import extent, module_outputs, positive_input


def gradient_extents(model: nn.Module, shape, names):
    """{layer name: per spatial axis (first, last) input position with a non-zero gradient} for the
    central output position of each named module's (first) output (the oracle in ``rf_oracle``)."""
    x = positive_input(shape)  # positive, varied values: a layer norm's output is not constant
    outputs = module_outputs(model, x, names)
    extents = {n: extent(out, x, [s // 2 for s in out.shape[2:]]) for n, out in outputs.items()}
    return extents, {n: tuple(outputs[n].shape[2:]) for n in names}


def predicted_extent(field: Field, out_sizes):
    """Per axis (first, last) input position of the central output position's field, unclipped."""
    extent = []
    for axis, out_size in zip(field.axes, out_sizes):
        centre = axis.start + (out_size // 2) * axis.jump
        extent.append((centre - (axis.size - 1) / 2, centre + (axis.size - 1) / 2))
    return tuple(extent)


def assert_fields_match(model, shape, names=None):
    report = netscope.summary(model, shape, device="cpu", audit_names=False, checks=False, receptive_field=True)
    calls = {c.name: c for c in report.layers if c.call_number == 1}
    names = names or [n for n, c in calls.items() if n and c.receptive_field is not None]  # "unknown" fails below
    assert names
    extents, out_sizes = gradient_extents(model, shape, names)
    in_sizes = shape[2:]
    exact = [0]  # how many layers were compared for equality (their field lies inside the input)
    for name in names:
        field = calls[name].receptive_field
        if field == WHOLE:
            assert extents[name] == tuple((0, s - 1) for s in in_sizes), name
            continue
        assert isinstance(field, Field), (name, field)
        predicted = predicted_extent(field, out_sizes[name])
        inside = all(0 <= low and high <= size - 1 for (low, high), size in zip(predicted, in_sizes))
        if field.exact and inside:
            assert predicted == extents[name], (name, field)
            exact[0] += 1
        else:  # an enclosing bound, or a field that reaches past the input (the padding reads no input)
            assert all(p[0] <= e[0] and e[1] <= p[1] for p, e in zip(predicted, extents[name])), (name, field)
    return report, exact[0]


class Branches(nn.Module):
    """Two branches of different reach, added; then a strided, dilated conv and a pool."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(2, 4, 3, padding=2, dilation=2)
        self.b = nn.Sequential(nn.Conv2d(2, 4, 7, padding=3), nn.ReLU())
        self.down = nn.Conv2d(4, 4, 3, stride=2, padding=1)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)

    def forward(self, x):
        return self.pool(self.down(self.a(x) + self.b(x)))


class InceptionLike(nn.Module):
    def __init__(self):
        super().__init__()
        self.one = nn.Conv2d(3, 4, 1)
        self.three = nn.Conv2d(3, 4, 3, padding=1)
        self.five = nn.Sequential(nn.Conv2d(3, 4, 5, padding=2), nn.Conv2d(4, 4, 3, padding=1))
        self.pool = nn.Sequential(nn.AvgPool2d(3, 1, 1), nn.Conv2d(3, 4, 1))
        self.out = nn.Conv2d(16, 8, 3, stride=2)

    def forward(self, x):
        return self.out(torch.cat([self.one(x), self.three(x), self.five(x), self.pool(x)], 1))


class Functional(nn.Module):
    """F.pad, F.conv2d and F.max_pool2d called in forward count like modules."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(4, 3, 3, 3))
        self.head = nn.Conv2d(4, 4, 3)

    def forward(self, x):
        x = F.conv2d(F.pad(x, (2, 0, 2, 0)), self.weight, stride=2)
        return self.head(F.avg_pool2d(x, 2, ceil_mode=True))


class Causal(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList(nn.Conv1d(2, 2, 3, dilation=d) for d in (1, 2, 4, 8))

    def forward(self, x):
        for layer in self.layers:
            x = layer(F.pad(x, (2 * layer.dilation[0], 0))) + x
        return x


class Unshuffle(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(12, 4, 3, padding=1)

    def forward(self, x):
        return self.conv(F.pixel_unshuffle(x, 2))


class UpDown(nn.Module):
    """Encoder-decoder with upsample and transposed conv: fields are enclosing bounds there."""

    def __init__(self):
        super().__init__()
        self.down = nn.Conv2d(2, 4, 3, stride=2, padding=1)
        self.up = nn.Upsample(scale_factor=2, mode="bilinear")
        self.tconv = nn.ConvTranspose2d(4, 2, 3, stride=2, padding=1, output_padding=1)
        self.mix = nn.Conv2d(8, 2, 3, padding=1)

    def forward(self, x):
        d = self.down(x)
        return self.mix(torch.cat([self.up(d), self.tconv(d), x], 1))


class GlobalHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        return self.fc(self.pool(self.conv(x)).flatten(1))


class CropSkip(nn.Module):
    """U-Net style: a padded branch cropped (x[..., 1:-2, 1:-2]) to meet an unpadded, strided one."""

    def __init__(self):
        super().__init__()
        self.valid = nn.Sequential(nn.Conv2d(1, 2, 5), nn.Conv2d(2, 2, 3, stride=2))
        self.same = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Conv2d(2, 2, 1, stride=2))

    def forward(self, x):
        return self.valid(x) + self.same(x)[..., 1:-2, 1:-2]


class Splits(nn.Module):
    """Channel chunks gated together (GLU, ShuffleNet), an unbind over channels, and a split along H whose
    second piece is read on its own (its positions start 5 rows into the input)."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(2, 4, 3, padding=1)
        self.b = nn.Conv2d(2, 3, 3, stride=2)
        self.c = nn.Conv2d(1, 2, 3, dilation=2)
        self.d = nn.Conv2d(2, 2, 3)

    def forward(self, x):
        value, gate = self.a(x).chunk(2, dim=1)
        y = self.b(value * torch.sigmoid(gate))
        first, *_ = y.unbind(1)
        z = self.c(first.unsqueeze(1))
        return self.d(z.split([5, z.shape[2] - 5], dim=2)[1])


class PoolHeight(nn.Module):
    """CRNN-style: H pooled to 1 (adaptive (1, None), or a mean over H kept as a dim), W stays a sequence."""

    def __init__(self, mean: bool):
        super().__init__()
        self.mean = mean
        self.conv = nn.Conv2d(1, 2, 3, stride=2)
        self.pool = nn.AdaptiveAvgPool2d((1, None))
        self.seq = nn.Conv2d(2, 2, (1, 3))

    def forward(self, x):
        x = self.conv(x)
        return self.seq(x.mean(dim=2, keepdim=True) if self.mean else self.pool(x))


CASES = {
    "splits": (Splits, (1, 2, 40, 36)),
    "pool-height": (lambda: PoolHeight(False), (1, 1, 21, 25)),  # was "whole input": W is local
    "mean-height": (lambda: PoolHeight(True), (1, 1, 21, 25)),
    "untagged-activations": (lambda: nn.Sequential(nn.Conv2d(1, 2, 3), nn.Hardswish(inplace=True), nn.Conv2d(2, 2, 3),
                                                   nn.PReLU(), nn.Conv2d(2, 2, 3, stride=2)), (1, 1, 24, 24)),
    "crop-skip": (CropSkip, (1, 1, 41, 41)),
    "branches": (Branches, (1, 2, 48, 48)),
    "inception": (InceptionLike, (1, 3, 40, 40)),
    "functional": (Functional, (1, 3, 41, 41)),
    "causal-1d": (Causal, (1, 2, 80)),
    "unshuffle": (Unshuffle, (1, 3, 32, 32)),
    "conv3d": (lambda: nn.Sequential(nn.Conv3d(1, 2, 3, stride=2), nn.MaxPool3d(2), nn.Conv3d(2, 2, 3, padding=1)),
               (1, 1, 24, 24, 24)),
    "pools": (lambda: nn.Sequential(nn.Conv2d(1, 2, 5, stride=3), nn.MaxPool2d(3, 2, ceil_mode=True),
                                    nn.AvgPool2d(2, padding=1), nn.Conv2d(2, 2, 1)), (1, 1, 96, 64)),
    "updown": (UpDown, (1, 2, 32, 32)),
    "global": (GlobalHead, (1, 3, 17, 17)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_field_equals_gradient_oracle(name):
    build, shape = CASES[name]
    torch.manual_seed(0)
    _, exact = assert_fields_match(build(), shape)
    assert exact >= 1


def test_vgg11_features():
    model = torchvision.models.vgg11(weights=None).features
    report, exact = assert_fields_match(model, (1, 3, 128, 128), ["3", "8", "13"])
    assert exact == 3
    # 3x3 convs (reach 2) at jumps 1, 2, 4, 4, 8, 8, 16, 16 and 2x2 pools (reach 1) at jumps 1, 2, 4, 8, 16
    size = 1 + 2 * (1 + 2 + 4 + 4 + 8 + 8 + 16 + 16) + 1 * (1 + 2 + 4 + 8 + 16)
    assert report.layers[0].receptive_field.text("size") == f"{size}x{size}"
    assert report.layers[0].receptive_field.text("jump") == "32x32"


@pytest.mark.parametrize("name, stop, shape", [("resnet18", "layer2", (1, 3, 160, 160)),
                                               ("resnet50", "layer2", (1, 3, 128, 128))])
def test_resnet_feature_extractors(name, stop, shape):
    full = torchvision.models.get_model(name, weights=None)
    children = list(full.named_children())
    keep = children[:[n for n, _ in children].index(stop) + 1]
    model = nn.Sequential()
    for child_name, child in keep:
        model.add_module(child_name, child)
    _, exact = assert_fields_match(model, shape, ["maxpool", "layer1", "layer2.0", "layer2"])
    assert exact == 4


def test_shufflenet_v2_channel_split_keeps_the_field():
    """ShuffleNet v2 splits channels with chunk(2, dim=1) in every block (it used to make every stage 'unknown')."""
    model = torchvision.models.shufflenet_v2_x0_5(weights=None)
    report = netscope.summary(model, (1, 3, 224, 224), device="cpu", audit_names=False, checks=False,
                              receptive_field=True)
    fields = {c.name: c.receptive_field for c in report.layers if c.depth == 1}
    # stem: 3x3/2 conv and 3x3/2 pool; each stage: one 3x3/2 depthwise conv at the stage's input jump, then
    # (repeats - 1) 3x3 depthwise convs (reach 2) at the doubled jump; repeats 4, 8, 4
    stem = 1 + 2 * 1 + 2 * 2
    stage2 = stem + 2 * 4 + 3 * 2 * 8
    stage3 = stage2 + 2 * 8 + 7 * 2 * 16
    stage4 = stage3 + 2 * 16 + 3 * 2 * 32
    for name, size, jump in (("maxpool", stem, 4), ("stage2", stage2, 8), ("stage3", stage3, 16),
                             ("stage4", stage4, 32), ("conv5", stage4, 32)):
        assert fields[name].text("size") == f"{size}x{size}" and fields[name].text("jump") == f"{jump}x{jump}", name
    _, exact = assert_fields_match(nn.Sequential(model.conv1, model.maxpool, model.stage2),
                                   (1, 3, 96, 96), ["0", "1", "2.0", "2"])
    assert exact == 4


def test_convnext_channels_last_linear_blocks():
    """ConvNeXt runs its 1x1 layers as Linear on (N, H, W, C): reshaped to (N*H*W, C) and back."""
    model = torchvision.models.convnext_tiny(weights=None).features[:2]
    report, exact = assert_fields_match(model, (1, 3, 128, 128), ["0", "1.0", "1.2"])
    assert exact == 3
    # stem 4x4 stride 4, then three blocks of one 7x7 depthwise conv at jump 4
    assert report.layers[0].receptive_field.text("size") == f"{4 + 3 * 6 * 4}x{4 + 3 * 6 * 4}"


def test_resnet18_full_model_field_and_json():
    report = netscope.summary(torchvision.models.resnet18(), (1, 3, 224, 224), device="meta", audit_names=False,
                              receptive_field=True)
    calls = {c.name: c for c in report.layers}
    assert calls["layer4"].receptive_field.text("size") == "435x435"  # the figure published for ResNet-18
    assert calls["layer4"].receptive_field.text("jump") == "32x32"
    data = json.loads(report.to_json())
    assert data["layers"][0]["receptive_field"] == "whole input"  # the root: global pooling, then fc
    assert data["layers"][1]["receptive_field"] == {"size": [7, 7], "jump": [2, 2], "start": [0, 0], "exact": True}
    frame = report.to_dataframe()
    assert frame.loc[frame["name"] == "maxpool", "receptive_field"].iloc[0]["size"] == [11, 11]
    text = report.render(columns="layer,rf,jump", depth=1)
    assert "435x435" in text and "whole" in text
    off = netscope.summary(torchvision.models.resnet18(), (1, 3, 224, 224), device="meta", audit_names=False)
    assert all(c.receptive_field is None for c in off.layers)  # opt-in: not tracked unless asked for


def test_cli_summary_tracks_fields_when_the_columns_ask(capsys):
    from netscope.cli import main

    assert main(["summary", "resnet18", "--device", "meta", "--columns", "layer,rf,jump", "--depth", "1"]) == 0
    out = capsys.readouterr().out
    assert "435x435" in out and "32x32" in out
    assert main(["summary", "resnet18", "--device", "meta", "-f", "json", "--receptive-field"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["layers"][0]["receptive_field"] == "whole input"


def test_cli_receptive_field_flag_shows_the_fields_in_the_table(capsys):
    # --receptive-field with the default columns used to compute every field and print none of them
    from netscope.cli import main

    assert main(["summary", "resnet18", "--device", "meta", "--receptive-field", "--depth", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[-3:] == ["Receptive", "field", "Jump"]
    layer4 = next(line for line in lines if line.split()[0] == "layer4")
    # 7x7/2 stem, 3x3/2 pool, then 3x3 convs (reach 2): 4 at jump 4, 1 + 3 at jumps 4, 8, 16 per later stage
    size = 7 + 2 * 2 + 2 * 4 * 4 + (2 * 4 + 3 * 2 * 8) + (2 * 8 + 3 * 2 * 16) + (2 * 16 + 3 * 2 * 32)
    assert layer4.split()[-2:] == [f"{size}x{size}", "32x32"]
    assert main(["summary", "resnet18", "--device", "meta", "--depth", "1"]) == 0
    assert "Receptive" not in capsys.readouterr().out  # not asked for: not computed, not shown


LAYER = st.tuples(st.sampled_from(["conv", "max", "avg"]), st.integers(1, 5), st.integers(1, 3), st.integers(1, 3),
                  st.booleans())


def _chain(layers):
    modules = []
    for kind, kernel, stride, dilation, padded in layers:
        pad = kernel // 2 if padded else 0
        if kind == "conv":
            modules.append(nn.Conv1d(1, 1, kernel, stride, pad, dilation))
        elif kind == "max":
            modules.append(nn.MaxPool1d(kernel, stride, pad))
        else:
            modules.append(nn.AvgPool1d(kernel, stride, pad))
    return nn.Sequential(*modules)


@settings(max_examples=40, deadline=None)
@given(st.lists(LAYER, min_size=1, max_size=5))
def test_random_conv_pool_chains(layers):
    model = _chain(layers)
    try:
        model(torch.zeros(1, 1, 400))
    except RuntimeError:
        return  # the chain shrinks the input below a kernel: no field to compare
    assert_fields_match(model, (1, 1, 400))


def test_check_names_where_the_receptive_field_was_lost(tmp_path, capsys):
    """A field lost to an operator without a rule is 'unknown' in check's headline (not '?'), with the
    innermost layer where it first became unknown."""
    from netscope.cli import main

    source = tmp_path / "tokens.py"
    source.write_text("import torch.nn as nn\n"
                      "class Net(nn.Module):\n"
                      "    def __init__(self):\n"
                      "        super().__init__()\n"
                      "        self.stem = nn.Conv2d(3, 8, 4, stride=4)\n"
                      "        self.mixer = nn.Sequential(nn.Linear(8, 8), nn.GELU())\n"
                      "    def forward(self, x):\n"
                      "        return self.mixer(self.stem(x).flatten(2).transpose(1, 2))\n")
    assert main(["check", f"{source}:Net", "--input", "1,3,16,16", "--device", "cpu"]) == 0
    line = capsys.readouterr()[0].splitlines()[1]
    assert line.startswith("receptive field of the output: unknown (an operator ran that no receptive-field rule "
                           "covers, first in mixer.0 (Linear))"), line
    assert "last spatial one 4x4 (jump 4x4) at stem (Conv2d)" in line


class TwoBranchBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.wide = nn.Conv2d(2, 2, 7, padding=3)
        self.narrow = nn.Sequential(nn.Conv2d(2, 2, 3, padding=1), nn.BatchNorm2d(2))

    def forward(self, x):
        return torch.cat([self.wide(x), self.narrow(x)], 1)


def test_check_names_the_call_whose_output_came_last_as_the_last_spatial_field(capsys):
    # calls are listed parent first: the last one listed with a field is 1.narrow.1 (7x7), inside the block
    # whose output (15x15, the cat of both branches) came after it; Inception v3 read 1247 at
    # Mixed_7c.branch_pool.bn instead of 1311 at Mixed_7c (Araujo et al., Distill 2019: 1311)
    model = nn.Sequential(nn.Conv2d(3, 2, 3, stride=2), TwoBranchBlock(), nn.AdaptiveAvgPool2d(1))
    report, _ = assert_fields_match(model[:2], (1, 3, 33, 33), ["1", "1.narrow.1"])  # the fields, by gradients
    calls = {c.name: c.receptive_field for c in report.layers}
    assert calls["1"].text("size") == f"{3 + 2 * 6}x{3 + 2 * 6}" and calls["1.narrow.1"].text("size") == "7x7"
    from netscope.commands.check import _field_line

    full = netscope.summary(model, (1, 3, 33, 33), device="cpu", audit_names=False, receptive_field=True)
    assert _field_line(full) == ("receptive field of the output: the whole input; last spatial one 15x15 (jump 2x2) "
                                 "at 1 (TwoBranchBlock)\n")


@pytest.mark.parametrize("stride", [1, 2])
def test_adaptive_pool_uneven_bins_are_enclosed_at_every_output_position(stride):
    # bins of floor(j*i/o) .. ceil((j+1)*i/o) - 1 have no single size and stride: the field used to be
    # "unknown" (and AdaptiveAvgPool1d's always was); it is now a bound that holds at every output position
    # (gradient oracle), exact when o divides i, including o > i (repeated values)
    checked = 0
    for size, out in [(i, o) for i in range(2, 15) for o in range(2, 18)]:
        model = nn.Sequential(nn.Conv1d(1, 1, 3, stride=stride), nn.AdaptiveAvgPool1d(out)).double()
        with torch.no_grad():
            for param in model.parameters():
                param.fill_(1.0)
        length = (size - 1) * stride + 3  # the conv's output has `size` positions
        report = netscope.summary(model, (1, 1, length), dtype="float64", device="cpu", audit_names=False,
                                  checks=False, receptive_field=True)
        field = next(c.receptive_field for c in report.layers if c.name == "1")
        assert isinstance(field, Field) and field.exact == (size % out == 0), (size, out, field)
        axis = field.axes[0]
        for j in range(out):
            x = torch.rand(1, 1, length, dtype=torch.float64, requires_grad=True)
            (grad,) = torch.autograd.grad(model(x)[0, 0, j], x)
            read = grad[0, 0].nonzero()[:, 0]
            centre = axis.start + j * axis.jump
            low, high = centre - (axis.size - 1) / 2, centre + (axis.size - 1) / 2
            if field.exact:
                assert (low, high) == (int(read.min()), int(read.max())), (size, out, j)
            else:
                # r = i/o is a float (3/7): allow its rounding, far below one position
                assert low <= int(read.min()) + 1e-9 and int(read.max()) <= high + 1e-9, (size, out, j)
            checked += 1
    assert checked == sum(o for i in range(2, 15) for o in range(2, 18))
