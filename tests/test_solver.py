"""The input-size solver: torchvision's published ``min_size``, per-axis scans, budgets, meta fallbacks, the CLI.

The brute-force zoo (solver = every size run for real) is in ``tests/test_solver_zoo.py``.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

from netscope import solve_input_size
from netscope.cli import main
from netscope.errors import ForwardError, UsageError
from netscope.inputs import InputSpec, TensorSpec
from netscope.analyses.solver import describe_sizes
from netscope.models.specs import resolve_model


def spec(*shape, **kwargs):
    return InputSpec([TensorSpec(tuple(shape))], kwargs)


@pytest.mark.parametrize("name", ["alexnet", "vgg16", "inception_v3", "squeezenet1_1", "googlenet", "convnext_tiny"])
def test_smallest_size_matches_torchvision_published_min_size(name):
    kwargs = {"aux_logits": False, "init_weights": False} if name in ("inception_v3", "googlenet") else {}
    resolved = resolve_model(name, kwargs, empty_weights=True)
    published = torchvision.models.get_model_weights(name).DEFAULT.meta["min_size"]
    limit = published[0] + 6
    result = solve_input_size(resolved.module, resolved.inputs, max_size=limit, per_axis=False)
    assert result.valid_sizes == tuple(range(published[0], limit + 1))
    assert result.main.output_formula == ("1", "1000")
    assert result.main.describe() == f"every s >= {published[0]} up to {limit} probed"


def test_vit_accepts_exactly_224():
    resolved = resolve_model("vit_b_16", {}, empty_weights=True)
    result = solve_input_size(resolved.module, resolved.inputs, max_size=300, per_axis=False)
    assert result.valid_sizes == (224,)
    assert result.summary() == "square sxs: 224; e.g. [1, 3, 224, 224]"


@pytest.mark.parametrize("valid,probed,text", [
    (range(7, 897, 7), range(1, 897), "multiples of 7 from 7, up to 896 probed"),
    (list(range(2, 202)) + list(range(209, 225)), range(1, 301), "2..201, 209..224"),
    (range(32, 897), range(1, 897), "every s >= 32 up to 896 probed"),
    (range(12, 241, 12), range(1, 301), "multiples of 12 from 12 to 240"),
    ([s for s in range(1, 100) if s % 6 in (0, 1) and s > 1], range(1, 100), "s mod 6 in {0, 1} from 6, up to 99 probed"),
    (range(5, 300, 4), range(1, 301), "5, 9, 13, ..., up to 300 probed"),
    ([224], [1, 2, 224], "224 (probed 1, 2, 224)"),
    ([1, 2, 224], [1, 2, 224], "1, 2, 224 (probed 1, 2, 224)"),
    ([5, 6, 7, 9, 10], [5, 6, 7, 9, 10],
     "5..7, 9, 10 (the last run reaches 10, the largest probed) (probed 5..7, 9, 10)"),
    ([3, 4, 5] + list(range(7, 301, 2)), range(1, 301), "3..5, then 7, 9, 11, ..., up to 300 probed"),
    ([], range(1, 10), "none of 1..9 work"),
])
def test_describe_sizes(valid, probed, text):
    assert describe_sizes(list(valid), list(probed)) == text


class TinyUNet(nn.Module):
    """Two 2x poolings and skip concatenations: each axis must be a multiple of 4."""

    def __init__(self):
        super().__init__()
        self.enc = nn.Conv2d(1, 2, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.up = nn.Upsample(scale_factor=2)
        self.dec = nn.Conv2d(4, 1, 3, padding=1)

    def forward(self, x):
        a = self.enc(x)
        return self.dec(torch.cat([self.up(self.up(self.pool(self.pool(a)))), a], 1))


class PoolSkip43(nn.Module):
    """A (4, 3) pool upsampled back and added: H a multiple of 4, W a multiple of 3, independently."""

    def __init__(self):
        super().__init__()
        self.pool = nn.AvgPool2d((4, 3))
        self.up = nn.Upsample(scale_factor=(4, 3))

    def forward(self, x):
        return x + self.up(self.pool(x))


class TokenTable(nn.Module):
    """Flattens H*W into tokens and adds a table of 64: the axes interact (H*W <= 64)."""

    def __init__(self):
        super().__init__()
        self.table = nn.Parameter(torch.zeros(1, 64))

    def forward(self, x):
        tokens = x.flatten(1)
        return tokens + self.table[:, :tokens.shape[1]] if tokens.shape[1] <= 64 else tokens + self.table


def test_each_axis_is_scanned_on_its_own():
    result = solve_input_size(PoolSkip43(), spec(1, 1, 8, 9), max_size=40)
    assert result.scan("H").valid == tuple(range(4, 41, 4))
    assert result.scan("W").valid == tuple(range(3, 41, 3))
    assert result.scan("s").valid == tuple(range(12, 41, 12))
    assert result.scan("H").dims == (2,) and result.scan("W").dims == (3,)
    assert result.interaction.startswith("the axes look independent")
    assert "H (dim 2): multiples of 4 from 4, up to 40 probed" in result.render()
    assert result.scan("H").output_formula == ("1", "1", "s", "9")


def test_the_solver_says_when_axes_interact():
    result = solve_input_size(TokenTable(), spec(1, 1, 4, 4), max_size=40)
    assert result.scan("H").valid == tuple(range(1, 17)) and result.scan("W").valid == tuple(range(1, 17))
    assert result.scan("s").valid == tuple(range(1, 9))
    assert result.interaction.startswith("the axes interact: the square size 9 fails")


def test_axes_tied_by_their_product_are_not_called_independent():
    # conv -> flatten -> Linear(35): only rows * cols = 35 matters. At the anchor 11x15 (5x7) each axis accepts
    # two sizes and the mixed extremes of those sets work, so the solver used to say "the axes look
    # independent", although 15x11 (7x5) works too while the H scan rejects 15. Oracle: the real model.
    def make():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(1, 1, 3, stride=2), nn.Flatten(), nn.Linear(35, 2))

    def runs(h, w):
        try:
            with torch.no_grad():
                make()(torch.zeros(1, 1, h, w))
            return True
        except RuntimeError:
            return False

    result = solve_input_size(make(), spec(1, 1, 11, 15), max_size=40)
    assert result.scan("H").valid == tuple(h for h in range(1, 41) if runs(h, 15))
    assert result.scan("W").valid == tuple(w for w in range(1, 41) if runs(11, w))
    assert runs(15, 11) and 15 not in result.scan("H").valid  # a working shape outside the per-axis sets
    assert result.interaction.startswith("the axes interact: [1, 1, 15, 11] works although axis H rejects 15")


def test_a_failing_reference_anchors_the_axes_at_a_working_size():
    result = solve_input_size(TinyUNet(), spec(1, 1, 30, 30), max_size=40)
    assert result.anchor_shape == (1, 1, 28, 28)
    assert result.scan("W").valid == tuple(range(4, 41, 4))
    assert any("fails; the axes were scanned around [1, 1, 28, 28]" in n for n in result.notes)


def test_the_answer_does_not_depend_on_the_starting_size():
    model = nn.Sequential(nn.Conv2d(1, 1, 3), nn.MaxPool2d(3), nn.Flatten(), nn.Linear(16, 2))  # (s-2)//3 == 4
    answers = {solve_input_size(model, spec(1, 1, s, s), max_size=60, per_axis=False).valid_sizes
               for s in (14, 30, 60)}
    assert answers == {(14, 15, 16)}


def test_a_small_probe_budget_still_reports_the_working_reference():
    result = solve_input_size(TinyUNet(), spec(1, 1, 16, 16), max_probes=3)
    assert len(result.probes) == 3
    assert result.valid_sizes == (16,)
    assert result.summary() == "square sxs: 16 (probed 1, 2, 16); e.g. [1, 1, 16, 16]"
    assert any("stopped after 3 runs" in n for n in result.notes)


def test_output_shape_as_a_formula_of_the_size():
    model = nn.Sequential(nn.Conv1d(2, 3, 3, stride=2, padding=1), nn.Conv1d(3, 3, 3, stride=2))
    result = solve_input_size(model, spec(1, 2, 50), max_size=80)
    # L1 = floor((s + 2 - 3) / 2) + 1 = floor((s + 1) / 2); L2 = floor((L1 - 1) / 2) = floor((s - 1) / 4) >= 1 from 5
    assert result.valid_sizes == tuple(range(5, 81))
    assert result.main.label == "L"
    assert result.main.output_formula == ("1", "3", "floor((s - 1) / 4)")
    for probe in result.probes:
        if probe.ok:
            assert probe.output_shape[2] == ((probe.size + 1) // 2 - 3) // 2 + 1


def test_lenient_meta_kernel_is_overruled_by_the_formula_and_confirmed_on_cpu():
    model = nn.Sequential(nn.Conv2d(1, 1, 3), nn.Upsample(scale_factor=0.25, mode="bilinear"))
    with torch.device("meta"):  # the meta kernel itself accepts an empty output: the leniency being corrected
        model_meta = nn.Upsample(scale_factor=0.25, mode="bilinear")
        assert model_meta(torch.empty(1, 1, 3, 3)).shape == (1, 1, 0, 0)
    with pytest.raises(RuntimeError):
        model(torch.randn(1, 1, 5, 5))
    result = solve_input_size(model, spec(1, 1, 32, 32), max_size=30, per_axis=False)
    assert result.valid_sizes == tuple(range(6, 31))
    by_size = {p.size: p for p in result.probes if p.device == "cpu"}
    assert not by_size[5].ok and by_size[6].ok  # the change of verdict ran on the real kernel
    assert [p.size for p in result.probes if p.device == "meta+formula"] == [3, 4, 5]


class NonZero(nn.Module):
    """Keeps the columns whose mean is not exactly zero (nonzero: meta and fake tensors cannot run it)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(1, 1, 3, stride=2)

    def forward(self, x):
        y = self.conv(x)
        keep = torch.nonzero(y.mean((0, 1)) != 0.123).flatten()
        return y[..., keep].unflatten(-1, (-1, 4))


def test_meta_impossible_operator_falls_back_to_the_cpu():
    model = NonZero().eval()
    truth = []
    for s in range(1, 41):
        try:
            model(torch.randn(1, 1, s))
            truth.append(s)
        except RuntimeError:
            pass
    result = solve_input_size(model, spec(1, 1, 17), max_size=40)
    assert result.valid_sizes == tuple(truth) and truth
    assert any("the meta device cannot run this model" in n and "nonzero" in n and "ran on cpu" in n
               for n in result.notes)


def test_meta_impossible_operator_without_a_real_model_is_undetermined_not_failing():
    from netscope.run.no_memory import meta_copy

    result = solve_input_size(meta_copy(NonZero()), spec(1, 1, 17), max_size=20)
    assert not result.valid_sizes
    assert result.summary().startswith("undetermined: the meta device cannot run this model")
    assert "no working size found" not in result.render()


def test_token_model_varies_the_sequence_length_with_its_mask():
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=1,
                                     intermediate_size=8, max_position_embeddings=40)
    model = transformers.BertModel(config).eval()
    inputs = InputSpec([TensorSpec((1, 16), "int64", 50)], {"attention_mask": TensorSpec((1, 16), "bool")})
    result = solve_input_size(model, inputs, max_size=64)  # integer (batch, length) ids: the length varies
    assert result.valid_sizes == tuple(range(1, 41))  # the position table holds 40
    assert result.tied_inputs == ("attention_mask",)
    assert result.main.describe() == "1..40"


def test_solver_never_touches_the_users_model():
    model = TinyUNet().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    solve_input_size(model, spec(1, 1, 16, 16), max_size=20)
    assert model.training and all(p.device.type == "cpu" for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_solver_rejects_an_input_without_spatial_dims():
    with pytest.raises(UsageError, match="no spatial dimensions"):
        solve_input_size(nn.Linear(4, 2), spec(1, 4))


class RootReshape(nn.Module):
    """The failure is in the root's own forward, after its layers ran."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x):
        return self.pool(self.conv(x)).view(1, 2 * 7 * 7)


def test_root_level_failure_keeps_the_layers_that_ran():
    from netscope.analyses.diagnosis import diagnose_failure
    from test_checks import trace  # one pass through netscope.run.prepare

    inputs = spec(1, 1, 20, 20)
    with pytest.raises(ForwardError) as info:
        trace(RootReshape(), inputs, device="meta")
    diagnosis = diagnose_failure(RootReshape(), inputs, info.value)
    assert [step.layer for step in diagnosis.chain] == ["conv", "pool", ""]
    assert diagnosis.chain[1].output_shape == "[1, 2, 9, 9]"
    assert diagnosis.working_sizes.startswith("square sxs: 16, 17; e.g. [1, 1, 16, 16]")


def test_solve_command(capsys):
    assert main(["solve", "alexnet", "--max-size", "70", "--square-only"]) == 0
    out = capsys.readouterr().out
    assert "alexnet: square sxs: every s >= 63 up to 70 probed" in out and "runs/s" in out
    assert main(["solve", "vgg16", "-f", "json", "--max-size", "40", "--square-only"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["model"] == "vgg16" and data["scans"][0]["valid"] == list(range(32, 41))
    assert data["scans"][0]["complete"] and data["runs_per_second"] > 0


def test_meta_summary_names_the_operator_meta_cannot_run(capsys, tmp_path):
    from netscope import summary
    from netscope.errors import MetaDeviceError

    model = NonZero()
    with pytest.raises(MetaDeviceError, match=r"the meta device cannot run this model: aten\.nonzero.*--device cpu"):
        summary(model, input_size=(1, 1, 17), device="meta")
    assert len(summary(model, input_size=(1, 1, 17), device="cpu").layers) == 2  # the real device runs it
    path = tmp_path / "nz.py"
    path.write_text("import torch, torch.nn as nn\n" + _source_of(NonZero))
    assert main(["summary", f"{path}:NonZero", "--input", "1,1,17", "--device", "meta"]) == 2
    err = capsys.readouterr().err
    assert "cannot run this model: aten.nonzero" in err and "no working size found" not in err
    assert "Traceback" not in err


def _source_of(cls) -> str:
    import inspect

    return inspect.getsource(cls)


class ImageList(nn.Module):
    """Takes a list of (channels, H, W) images, as torchvision's detection models do."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, stride=2)

    def forward(self, images):
        return torch.stack([self.conv(image[None])[0] for image in images])


def test_a_list_of_images_varies_height_and_width():
    inputs = InputSpec([TensorSpec((1, 9, 11))], as_list=True)
    result = solve_input_size(ImageList(), inputs, max_size=12)
    assert [scan.label for scan in result.scans] == ["s", "H", "W"]
    assert result.scan("H").dims == (1,) and result.scan("W").valid == tuple(range(3, 13))


def test_solver_takes_the_one_input_convention():
    """A shape, example tensors, or the older ``input_spec=`` name give the same verdicts; conv of kernel 3,
    stride 2 accepts every size >= 3 (formula: floor((s - 3) / 2) + 1 >= 1)."""
    import numpy as np

    model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.ReLU())
    results = [solve_input_size(model, (1, 3, 32, 32), max_size=40),
               solve_input_size(model, torch.randn(1, 3, 32, 32), max_size=40),
               solve_input_size(model, input_size=tuple(np.int64(d) for d in (1, 3, 32, 32)), max_size=40),
               solve_input_size(model, input_spec=(1, 3, 32, 32), max_size=40)]
    expected = tuple(s for s in range(1, 41) if (s - 3) // 2 + 1 >= 1)
    for result in results:
        assert result.base_shape == (1, 3, 32, 32)
        assert [scan.valid for scan in result.scans] == [expected] * 3
    with pytest.raises(UsageError, match="not both"):
        solve_input_size(model, (1, 3, 32, 32), input_spec=(1, 3, 32, 32))


def _real_valid(make, shape, limit):
    """Brute force on the CPU: the sizes 1..limit of the last axis at which the model runs."""
    valid = []
    for n in range(1, limit + 1):
        try:
            with torch.no_grad():
                make()(torch.rand(*shape[:-1], n))
            valid.append(n)
        except (RuntimeError, IndexError):  # an embedding lookup past its table raises IndexError
            pass
    return tuple(valid)


class Spectrogram(nn.Module):
    """Makes its window on the CPU inside forward (as most audio front ends do): on meta that clashes with
    the input's device, which says nothing about the size."""

    def forward(self, x):
        return torch.stft(x.flatten(1), n_fft=16, hop_length=4, window=torch.hann_window(16), return_complex=True).abs()


class Shrink(nn.Module):
    """A bilinear resize to a third: the meta kernel accepts the sizes whose output has 0 rows; the CPU does not."""

    def forward(self, x):
        return F.interpolate(x, scale_factor=1 / 3, mode="bilinear", recompute_scale_factor=False)


def test_a_tensor_made_on_the_cpu_in_forward_does_not_make_every_size_fail():
    # used to read "no working size found": every meta run failed on the device clash
    result = solve_input_size(Spectrogram(), spec(1, 1, 64), max_size=40)
    assert result.valid_sizes == _real_valid(Spectrogram, (1, 1, 64), 40)
    assert result.valid_sizes[0] == 16 // 2 + 1  # centred STFT: reflect padding of n_fft // 2 needs more samples
    assert any("meta device cannot run this model" in n for n in result.notes)


def test_sizes_meta_accepts_but_the_real_kernel_refuses_at_the_small_end():
    # meta accepted 1 and 2 (0 output rows) and, with no change of verdict, nothing was confirmed on the CPU
    result = solve_input_size(Shrink(), spec(1, 1, 12, 12), max_size=30)
    truth = []
    for n in range(1, 31):
        try:
            Shrink()(torch.rand(1, 1, n, n))
            truth.append(n)
        except RuntimeError:
            pass
    assert result.valid_sizes == tuple(truth) and truth[0] == 3


def test_when_no_size_works_the_render_says_why():
    class Refuses(nn.Module):
        def forward(self, x):
            raise ValueError("this model needs a calibration call first")

    result = solve_input_size(Refuses(), spec(1, 1, 8), max_size=10)
    assert result.valid_sizes == ()
    line = result.render().splitlines()[0]  # it read "L (dim 2): none work", with no reason
    assert line.startswith("L (dim 2): none of 1..10 work; at [1, 1, 8] (cpu): ValueError: this model needs a "
                           "calibration")


class ShrinksItsWindow(nn.Module):
    """Windows of ``window`` x ``window`` pixels; an input smaller than the window shrinks it for good, as Hugging
    Face Swin's ``set_shift_and_window_size`` does."""

    def __init__(self):
        super().__init__()
        self.window = 4
        self.proj = nn.Conv2d(1, 2, 1)

    def forward(self, x):
        if min(x.shape[-2:]) < self.window:
            self.window = min(x.shape[-2:])
        n, c, h, w = x.shape
        tiles = x.view(n, c, h // self.window, self.window, w // self.window, self.window)  # divisibility
        return self.proj(tiles.mean((3, 5)))


def fresh_model_runs(pristine: nn.Module, shape) -> bool:
    """The oracle: a fresh copy of the model, never run before, at this one shape."""
    try:
        with torch.no_grad():
            copy.deepcopy(pristine)(torch.zeros(shape))
        return True
    except RuntimeError:
        return False


def swin_tiny_config_model():
    transformers = pytest.importorskip("transformers", reason="Hugging Face Swin needs transformers")
    config = transformers.SwinConfig(image_size=64, patch_size=4, embed_dim=8, depths=[1, 1], num_heads=[1, 1],
                                     window_size=7)
    return transformers.SwinModel(config).eval()


@pytest.mark.parametrize("build, channels, size, limit", [(ShrinksItsWindow, 1, 16, 24),
                                                         (swin_tiny_config_model, 3, 64, 64)])
def test_each_probe_starts_from_the_model_as_given_and_leaves_it_so(build, channels, size, limit):
    model = build().eval()
    pristine = copy.deepcopy(model)
    result = solve_input_size(model, (1, channels, size, size), max_size=limit, per_axis=False)
    truth = tuple(s for s in range(1, limit + 1) if fresh_model_runs(pristine, (1, channels, s, s)))
    assert truth and result.valid_sizes == truth  # before: every size after the first small probe (or none)
    attributes = lambda m: [(k, v) for sub in m.modules() for k, v in vars(sub).items()  # noqa: E731
                            if isinstance(v, (int, float, str, tuple))]
    assert attributes(model) == attributes(pristine)  # before: HF Swin's window_size left at 1


def test_a_module_without_forward_is_one_error_not_a_scan_where_no_size_works():
    """torch raises NotImplementedError for a module without forward() at any size: that says nothing about
    sizes, so the solver stops at the first probe with the model's error (exit 3 on the command line)."""
    class NoForward(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

    with pytest.raises(NotImplementedError):
        NoForward()(torch.randn(1, 3, 8, 8))  # the oracle: torch's own call
    from netscope.errors import ForwardError

    with pytest.raises(ForwardError, match='missing the required "forward"'):
        solve_input_size(NoForward(), (1, 3, 8, 8), max_size=16)


def test_a_probe_pass_records_the_same_calls_and_shapes_without_observing_operators():
    """The solver's probes trace with ``operators=False``: every module call and shape as a full pass records
    them (the probe's verdict and output shape come from those), and no multiply-add is claimed."""
    from netscope.run.trace import trace

    model = torchvision.models.resnet18(weights=None).eval()
    x = torch.randn(1, 3, 40, 56)
    full = trace(model, ((x,), {}))
    probe = trace(model, ((x,), {}), operators=False)
    assert [(c.name, c.input_shapes, c.output_shapes) for c in probe.calls] == \
           [(c.name, c.input_shapes, c.output_shapes) for c in full.calls]
    assert probe.model_output == full.model_output == (1, 1000)
    assert full.calls[0].macs > 0 and all(c.macs == 0 for c in probe.calls)
    with pytest.raises(ValueError, match="operators=True"):
        trace(model, ((x,), {}), operators=False, receptive_field=True)


class LearnedPositions(nn.Module):
    """A 1-D net adding a learned position table of 20 rows, looked up by ``arange(length)``: an ``nn.Embedding``,
    an indexed parameter or ``index_select``."""

    def __init__(self, lookup: str = "embedding"):
        super().__init__()
        torch.manual_seed(0)
        self.lookup = lookup
        self.positions = nn.Embedding(20, 4)
        self.conv = nn.Conv1d(1, 4, 3, padding=1)

    def forward(self, x):
        index = torch.arange(x.shape[-1], device=x.device)
        table = self.positions.weight
        rows = self.positions(index) if self.lookup == "embedding" else table[index] if self.lookup == "index" \
            else torch.index_select(table, 0, index)
        return self.conv(x) + rows.T


@pytest.mark.parametrize("lookup", ["embedding", "index", "index_select"])
def test_an_embedding_table_too_short_for_the_length_is_found_on_the_real_device(lookup):
    # meta cannot see that index 20 is past the table: every length passes there, with no change of verdict
    result = solve_input_size(LearnedPositions(lookup), [torch.rand(1, 1, 16)], max_size=40)
    truth = _real_valid(lambda: LearnedPositions(lookup), (1, 1, 16), 40)
    assert truth == tuple(range(1, 21))
    assert result.valid_sizes == truth
    assert not set(result.main.unknown) & set(truth)  # the sizes not run for real are undetermined, not valid
    assert "every" not in result.main.describe()


def test_a_max_size_below_the_working_reference_names_the_sizes_it_probed():
    # "square sxs: none work" read as if no size works, although the reference 16 runs: 1..2 were all it probed
    model = nn.Conv2d(1, 2, 7)
    result = solve_input_size(model, spec(1, 1, 16, 16), max_size=2)
    truth = [n for n in (1, 2, 16) if fresh_model_runs(model, (1, 1, n, n))]
    assert truth == [16] and result.valid_sizes == ()
    assert result.render().splitlines()[0].startswith("square sxs: none of 1, 2 work;")
    assert result.summary().startswith("no working size found among 1, 2")



@pytest.mark.parametrize("max_probes", [40, 41, 42, 43, 45, 47])
def test_a_budget_cut_during_confirmation_never_claims_what_the_real_device_refuses(max_probes):
    # 40 meta runs, then the real ones: cut in the middle of them, meta's "every L up to 40" was left standing
    truth = set(_real_valid(LearnedPositions, (1, 1, 16), 40))
    result = solve_input_size(LearnedPositions(), [torch.rand(1, 1, 16)], max_size=40, max_probes=max_probes)
    claimed_wrong = set(result.valid_sizes) - truth
    unconfirmed = any("not all confirmed on cpu before the budget ran out" in n for n in result.notes)
    assert not claimed_wrong or unconfirmed
    if max_probes >= 42:  # the real refusal at 40 was seen: nothing above the real boundary is claimed
        assert not claimed_wrong and set(result.valid_sizes) <= truth


class TwoImages(nn.Module):
    """A stride-2 branch for the first image added to a stride-1 branch for the second."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.b = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x, y):
        return self.a(x) + self.b(y)


def test_a_second_input_of_another_size_is_said_to_be_held_at_its_shape():
    # "square sxs: 1, 2, 31, 32" is true only with the second image at 16x16: the render says so
    result = solve_input_size(TwoImages(), [(1, 3, 32, 32), (1, 3, 16, 16)], max_size=40)
    truth = []
    for n in range(1, 41):
        try:
            with torch.no_grad():
                TwoImages()(torch.rand(1, 3, n, n), torch.rand(1, 3, 16, 16))
            truth.append(n)
        except RuntimeError:
            pass
    assert result.valid_sizes == tuple(truth) == (1, 2, 31, 32)
    assert result.held_inputs == ("input 1 [1, 3, 16, 16]",) and result.tied_inputs == ()
    assert "inputs held at their given shape: input 1 [1, 3, 16, 16]" in result.render().splitlines()
    tied = solve_input_size(TwoImages(), [(1, 3, 16, 16), (1, 3, 16, 16)], max_size=8, per_axis=False)
    assert tied.tied_inputs == ("input 1",) and tied.held_inputs == ()


def test_gpt2_lengths_past_its_position_table_are_not_claimed():
    # GPT-2 looks its positions up in an nn.Embedding of n_positions rows: meta accepted every length up to 64
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(n_positions=32, n_layer=1, n_embd=16, n_head=2, vocab_size=50,
                                     bos_token_id=0, eos_token_id=0)
    torch.manual_seed(0)
    model = transformers.GPT2Model(config).eval()
    result = solve_input_size(model, [torch.randint(0, 50, (1, 16))], max_size=40)
    truth = []
    for n in range(1, 41):
        try:
            with torch.no_grad():
                model(torch.randint(0, 50, (1, n)))
            truth.append(n)
        except (RuntimeError, IndexError):
            pass
    assert truth == list(range(1, 33)) and result.valid_sizes == tuple(truth)
