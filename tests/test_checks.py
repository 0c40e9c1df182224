"""Formula checks over real traces, the ``netscope check`` command, and failed-pass diagnosis."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch
import torch.nn as nn
import torchvision

from netscope.analyses.checks import check_findings, check_trace, has_problems
from netscope.cli import main
from netscope.analyses.diagnosis import diagnose_failure
from netscope.errors import EXIT_FINDINGS, EXIT_MODEL_FAILED, ForwardError
from netscope.inputs import InputSpec, TensorSpec
from netscope.run.prepare import prepared, run_pass
from netscope.run.trace import model_device


def spec(*shape):
    return InputSpec([TensorSpec(tuple(shape))])


def trace(model, input_spec, device=None):
    """One pass through netscope's run path (the dummy input built on ``device``, by default the model's)."""
    device = torch.device(device) if device else model_device(model)
    with prepared(model, input_spec, device=device) as prep:
        return run_pass(prep)


class LeNet(nn.Module):
    def __init__(self, in_channels=3):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 6, 5)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.pool2 = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 10)

    def forward(self, x):
        x = self.pool2(torch.relu(self.conv2(self.pool1(torch.relu(self.conv1(x))))))
        return self.fc2(torch.relu(self.fc1(self.flatten(x))))


class CroppingConv(nn.Conv2d):
    """A subclass whose forward disagrees with the Conv2d formula: the checker must say so."""

    def forward(self, x):
        return super().forward(x)[..., 1:, 1:]


@pytest.mark.parametrize("name", ["resnet18", "alexnet", "vgg11", "squeezenet1_0", "mobilenet_v3_small",
                                  "densenet121", "googlenet"])
def test_torchvision_models_pass_every_check(name):
    kwargs = {"init_weights": False, "aux_logits": False} if name == "googlenet" else {}
    model = torchvision.models.get_model(name, weights=None, **kwargs)
    result = trace(model, spec(1, 3, 224, 224), device="meta")
    checks = check_trace(result)
    expected_calls = sum(1 for m in result.modules if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d,
                                                                      nn.AdaptiveAvgPool2d, nn.Linear)))
    assert len(checks) == expected_calls
    assert [c.status for c in checks] == ["pass"] * len(checks)
    assert not has_problems(checks)


def test_resnet_stem_formula_and_observed_shapes():
    result = trace(torchvision.models.resnet18(), spec(1, 3, 224, 224), device="meta")
    stem = check_trace(result)[0]
    assert stem.layer == "conv1"
    assert stem.dims[0].text == "H: floor((224 + 2*3 - 1*(7-1) - 1) / 2) + 1 = 112"
    assert stem.expected_shape == stem.observed_shape == (1, 64, 112, 112)
    assert json.loads(json.dumps(stem.to_dict()))["expected_shape"] == [1, 64, 112, 112]


def test_warnings_carry_layer_and_call_index():
    model = nn.Sequential(nn.Conv2d(1, 2, 3, stride=2), nn.MaxPool2d(2, ceil_mode=True))
    checks = check_trace(trace(model, spec(1, 1, 12, 12)))
    findings = check_findings(checks)
    codes = {(f.layer, f.code) for f in findings}
    assert ("0", "stride-skips-input") in codes  # windows at 0, 2, ..., 8 read rows 0..10: row 11 is never read
    assert ("1", "ceil-mode-extra-window") in codes  # 5 -> ceil((5 - 2) / 2) + 1 = 3 windows, not 2
    assert all(f.call_index is not None for f in findings)


def test_mismatch_is_reported_and_fails_the_check():
    model = nn.Sequential(CroppingConv(1, 2, 3, padding=1))
    checks = check_trace(trace(model, spec(1, 1, 8, 8)))
    (check,) = checks
    assert check.status == "mismatch"
    assert check.expected_shape == (1, 2, 8, 8) and check.observed_shape == (1, 2, 7, 7)
    assert check_findings(checks)[0].code == "formula-mismatch"


def test_check_command_exit_codes(tmp_path, capsys):
    path = tmp_path / "nets.py"
    path.write_text(textwrap.dedent("""
        import torch.nn as nn
        class Cropping(nn.Conv2d):
            def forward(self, x):
                return super().forward(x)[..., 1:, 1:]
        def bad():
            return nn.Sequential(Cropping(3, 4, 3, padding=1))
        def good():
            return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.MaxPool2d(2))
    """))
    assert main(["check", f"{path}:good", "--device", "cpu", "-i", "1,3,16,16"]) == 0
    out = capsys.readouterr().out
    assert "2 size-changing calls checked, 2 pass, 0 mismatch" in out
    assert main(["check", f"{path}:bad", "--device", "cpu", "-i", "1,3,16,16"]) == EXIT_FINDINGS
    assert "formula-mismatch" in capsys.readouterr().out
    assert main(["check", f"{path}:good", "--device", "cpu", "-i", "1,3,16,16", "--all", "-f", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["schema"], doc["checked"], doc["passed"], doc["mismatches"]) == ("netscope.check", 2, 2, 0)
    rows = doc["checks"]
    assert [r["status"] for r in rows] == ["pass", "pass"]
    assert rows[1]["dims"][0]["text"].startswith("H: floor((16 + 2*0 - 1*(2-1) - 1) / 2) + 1 = 8")
    assert main(["check", f"{path}:bad", "--device", "cpu", "-i", "1,3,16,16", "-f", "json"]) == EXIT_FINDINGS
    doc = json.loads(capsys.readouterr().out)
    assert doc["mismatches"] == 1 and [f["code"] for f in doc["findings"]] == ["formula-mismatch"]


def test_check_json_is_a_schema_document_with_shapes_as_int_lists(tmp_path, capsys):
    """`check -f json` is a document like every command's (schema, schema_version), its shapes lists of ints as
    the summary's JSON has them; the oracle is what the real layers return."""
    import netscope

    path = tmp_path / "net.py"
    path.write_text("import torch.nn as nn\n"
                    "def net():\n    return nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.MaxPool2d(2))\n")
    model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.MaxPool2d(2))
    x = torch.randn(1, 3, 17, 17)
    real = [list(model[0](x).shape), list(model(x).shape)]
    assert main(["check", f"{path}:net", "--device", "cpu", "-i", "1,3,17,17", "-f", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == "netscope.check" and isinstance(doc["schema_version"], int)
    assert [c["observed_shape"] for c in doc["checks"]] == real == [c["expected_shape"] for c in doc["checks"]]
    assert all(type(n) is int for c in doc["checks"] for n in c["observed_shape"] + c["expected_shape"])
    summary_checks = netscope.summary(model, input_data=x, device="cpu").to_dict()["checks"]
    assert [{k: v for k, v in c.items() if k != "receptive_field"} for c in doc["checks"]] == summary_checks
    assert doc["checks"][0]["receptive_field"]["size"] == [3, 3]  # one 3x3 window


def test_check_command_reports_a_failed_pass(capsys):
    assert main(["check", "alexnet", "--device", "meta", "-i", "1,3,32,32"]) == EXIT_MODEL_FAILED
    captured = capsys.readouterr()
    assert captured.out == ""  # the error and its diagnosis go to stderr
    assert "features.12 (MaxPool2d)" in captured.err
    assert "Input sizes that work: square sxs: every s >= 63 up to 128 probed" in captured.err


class _TrainOnlyFailure(nn.Module):
    """Pools to 1x1 before a BatchNorm: in train mode a batch of one then has a single value per channel, which
    BatchNorm refuses; eval mode (running statistics) takes any size. Sizes 1..4 pool to 1x1, 5..8 to 2x2, ..."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.pool = nn.MaxPool2d(4, ceil_mode=True)
        self.norm = nn.BatchNorm2d(4)

    def forward(self, x):
        return self.norm(self.pool(self.conv(x)))


def test_the_sizes_that_work_are_searched_in_the_mode_of_the_failed_pass():
    import netscope

    model = _TrainOnlyFailure()
    with pytest.raises(ForwardError) as info:
        netscope.summary(model, input_size=(1, 3, 3, 3), mode="train")
    assert "Expected more than 1 value per channel when training" in str(info.value)
    # the real model in train mode, size by size: 1..4 fail (1x1 after the pool), 5 and up run
    for size, runs in ((1, False), (4, False), (5, True), (9, True)):
        model.train()
        try:
            with torch.no_grad():
                model(torch.randn(1, 3, size, size))
            ran = True
        except ValueError:
            ran = False
        assert ran == runs, size
    assert info.value.diagnosis.working_sizes.startswith("square sxs: every s >= 5 up to")
    in_eval = netscope.summary(model, input_size=(1, 3, 3, 3))  # eval mode: that size runs
    assert in_eval.layers[-1].output_shapes == (1, 4, 1, 1)


def failure(model, input_spec):
    with pytest.raises(ForwardError) as info:
        trace(model, input_spec, device="meta")
    return info.value


def test_lenet_diagnosis_names_layer_sizes_chain_and_working_sizes():
    model, input_spec = LeNet(), spec(1, 3, 64, 64)
    diagnosis = diagnose_failure(model, input_spec, failure(model, input_spec))
    assert (diagnosis.layer, diagnosis.class_name) == ("fc1", "Linear")
    assert diagnosis.expected == "in_features=400"
    assert diagnosis.arrived == "2704 = 16*13*13"
    assert [s.layer for s in diagnosis.chain] == ["conv1", "pool1", "conv2", "pool2", "flatten", "fc1"]
    assert diagnosis.chain[3].output_shape == "[1, 16, 13, 13]"
    # 32 -> 28 -> 14 -> 10 -> 5, and the floors of the pools let 33, 34 and 35 reach 5x5 as well
    assert diagnosis.working_sizes.startswith("square sxs: 32..35;")
    text = diagnosis.render()
    assert "fc1 (Linear)" in text and "2704 = 16*13*13" in text and "[1, 3, 32, 32]" in text


def test_channel_mismatch_diagnosis():
    model, input_spec = LeNet(in_channels=3), spec(1, 1, 32, 32)
    diagnosis = diagnose_failure(model, input_spec, failure(model, input_spec), solve=False)
    assert (diagnosis.layer, diagnosis.expected, diagnosis.arrived) == ("conv1", "in_channels=3", "1 channels")
    assert "Conv2d expected 3 input channels, got 1" in diagnosis.explanation


def test_size_hits_zero_diagnosis_names_the_layer():
    model, input_spec = LeNet(), spec(1, 3, 12, 12)  # 12 -> 8 -> 4, then conv2's 5x5 kernel no longer fits
    diagnosis = diagnose_failure(model, input_spec, failure(model, input_spec), solve=False)
    assert diagnosis.layer == "conv2"
    assert diagnosis.expected == "H >= 5" and diagnosis.arrived == "H = 4"
    assert "kernel" in diagnosis.explanation


def test_diagnosis_of_a_keyword_only_input_names_its_shape_not_a_question_mark():
    class KeywordOnly(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, 4)

        def forward(self, *, features):
            return self.fc(features.flatten(1))  # 3*5 = 15 features arrive where 8 are expected

    model, input_spec = KeywordOnly(), InputSpec([], {"features": TensorSpec((2, 3, 5))})
    diagnosis = diagnose_failure(model, input_spec, failure(model, input_spec), solve=False)
    assert diagnosis.layer == "fc" and diagnosis.input_shape == "{features: [2, 3, 5]}"
    assert "for input {features: [2, 3, 5]}" in diagnosis.render()


def test_check_leaves_the_model_untouched():
    model = LeNet().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    check_trace(trace(model, spec(1, 3, 32, 32)))
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_every_finding_code_is_registered_once_with_its_severities():
    from netscope.finding_codes import FINDING_CODES, register_code
    from netscope.records import Finding, Severity

    assert {entry.analysis for entry in FINDING_CODES.values()} == {"checks", "naming"}
    with pytest.raises(ValueError, match="registered twice"):
        register_code("formula-mismatch", "checks", {"error"}, "again")
    with pytest.raises(ValueError, match="not registered"):
        Finding(Severity.WARNING, "made-up-code", "message")
    with pytest.raises(ValueError, match="error, not info"):
        Finding(Severity.INFO, "formula-mismatch", "message")
    assert Finding(Severity.INFO, "stride-skips-input", "m").code == "stride-skips-input"


def _unread_runs(reads):
    """Maximal runs of unread positions, as (start, length), from a 0/1 list."""
    runs, start = [], None
    for i, r in enumerate(list(reads) + [1]):
        if not r and start is None:
            start = i
        elif r and start is not None:
            runs.append((start, i - start))
            start = None
    return runs


def _read_positions(conv, n):
    """Which of n input positions the real layer reads: where the gradient of its (all-ones) output is not 0."""
    x = torch.zeros(1, 1, n, requires_grad=True)
    conv(x).sum().backward()
    return [int(g != 0) for g in x.grad[0, 0]]


from hypothesis import given, settings, strategies as st  # noqa: E402


@given(st.integers(1, 3), st.integers(1, 4), st.integers(0, 1), st.integers(1, 2), st.integers(1, 14))
@settings(max_examples=150, deadline=None, derandomize=True)
def test_unread_positions_and_their_severity_match_the_real_layer(kernel, stride, padding, dilation, n):
    """Brute force with autograd: the positions a real Conv1d never reads (zero gradient, all-ones weights).
    The finding counts them; it is info (by design) exactly when every unread run, edges included, is no
    longer than the gap the same layer leaves between reads on a long input, a 2-position input to a
    1x1 stride-2 downsample included (windows that read padding only are never by design)."""
    import netscope
    from netscope.records import Severity

    conv = nn.Conv1d(1, 1, kernel, stride=stride, padding=padding, dilation=dilation, bias=False)
    nn.init.ones_(conv.weight)
    span = dilation * (kernel - 1) + 1
    if n + 2 * padding < span:
        return  # no window fits: the layer refuses the input
    reads = _read_positions(conv, n)
    long_reads = _read_positions(conv, span + 4 * stride + 2 * padding)
    interior = long_reads[long_reads.index(1):len(long_reads) - long_reads[::-1].index(1)]
    design_gap = max((length for _, length in _unread_runs(interior)), default=0)
    findings = [f for c in netscope.check(conv, (1, 1, n), device="cpu") for f in c.findings
                if f.code == "stride-skips-input"]
    unread = reads.count(0)
    if not unread:
        assert not findings
        return
    [finding] = findings
    assert finding.message.startswith(f"L: {unread} of {n} input positions are never read")
    by_design = 1 in reads and design_gap > 0 and all(length <= design_gap for _, length in _unread_runs(reads))
    assert finding.severity is (Severity.INFO if by_design else Severity.WARNING), (reads, design_gap)


class _FractionalAndUnpool(nn.Module):
    """Fractional max pools (ratio and size) and a max pool undone by MaxUnpool2d at an odd output_size."""

    def __init__(self):
        super().__init__()
        self.ratio = nn.FractionalMaxPool2d(3, output_ratio=(0.5, 0.7))
        self.sized = nn.FractionalMaxPool3d(2, output_size=(1, 3, 4), return_indices=True)
        self.pool = nn.MaxPool2d(2, return_indices=True)
        self.unpool = nn.MaxUnpool2d(2)

    def forward(self, x):
        x = self.ratio(x)
        y, _ = self.sized(x.unsqueeze(1))
        pooled, indices = self.pool(x)
        return self.unpool(pooled, indices, output_size=x.shape[-2:]), y


def test_every_size_changing_pool_and_unpool_call_is_checked():
    """``check`` counted 0 of these 4 size-changing calls (and said '0 size-changing calls checked'). Oracle: the
    layers' own outputs in a real forward."""
    import netscope

    torch.manual_seed(0)
    model, x = _FractionalAndUnpool(), torch.randn(2, 3, 32, 33)
    real = {}
    hooks = [getattr(model, name).register_forward_hook(
        lambda m, i, o, name=name: real.__setitem__(name, tuple((o[0] if isinstance(o, tuple) else o).shape)))
        for name in ("ratio", "sized", "pool", "unpool")]
    model(x)
    for hook in hooks:
        hook.remove()
    checks = netscope.check(model, x)
    assert {c.layer: (c.status, c.expected_shape) for c in checks} == {name: ("pass", shape) for name, shape in real.items()}


class _FloatMaskOrIndex(nn.Module):
    """A forward that makes a float mask (masked_fill needs bool) or float indices (gather needs int64)."""

    def __init__(self, use: str):
        super().__init__()
        self.conv, self.use = nn.Conv2d(3, 4, 3), use

    def forward(self, x):
        y = self.conv(x)
        if self.use == "mask":
            return y.masked_fill((y > 0).float(), 0.0)
        return torch.gather(y, 1, torch.zeros_like(y))


@pytest.mark.parametrize("use", ["mask", "index"])
def test_a_dtype_failure_is_named_and_no_input_sizes_are_searched(use):
    """A float mask/index made the error say 'Check the input shape(s)' and the diagnosis scan 300 sizes to report
    'no working size found among 1..300' (6 s): no size can fix a dtype. Oracle: torch's own operator refuses the
    mask/index at every size."""
    import netscope

    model = _FloatMaskOrIndex(use)
    for size in (5, 32, 64):  # the real forward fails whatever the size
        with pytest.raises((RuntimeError, IndexError), match="boolean masks|for index"), torch.no_grad():
            model(torch.randn(1, 3, size, size))
    with pytest.raises(ForwardError) as info:
        netscope.summary(model, input_size=(1, 3, 32, 32))
    message = str(info.value)
    assert "Check the input shape" not in message and "wrong dtype (indices int64, masks bool)" in message
    assert info.value.diagnosis.working_sizes == "not searched: the failure is about a dtype, which no input size changes"
    assert "Input sizes that work: not searched" in info.value.diagnosis.render()
