"""Receptive fields against the gradient oracle of ``rf_oracle`` (positive float64 twin, one output element
back-propagated): random layer stacks per layer, resampling at every output position, and models the
rules were not written for."""

from __future__ import annotations

import contextlib

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import HealthCheck, assume, given, settings, strategies as st

import netscope
from netscope.analyses.receptive_field import UNKNOWN, WHOLE, Field

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


# ---- models the rules were not written for ------------------------------------------------------------------
def compare_with_oracle(model, shape, names):
    """Each named layer's field at its centre output element against the oracle; returns {name: "exact" (equal,
    inside the input), "within" (the positions read lie within a bound or a border-clipped field), "whole"}."""
    fields = _fields(model, shape)
    x = positive_input(shape)
    outputs = module_outputs(model, x, names)
    verdicts = {}
    for name in names:
        field, out = fields[name], outputs[name]
        if field == WHOLE:
            index = tuple(s // 2 for s in out.shape[2:]) if out.dim() > 2 else ()
            assert extent(out, x, index) == tuple((0, n - 1) for n in shape[2:]), name
            verdicts[name] = "whole"
            continue
        assert isinstance(field, Field), (name, field)
        sizes = [out.shape[d] for d in field.dims]
        centre = [s // 2 for s in sizes]
        index = [0] * (out.dim() - 2)
        for d, c in zip(field.dims, centre):
            index[d - 2] = c
        got = extent(out, x, index) if field.dims == tuple(range(2, out.dim())) else None
        assert got is not None, (name, "the oracle reads channels-first maps")
        inside = _check_element(field, centre, got, shape[2:])
        verdicts[name] = "exact" if field.exact and inside else "within"
    return verdicts


class UNet(nn.Module):
    """Two levels: max-pool down, transposed conv up, skip joined by concatenation along channels."""

    def __init__(self):
        super().__init__()
        self.enc = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1))
        self.down = nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(4, 8, 3, padding=1), nn.ReLU())
        self.up = nn.ConvTranspose2d(8, 4, 2, stride=2)
        self.dec = nn.Conv2d(8, 4, 3, padding=1)

    def forward(self, x):
        skip = self.enc(x)
        return self.dec(torch.cat([skip, self.up(self.down(skip))], 1))


class PaddedConvs(nn.Module):
    """F.pad (reflect, asymmetric) before a strided conv, zero F.pad before a dilated one."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, stride=2)
        self.dilated = nn.Conv2d(2, 2, 5, dilation=2)

    def forward(self, x):
        return self.dilated(F.pad(self.conv(F.pad(x, (3, 1, 0, 2), mode="reflect")), (2, 2, 1, 1)))


class Aspp(nn.Module):
    """DeepLab's atrous pyramid without its image-pooling branch: 1x1 and 3x3 at rates 6, 12, 18, concatenated."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, stride=2, padding=1)
        self.branches = nn.ModuleList([nn.Conv2d(4, 4, 1)] + [nn.Conv2d(4, 4, 3, padding=r, dilation=r)
                                                              for r in (6, 12, 18)])
        self.project = nn.Conv2d(16, 4, 1)

    def forward(self, x):
        x = self.stem(x)
        return self.project(torch.cat([branch(x) for branch in self.branches], 1))


class Audio(nn.Module):
    """A raw-waveform 1-d CNN (M5-like): wide strided first conv, pools with ceil_mode, mean over time."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv1d(1, 4, 80, stride=16), nn.BatchNorm1d(4), nn.ReLU(), nn.MaxPool1d(4),
                                      nn.Conv1d(4, 4, 3), nn.ReLU(), nn.MaxPool1d(4, ceil_mode=True),
                                      nn.Conv1d(4, 4, 3, padding=1), nn.AvgPool1d(3, 2, 1))
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        return self.head(self.features(x).mean(-1))


def _torchvision(name, **options):
    import torchvision

    return torchvision.models.get_model(name, weights=None, **options)


def _inception_c():
    """Inception-v3's 17x17 block alone: 1x7 and 7x1 convolutions in a row (fields 1x7, 7x7, 13x13)."""
    from torchvision.models.inception import InceptionC

    return InceptionC(8, 4)


MODELS = {
    # name: (build, input shape, {layer: expected verdict})
    "resnet18": (lambda: _torchvision("resnet18"), (1, 3, 112, 112),
                 {"layer1": "exact", "layer2.0.downsample": "exact", "layer2.0": "exact", "layer2": "exact",
                  "layer3": "within", "avgpool": "whole", "": "whole"}),
    "mobilenet_v3_small": (lambda: _torchvision("mobilenet_v3_small"), (1, 3, 64, 64),
                           {"features.0": "exact", "features.1.block.0": "exact", "features.1": "whole",
                            "features.12": "whole", "": "whole"}),
    "efficientnet_b0": (lambda: _torchvision("efficientnet_b0").features[:3], (1, 3, 64, 64),
                        {"0": "exact", "1": "whole", "2": "whole"}),
    "unet": (UNet, (1, 1, 48, 48), {"enc": "exact", "down": "exact", "up": "within", "dec": "within"}),
    "f.pad": (PaddedConvs, (1, 1, 60, 60), {"conv": "exact", "dilated": "exact"}),
    "aspp": (Aspp, (1, 1, 160, 160), {"stem": "exact", "branches.3": "exact", "project": "exact"}),
    "deeplab-aspp": (lambda: nn.Sequential(nn.Conv2d(1, 4, 3, stride=2, padding=1),
                                           _deeplab_aspp()), (1, 1, 64, 64),
                     {"1.convs.1": "exact", "1.convs.4": "whole", "1": "whole"}),
    "audio-1d": (Audio, (1, 1, 8000), {"features.0": "exact", "features.3": "exact", "features.6": "exact",
                                       "features": "exact", "": "whole"}),
    # torchvision models the rules were not written for (weights=None): branches, dense concatenation, channel
    # shuffle, group convolutions, 1x7 / 7x1 kernels
    "inception_v3": (lambda: _torchvision("inception_v3", aux_logits=False, init_weights=False), (1, 3, 160, 160),
                     {"Conv2d_2b_3x3": "exact", "Mixed_5b": "exact", "Mixed_6a": "within"}),
    "inception-c": (_inception_c, (1, 8, 17, 17), {"branch7x7_2": "exact", "branch7x7_3": "exact",
                                                   "branch7x7dbl_5": "exact", "branch_pool": "exact", "": "exact"}),
    "googlenet": (lambda: _torchvision("googlenet", aux_logits=False, init_weights=False), (1, 3, 96, 96),
                  {"conv1": "exact", "inception3a": "exact", "inception4a": "within", "avgpool": "whole"}),
    "regnet_x_400mf": (lambda: _torchvision("regnet_x_400mf"), (1, 3, 64, 64),
                       {"stem": "exact", "trunk_output.block1": "exact", "trunk_output.block2": "exact",
                        "avgpool": "whole"}),
    "densenet121-first-blocks": (lambda: _torchvision("densenet121").features[:6], (1, 3, 64, 64),
                                 {"conv0": "exact", "pool0": "exact", "denseblock1": "exact", "transition1": "within"}),
    "shufflenet_v2": (lambda: _torchvision("shufflenet_v2_x0_5"), (1, 3, 64, 64),
                      {"conv1": "exact", "stage2": "exact", "stage3": "within", "fc": "whole"}),
}



def _deeplab_aspp():
    from torchvision.models.segmentation.deeplabv3 import ASPP

    return ASPP(4, [2, 4, 6], 4)  # the last branch pools the whole map and is upsampled back


@pytest.mark.parametrize("name", list(MODELS))
def test_models_match_the_gradient_oracle(name):
    build, shape, expected = MODELS[name]
    torch.manual_seed(0)
    assert compare_with_oracle(build(), shape, list(expected)) == expected


def test_timm_convnext_atto():
    timm = pytest.importorskip("timm")
    model = timm.create_model("convnext_atto", pretrained=False)
    verdicts = compare_with_oracle(model, (1, 3, 176, 176), ["stem", "stages.0", "stages.1", "stages.2", "head"])
    assert verdicts == {"stem": "exact", "stages.0": "exact", "stages.1": "exact", "stages.2": "within",
                        "head": "whole"}


class Crnn(nn.Module):
    """A GRU over the time axis of a 1-d CNN: torch runs it step by step (unbind along time, stack)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(1, 4, 5, stride=2)
        self.rnn = nn.GRU(4, 4, batch_first=True)
        self.out = nn.Conv1d(4, 2, 3)

    def forward(self, x):
        hidden, _ = self.rnn(self.conv(x).transpose(1, 2))
        return self.out(hidden.transpose(1, 2))


def test_a_recurrent_layer_over_a_spatial_axis_is_unknown_not_missing():
    # aten.stack takes its tensors in a list, which the no-rule fallback did not look into: the GRU's output
    # had no field at all (shown blank, as for a tensor that does not come from the input); the oracle says
    # each output step reads every earlier input position, which no (size, jump) describes
    fields = _fields(Crnn(), (1, 1, 64))
    assert isinstance(fields["conv"], Field)
    assert fields["rnn"] == UNKNOWN and fields["out"] == UNKNOWN and fields[""] == UNKNOWN
    x = positive_input((1, 1, 64))
    out = module_outputs(Crnn(), x, ["out"])["out"]
    assert extent(out, x, (14,))[0][0] == 0  # the positions read start at the first input position


class Stacked(nn.Module):
    """Two branches stacked along a new dim, merged into channels, then a conv."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 2, 3, padding=1)
        self.b = nn.Conv2d(1, 2, 5, stride=1, dilation=2, padding=4)
        self.head = nn.Conv2d(4, 2, 3, stride=2)

    def forward(self, x):
        return self.head(torch.stack([self.a(x), self.b(x)], 1).flatten(1, 2))


def test_stack_joins_branch_fields_like_cat():
    assert compare_with_oracle(Stacked(), (1, 1, 40, 40), ["a", "b", "head"]) == \
        {"a": "exact", "b": "exact", "head": "exact"}


class ArgmaxHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, stride=2)
        self.pool = nn.MaxPool2d(2, return_indices=True)

    def forward(self, x):
        y = self.conv(x)
        _, where = self.pool(y)
        return y.max(dim=1).indices.float(), where


def test_index_outputs_carry_the_field_of_their_values():
    # max.dim and max_pool2d_with_indices return (values, indices); only the values got a field, so a model
    # returning argmax labels had none. The index at a position is decided by the same inputs as the value there
    fields = _fields(ArgmaxHead(), (1, 1, 21, 21))
    conv, pool = fields["conv"], fields["pool"]
    labels = fields[""]  # argmax over channels (dim 1 dropped): each position keeps its field
    assert isinstance(labels, Field) and labels.dims == (1, 2) and labels.axes == conv.axes
    assert isinstance(pool, Field) and pool.axes[0].size == conv.axes[0].size + conv.axes[0].jump


@pytest.mark.parametrize("factor", [2, 3])
def test_pixel_shuffle_bound_holds_at_every_output_position(factor):
    # output row o is input row o // factor (of another channel): one position, a centre that steps unevenly
    model = nn.Sequential(nn.Conv2d(1, factor * factor, 3, stride=2), nn.PixelShuffle(factor)).double()
    shape = (1, 1, 23, 19)
    field = _fields(model, shape)["1"]
    assert isinstance(field, Field) and not field.exact
    x = positive_input(shape)
    out = module_outputs(model, x, ["1"])["1"]
    for i in range(out.shape[2]):
        for j in range(out.shape[3]):
            got = extent(out, x, (i, j))
            for axis, o, (low, high) in zip(field.axes, (i, j), got):
                bound = _interval(axis, o)
                assert bound[0] <= low and high <= bound[1], (i, j, bound, (low, high))


class PixelAttention(nn.Module):
    """Attention across channels at each pixel (the spatial axes are the attention's batch dims): each output
    position reads only its own pixel's field. In float32 it runs without autograd, so torch takes its fused
    kernel (the float64 oracle needs the gradient, and gets the math path: the same function)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, stride=2)
        self.out = nn.Conv2d(4, 2, 3)

    def forward(self, x):
        tokens = self.conv(x)[0].permute(1, 2, 0).unsqueeze(-1)  # H, W, 4 tokens, 1 feature
        with torch.no_grad() if tokens.dtype == torch.float32 else contextlib.nullcontext():
            mixed = F.scaled_dot_product_attention(tokens, tokens, tokens)
        return self.out(mixed.squeeze(-1).permute(2, 0, 1).unsqueeze(0))


class ColumnMixing(nn.Module):
    """Mixing along one spatial axis only: attention along H batched over W (nn.MultiheadAttention, sequence
    first), a product along W (bmm with a W x W matrix), a softmax along W."""

    def __init__(self, how: str, width: int):
        super().__init__()
        self.how = how
        self.conv = nn.Conv2d(1, 4, 3)
        self.attention = nn.MultiheadAttention(4, 1)
        self.mix = nn.Parameter(torch.rand(width - 2, width - 2))

    def forward(self, x):
        y = self.conv(x)
        if self.how == "attention":
            tokens = y[0].permute(1, 2, 0)  # H (sequence), W (batch), C
            return self.attention(tokens, tokens, tokens)[0].permute(2, 0, 1).unsqueeze(0)
        if self.how == "softmax":
            return y.softmax(dim=3)
        rows = y.flatten(0, 1)  # 4 maps, H, W
        return torch.bmm(rows, self.mix.expand(rows.shape[0], -1, -1)).unsqueeze(0)


@pytest.mark.parametrize("how", ["attention", "product", "softmax"])
def test_mixing_along_one_spatial_axis_is_not_the_whole_input(how):
    # the product, the attention and the softmax rules made every output 'whole input' as soon as one spatial
    # axis was mixed; the oracle says an output position reads a band of rows (or columns) only. Whole along one
    # axis and local along the other is no (size, jump): unknown
    model = ColumnMixing(how, 21).double()
    assert _fields(model, (1, 1, 21, 21))[""] == UNKNOWN
    x = positive_input((1, 1, 21, 21))
    out = module_outputs(model, x, [""])[""]
    rows, columns = extent(out, x, (9, 9))
    assert (rows, columns) != ((0, 20), (0, 20)) and (rows == (0, 20) or columns == (0, 20))


def test_attention_batched_over_the_spatial_axes_keeps_each_pixels_field():
    # the fused attention kernel made its output 'whole input' whatever its operands' dims held; here the
    # pixels are the attention's batch: each output position reads its own 3x3 window, then the 3x3 conv
    report = netscope.summary(PixelAttention(), (1, 1, 21, 21), device="cpu", audit_names=False, checks=False,
                              receptive_field=True)
    assert "aten::_scaled_dot_product_flash_attention_for_cpu" in {row.op for row in report.by_operator().itertuples()}
    field = [c.receptive_field for c in report.layers if c.name == "out"][0]
    assert field.text("size") == "7x7" and field.exact
    assert compare_with_oracle(PixelAttention(), (1, 1, 21, 21), ["conv", "out"]) == {"conv": "exact", "out": "exact"}


class FlattenAndBack(nn.Module):
    """Flattened into features (to drop out a few), then viewed back into maps for a conv."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.drop = nn.Dropout()
        self.head = nn.Conv2d(2, 2, 3)

    def forward(self, x):
        y = self.conv(x)
        return self.head(self.drop(y.flatten(1)).view(y.shape))


def test_flatten_keeps_each_features_field_until_a_linear_mixes_them():
    # flatten(1) made every feature 'whole input', so the conv after the view back claimed the whole 21x21
    # input; the oracle says each of its outputs reads 5x5. A linear layer after flatten still reads the whole
    fields = _fields(FlattenAndBack(), (1, 1, 21, 21))
    assert fields["head"].text("size") == "5x5"
    assert compare_with_oracle(FlattenAndBack(), (1, 1, 21, 21), ["conv", "head"]) == {"conv": "exact", "head": "exact"}
    head = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 19 * 19, 3))
    assert _fields(head, (1, 1, 21, 21))["2"] == WHOLE
