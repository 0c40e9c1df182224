"""The size formulas against PyTorch's real layers: same output shape, or the same reason to reject.

Hypothesis draws random in-range hyperparameters and input sizes for every registered layer family in
1d/2d/3d; the oracle is the layer itself run on a tiny CPU tensor.
"""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn as nn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netscope.analyses.formulas import FORMULAS, FormulaRegistry, predict
from netscope.analyses.formulas import registry as R
from netscope.records import Severity

SETTINGS = settings(max_examples=300, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

# PyTorch's error messages (CPU kernels and Python wrappers) -> our reason codes.
PYTORCH_REASONS = (
    (r"to have \d+ channels", R.CHANNELS),
    (r"Kernel size can't be greater|smaller than kernel size|too large relative to input", R.KERNEL_TOO_LARGE),
    (r"Output size is too small|must be at least one|Invalid computed output size|too small \(non-positive\)"
     r"|sizes should be greater than 0|must contain non-negative spatial", R.OUTPUT_TOO_SMALL),
    (r"pad(ding)? should be (at most|smaller than or equal to) half", R.PADDING_TOO_LARGE),
    (r"output padding must be smaller", R.OUTPUT_PADDING_TOO_LARGE),
    (r"requested an output size|invalid output_size|output_size should be a sequence", R.OUTPUT_SIZE_OUT_OF_RANGE),
    (r"Padding size should be less than|wrapping around more than once", R.PADDING_EXCEEDS_INPUT),
    (r"number of sliding blocks", R.BLOCK_COUNT_MISMATCH),
    (r"divisible", R.NOT_DIVISIBLE),
    (r"cannot be multiplied|size mismatch|does not match weight size", R.FEATURES),
    (r"batch dimensions do not match", R.BATCH_MISMATCH),
    (r"Dimension out of range|cannot come after", R.DIM_OUT_OF_RANGE),
    (r"Expected \d?D?.*input|needs \dD input|tensor expected for input|same number of spatial dimensions"
     r"|Only 3D|Expected \d to \d dimensions|Expected \dD or \dD|at least 3 dimensions|must have \d or \d elements", R.INPUT_RANK),
)


def pytorch_reason(exc: BaseException) -> str:
    text = str(exc)
    for pattern, reason in PYTORCH_REASONS:
        if re.search(pattern, text):
            return reason
    raise AssertionError(f"unclassified PyTorch error {type(exc).__name__}: {text}")


def assert_matches_pytorch(module, inputs, call_kwargs=None):
    """The formula and the real layer agree: same shape, or both reject with the same reason."""
    call_kwargs = call_kwargs or {}
    prediction = predict(module, tuple(x.shape for x in inputs), call_kwargs)
    assert prediction is not None
    try:
        # oneDNN reports some rejections as "could not construct a memory descriptor": use ATen's checks
        with torch.no_grad(), torch.backends.mkldnn.flags(enabled=False):
            out = module(*inputs, **call_kwargs)
    except Exception as exc:  # noqa: BLE001 - any rejection by PyTorch is what we compare against
        assert prediction.invalid is not None, f"PyTorch rejected ({exc}) but the formula predicted {prediction.shape}"
        assert prediction.invalid.reason == pytorch_reason(exc), (
            f"reason {prediction.invalid.reason} ({prediction.invalid.message}) vs PyTorch: {exc}")
        assert prediction.invalid.message
        return
    if isinstance(out, tuple):  # return_indices=True
        out = out[0]
    assert prediction.invalid is None, f"formula said invalid ({prediction.invalid}) but PyTorch gave {tuple(out.shape)}"
    assert prediction.shape == tuple(out.shape), (prediction, tuple(out.shape))
    for dim in prediction.dims:
        assert dim.text.endswith(f"= {dim.expected}"), dim.text


def sizes(draw, nd, low=1, high=8):
    return tuple(draw(st.integers(low, high)) for _ in range(nd))


def lead(draw, channels):
    """Batched (N, C) or unbatched (C,) leading dimensions."""
    return (draw(st.integers(1, 2)), channels) if draw(st.booleans()) else (channels,)


@st.composite
def conv_cases(draw):
    nd = draw(st.integers(1, 3))
    in_channels = draw(st.integers(1, 3))
    kernel = sizes(draw, nd, 1, 4)
    stride = draw(st.integers(1, 3))
    dilation = draw(st.integers(1, 2))
    padding = draw(st.one_of(st.integers(0, 3), st.sampled_from(["same", "valid"]) if stride == 1
                             else st.just("valid")))
    padding_mode = draw(st.sampled_from(["zeros", "zeros", "reflect", "replicate", "circular"]))
    cls = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[nd - 1]
    module = cls(in_channels, draw(st.integers(1, 2)), kernel, stride=stride, padding=padding, dilation=dilation,
                 padding_mode=padding_mode)
    channels = draw(st.sampled_from([in_channels, in_channels, in_channels, draw(st.integers(1, 3))]))
    shape = lead(draw, channels) + sizes(draw, nd, 1, 9 - 2 * nd)
    return module, shape


@given(conv_cases())
@SETTINGS
def test_conv_formula_matches_pytorch(case):
    module, shape = case
    assert_matches_pytorch(module, [torch.zeros(shape)])


@st.composite
def conv_transpose_cases(draw):
    nd = draw(st.integers(1, 3))
    in_channels = draw(st.integers(1, 2))
    kernel = sizes(draw, nd, 1, 4)
    stride = draw(st.integers(1, 3))
    dilation = draw(st.integers(1, 2))
    cls = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)[nd - 1]
    module = cls(in_channels, draw(st.integers(1, 2)), kernel, stride=stride, padding=draw(st.integers(0, 3)),
                 dilation=dilation, output_padding=draw(st.sampled_from([0, 0, 1, 2])))
    channels = draw(st.sampled_from([in_channels, in_channels, in_channels, draw(st.integers(1, 2))]))
    shape = lead(draw, channels) + sizes(draw, nd, 1, 7 - nd)
    call_kwargs = {}
    if draw(st.booleans()):
        requested = sizes(draw, nd, 1, 16)
        call_kwargs["output_size"] = list(shape[:-nd - 1] + (module.out_channels,) + requested) \
            if draw(st.booleans()) else list(requested)
    return module, shape, call_kwargs


@given(conv_transpose_cases())
@SETTINGS
def test_conv_transpose_formula_matches_pytorch(case):
    module, shape, call_kwargs = case
    assert_matches_pytorch(module, [torch.zeros(shape)], call_kwargs)


POOLS = {1: (nn.MaxPool1d, nn.AvgPool1d, nn.LPPool1d), 2: (nn.MaxPool2d, nn.AvgPool2d, nn.LPPool2d),
         3: (nn.MaxPool3d, nn.AvgPool3d) + ((nn.LPPool3d,) if hasattr(nn, "LPPool3d") else ())}


@st.composite
def pool_cases(draw):
    nd = draw(st.integers(1, 3))
    cls = draw(st.sampled_from(POOLS[nd]))
    kernel = draw(st.integers(1, 4))
    stride = draw(st.one_of(st.none(), st.integers(1, 3)))
    ceil_mode = draw(st.booleans())
    if cls.__name__.startswith("Max"):
        module = cls(kernel, stride, padding=draw(st.integers(0, 3)), dilation=draw(st.integers(1, 2)),
                     ceil_mode=ceil_mode, return_indices=draw(st.booleans()))
    elif cls.__name__.startswith("Avg"):
        module = cls(kernel, stride, padding=draw(st.integers(0, 3)), ceil_mode=ceil_mode)
    else:
        module = cls(2, kernel, stride, ceil_mode=ceil_mode)
    shape = lead(draw, draw(st.integers(1, 2))) + sizes(draw, nd, 1, 9 - 2 * nd)
    return module, shape


@given(pool_cases())
@SETTINGS
def test_pool_formula_matches_pytorch(case):
    module, shape = case
    assert_matches_pytorch(module, [torch.rand(shape)])


ADAPTIVE = {1: (nn.AdaptiveAvgPool1d, nn.AdaptiveMaxPool1d), 2: (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d),
            3: (nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool3d)}


@st.composite
def adaptive_cases(draw):
    nd = draw(st.integers(1, 3))
    cls = draw(st.sampled_from(ADAPTIVE[nd]))
    if nd == 1:
        target = draw(st.integers(1, 5))
    else:
        target = tuple(draw(st.one_of(st.none(), st.integers(1, 5))) for _ in range(nd))
    module = cls(target)
    return module, lead(draw, 2) + sizes(draw, nd, 1, 7)


@given(adaptive_cases())
@SETTINGS
def test_adaptive_formula_matches_pytorch(case):
    module, shape = case
    assert_matches_pytorch(module, [torch.rand(shape)])


@st.composite
def upsample_cases(draw):
    rank = draw(st.integers(3, 5))
    mode = draw(st.sampled_from(["nearest", "nearest-exact", "area", "linear", "bilinear", "bicubic", "trilinear"]))
    nd = rank - 2 if draw(st.integers(0, 5)) else draw(st.integers(1, 3))
    if draw(st.booleans()):
        value = draw(st.integers(1, 9)) if draw(st.booleans()) else sizes(draw, nd, 1, 9)
        module = nn.Upsample(size=value, mode=mode)
    else:
        pick = st.sampled_from([1, 2, 3, 0.5, 0.3, 1.5, 1.7, 2.5])
        value = draw(pick) if draw(st.booleans()) else tuple(draw(pick) for _ in range(nd))
        module = nn.Upsample(scale_factor=value, mode=mode)
    return module, (1, 2) + sizes(draw, rank - 2, 1, 9 - rank)


@given(upsample_cases())
@SETTINGS
def test_upsample_formula_matches_pytorch(case):
    module, shape = case
    assert_matches_pytorch(module, [torch.rand(shape)])


@st.composite
def shuffle_cases(draw):
    factor = draw(st.integers(1, 3))
    module = nn.PixelShuffle(factor) if draw(st.booleans()) else nn.PixelUnshuffle(factor)
    rank = draw(st.integers(3, 5))
    shape = tuple(draw(st.integers(1, 2)) for _ in range(rank - 3)) + (draw(st.integers(1, 9)),) + sizes(draw, 2, 1, 7)
    return module, shape


@given(shuffle_cases())
@SETTINGS
def test_shuffle_formula_matches_pytorch(case):
    module, shape = case
    assert_matches_pytorch(module, [torch.rand(shape)])


@st.composite
def fold_cases(draw):
    kernel = sizes(draw, 2, 1, 3)
    common = dict(kernel_size=kernel, stride=draw(st.integers(1, 3)), padding=draw(st.integers(0, 2)),
                  dilation=draw(st.integers(1, 2)))
    if draw(st.booleans()):
        return nn.Unfold(**common), lead(draw, 2) + sizes(draw, 2, 1, 8)
    module = nn.Fold(output_size=sizes(draw, 2, 1, 8), **common)
    per_block = kernel[0] * kernel[1]
    columns = draw(st.sampled_from([per_block, 2 * per_block, draw(st.integers(1, 12))]))
    return module, ((draw(st.integers(1, 2)),) if draw(st.booleans()) else ()) + (columns, draw(st.integers(1, 30)))


@given(fold_cases())
@SETTINGS
def test_fold_unfold_formula_matches_pytorch(case):
    module, shape = case
    assert_matches_pytorch(module, [torch.rand(shape)])


@st.composite
def fractional_cases(draw):
    nd = draw(st.integers(2, 3))
    cls = (nn.FractionalMaxPool2d, nn.FractionalMaxPool3d)[nd - 2]
    kernel = draw(st.integers(1, 3))
    if draw(st.booleans()):
        module = cls(kernel, output_size=draw(st.integers(1, 6)) if draw(st.booleans()) else sizes(draw, nd, 1, 6),
                     return_indices=draw(st.booleans()))
    else:
        pick = st.sampled_from([0.1, 0.3, 0.5, 0.7, 0.9])
        module = cls(kernel, output_ratio=draw(pick) if draw(st.booleans()) else tuple(draw(pick) for _ in range(nd)))
    return module, lead(draw, draw(st.integers(1, 2))) + sizes(draw, nd, 1, 8)


@given(fractional_cases())
@SETTINGS
def test_fractional_pool_formula_matches_pytorch(case):
    module, shape = case
    assert_matches_pytorch(module, [torch.rand(shape)])


UNPOOLS = (nn.MaxUnpool1d, nn.MaxUnpool2d, nn.MaxUnpool3d)


@st.composite
def unpool_cases(draw):
    nd = draw(st.integers(1, 3))
    kernel = draw(st.integers(1, 4))
    module = UNPOOLS[nd - 1](kernel, draw(st.one_of(st.none(), st.integers(1, 3))), padding=draw(st.integers(0, kernel)))
    shape = lead(draw, draw(st.integers(1, 2))) + sizes(draw, nd, 1, 9 - 2 * nd)
    kwargs = {}
    if draw(st.booleans()):  # the sizes a caller asks for: in range, out of it, with or without N and C
        stride, padding = _first(module.stride), _first(module.padding)
        default = [(n - 1) * stride - 2 * padding + kernel for n in shape[-nd:]]  # the documented formula
        wanted = [max(0, d + draw(st.integers(-stride, stride))) for d in default]
        kwargs["output_size"] = (list(shape[:-nd]) + wanted) if draw(st.booleans()) else wanted
    return module, shape, kwargs


def _first(value):
    return value[0] if isinstance(value, tuple) else value


@given(unpool_cases())
@SETTINGS
def test_unpool_formula_matches_pytorch(case):
    """Indices 0: valid in any non-empty output (only their values, never the shape, depend on the pool)."""
    module, shape, kwargs = case
    assert_matches_pytorch(module, [torch.rand(shape), torch.zeros(shape, dtype=torch.long)], kwargs)


@given(st.integers(0, 4), st.integers(-5, 4), st.integers(-5, 4), st.data())
@SETTINGS
def test_flatten_formula_matches_pytorch(rank, start, end, data):
    shape = tuple(data.draw(st.integers(1, 4)) for _ in range(rank))
    assert_matches_pytorch(nn.Flatten(start, end), [torch.rand(shape)])


@given(st.integers(1, 5), st.integers(1, 3), st.data())
@SETTINGS
def test_linear_formula_matches_pytorch(in_features, rank, data):
    module = nn.Linear(in_features, 2)
    last = data.draw(st.sampled_from([in_features, data.draw(st.integers(1, 5))]))
    shape = tuple(data.draw(st.integers(1, 3)) for _ in range(rank - 1)) + (last,)
    assert_matches_pytorch(module, [torch.rand(shape)])


@given(st.integers(1, 4), st.integers(1, 4), st.data())
@SETTINGS
def test_bilinear_formula_matches_pytorch(in1, in2, data):
    module = nn.Bilinear(in1, in2, 3)
    batch = data.draw(st.integers(1, 3))
    first = (batch, data.draw(st.sampled_from([in1, in1, data.draw(st.integers(1, 4))])))
    second = (data.draw(st.sampled_from([batch, batch, data.draw(st.integers(1, 3))])),
              data.draw(st.sampled_from([in2, in2, data.draw(st.integers(1, 4))])))
    assert_matches_pytorch(module, [torch.rand(first), torch.rand(second)])


@pytest.mark.parametrize("module, shape", [
    (nn.Conv2d(3, 4, 3), (1, 1, 3, 8, 8)),
    (nn.Conv1d(3, 4, 3), (8,)),
    (nn.ConvTranspose2d(3, 4, 3), (1, 1, 3, 8, 8)),
    (nn.MaxPool2d(2), (1, 1, 1, 4, 4)),
    (nn.AvgPool1d(2), (4,)),
    (nn.AdaptiveAvgPool2d(2), (4,)),
    (nn.Unfold(2), (1, 1, 1, 4, 4)),
    (nn.Fold((4, 4), 2), (1, 1, 4, 9)),
    (nn.Upsample(scale_factor=2, mode="bilinear"), (1, 2, 4)),
    (nn.PixelShuffle(2), (4, 4)),
    (nn.FractionalMaxPool2d(2, output_size=2), (1, 1, 1, 4, 4)),
    (nn.FractionalMaxPool3d(2, output_ratio=0.5), (1, 1, 1, 1, 4, 4)),
])
def test_wrong_rank_is_rejected_like_pytorch(module, shape):
    assert_matches_pytorch(module, [torch.rand(shape)])


def test_lazy_linear_is_checked_after_materialization():
    module = nn.LazyLinear(3)
    assert predict(module, (torch.Size([2, 5]),)) is None  # sizes unknown until the first call
    module(torch.zeros(2, 5))
    assert predict(module, (torch.Size([2, 5]),)).shape == (2, 3)
    assert predict(module, (torch.Size([2, 4]),)).invalid.reason == R.FEATURES


def test_formula_text_substitutes_the_numbers():
    prediction = predict(nn.Conv2d(3, 64, 7, 2, 3), (torch.Size([1, 3, 224, 224]),))
    assert prediction.dims[0].text == "H: floor((224 + 2*3 - 1*(7-1) - 1) / 2) + 1 = 112"
    assert prediction.shape == (1, 64, 112, 112)


@pytest.mark.parametrize("module, size, code", [
    (nn.Conv2d(1, 1, 3, stride=2), 8, "stride-skips-input"),  # (8-3)/2 leaves 1 row unread
    (nn.MaxPool2d(2, ceil_mode=True), 7, "ceil-mode-extra-window"),
    (nn.Conv2d(1, 1, 3, padding=1, padding_mode="reflect"), 8, "padding-mode"),
    (nn.Conv2d(1, 1, 5), 5, "minimum-size"),
    (nn.Conv2d(1, 1, 3, stride=2, padding=1), 8, "asymmetric-padding"),
    (nn.AdaptiveAvgPool2d(7), 3, "adaptive-pool-upsamples"),
])
def test_warnings(module, size, code):
    prediction = predict(module, (torch.Size([1, 1, size, size]),))
    assert code in {n.code for n in prediction.notes}


def test_unread_rows_are_counted():
    prediction = predict(nn.Conv1d(1, 1, 3, stride=4), (torch.Size([1, 1, 10]),))
    (note,) = [n for n in prediction.notes if n.code == "stride-skips-input"]
    # windows start at 0 and 4 and read 0..2 and 4..6: 3 is skipped between them and 7, 8, 9 lie beyond them
    assert note.message.startswith("L: 4 of 10 input positions are never read: 1 between windows")
    assert "the last 3 beyond the windows" in note.message
    assert note.severity.value == "warning"  # the tail (3) is longer than the gap between windows (1)


def test_clean_layer_has_no_warnings():
    prediction = predict(nn.Conv2d(3, 8, 3, padding=1), (torch.Size([1, 3, 32, 32]),))
    assert prediction.notes == ()


def test_registry_rejects_duplicates_and_walks_the_mro():
    registry = FormulaRegistry()
    registry.register(nn.Conv2d)(lambda m, a, k: None)
    with pytest.raises(ValueError, match="size formula for Conv2d registered twice"):
        registry.register(nn.Conv2d)(lambda m, a, k: None)

    class MyConv(nn.Conv2d):
        pass

    assert registry.lookup(MyConv) is registry.lookup(nn.Conv2d)
    assert FORMULAS.lookup(nn.LazyConv2d) is FORMULAS.lookup(nn.Conv2d)
    assert FORMULAS.lookup(nn.ReLU) is None


def test_a_conv_as_linear_head_at_its_minimum_size_is_info_not_a_warning():
    # VGG's head (timm's ConvMlp): a 7x7 kernel on the 7x7 feature map of a 224 input gives 1x1 by design;
    # one position less, (6 - 7) + 1 = 0, would fail, which is worth knowing but not a bug
    prediction = predict(nn.Conv2d(512, 64, 7), (torch.Size([1, 512, 7, 7]),))
    notes = {n.code: n.severity for n in prediction.notes}
    assert notes == {"minimum-size": Severity.INFO}


def test_googlenet_ceil_mode_pool_window_is_info():
    # torchvision GoogLeNet's maxpool1: 3x3 stride 2 ceil_mode on 112 gives ceil((112 - 3) / 2) + 1 = 56, one
    # more than floor's 55; the last window hangs over the edge, as ceil_mode=True asks
    prediction = predict(nn.MaxPool2d(3, 2, ceil_mode=True), (torch.Size([1, 64, 112, 112]),))
    assert prediction.shape == (1, 64, -(-(112 - 3) // 2) + 1, -(-(112 - 3) // 2) + 1)
    notes = {n.code: n.severity for n in prediction.notes}
    assert notes["ceil-mode-extra-window"] is Severity.INFO
