"""Issue 15: every model a user has runs (TorchScript, lazy modules, packed sequences, huge inputs, ...), and
issue 16's one run path and one input convention. Oracles: PyTorch's own modules and forward passes."""

from __future__ import annotations

import gc
import os
import threading
import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn
from torch.nn.utils.rnn import pack_padded_sequence

import netscope
from netscope.errors import ForwardError, OutOfMemory
from netscope.inputs import InputSpec, TensorSpec, inputs_from, parse_input
from netscope.records import NOT_RECORDED
from test_bad_input import run_cli
from test_model_state import assert_same, snapshot


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * 6 * 6, 5))

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)))


def scripted(model, example):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated; users still have such modules
        return torch.jit.script(model) if example is None else torch.jit.trace(model, example)


# ---- TorchScript ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["script", "trace"])
def test_torchscript_module_is_summarized_with_structure_parameters_and_a_note(how):
    eager = Small()
    x = torch.randn(2, 3, 8, 8)
    model = scripted(eager, None if how == "script" else x)
    before = snapshot(model)
    report = netscope.summary(model, (2, 3, 8, 8))
    assert_same(before, snapshot(model))
    assert report.layers[0].output_shapes == tuple(eager(x).shape)  # the whole forward ran
    rows = {c.name: c for c in report.layers}
    assert set(rows) == {name for name, _ in eager.named_modules()}
    for name, module in eager.named_modules():  # structure and parameter counts as the eager model has them
        assert rows[name].subtree_params == sum(p.numel() for p in module.parameters()), name
        if name:
            assert rows[name].output_shapes == NOT_RECORDED
            assert rows[name].class_name == type(module).__name__
    assert report.totals.total_params == sum(p.numel() for p in eager.parameters())
    assert report.totals.total_macs == netscope.summary(eager, (2, 3, 8, 8)).totals.total_macs  # ops still seen
    assert any("TorchScript" in note for note in report.run.notes)
    assert "TorchScript" in report.render()
    # counts inside are not recorded, never shown as 0: null in JSON, <NA> in the DataFrame, named in text
    inner = [layer for layer in report.to_dict()["layers"] if layer["name"]]
    assert inner and all(layer["macs"] is None and layer["own_macs"] is None for layer in inner)
    frame = report.to_dataframe()
    assert frame["macs"][0] == report.totals.total_macs and frame["macs"][1:].isna().all()
    assert all(NOT_RECORDED in line for line in report.render(columns="layer,macs").splitlines()[3:len(inner) + 3])
    # no per-layer shapes; a convolution operator the dispatch mode sees (scripted, not traced) is checked at the root
    checks = netscope.check(model, (2, 3, 8, 8))
    assert all(c.status == "pass" and c.operator == "convolution" and c.layer == "" for c in checks)


@pytest.mark.parametrize("how", ["script", "trace"])
def test_torchscript_submodule_inside_an_eager_model_is_one_named_row_whose_parameters_count_as_called(how):
    """A scripted block inside an eager model runs its layers without module hooks: its row carries the whole
    block (shapes, parameters, multiply-adds), is named by the class it was scripted from, a note says why its
    layers are missing, and its parameters are not reported as 'not called by this pass'."""
    eager = Small()
    x = torch.randn(2, 3, 8, 8)

    class Outer(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = scripted(eager, None if how == "script" else x)
            self.out = nn.Linear(5, 2)

        def forward(self, x):
            return self.out(self.body(x))

    model = Outer()
    report = netscope.summary(model, (2, 3, 8, 8))
    rows = {c.name: c for c in report.layers}
    assert list(rows) == ["", "body", "out"]
    assert rows["body"].class_name == "Small"
    assert rows["body"].output_shapes == tuple(eager(x).shape)
    assert rows["body"].subtree_params == sum(p.numel() for p in eager.parameters())
    assert rows["body"].macs == netscope.summary(eager, (2, 3, 8, 8)).totals.total_macs  # its operators still seen
    assert report.totals.uncalled_params == 0
    assert "not called by this pass" not in report.render()
    assert any("TorchScript submodule(s) body" in note for note in report.run.notes)


# ---- lazy modules -----------------------------------------------------------------------------------------

class LazyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.LazyConv2d(4, 3)
        self.fc = nn.LazyLinear(5)

    def forward(self, x):
        return self.fc(torch.flatten(self.conv(x), 1))


@pytest.mark.parametrize("device", [None, "meta"])
def test_lazy_modules_run_on_a_copy_and_match_the_materialized_model(device):
    model = LazyNet()
    before = snapshot(model)
    report = netscope.summary(model, (2, 3, 8, 8), device=device)
    assert model.fc.has_uninitialized_params() and model.conv.has_uninitialized_params()  # left as it was
    assert isinstance(model.fc, nn.LazyLinear)
    assert_same(before, snapshot(model))
    reference = LazyNet()
    reference(torch.randn(2, 3, 8, 8))  # what PyTorch itself materializes
    assert report.totals.total_params == sum(p.numel() for p in reference.parameters())
    assert [c.class_name for c in report.layers] == ["LazyNet", "Conv2d", "Linear"]
    assert any("lazy module(s) conv (LazyConv2d), fc (LazyLinear)" in note for note in report.run.notes)
    assert not any("in place" in note for note in report.run.notes)  # materializing a copy is not a change


def test_lazy_model_solve_and_check_from_the_cli(tmp_path, capsys, monkeypatch):
    (tmp_path / "lazy_models.py").write_text(
        "import torch, torch.nn as nn\n"
        "class LazyNet(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n        self.conv = nn.LazyConv2d(4, 3)\n        self.fc = nn.LazyLinear(5)\n"
        "    def forward(self, x):\n        return self.fc(torch.flatten(self.conv(x), 1))\n")
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(["solve", "lazy_models.py:LazyNet", "-i", "1,3,8,8"], capsys)
    assert code == 0 and "square sxs: 8\n" in out  # the copy was sized by 8x8, so only 8 fits
    assert "lazy modules" in err
    code, out, err = run_cli(["check", "lazy_models.py:LazyNet", "-i", "1,3,8,8", "--device", "meta"], capsys)
    assert code == 0 and "2 pass" in out, err


# ---- packed sequences -------------------------------------------------------------------------------------

class PackedGRU(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(20, 8)
        self.gru = nn.GRU(8, 6, batch_first=True)

    def forward(self, tokens, lengths):
        packed = pack_padded_sequence(self.embed(tokens), lengths, batch_first=True, enforce_sorted=False)
        return self.gru(packed)[1]


def test_packed_sequence_inputs_are_recorded_as_their_fields():
    model = PackedGRU()
    tokens, lengths = torch.randint(0, 20, (3, 5)), torch.tensor([5, 2, 4])
    report = netscope.summary(model, input_data=(tokens, lengths))
    gru = next(c for c in report.layers if c.name == "gru")
    packed = pack_padded_sequence(model.embed(tokens), lengths, batch_first=True, enforce_sorted=False)
    assert gru.input_shapes[0]["data"] == tuple(packed.data.shape)
    assert gru.input_shapes[0]["batch_sizes"] == tuple(packed.batch_sizes.shape)
    assert report.layers[0].output_shapes == (1, 3, 6)


# ---- huge inputs and out of memory ------------------------------------------------------------------------

def test_an_input_that_cannot_fit_is_refused_before_allocating(monkeypatch):
    import netscope.run.devices

    monkeypatch.setattr(netscope.run.devices, "available_memory_bytes", lambda device=None: 64 * 2**20)  # 64 MiB free
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1))
    with pytest.raises(OutOfMemory) as info:  # 32 * 3 * 512 * 512 float32 = 96 MiB
        netscope.summary(model, (32, 3, 512, 512), device="cpu")
    assert info.value.exit_code == 2 and "--device meta" in str(info.value) and "96.0 MiB" in str(info.value)
    report = netscope.summary(model, (32, 3, 512, 512), device="auto")  # auto: the meta device instead
    assert report.run.device == "meta" and any("ran on the meta device" in n for n in report.run.notes)
    # a small input whose first layer output cannot fit: the estimate comes from a pass on meta
    wide = nn.Sequential(nn.Conv2d(3, 512, 1), nn.AdaptiveAvgPool2d(1))
    with pytest.raises(OutOfMemory, match="largest layer output"):  # 4 * 512 * 128 * 128 * 4 B = 128 MiB
        netscope.summary(wide, (4, 3, 128, 128), device="cpu")


def test_out_of_memory_inside_the_forward_is_reported_as_such():
    class Greedy(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.big = nn.Identity()

        def forward(self, x):
            self.big(x)
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB")

    with pytest.raises(OutOfMemory) as info:
        netscope.summary(Greedy(), (1, 4))
    text = str(info.value)
    assert "ran out of memory" in text and "--device meta" in text and "Check the --input" not in text
    assert info.value.exit_code == 2


# ---- output paths -----------------------------------------------------------------------------------------

def test_output_dash_is_stdout(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(["keys", _checkpoint(tmp_path), "-o", "-", "-f", "csv"], capsys)
    assert code == 0 and "fc.weight" in out and not (tmp_path / "-").exists()


def test_force_on_a_symlink_replaces_the_target_and_keeps_the_link(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "keys.txt"
    target.write_text("old\n")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    code, _, err = run_cli(["keys", _checkpoint(tmp_path), "-o", "link.txt"], capsys)
    assert code == 2 and "already exists" in err and target.read_text() == "old\n"
    code, _, err = run_cli(["keys", _checkpoint(tmp_path), "-o", "link.txt", "--force"], capsys)
    assert code == 0, err
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert "fc.weight" in target.read_text()
    assert sorted(p.name for p in (tmp_path / "real").iterdir()) == ["keys.txt"]  # no temp file left behind


def test_two_outputs_on_one_file_or_on_stdout_are_refused_before_any_write(tmp_path, capsys, monkeypatch):
    # -o and --html on one file: the table used to be written, then the page refused as "already exists" (exit 2
    # with a half-done result); --html - beside the table on stdout used to concatenate table and page
    monkeypatch.chdir(tmp_path)
    base = ["summary", "torch.nn:Linear", "-a", "in_features=4", "-a", "out_features=2", "-i", "1,4",
            "--device", "cpu"]
    (tmp_path / "real.txt").write_text("old\n")
    (tmp_path / "link.txt").symlink_to(tmp_path / "real.txt")
    for extra in (["-o", "same.txt", "--html", "same.txt"], ["-o", "link.txt", "--html", "real.txt", "--force"],
                  ["--html", "-"], ["-o", "-", "--html", "-"]):
        code, out, err = run_cli(base + extra, capsys)
        assert code == 2 and "two outputs" in err and "Traceback" not in err, (extra, err)
        assert out == "" and sorted(p.name for p in tmp_path.iterdir()) == ["link.txt", "real.txt"], extra
        assert (tmp_path / "real.txt").read_text() == "old\n"
    code, out, err = run_cli(base + ["-o", ""], capsys)  # an unset shell variable: not silently stdout
    assert code == 2 and "file name is empty" in err and out == ""
    code, out, err = run_cli(base + ["-o", "table.txt", "--html", "-"], capsys)
    assert code == 0, err
    assert out.lstrip().lower().startswith("<!doctype html") and out.rstrip().endswith("</html>")
    assert "Linear" in (tmp_path / "table.txt").read_text()


def _checkpoint(folder):
    path = folder / "ckpt.pt"
    if not path.exists():
        torch.save({"fc.weight": torch.zeros(4, 8), "fc.bias": torch.zeros(4)}, path)
    return str(path)


# ---- integer dummy inputs ---------------------------------------------------------------------------------

class Recorder(nn.Module):
    """An embedding model that keeps the ids it was called with."""

    def __init__(self, vocab=7):
        super().__init__()
        self.small = nn.Embedding(vocab, 4)
        self.large = nn.Embedding(5000, 4)
        self.seen = []

    def forward(self, ids):
        self.seen.append(ids.clone())
        return self.small(ids) + self.large(ids)


def test_token_ids_stay_below_the_smallest_embedding_and_api_and_cli_draw_alike(tmp_path, capsys, monkeypatch):
    model = Recorder()
    netscope.summary(model, (4, 64), input_dtypes=["int64"])
    api_ids = model.seen[-1]
    assert api_ids.dtype == torch.int64 and int(api_ids.max()) < 7 and int(api_ids.min()) >= 0
    assert len(torch.unique(api_ids)) == 7  # the whole range is used, not only 0 and 1
    assert inputs_from(model, (4, 64), input_dtypes=["int64"]) == InputSpec([parse_input("4,64:int64")])
    (tmp_path / "recorder_models.py").write_text(
        "import torch, torch.nn as nn\nSEEN = []\n"
        "class Recorder(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.small = nn.Embedding(7, 4)\n        self.large = nn.Embedding(5000, 4)\n"
        "    def forward(self, ids):\n        SEEN.append(ids.clone())\n        return self.small(ids) + self.large(ids)\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    code, _, err = run_cli(["summary", "recorder_models:Recorder", "-i", "4,64", "--device", "cpu", "-q"], capsys)
    assert code == 0, err  # no dtype given: the model's default input (int64 ids) sets it
    import recorder_models

    assert torch.equal(recorder_models.SEEN[-1], api_ids)  # the same draw as the API's


def test_int8_inputs_never_overflow():
    spec = TensorSpec((1000,), "int8")
    values = InputSpec([spec]).build("cpu")[0][0]
    assert values.dtype == torch.int8 and int(values.min()) >= 0 and spec.upper_bound() == 128


def test_hf_gpt2_with_a_bare_shape_keeps_int64_ids(capsys):
    pytest.importorskip("transformers")
    code, out, err = run_cli(["summary", "hf:gpt2", "-a", "n_layer=1", "-a", "n_embd=32", "-a", "n_head=2",
                              "-i", "2,64", "--device", "meta", "-f", "json", "-q"], capsys)
    assert code == 0, err
    import json

    layers = json.loads(out)["layers"]
    wte = next(layer for layer in layers if layer["name"].endswith("wte"))
    assert wte["output_shapes"] == [2, 64, 32]


# ---- trace correctness ------------------------------------------------------------------------------------

class CatchesThenFails(nn.Module):
    def __init__(self):
        super().__init__()
        self.first = nn.Linear(4, 4)
        self.second = nn.Linear(8, 4)
        self.after = nn.Identity()

    def forward(self, x):
        try:
            self.first(torch.randn(1, 9))  # fails, and the model handles it
        except RuntimeError:
            pass
        x = self.after(x)
        return self.second(x)  # the failure that ends the pass


class NoneInsideExcept(nn.Module):
    def __init__(self):
        super().__init__()
        self.maybe = _ReturnsNone()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        try:
            raise KeyError("handled")
        except KeyError:
            self.maybe(x)  # returns None while an exception is being handled
        return self.fc(x)


class _ReturnsNone(nn.Module):
    def forward(self, x):
        return None


def test_the_failure_names_the_layer_that_really_failed():
    with pytest.raises(ForwardError) as info:
        netscope.summary(CatchesThenFails(), (2, 4))
    assert info.value.layer == "second" and "second (Linear)" in str(info.value)


class ReplacesTheError(nn.Module):
    """The child fails, the parent catches that and raises an error of its own."""

    def __init__(self):
        super().__init__()
        self.inner = CatchesThenFails()
        self.child = nn.Linear(4, 4)

    def forward(self, x):
        try:
            self.child(torch.randn(1, 7))
        except RuntimeError:
            raise ValueError("the parent's own error") from None
        return x


def test_an_error_the_parent_raises_itself_is_the_parents():
    model = nn.Sequential(ReplacesTheError())
    with pytest.raises(ForwardError) as info:
        netscope.summary(model, (2, 4))
    assert info.value.layer == "0" and "the parent's own error" in str(info.value)


def test_a_module_returning_none_inside_an_except_is_not_a_failure():
    report = netscope.summary(NoneInsideExcept(), (2, 4))
    maybe = next(c for c in report.layers if c.name == "maybe")
    assert maybe.output_shapes == "None"


# ---- no global side effects -------------------------------------------------------------------------------

class AssertsCollector(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        assert gc.isenabled(), "netscope turned the garbage collector off around the forward"
        return self.fc(x)


def test_the_garbage_collector_stays_on_during_the_forward():
    assert gc.isenabled()
    netscope.summary(AssertsCollector(), (1, 4))
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_two_threads_get_correct_separate_reports():
    import torchvision

    models = [(torchvision.models.resnet18(num_classes=3), (1, 3, 32, 32)), (Small(), (2, 3, 8, 8))]
    expected = [netscope.summary(m, s).to_dict()["layers"] for m, s in models]
    results, errors = [None, None], []
    barrier = threading.Barrier(2)

    def work(i):
        try:
            barrier.wait()
            for _ in range(3):
                results[i] = netscope.summary(models[i][0], models[i][1]).to_dict()["layers"]
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert results == expected


# ---- requires_grad and in-place parameter updates ---------------------------------------------------------

class FreezesItself(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        self.fc.weight.requires_grad_(False)
        return self.fc(x)


class UpdatesInPlace(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.other = nn.Linear(4, 4)

    def forward(self, x):
        self.fc.weight.mul_(0.5)  # e.g. a weight-norm or EMA step written into the parameter
        return self.other(self.fc(x))


def test_requires_grad_changed_by_the_forward_is_restored():
    model = FreezesItself()
    before = snapshot(model)
    netscope.summary(model, (1, 4))
    assert model.fc.weight.requires_grad
    assert_same(before, snapshot(model))


def test_parameters_written_in_place_are_named_in_the_report():
    model = UpdatesInPlace()
    weight = model.fc.weight.detach().clone()
    report = netscope.summary(model, (1, 4))
    assert torch.equal(model.fc.weight.detach(), weight * 0.5)  # the user's forward did write it ...
    notes = [n for n in report.run.notes if "in place" in n]
    assert len(notes) == 1 and "fc.weight" in notes[0] and "other." not in notes[0]  # ... and the report says so
    assert "fc.weight" in report.render()
    clean = netscope.summary(Small(), (1, 3, 8, 8))
    assert not clean.run.notes


# ---- one input convention ---------------------------------------------------------------------------------

def test_every_input_form_gives_the_same_report():
    model = Small()
    x = torch.randn(2, 3, 8, 8)
    shapes = [netscope.summary(model, form).layers[-1].output_shapes
              for form in [(2, 3, 8, 8), [2, 3, 8, 8], (np.int64(2), np.int32(3), 8, 8), [(2, 3, 8, 8)], x, (x,),
                           InputSpec([TensorSpec((2, 3, 8, 8))])]]
    shapes.append(netscope.summary(model, input_data=x).layers[-1].output_shapes)
    assert shapes == [(2, 5)] * len(shapes)
    assert netscope.InputSpec is InputSpec and netscope.TensorSpec is TensorSpec
    result = netscope.solve_input_size(model, (1, 3, 8, 8))
    assert result.min_size == 8  # the Linear after the flatten fixes the size: exactly 8 works


@pytest.mark.parametrize("bad,needle", [((1, 0, 8), "at least 1"), ((1, 2.5), "not a whole number"),
                                        ((True, 3), "not a whole number"), ("1,3", "not"),
                                        ((10**6, 10**6, 10**6), "more than netscope will allocate")])
def test_bad_shapes_are_one_clear_error(bad, needle):
    with pytest.raises(netscope.NetscopeError, match=needle):
        netscope.summary(Small(), bad)


# ---- small ones -------------------------------------------------------------------------------------------

def test_every_subcommand_takes_quiet():
    from netscope.cli import COMMANDS, build_parser

    parser = build_parser()
    needs = {"keys": ["ckpt.pt"], "diff": ["ckpt.pt"], "remap": ["ckpt.pt"]}
    for command in COMMANDS:
        for flag in ("-q", "--quiet"):
            assert parser.parse_args([command, *needs.get(command, []), flag]).quiet is True, (command, flag)


def test_warnings_are_shown_after_the_output_of_a_successful_command(tmp_path, capsys, monkeypatch):
    (tmp_path / "warning_models.py").write_text(
        "import warnings, torch.nn as nn\n"
        "class Warns(nn.Linear):\n    def __init__(self):\n"
        "        warnings.warn('model chatter', UserWarning)\n        super().__init__(8, 4)\n")
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(["summary", "warning_models.py:Warns", "-i", "1,8", "--device", "cpu"], capsys)
    assert code == 0 and "Warns" in out and "model chatter" in err
    code, out, err = run_cli(["summary", "warning_models.py:Warns", "-i", "1,8", "--device", "cpu", "-q"], capsys)
    assert code == 0 and "model chatter" not in err


def test_cli_auto_runs_an_input_too_large_for_memory_on_meta(capsys):
    code, out, err = run_cli(["summary", "resnet18", "-i", "1000,3,2048,2048", "-f", "json", "-q"], capsys)
    assert code == 0, err
    import json

    run = json.loads(out)["run"]
    assert run["device"] == "meta" and any("--device" not in n and "meta device instead" in n for n in run["notes"])


def test_a_model_built_on_meta_runs_on_meta_and_is_refused_elsewhere_with_a_clear_error():
    """A model whose weights live on the meta device has no values: summary runs it where it lives; asked
    for the CPU it says so (an InputSpecError), not torch's 'Cannot copy out of meta tensor'."""
    with torch.device("meta"):
        model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    assert netscope.summary(model, input_size=(2, 4)).totals.total_macs == 2 * (4 * 8 + 8 * 2)
    for options in ({"device": "cpu"}, {"device": "cpu", "dtype": "float64"}):
        with pytest.raises(netscope.errors.InputSpecError, match="live on the meta device"):
            netscope.summary(model, input_size=(2, 4), **options)
    assert all(p.is_meta for p in model.parameters())


def test_a_meta_kernel_stricter_than_the_cpu_one_is_named_not_blamed_on_the_model(capfd):
    """torch's meta kernel of _grouped_mm (transformers' mixture-of-experts) takes bf16/fp16 only, where the CPU
    kernel takes float32 too: on meta that is the meta device's limit (exit 2, run on a real device), not the
    model's failure (exit 3), and torch's fake-tensor logger does not print the error on the way."""
    transformers = pytest.importorskip("transformers")
    if not hasattr(transformers, "MixtralConfig"):
        pytest.skip("this transformers has no Mixtral")
    config = transformers.MixtralConfig(hidden_size=32, intermediate_size=48, num_hidden_layers=1, num_attention_heads=4,
                                        num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2, vocab_size=50)
    model = transformers.MixtralForCausalLM(config).eval()
    ids = torch.randint(0, 50, (1, 8))
    on_cpu = netscope.summary(model, input_data=ids)  # the CPU kernel runs float32
    assert on_cpu.totals.total_macs > 0 and not on_cpu.operators.partial
    capfd.readouterr()
    with pytest.raises(netscope.errors.MetaDeviceError, match="meta device cannot run") as caught:
        netscope.summary(model, input_data=ids, device="meta")
    assert "fake_tensor.py" not in capfd.readouterr().err
    # the fix it names works: the same model on meta in bfloat16, counted as on the CPU
    assert "--dtype bfloat16" in str(caught.value) and "--device cpu" in str(caught.value)
    on_meta = netscope.summary(model, input_data=ids, device="meta", dtype="bfloat16")
    assert on_meta.totals.total_macs == on_cpu.totals.total_macs and not on_meta.operators.partial


def test_bfloat16_is_suggested_only_where_the_dtype_is_what_the_meta_kernel_refused():
    class Nonzero(nn.Module):
        def forward(self, x):
            return x[x.nonzero(as_tuple=True)]

    with pytest.raises(netscope.errors.MetaDeviceError, match="needs tensor values") as caught:
        netscope.summary(Nonzero(), input_size=(2, 3), device="meta")
    assert "bfloat16" not in str(caught.value) and "--device cpu" in str(caught.value)
