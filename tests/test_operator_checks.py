"""Checks at the operator call (what the convolution/pool really received) and the unread-position count."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import example, given, settings, strategies as st

import netscope
from netscope.analyses.checks import check_findings, check_trace, has_problems
from netscope.cli import main
from netscope.analyses.formulas.window import Window, window_notes
from netscope.inputs import InputSpec, TensorSpec
from netscope.render.html_data import check_notes
from test_checks import trace  # one pass through netscope.run.prepare, as the API runs it


def spec(*shape):
    return InputSpec([TensorSpec(tuple(shape))])


def brute_force_unread(kernel, stride, pad_left, pad_right, dilation, size, ceil_mode=False):
    """Mark every position each window reads, window by window; count the input positions left unmarked."""
    padded = size + pad_left + pad_right
    span = dilation * (kernel - 1) + 1
    if ceil_mode:  # PyTorch: the ceiling of the count, less a last window that would start in the right padding
        count = -(-(padded - span) // stride) + 1
        if (count - 1) * stride >= size + pad_left:
            count -= 1
    else:
        count = (padded - span) // stride + 1
    starts = [i * stride for i in range(count)]
    read = set()
    for start in starts:
        for tap in range(kernel):
            read.add(start + tap * dilation - pad_left)
    return sum(1 for position in range(size) if position not in read)


@settings(max_examples=400, deadline=None)
@given(kernel=st.integers(1, 7), stride=st.integers(1, 9), pad_left=st.integers(0, 4), pad_right=st.integers(0, 4),
       dilation=st.integers(1, 4), size=st.integers(1, 80), ceil_mode=st.booleans())
def test_unread_count_equals_brute_force(kernel, stride, pad_left, pad_right, dilation, size, ceil_mode):
    window = Window(kernel, stride, pad_left, pad_right, dilation, ceil_mode)
    if window.output_size(size) < 1:
        return
    assert window.unread(size).total == brute_force_unread(kernel, stride, pad_left, pad_right, dilation, size,
                                                           ceil_mode)


@settings(max_examples=60, deadline=None)
@given(kernel=st.integers(1, 6), stride=st.integers(1, 8), padding=st.integers(0, 3), dilation=st.integers(1, 3),
       size=st.integers(1, 48))
def test_unread_positions_are_where_the_real_kernel_sends_no_gradient(kernel, stride, padding, dilation, size):
    window = Window(kernel, stride, padding, padding, dilation)
    if window.output_size(size) < 1:
        return
    x = torch.ones(1, 1, size, requires_grad=True)
    F.conv1d(x, torch.ones(1, 1, kernel), stride=stride, padding=padding, dilation=dilation).sum().backward()
    assert window.unread(size).total == int((x.grad[0, 0] == 0).sum())
    mask = window.read_mask(size)
    assert [bool(b) for b in mask] == (x.grad[0, 0] != 0).tolist()


def notes_of(window, size):
    return {n.code: n for n in window_notes((window,), (size,), ("W",))}


def test_issue_examples_one_by_one_stride_four():
    note = notes_of(Window(1, 4, 0, 0), 32)["stride-skips-input"]
    assert note.message.startswith("W: 24 of 32 input positions are never read")  # 8 read, 24 not
    assert note.severity.value == "info"  # deliberate subsampling: the tail (3) is no longer than the gaps (3)
    note = notes_of(Window(1, 4, 0, 0), 33)["stride-skips-input"]
    assert note.message.startswith("W: 24 of 33 input positions are never read: 24 between windows")


def test_downsample_is_info_and_a_dropped_tail_is_a_warning():
    assert notes_of(Window(1, 2, 0, 0), 56)["stride-skips-input"].severity.value == "info"
    tail = notes_of(Window(3, 2, 0, 0), 12)["stride-skips-input"]
    assert tail.severity.value == "warning"
    assert "(12 + 0 + 0 - 3) = 9 is 1 more than a multiple of the stride 2" in tail.message
    assert "stride-skips-input" not in notes_of(Window(3, 2, 1, 1), 56)


class Conv2dSamePadInForward(nn.Conv2d):
    """TF 'same' padding computed in forward, as timm's Conv2dSame does."""

    def forward(self, x):
        size, k, s = x.shape[-1], self.kernel_size[0], self.stride[0]
        total = max((-(-size // s) - 1) * s + k - size, 0)
        return super().forward(F.pad(x, (total // 2, total - total // 2, total // 2, total - total // 2)))


class CausalConv1d(nn.Conv1d):
    def forward(self, x):
        return super().forward(F.pad(x, (self.dilation[0] * (self.kernel_size[0] - 1), 0)))


class FunctionalCausal(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(8, 4, 3))

    def forward(self, x):
        return F.conv1d(F.pad(x, (4, 0)), self.weight, dilation=2)


def test_padding_inside_forward_passes_at_the_operator():
    model = nn.Sequential(Conv2dSamePadInForward(3, 8, 3, stride=2), Conv2dSamePadInForward(8, 8, 5, stride=2))
    checks = check_trace(trace(model, spec(1, 3, 224, 224)))
    assert [c.status for c in checks] == ["pass", "pass"]
    assert checks[0].operator == "convolution"
    assert checks[0].dims[0].text == "H: floor((225 + 2*0 - 1*(3-1) - 1) / 2) + 1 = 112"  # the padded input
    assert {f.code for f in checks[0].findings} == {"padded-in-forward"}
    assert not has_problems(checks)


@pytest.mark.parametrize("model", [
    nn.Sequential(CausalConv1d(4, 8, 3, dilation=2), nn.ReLU(), CausalConv1d(8, 8, 3, dilation=4)),
    nn.Sequential(FunctionalCausal(), nn.MaxPool1d(2)),
])
def test_causal_convolutions_pass(model):
    checks = check_trace(trace(model, spec(1, 4, 50)))
    assert checks and all(c.status == "pass" for c in checks)
    assert not [f for f in check_findings(checks) if f.severity.value != "info"]


def test_functional_pool_is_checked_and_attributed_to_its_module():
    class Block(nn.Module):
        def forward(self, x):
            return F.max_pool2d(x, 2)

    model = nn.Sequential(nn.Conv2d(1, 2, 3), Block())
    checks = check_trace(trace(model, spec(1, 1, 10, 10)))  # 8 -> 4, every position read
    assert [(c.layer, c.operator, c.status) for c in checks] == [("0", "convolution", "pass"),
                                                                  ("1", "max_pool2d_with_indices", "pass")]
    checks = check_trace(trace(model, spec(1, 1, 11, 11)))  # 9: the last row is never read
    (finding,) = check_findings(checks)
    assert (finding.layer, finding.code, finding.severity.value) == ("1", "stride-skips-input", "warning")


def test_max_pool1d_runs_as_2d_and_is_checked_in_1d():
    checks = check_trace(trace(nn.Sequential(nn.MaxPool1d(3, 2)), spec(1, 2, 11)))
    (check,) = checks
    assert check.status == "pass" and [d.dim for d in check.dims] == ["L"]


@pytest.mark.parametrize("name", ["tf_efficientnet_b0", "tf_mobilenetv3_large_100"])
def test_check_exits_0_on_timm_tf_ported_models(name, capsys):
    pytest.importorskip("timm")
    assert main(["check", f"timm:{name}", "--device", "meta", "-f", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)["findings"]
    assert "padded-in-forward" in {r["code"] for r in rows}
    assert not [r for r in rows if r["severity"] != "info"]


def test_resnet50_has_no_false_warning(capsys):
    import torchvision

    report = netscope.summary(torchvision.models.resnet50(), (1, 3, 224, 224), device="meta", audit_names=False)
    assert report.check_warnings() == []
    downsample = [f for c in report.checks for f in c.findings if f.code == "stride-skips-input"]
    assert [f.layer for f in downsample] == ["layer2.0.downsample.0", "layer3.0.downsample.0",
                                             "layer4.0.downsample.0"]
    # 1x1 stride 2 on 56 reads 28 positions per axis: 28 are skipped, and the reason says so
    assert all(f.severity.value == "info" for f in downsample)
    assert downsample[0].message.startswith("H: 28 of 56 input positions are never read: 27 between windows")
    assert "Formula checks" not in str(report)


def test_html_uses_the_severity_vocabulary():
    model = nn.Sequential(nn.Conv2d(1, 1, 3, stride=2, padding=1))
    (check,) = netscope.summary(model, (1, 1, 8, 8), audit_names=False).checks
    status, problem, warnings, notes = check_notes(check)  # each finding filed under its own severity
    assert warnings == [] and len(notes) == 1 and "asymmetric" not in problem and notes[0].startswith("H: windows read 1")


def test_check_exits_0_on_a_causal_conv_model(tmp_path, capsys):
    path = tmp_path / "causal.py"
    path.write_text(
        "import torch.nn as nn, torch.nn.functional as F\n"
        "class CausalConv1d(nn.Conv1d):\n"
        "    def forward(self, x):\n"
        "        return super().forward(F.pad(x, (self.dilation[0] * (self.kernel_size[0] - 1), 0)))\n"
        "def causal():\n"
        "    return nn.Sequential(*[CausalConv1d(4, 4, 3, dilation=d) for d in (1, 2, 4, 8)])\n")
    assert main(["check", f"{path}:causal", "--device", "cpu", "-i", "1,4,100"]) == 0
    out = capsys.readouterr().out
    assert "4 size-changing calls checked, 4 pass, 0 mismatch" in out
    assert "receptive field of the output: 31" in out  # 1 + 2*(1 + 2 + 4 + 8): each layer reaches back 2*dilation


class PadThenStridedConv(nn.Module):
    """``F.pad`` in forward, then a strided convolution on the padded tensor (timm's ``BlurPool2d`` pads 1 on each
    side with ``reflect``; a causal convolution pads on the left only)."""

    def __init__(self, pad, mode, nd, pool=False):
        super().__init__()
        self.pad, self.mode, self.pool = pad, mode, pool
        self.weight = nn.Parameter(torch.ones((2, 1) + (3,) * nd, dtype=torch.float64))
        self.conv = F.conv1d if nd == 1 else F.conv2d

    def forward(self, x):
        x = F.pad(x, self.pad, mode=self.mode)
        return F.avg_pool2d(x, 3, stride=2) if self.pool else self.conv(x, self.weight, stride=2, groups=2)


def real_rows_unread(model, shape):
    """Input positions of the module's own input (not the padded tensor) that no output depends on: a zero
    gradient of the summed output, positive weights and inputs so nothing cancels."""
    x = (torch.rand(shape, dtype=torch.float64) + 0.5).requires_grad_()
    (grad,) = torch.autograd.grad(model(x).sum(), x)
    return int((grad[0, 0].reshape(shape[2], -1).abs().sum(1) == 0).sum())


@pytest.mark.parametrize("pad, mode, shape", [
    ((2, 0), "constant", (1, 2, 8)),  # causal: the real last position is unread -> the warning is true
    ((1, 1, 1, 1), "reflect", (1, 2, 8, 8)),  # BlurPool2d: the unread row is the pad's -> no warning
    ((1, 1, 1, 1), "constant", (1, 2, 9, 9)),  # odd input: the real last row is unread -> the warning is true
    ((0, 1, 0, 1), "constant", (1, 2, 9, 9)),  # TF 'same' on an odd input: every real row read
])
@pytest.mark.parametrize("pool", [False, True])
def test_unread_warning_counts_the_modules_input_not_forward_padding(pad, mode, shape, pool):
    if pool and len(shape) != 4:
        pytest.skip("the pooling case is 2-d")
    model = PadThenStridedConv(pad, mode, len(shape) - 2, pool)
    unread = real_rows_unread(model, shape)
    checks = check_trace(trace(model, spec(*shape)))
    warned = [f for c in checks for f in c.findings if f.code == "stride-skips-input" and f.severity.value == "warning"]
    assert bool(warned) == (unread > 0), (unread, [f.message for f in warned])


class PadOneBranchConvAnother(nn.Module):
    """A pad whose output is not what the convolution reads: the convolution's own (odd) input leaves a real
    last row unread, whatever the pad beside it did."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(2, 1, 3, 3, dtype=torch.float64))

    def forward(self, x):
        side = F.pad(x[..., 1:, 1:], (0, 1, 0, 1))  # same shape as x, but not the convolution's input
        return F.conv2d(x * 2, self.weight, stride=2, groups=2).sum() + side.sum()


def test_a_pad_is_matched_to_the_convolution_by_tensor_not_by_shape():
    model = PadOneBranchConvAnother()
    x = (torch.rand(1, 2, 10, 10, dtype=torch.float64) + 0.5).requires_grad_()
    (grad,) = torch.autograd.grad(F.conv2d(x, model.weight, stride=2, groups=2).sum(), x)
    unread = int((grad[0, 0].abs().sum(1) == 0).sum())  # the convolution alone, on the same input
    checks = check_trace(trace(model, spec(1, 2, 10, 10)))
    warned = [f for c in checks for f in c.findings if f.code == "stride-skips-input" and f.severity.value == "warning"]
    assert unread == 1 and len(warned) == 1


# ---- functional convolutions and pools inside a forward: the operator's own rank and torch's real output ----

class FunctionalWindow(nn.Module):
    """One functional convolution or pool, with the arguments hypothesis drew."""

    def __init__(self, kind, nd, kernel, stride, padding, dilation, ceil_mode, output_padding=0):
        super().__init__()
        self.kind, self.nd = kind, nd
        self.options = dict(kernel_size=kernel, stride=stride, padding=padding, ceil_mode=ceil_mode)
        if kind == "max":
            self.options["dilation"] = dilation
        if kind in ("conv", "conv_transpose"):
            self.weight = nn.Parameter(torch.randn((2, 1) + (kernel,) * nd))  # two groups of one channel
            self.options = dict(stride=stride, padding=padding, dilation=dilation, groups=2)
        if kind == "conv_transpose":
            self.options["output_padding"] = output_padding

    def forward(self, x):
        if self.kind in ("conv", "conv_transpose"):
            return getattr(F, f"{self.kind}{self.nd}d")(x, self.weight, **self.options)
        return getattr(F, f"{self.kind}_pool{self.nd}d")(x, **self.options)


NAMES = {1: ["L"], 2: ["H", "W"], 3: ["D", "H", "W"]}


@settings(max_examples=100, deadline=None, derandomize=True)
@given(kind=st.sampled_from(["max", "avg", "conv", "conv_transpose"]), nd=st.integers(1, 3), kernel=st.integers(1, 4),
       stride=st.integers(1, 4), padding=st.integers(0, 2), dilation=st.integers(1, 2), ceil_mode=st.booleans(),
       output_padding=st.integers(0, 3), sizes=st.lists(st.integers(1, 12), min_size=3, max_size=3))
def test_functional_window_checks_name_the_operators_dims_and_agree_with_torchs_output(
        kind, nd, kernel, stride, padding, dilation, ceil_mode, output_padding, sizes):
    from hypothesis import assume

    model = FunctionalWindow(kind, nd, kernel, stride, padding, dilation, ceil_mode, output_padding)
    x = torch.randn((1, 2) + tuple(sizes[:nd]))
    try:
        real = model(x).shape  # torch's own layer is the oracle; inputs it rejects are not this test's
    except RuntimeError:
        assume(False)
    report = netscope.summary(model, input_data=x, audit_names=False)
    (check,) = report.checks
    assert check.status == "pass"
    assert [d.dim for d in check.dims] == NAMES[nd]
    assert tuple(check.expected_shape) == tuple(real)
    assert [d.expected for d in check.dims] == list(real[-nd:])


@pytest.mark.parametrize("kind", ["max", "avg"])
def test_ceil_mode_drops_a_last_window_that_would_start_in_the_padding_for_a_functional_1d_pool(kind):
    # 5 + 2*1 padded, kernel 2, stride 2: ceil((5 + 2 - 2) / 2) + 1 = 4, but window 4 would start at 6 >= 5 + 1
    model = FunctionalWindow(kind, 1, 2, 2, 1, 1, True)
    x = torch.randn(1, 2, 5)
    (check,) = netscope.summary(model, input_data=x, audit_names=False).checks
    assert model(x).shape[-1] == 3 == check.expected_shape[-1]
    assert [d.dim for d in check.dims] == ["L"]
    assert "the last window would start in the right padding" in check.dims[0].text


def test_a_real_2d_pool_over_a_height_of_one_keeps_both_dims():  # no unsqueeze before it: not a 1-d pool
    x = torch.randn(1, 2, 1, 9)
    (check,) = netscope.summary(_Pool2dOnFlatRows(), input_data=x, audit_names=False).checks
    assert [d.dim for d in check.dims] == ["H", "W"]


class _Pool2dOnFlatRows(nn.Module):
    def forward(self, x):
        return F.max_pool2d(x, (1, 3), (1, 2))


class _PaddedPool1d(nn.Module):
    def forward(self, x):
        return F.max_pool1d(F.pad(x, (2, 1)), 3, 2)


def test_a_pad_before_a_functional_1d_pool_is_credited_as_before_a_1d_convolution():
    (op,) = trace(_PaddedPool1d(), spec(1, 2, 10)).window_ops[0]
    assert (op.nd, op.input_shape, op.forward_pad) == (1, (1, 2, 13), ((2, 1),))
    assert op.output_shape == tuple(_PaddedPool1d()(torch.randn(1, 2, 10)).shape)
    assert op.unpadded().windows[0].pad_left == 2 and op.unpadded().sizes == (10,)


CONVS = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}


def _finding_texts(checks):
    """Each finding's severity, code and message; the shapes 'padded-in-forward' quotes carry the batch or not."""
    return sorted((f.severity.value, f.code, "" if f.code == "padded-in-forward" else f.message)
                  for c in checks for f in c.findings)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(nd=st.integers(1, 3), kernel=st.integers(1, 4), stride=st.integers(1, 3), dilation=st.integers(1, 2),
       padding=st.sampled_from([0, 1, 2, "same", "valid"]),
       padding_mode=st.sampled_from(["zeros", "reflect", "replicate", "circular"]), grouped=st.booleans(),
       sizes=st.lists(st.integers(1, 7), min_size=3, max_size=3), functional=st.booleans())
@example(nd=1, kernel=2, stride=1, dilation=1, padding="same", padding_mode="zeros", grouped=False, sizes=[5, 1, 1],
         functional=True)  # aten: unsqueeze(0), then the uneven 'same' pad, then the convolution
@example(nd=2, kernel=4, stride=1, dilation=2, padding="same", padding_mode="zeros", grouped=True, sizes=[6, 5, 1],
         functional=False)
@example(nd=2, kernel=3, stride=2, dilation=1, padding=2, padding_mode="circular", grouped=False, sizes=[5, 5, 1],
         functional=False)  # F.pad first, then unsqueeze(0), then the convolution
def test_a_convolution_on_an_unbatched_input_is_checked_as_the_layer_saw_it(
        nd, kernel, stride, dilation, padding, padding_mode, grouped, sizes, functional):
    """Conv1d/2d/3d (and F.conv*d) on a (C, *sizes) input: aten runs the convolution on it unsqueezed to a batch of
    one and squeezes the result. The oracle: torch's own output shape, and the same layer's check on the batched
    (1, C, *sizes) input, whose formulas and findings must be the unbatched one's."""
    from hypothesis import assume

    if padding == "same":
        stride = 1  # PyTorch refuses 'same' with a stride
    channels = 2
    conv = CONVS[nd](channels, 4, kernel, stride, padding, dilation, groups=2 if grouped else 1,
                     padding_mode=padding_mode)
    model = _FunctionalConv(conv) if functional else nn.Sequential(conv)
    x = torch.randn((channels,) + tuple(sizes[:nd]))
    try:
        with torch.no_grad():
            real = tuple(model(x).shape)
    except RuntimeError:
        assume(False)  # inputs torch rejects are not this test's
    unbatched = netscope.summary(model, input_data=x, audit_names=False).checks
    batched = netscope.summary(model, input_data=x.unsqueeze(0), audit_names=False).checks
    (check,) = unbatched
    assert check.status == "pass", check.findings
    assert tuple(check.expected_shape) == real
    assert [d.expected for d in check.dims] == list(real[-nd:])
    assert [d.text for d in check.dims] == [d.text for d in batched[0].dims]
    assert _finding_texts(unbatched) == _finding_texts(batched)


class _FunctionalConv(nn.Module):
    """A module without a size formula of its own that calls F.conv*d in its forward ('same' as a string too)."""

    def __init__(self, conv):
        super().__init__()
        self.conv = conv

    def forward(self, x):
        c = self.conv
        if c.padding_mode != "zeros":
            return c(x)
        return getattr(F, f"conv{len(c.kernel_size)}d")(x, c.weight, c.bias, c.stride, c.padding, c.dilation, c.groups)
