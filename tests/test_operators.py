"""Every operator accounted for: the public formula registry, partial reports, the per-operator breakdown.

Oracles: torch's own ``FlopCounterMode`` (2 FLOPs per multiply-add) on the same model, a separate
dispatch mode that only counts calls, and formulas written out as formulas.
"""

from __future__ import annotations

import csv
import io
import json
import re
import textwrap

import pytest
import torch
import torch.nn as nn
import torchvision
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

import netscope
from netscope.cli import main
from netscope.operators.registry import REGISTRY, ZERO_BY_CONVENTION, qualified_name
from netscope.render.headline import short_number


@torch.library.custom_op("netscope_test::scaled_matvec", mutates_args=())
def scaled_matvec(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """A custom operator nobody has a formula for: x (n, k) @ w (k, m)."""
    return x @ w


@scaled_matvec.register_fake
def _(x, w):
    return x.new_empty(x.shape[0], w.shape[1])


class Opaque(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(6, 4))
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(scaled_matvec(x, self.w))


class WithEigenvalues(nn.Module):
    """``torch.linalg.eigvalsh`` (an iterative eigensolver) has no multiply-add formula anywhere: a real operator
    that must be named."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(4, 4)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        y = self.proj(x)
        gram = y.transpose(0, 1) @ y + torch.eye(4, device=y.device)
        return self.head(y * torch.linalg.eigvalsh(gram))


# ---- the registry ------------------------------------------------------------------------------

def test_an_operator_without_a_formula_makes_the_report_partial_and_is_named_with_its_layer():
    report = netscope.summary(Opaque(), (5, 6), device="cpu")
    assert report.partial
    [uncounted] = report.uncounted_ops()
    assert uncounted.op == "netscope_test::scaled_matvec" and uncounted.calls == 1 and uncounted.layers == ("(root)",)
    text = " ".join(str(report).split())  # the totals line wraps at the table width
    assert "PARTIAL" in text and "netscope_test::scaled_matvec (1 call in (root))" in text
    root_row, fc_row = report.table_rows(["layer", "macs"])  # table cells: the partial row is a lower bound
    assert root_row["macs"] == f">={report.totals.total_macs}" and fc_row["macs"] == "60"  # fc is exact: not marked
    assert [r["macs"] for r in report.rows(["layer", "macs"])] == [report.totals.total_macs, 5 * 4 * 3]  # typed data
    data = json.loads(report.to_json())
    assert data["partial"] is True
    assert data["operators"]["uncounted"] == [{"op": "netscope_test::scaled_matvec", "calls": 1, "layers": ["(root)"]}]
    assert "Mult-add total is partial" in report.to_html() and "netscope_test::scaled_matvec" in report.to_html()


def test_register_macs_counts_a_custom_operator_and_a_cell_run_again_replaces_it():
    """A notebook cell registering a formula, run again (found by fresh27: refused as a second registration), or
    edited: the last one counts. The user's own ignore entry is replaced the same way."""
    @netscope.register_macs("netscope_test::scaled_matvec")
    def matvec_macs(x, w, *, out_val=None):
        return x.shape[0] * x.shape[1] * w.shape[1]

    try:
        report = netscope.summary(Opaque(), (5, 6), device="cpu")
        assert not report.partial
        assert report.totals.total_macs == 5 * 6 * 4 + 5 * 4 * 3
        netscope.register_macs("netscope_test::scaled_matvec")(matvec_macs)  # the same cell again
        assert netscope.summary(Opaque(), (5, 6), device="cpu").totals.total_macs == 5 * 6 * 4 + 5 * 4 * 3

        @netscope.register_macs("netscope_test::scaled_matvec")  # the cell edited: one more add per product
        def matvec_and_scale(x, w, *, out_val=None):
            return x.shape[0] * x.shape[1] * w.shape[1] + out_val.numel()

        assert netscope.summary(Opaque(), (5, 6), device="cpu").totals.total_macs == 5 * 6 * 4 + 5 * 4 + 5 * 4 * 3
        netscope.ignore_macs("netscope_test::scaled_matvec", "it is free")  # switched to an ignore entry
        netscope.ignore_macs("netscope_test::scaled_matvec", "it is free, really")  # and that cell run again
        report = netscope.summary(Opaque(), (5, 6), device="cpu")
        assert not report.partial and report.totals.total_macs == 5 * 4 * 3
        assert REGISTRY.zero_names()["netscope_test::scaled_matvec"] == "it is free, really"
    finally:
        REGISTRY.unregister("netscope_test::scaled_matvec")
    assert netscope.summary(Opaque(), (5, 6), device="cpu").partial


@pytest.mark.parametrize("op", ["aten::mv", "aten::addbmm", "aten::mm"])
def test_register_macs_still_refuses_to_replace_netscopes_own_formula_without_the_explicit_step(op):
    """netscope's built-in formulas (and torch's, aten::mm shadows one) are not replaced by a registration alone,
    also when it is repeated; the refusal names the step that does it, and the built-in keeps counting."""
    before = REGISTRY.resolve(getattr(torch.ops.aten, op.split("::")[1]))[1]
    for _ in range(2):
        with pytest.raises(ValueError, match=r"netscope has one for it.*REGISTRY\.unregister"):
            netscope.register_macs(op, overrides_torch=True)(lambda *a, out_val=None: 0)
    assert REGISTRY.resolve(getattr(torch.ops.aten, op.split("::")[1]))[1] is before
    with pytest.raises(ValueError, match="already has a multiply-add formula"):
        netscope.ignore_macs("aten::addbmm", "free")
    with pytest.raises(ValueError, match="zero-by-convention"):
        netscope.register_macs("aten::permute")(lambda *a, out_val=None: 0)


def test_ignore_macs_declares_zero_by_convention():
    netscope.ignore_macs(torch.ops.netscope_test.scaled_matvec, "test: treated as free")
    try:
        report = netscope.summary(Opaque(), (5, 6), device="cpu")
        assert not report.partial and report.totals.total_macs == 5 * 4 * 3
    finally:
        REGISTRY.unregister("netscope_test::scaled_matvec")


def test_a_misspelled_builtin_operator_is_refused_with_the_nearest_names():
    """A NetscopeError (exit 2 on the command line, still a ValueError) naming the nearest operators and a command
    that lists them all: the command's list holds every operator torch.ops resolves and not the misspelled one."""
    import difflib
    import subprocess
    import sys

    from netscope.errors import EXIT_USAGE, NetscopeError, OperatorRegistryError

    with pytest.raises(OperatorRegistryError, match=r"no operator aten::lnear \(did you mean aten::linear"):
        netscope.ignore_macs("aten::lnear", "typo")
    with pytest.raises(ValueError, match="no operator aten::adddmm"):
        netscope.register_macs("aten::adddmm")(lambda *a, out_val=None: 0)
    assert "aten::lnear" not in REGISTRY._zero and "aten::adddmm" not in REGISTRY._formulas
    with pytest.raises(NetscopeError) as info:
        netscope.register_macs("aten::adr")(lambda *a, out_val=None: 0)
    assert info.value.exit_code == EXIT_USAGE and "did you mean aten::addr," in str(info.value)
    command = re.search(r"`(python -c .*?)`", str(info.value)).group(1)
    listed = subprocess.run([sys.executable, "-c", command[len('python -c "'):-1]], capture_output=True, text=True,
                            check=True).stdout
    names = set(re.findall(r"'(aten::[\w.]+)'", listed))
    assert {"aten::addr", "aten::linalg_inv_ex", "aten::_ctc_loss", "aten::addmm"} <= names
    assert "aten::adr" not in names and all(hasattr(torch.ops.aten, n.split("::")[1]) for n in sorted(names)[::50])
    # the suggestions are the nearest of that list (difflib's own ranking is the oracle)
    assert difflib.get_close_matches("aten::adr", sorted(names), n=3)[0] == "aten::addr"


def test_shadowing_torchs_formula_or_the_zero_list_needs_to_be_deliberate():
    with pytest.raises(ValueError, match="flop_counter already has a formula"):
        netscope.register_macs(torch.ops.aten.mm)(lambda *a, out_val=None: 0)
    with pytest.raises(ValueError, match="zero-by-convention"):
        netscope.register_macs("aten::native_layer_norm")(lambda *a, out_val=None: 0)
    with pytest.raises(ValueError, match="namespace"):
        netscope.register_macs("mm")
    with pytest.raises(ValueError, match="reason"):
        netscope.ignore_macs("netscope_test::scaled_matvec", "")


def test_torchs_registry_is_read_live_so_formulas_added_later_are_seen():
    from torch.utils import flop_counter

    op = torch.ops.netscope_test.scaled_matvec
    assert netscope.summary(Opaque(), (5, 6), device="cpu").partial
    flop_counter.register_flop_formula(op)(lambda x_shape, w_shape, *a, **k: 2 * x_shape[0] * x_shape[1] * w_shape[1])
    try:
        report = netscope.summary(Opaque(), (5, 6), device="cpu")
        assert not report.partial and report.totals.total_macs == 5 * 6 * 4 + 5 * 4 * 3
    finally:
        flop_counter.flop_registry.pop(op)


def test_zero_list_names_real_operators_and_does_not_overlap_formulas():
    formulas = set(REGISTRY.formula_names())
    for group, (reason, names) in ZERO_BY_CONVENTION.items():
        assert reason
        for name in names:
            assert "::" in name and name not in formulas, name
    from torch.utils import flop_counter
    torch_formulas = {qualified_name(op) for op in flop_counter.flop_registry if hasattr(op, "_qualified_op_name")}
    assert not torch_formulas & set(REGISTRY.zero_names())


# ---- partial reports on the command line -------------------------------------------------------

@pytest.fixture
def inverse_spec(tmp_path):
    source = tmp_path / "invnet.py"
    source.write_text(textwrap.dedent("""
        import torch, torch.nn as nn
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.proj = nn.Linear(4, 4)
            def forward(self, x):
                y = self.proj(x)
                return torch.linalg.eigvalsh(y.transpose(0, 1) @ y + torch.eye(4))
    """))
    return f"{source}:Net"


def test_check_and_summary_strict_exit_1_on_a_partial_total(inverse_spec, capsys):
    assert main(["summary", inverse_spec, "--input", "6,4", "--device", "cpu"]) == 0
    out, _ = capsys.readouterr()
    assert "PARTIAL" in out and "aten::_linalg_eigh (1 call in (root))" in out
    assert main(["summary", inverse_spec, "--input", "6,4", "--device", "cpu", "--strict"]) == 1
    _, err = capsys.readouterr()
    assert "aten::_linalg_eigh" in err
    assert main(["check", inverse_spec, "--input", "6,4", "--device", "cpu"]) == 1
    out, _ = capsys.readouterr()
    assert "uncounted operator" in out and "aten::_linalg_eigh" in out
    assert main(["summary", inverse_spec, "--input", "6,4", "--device", "cpu", "-f", "json"]) == 0
    data = json.loads(capsys.readouterr()[0])
    assert data["partial"] is True and data["operators"]["uncounted"][0]["op"] == "aten::_linalg_eigh"


def test_every_format_marks_the_rows_whose_mult_adds_are_a_lower_bound(inverse_spec, capsys):
    """Not only the table: CSV cells carry >= as the table does, JSON and the DataFrame a per-row
    ``macs_partial``, the headline a >= total, and csv/json runs say it on stderr."""
    class Wrapped(nn.Module):
        def __init__(self):
            super().__init__()
            self.opaque, self.head = Opaque(), nn.Linear(3, 2)

        def forward(self, x):
            return self.head(self.opaque(x))

    report = netscope.summary(Wrapped(), (5, 6), device="cpu")
    marked = {"": True, "opaque": True, "opaque.fc": False, "head": False}  # the op ran in opaque itself
    frame = report.to_dataframe()
    assert dict(zip(frame["name"], frame["macs_partial"])) == marked and str(frame["macs_partial"].dtype) == "bool"
    assert {r["name"]: r["macs_partial"] for r in json.loads(report.to_json())["layers"]} == marked
    own = {"": False, "opaque": True, "opaque.fc": False, "head": False}  # own_macs: only where the op ran
    assert dict(zip(frame["name"], frame["own_macs_partial"])) == own
    assert {r["name"]: r["own_macs_partial"] for r in json.loads(report.to_json())["layers"]} == own
    rows = list(csv.DictReader(io.StringIO(report.render("csv", columns="name,macs,own_macs"))))
    assert [(r["macs"].startswith(">="), r["own_macs"].startswith(">=")) for r in rows] == [
        (True, False), (True, True), (False, False), (False, False)]  # own: only where the operator ran
    assert [r["own_macs"].startswith(">=") for r in rows] == frame["own_macs_partial"].tolist()  # CSV agrees
    assert rows[1]["macs"] == f">={5 * 4 * 3}" and rows[3]["macs"] == str(5 * 3 * 2)  # opaque.fc and head exact
    assert f">={short_number(report.totals.total_macs)} MACs" in repr(report)
    assert ">=" not in repr(netscope.summary(nn.Linear(6, 3), (5, 6), device="cpu"))
    page = report.to_html()  # the totals box and the mult-add charts, whose shares are of a lower bound
    assert f'data-total="total_macs" data-value="{report.totals.total_macs}">&gt;={report.totals.total_macs:,}' in page
    assert "Mult-adds per top-level block (of a partial total)" in page

    for fmt in ("csv", "json"):
        assert main(["summary", inverse_spec, "--input", "6,4", "--device", "cpu", "-f", fmt]) == 0
        assert "partial" in capsys.readouterr()[1]


def test_the_plot_of_a_partial_report_says_so(tmp_path):
    pytest.importorskip("matplotlib")
    from netscope.render.plot import save_plot

    report = netscope.summary(Opaque(), (5, 6), device="cpu")
    save_plot(report, str(tmp_path / "bars.svg"))
    svg = (tmp_path / "bars.svg").read_text()
    assert svg.count("of a partial total") == 2 and f"&gt;={short_number(report.totals.total_macs)}" in svg


def test_profiler_annotations_are_not_uncounted_operators():
    """``record_function`` (DataParallel's forward on CPU wraps the module in one) runs profiler:: operators
    that do no arithmetic: the total stays exact and equals flop_counter's."""
    class Annotated(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(6, 3)

        def forward(self, x):
            with torch.autograd.profiler.record_function("netscope_test_region"):
                return self.fc(x)

    x = torch.randn(5, 6)
    for model in (Annotated(), nn.DataParallel(nn.Sequential(nn.Linear(6, 4), nn.Linear(4, 3)))):
        report = netscope.summary(model, x, device="cpu")
        with FlopCounterMode(display=False) as counter:
            model(x)
        assert not report.partial and report.uncounted_ops() == []
        assert report.totals.total_macs == counter.get_total_flops() // 2 > 0


def test_ignoring_an_operator_torch_counts_is_refused_rather_than_silently_ineffective():
    """torch's flop_counter formulas are looked up before the zero list: an ignore entry for aten::mm would
    change nothing, so it is refused; the count stays the real one."""
    with pytest.raises(ValueError, match="flop_counter has a multiply-add formula for aten::mm"):
        netscope.ignore_macs("aten::mm", "I would like matrix products to be free")
    assert "aten::mm" not in REGISTRY.zero_names()
    a, b = torch.randn(3, 4), torch.randn(4, 5)

    class MatMul(nn.Module):
        def forward(self, x):
            return x @ b

    assert netscope.summary(MatMul(), a, device="cpu").totals.total_macs == 3 * 4 * 5


def test_check_exits_0_when_every_operator_is_accounted_for(capsys):
    assert main(["check", "resnet18", "--device", "meta"]) == 0
    assert "uncounted" not in capsys.readouterr()[0]


# ---- the per-operator breakdown ----------------------------------------------------------------

class _CallCounter(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.calls = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func._overloadpacket._qualified_op_name
        self.calls[name] = self.calls.get(name, 0) + 1
        return func(*args, **(kwargs or {}))


def test_by_operator_matches_torchs_flop_counter_and_an_independent_call_count():
    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad(), FlopCounterMode(display=False) as flops, _CallCounter() as counter:
        model(x)
    report = netscope.summary(model, input_data=x)
    frame = report.by_operator()
    by_op = frame.set_index("op")
    for op, value in flops.get_flop_counts()["Global"].items():
        assert by_op.loc[qualified_name(op), "macs"] == value // 2
    assert dict(zip(frame["op"], frame["calls"])) == counter.calls
    assert frame["macs"].sum() == report.totals.total_macs
    per_module = report.by_operator(per_module=True)
    assert per_module["macs"].sum() == report.totals.total_macs
    conv1 = per_module[per_module["layer"] == "conv1"]
    assert list(conv1["op"]) == ["aten::convolution"] and conv1["calls"].tolist() == [1]
    assert conv1["macs"].tolist() == [64 * 32 * 32 * 3 * 7 * 7]
    assert set(frame["kind"]) <= {"formula", "zero"}


def test_by_op_cli_view_and_json_section(capsys):
    assert main(["summary", "resnet18", "--device", "meta", "--by-op"]) == 0
    out = capsys.readouterr()[0]
    assert "aten::convolution" in out and "Per module call" in out
    assert main(["summary", "resnet18", "--device", "meta", "--by-op", "-f", "json"]) == 0
    data = json.loads(capsys.readouterr()[0])
    total = {row["op"]: row for row in data["total"]}
    assert total["aten::convolution"]["calls"] == 20 and data["partial"] is False
    assert sum(op["macs"] for layer in data["per_layer"] for op in layer["ops"]) == sum(r["macs"] for r in data["total"])


def test_a_broken_registered_formula_is_named_not_blamed_on_the_model():
    """A formula that raises or returns a float fails the pass with MacFormulaError (exit 2) naming the operator
    and the formula; a sound one counts. aten::_linalg_eigh has no formula (its total is partial)."""
    import torch.nn as nn

    import netscope
    from netscope.errors import EXIT_USAGE, MacFormulaError
    from netscope.operators.registry import REGISTRY

    class Outer(nn.Module):
        def forward(self, x):
            return torch.linalg.eigvalsh(x)

    assert netscope.summary(Outer(), input_size=(5, 5)).partial
    cases = ((lambda *a, out_val=None, **k: 1 / 0, "raised ZeroDivisionError"),
             (lambda *a, out_val=None, **k: 2.5, "returned 2.5"),
             (lambda a, *args, out_val=None, **k: a.shape[0] * a.shape[1], None))
    for formula, needle in cases:
        REGISTRY.register("aten::_linalg_eigh")(formula)
        try:
            if needle is None:
                report = netscope.summary(Outer(), input_size=(5, 5))
                assert not report.partial and report.totals.total_macs == 5 * 5
                continue
            with pytest.raises(MacFormulaError) as info:
                netscope.summary(Outer(), input_size=(5, 5))
        finally:
            REGISTRY.unregister("aten::_linalg_eigh")
        text = str(info.value)
        assert info.value.exit_code == EXIT_USAGE and "aten::_linalg_eigh" in text and needle in text
        assert "(root)" in text and "Check the input shape" not in text


# ---- losses: a fused loss kernel counts as its decomposed form does -----------------------------------------

class Scaled(nn.Module):
    """A loss on a learnable scale of its first input: one multiply (0) before the loss, a parameter to step."""

    def __init__(self, loss):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.loss = loss

    def forward(self, x, *rest):
        return self.loss(x * self.scale, *rest)


def _loss_cases():
    g = torch.Generator().manual_seed(0)
    x, y, p = (torch.randn(4, 5, generator=g), torch.randn(4, 5, generator=g), torch.rand(4, 5, generator=g))
    labels, signs = torch.randint(0, 5, (4,), generator=g), torch.randint(0, 2, (4, 5), generator=g) * 2.0 - 1
    image, pixels = torch.randn(2, 5, 3, 7, generator=g), torch.randint(0, 5, (2, 3, 7), generator=g)
    # (loss module, its arguments, the same loss written with elementwise math and reductions)
    return {
        "cross_entropy": (nn.CrossEntropyLoss(), (x, labels),
                          lambda a, t: -a.log_softmax(1)[torch.arange(4), t].mean()),
        "cross_entropy_2d": (nn.CrossEntropyLoss(), (image, pixels),
                             lambda a, t: -a.log_softmax(1).gather(1, t[:, None]).mean()),
        "mse": (nn.MSELoss(), (x, y), lambda a, b: ((a - b) ** 2).mean()),
        "smooth_l1": (nn.SmoothL1Loss(), (x, y),
                      lambda a, b: torch.where((a - b).abs() < 1, 0.5 * (a - b) ** 2, (a - b).abs() - 0.5).mean()),
        "huber": (nn.HuberLoss(delta=0.5), (x, y),
                  lambda a, b: torch.where((a - b).abs() < 0.5, 0.5 * (a - b) ** 2,
                                           0.5 * ((a - b).abs() - 0.25)).mean()),
        "bce": (nn.BCELoss(), (p, p.flip(0)),
                lambda a, t: -(t * a.log().clamp(min=-100) + (1 - t) * (1 - a).log().clamp(min=-100)).mean()),
        "bce_with_logits": (nn.BCEWithLogitsLoss(), (x, p),
                            lambda a, t: -(t * nn.functional.logsigmoid(a)
                                           + (1 - t) * nn.functional.logsigmoid(-a)).mean()),
        "soft_margin": (nn.SoftMarginLoss(), (x, signs), lambda a, t: torch.log1p(torch.exp(-t * a)).mean()),
        "multi_margin": (nn.MultiMarginLoss(), (x, labels),
                         lambda a, t: ((1 - a[torch.arange(4), t][:, None] + a).clamp(min=0).sum(1) - 1).mean() / 5),
        "multilabel_margin": (nn.MultiLabelMarginLoss(), (x, torch.tensor([[3, 0, -1, 1, 2]] * 4)),
                              lambda a, t: sum((1 - (a[:, [3, 0]][:, :, None] - a[:, [1, 2, 4]][:, None, :]))
                                               .clamp(min=0).sum((1, 2)).mean(0, keepdim=True)) / 5),
    }


@pytest.mark.parametrize("name", sorted(_loss_cases()))
def test_a_fused_loss_counts_zero_like_the_same_loss_written_elementwise(name):
    """A loss is elementwise differences, logarithms and a reduction: zero by the documented convention, as
    ``nn.L1Loss`` (which torch decomposes) and torch's own flop counter count it. A fused kernel
    (``aten::mse_loss``, ``nll_loss_forward``, ...) is the same arithmetic, so it counts the same, forward and in a
    training step's backward, instead of leaving the report partial."""
    loss, args, elementwise = _loss_cases()[name]
    assert torch.allclose(loss(*args), elementwise(*args), atol=1e-5)  # the written-out form is the same loss
    with FlopCounterMode(display=False) as counter:
        loss(*args)
    for model in (Scaled(loss), Scaled(elementwise)):
        report = netscope.summary(model, input_data=args, device="cpu")
        assert report.uncounted_ops() == [] and not report.partial
        assert report.totals.total_macs == counter.get_total_flops() // 2 == 0
        step = netscope.step(model, input_data=args, optimizer="sgd")
        assert step.totals.backward_uncounted == ()


class _InPlace(nn.Module):
    """Elementwise layers and calls in their in-place form (FCOS's training forward calls ``abs_``)."""

    def __init__(self, inplace: bool):
        super().__init__()
        self.proj = nn.Conv2d(3, 4, 1)
        self.acts = nn.Sequential(nn.Mish(inplace=inplace), nn.Threshold(0.1, 2.0, inplace=inplace),
                                  nn.Dropout2d(0.5, inplace=inplace), nn.RReLU(inplace=inplace))
        self.inplace = inplace

    def forward(self, x):
        y = self.acts(self.proj(x))
        return y.abs_() if self.inplace else y.abs()


def test_an_in_place_elementwise_operator_counts_zero_like_its_out_of_place_form():
    """``abs_``, ``mish_``, ``threshold_``, ``feature_dropout_``, ``rrelu_`` were uncounted (the report partial:
    torchvision's FCOS in train mode, on abs_) while ``abs``, ``mish``, ... are zero by convention: the same
    arithmetic written into the input. Oracle: torch's FlopCounterMode on the same forward, and the out-of-place
    model's report."""
    x = torch.randn(2, 3, 8, 8)
    for inplace in (True, False):
        model = _InPlace(inplace).train()
        with FlopCounterMode(display=False) as counter:
            model(x.clone())
        report = netscope.summary(model, input_data=(x,), mode="train")
        assert report.uncounted_ops() == [] and not report.partial, report.uncounted_ops()
        assert report.totals.total_macs == counter.get_total_flops() // 2 == 2 * 64 * 3 * 4
