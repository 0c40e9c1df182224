"""Checkpoints written by the real libraries (timm's CheckpointSaver, torch.save of whole modules, ...), read
by keys / diff / remap; each library's own loader (or torch's strict load_state_dict) is the oracle."""

from __future__ import annotations

import argparse

import pytest
import torch
import torch.nn as nn

import netscope
from netscope.cli import main


def _same(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)


class _Wrapped(nn.Module):
    """A timm model under another attribute: the remap has to rename every key (prefix ``backbone.``)."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.backbone = inner

    def forward(self, x):
        return self.backbone(x)


def _timm_train_checkpoint(tmp_path):
    """A checkpoint-0.pth.tar as timm's train script writes it: state_dict, state_dict_ema (a real ModelEmaV3
    after one step, so the two differ), optimizer, args (argparse.Namespace), epoch, metric."""
    timm = pytest.importorskip("timm", reason="timm is not installed")
    from timm.utils import CheckpointSaver, ModelEmaV3

    torch.manual_seed(0)
    model = timm.create_model("test_resnet", pretrained=False, num_classes=3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    ema = ModelEmaV3(model, decay=0.5)
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    optimizer.step()
    ema.update(model)
    saver = CheckpointSaver(model, optimizer, args=argparse.Namespace(model="test_resnet"), model_ema=ema,
                            checkpoint_dir=str(tmp_path), recovery_dir=str(tmp_path), max_history=1)
    saver.save_checkpoint(0, metric=0.5)
    raw = {k: v.clone() for k, v in model.state_dict().items()}
    averaged = {k: v.clone() for k, v in ema.module.state_dict().items()}
    assert any(not torch.equal(raw[k], averaged[k]) for k in raw)  # the test could tell them apart
    return timm, tmp_path / "checkpoint-0.pth.tar", raw, averaged


@pytest.mark.parametrize("key", [None, "state_dict_ema"])
def test_timm_ema_weights_are_renamed_with_the_state_dict_not_left_in_the_old_naming(tmp_path, capsys, key):
    """Remapping state_dict (or, with --key, state_dict_ema) into a renamed layout used to leave the other copy
    in the old naming, so timm's own loader (EMA by default) failed on the written file."""
    timm, path, raw, averaged = _timm_train_checkpoint(tmp_path)
    out = tmp_path / "remapped.pth.tar"
    args = ["remap", str(path), "tests.test_remap_real_files:wrapped_test_resnet", "-o", str(out)]
    assert main(args + (["--key", key] if key else [])) == 0
    assert "renamed by the same mapping: " in capsys.readouterr().out
    for use_ema, truth in ((True, averaged), (False, raw)):
        model = wrapped_test_resnet()
        timm.models.load_checkpoint(model, str(out), use_ema=use_ema, strict=True)
        assert all(_same(model.state_dict()["backbone." + k], v) for k, v in truth.items())


def test_a_second_dict_with_other_keys_is_named_as_kept_in_its_original_naming(tmp_path):
    torch.manual_seed(0)
    student, teacher = nn.Sequential(nn.Linear(2, 3)), nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1))
    path = tmp_path / "distill.pt"
    torch.save({"student": student.state_dict(), "teacher": teacher.state_dict()}, path)
    report = netscope.remap_file(str(path), _Wrapped(nn.Sequential(nn.Linear(2, 3))), str(tmp_path / "out.pt"),
                                 key="student")
    assert any("carried over in its original naming: teacher" in n for n in report.notes)
    saved = torch.load(tmp_path / "out.pt", weights_only=True)
    assert all(_same(saved["teacher"][k], v) for k, v in teacher.state_dict().items())  # untouched


def wrapped_test_resnet():
    import timm

    return _Wrapped(timm.create_model("test_resnet", pretrained=False, num_classes=3))


def test_whole_modules_pickled_inside_a_dict_are_refused_safely_and_read_as_state_dicts_when_opted_in(
        tmp_path, capsys):
    """YOLOv5 saves {'epoch', 'model': the module, 'ema': the module, 'optimizer'}: safe loading refuses it and
    names the opt-out; with --unsafe-pickle the modules' state dicts are found (not 'no model tensors'), remapped
    (the EMA copy too) and strictly loadable."""
    torch.manual_seed(0)
    model, ema = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)), nn.Sequential(nn.Conv2d(3, 4, 3),
                                                                                       nn.BatchNorm2d(4))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    path = tmp_path / "last.pt"
    torch.save({"epoch": 3, "model": model, "ema": ema, "optimizer": optimizer.state_dict()}, path)
    out = tmp_path / "out.pt"
    target = "tests.test_remap_real_files:wrapped_conv_bn"
    assert main(["remap", str(path), target, "-o", str(out)]) == 2
    assert "--unsafe-pickle" in capsys.readouterr().err and not out.exists()
    assert main(["remap", str(path), target, "-o", str(out), "--unsafe-pickle"]) == 0
    printed = capsys.readouterr().out
    assert "model is a whole Sequential object pickled" in printed and "renamed by the same mapping: ema" in printed
    saved = torch.load(out, weights_only=True)  # state dicts now: loadable safely
    for entry, truth in (("model", model), ("ema", ema)):
        fresh = wrapped_conv_bn()
        fresh.load_state_dict(saved[entry], strict=True)
        assert all(_same(fresh.state_dict()["backbone." + k], v) for k, v in truth.state_dict().items())
    assert saved["epoch"] == 3 and saved["optimizer"]["param_groups"][0]["lr"] == 0.1


def wrapped_conv_bn():
    return _Wrapped(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)))


def _tiny_bert():
    transformers = pytest.importorskip("transformers", reason="transformers is not installed")
    config = transformers.BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=16)
    return transformers.BertModel(config)


class _RenamedBert(nn.Module):
    """BertModel's layers under ``blocks`` (a ModuleList, or a ModuleDict with the given keys in registration
    order): every layer's tensors have the same shapes as the other layer's."""

    def __init__(self, dict_keys=None):
        super().__init__()
        bert = _tiny_bert()
        self.embeddings, self.pooler = bert.embeddings, bert.pooler
        layers = list(bert.encoder.layer)
        self.blocks = nn.ModuleDict(dict(zip(dict_keys, layers))) if dict_keys else nn.ModuleList(layers)


def test_same_shaped_layers_of_a_saved_bert_keep_their_numbers_in_a_renamed_layout(tmp_path):
    """torch.save keeps the model's order: each encoder layer goes to the block of its own number, and the report
    says the evidence was position, kind and shape. HF's save_pretrained (safetensors, keys sorted by name)
    carries no such order: there the same remap refuses the layers instead of guessing."""
    torch.manual_seed(0)
    saved = _tiny_bert()
    torch.save(saved.state_dict(), tmp_path / "bert.pt")
    new, report = netscope.remap(str(tmp_path / "bert.pt"), _RenamedBert())
    moved = [d for d in report.decisions if d.source and d.source.startswith("encoder.layer.")]
    assert moved and all(d.reason == "structural" and "same position, kind and shape" in d.detail for d in moved)
    fresh = _RenamedBert()
    fresh.load_state_dict(new, strict=True)
    for key, value in saved.state_dict().items():
        assert _same(fresh.state_dict()[key.replace("encoder.layer.", "blocks.")], value)
    saved.save_pretrained(tmp_path / "hf")
    _, report = netscope.remap(str(tmp_path / "hf" / "model.safetensors"), _RenamedBert())
    layers = [d for d in report.decisions if d.source and d.source.startswith("encoder.layer.")]
    assert layers and not any(d.loads for d in layers)


def test_position_against_numbering_in_a_tie_is_refused_for_every_layer_not_half_taken(tmp_path):
    """blocks registered as '1' then '0': by position layer.0 -> blocks.1, by number layer.0 -> blocks.0, and no
    majority says which. Before, the first layer's offset won the tie, so layer.0 went into blocks.1 while
    layer.1 was refused: a same-shaped layer filled by position against its own number."""
    torch.manual_seed(0)
    torch.save(_tiny_bert().state_dict(), tmp_path / "bert.pt")
    _, report = netscope.remap(str(tmp_path / "bert.pt"), _RenamedBert(dict_keys=["1", "0"]))
    layers = [d for d in report.decisions if d.source and d.source.startswith("encoder.layer.")]
    assert layers and all(not d.loads and d.reason == "ambiguous" for d in layers)
    assert all("position and numbering disagree" in d.detail and "--rule" in d.detail for d in layers)
    assert all(not t.startswith("blocks.") for t in report.mapping.values())


class _Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc, self.norm = nn.Linear(8, 8), nn.LayerNorm(8)


class _Defined(nn.Module):
    """Two same-shaped blocks defined zeta first, alpha second: name order is the reverse of model order."""

    def __init__(self):
        super().__init__()
        self.zeta, self.alpha, self.head = _Block(), _Block(), nn.Linear(8, 2)


class _Renamed(nn.Module):
    def __init__(self):
        super().__init__()
        self.stage1, self.stage2, self.classifier = _Block(), _Block(), nn.Linear(8, 2)


@pytest.mark.parametrize("form", ["safetensors file", "load_file dict", "torch.save of the sorted dict"])
def test_a_file_that_sorts_keys_by_name_gives_no_position_evidence_between_same_shaped_layers(tmp_path, form):
    """safetensors stores keys sorted by name, so 'alpha' comes before 'zeta' whatever the model's order. Before,
    position in that order was taken as evidence and alpha's weights went into stage1 (zeta's place): two
    same-shaped blocks silently swapped. Now they are refused with a rule to paste; the unique head still maps."""
    safetensors_torch = pytest.importorskip("safetensors.torch", reason="safetensors is not installed")
    torch.manual_seed(0)
    saved = _Defined()
    path = tmp_path / "model.safetensors"
    safetensors_torch.save_file(saved.state_dict(), str(path))
    source = {"safetensors file": str(path), "load_file dict": safetensors_torch.load_file(str(path))}.get(form)
    if source is None:
        source = str(tmp_path / "resaved.pt")
        torch.save(safetensors_torch.load_file(str(path)), source)
    new, report = netscope.remap(source, _Renamed())
    blocks = [d for d in report.decisions if d.source and d.source.startswith(("zeta.", "alpha."))]
    assert blocks and all(not d.loads and d.reason == "ambiguous" and "sorted by name" in d.detail for d in blocks)
    assert report.mapping["head.weight"] == "classifier.weight" and _same(new["classifier.weight"], saved.head.weight)


def test_torch_save_keeps_the_model_order_so_position_still_pairs_the_blocks(tmp_path):
    torch.manual_seed(0)
    saved = _Defined()
    torch.save(saved.state_dict(), tmp_path / "model.pt")
    new, report = netscope.remap(str(tmp_path / "model.pt"), _Renamed())
    fresh = _Renamed()
    fresh.load_state_dict(new, strict=True)
    for source, target in (("zeta", "stage1"), ("alpha", "stage2"), ("head", "classifier")):
        for name, value in getattr(saved, source).state_dict().items():
            assert _same(getattr(fresh, target).state_dict()[name], value)


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.bn, self.fc = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(self.bn(self.conv(x)).mean((2, 3)))


def test_lightning_weight_averaging_checkpoint_remaps_both_copies_into_the_bare_model(tmp_path, capsys):
    """A real Trainer.fit with Lightning's WeightAveraging callback: 'state_dict' holds the averaged weights,
    'current_model_state' the trained ones (both prefixed 'model.'), 'averaging_state' the count. Both copies are
    renamed; each loads strictly into the bare model with its tensors equal; BatchNorm's version survives."""
    callbacks = pytest.importorskip("lightning.pytorch.callbacks", reason="lightning is not installed")
    if not hasattr(callbacks, "WeightAveraging"):
        pytest.skip("this lightning has no WeightAveraging callback")
    from torch.optim.swa_utils import get_ema_multi_avg_fn

    path = _lightning_checkpoint(tmp_path, callbacks.WeightAveraging(multi_avg_fn=get_ema_multi_avg_fn(0.5)),
                                 "run.ckpt", max_steps=2)
    written = torch.load(path, weights_only=True)
    out = tmp_path / "bare.ckpt"
    assert main(["remap", str(path), "tests.test_remap_real_files:_Net", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "renamed by the same mapping: current_model_state" in printed and "averaging_state (" not in printed.split(
        "renamed by the same mapping")[1]
    saved = torch.load(out, weights_only=True)
    for entry in ("state_dict", "current_model_state"):
        bare = _Net()
        bare.load_state_dict(saved[entry], strict=True)
        assert all(_same(bare.state_dict()[k[len("model."):]], v) for k, v in written[entry].items())
    # Lightning writes the averaged copy as a plain dict; the trained copy keeps BatchNorm's version, re-keyed
    assert saved["current_model_state"]._metadata["bn"] == written["current_model_state"]._metadata["model.bn"]
    assert torch.equal(saved["averaging_state"]["n_averaged"], written["averaging_state"]["n_averaged"])


class _Gain(nn.Module):
    """A module holding a buffer and no parameter."""

    def __init__(self, value):
        super().__init__()
        self.register_buffer("gain", torch.full((8,), float(value)))

    def forward(self, x):
        return x * self.gain


class _Interleaved(nn.Module):
    """BatchNorms between convolutions, and a numbered Sequential of buffer-only modules between Linears."""

    def __init__(self, names=("conv1", "bn1", "conv2", "bn2", "body"), first=1):
        super().__init__()
        self.names = names
        for name, module in zip(names, (nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Conv2d(8, 8, 3), nn.BatchNorm2d(8),
                                        nn.Sequential(_Gain(first), nn.Linear(8, 8), _Gain(first + 1), nn.Linear(8, 8),
                                                      _Gain(first + 2), nn.Linear(8, 2)))):
            setattr(self, name, module)

    def forward(self, x):
        conv1, bn1, conv2, bn2, body = (getattr(self, n) for n in self.names)
        return body(bn2(conv2(bn1(conv1(x)))).mean((2, 3)))


class _NamedGains(nn.Module):
    """Buffer-only modules with names, not indices: the archive does not say where they sit among their siblings."""

    def __init__(self):
        super().__init__()
        self.stem, self.pre, self.head = nn.Linear(4, 8), _Gain(1), nn.Linear(8, 2)

    def forward(self, x):
        return self.head(self.pre(self.stem(x)))


def test_a_torch_export_archive_is_read_in_the_models_order_where_it_proves_it(tmp_path):
    """torch.export.save lists every parameter, then every buffer (torch.export.load's own state_dict is the
    precondition): BatchNorm statistics after the last Linear. netscope reads the keys back in the model's
    state_dict() order (the model's own order is the oracle), buffer-only modules of a Sequential placed by their
    index, so remapping the archive into a renamed model decides what remapping the same model's torch.save file
    does (before: 4 of the 13 tensors it maps). Where a buffer-only module has a name, its place is
    unknown: the keys are said not to be in the model's order, and position is no evidence."""
    torch.manual_seed(0)
    model = _Interleaved().eval()
    x = torch.randn(1, 3, 8, 8)
    archive, saved = tmp_path / "model.pt2", tmp_path / "model.pt"
    torch.export.save(torch.export.export(model, (x,)), archive)
    torch.save(model.state_dict(), saved)
    listed = list(torch.export.load(archive).state_dict)
    assert listed != list(model.state_dict()) and listed.index("bn1.running_mean") > listed.index("body.5.bias")
    info = netscope.keys(str(archive))
    assert list(info.tensors) == list(model.state_dict()) and info.keys_in_model_order
    renamed = lambda: _Interleaved(("stem", "norm_a", "mid", "norm_b", "net"), first=0)  # noqa: E731
    from_archive, report = netscope.remap(str(archive), renamed())
    from_file, oracle = netscope.remap(str(saved), renamed())
    assert report.mapping == oracle.mapping and len(report.mapping) == len(oracle.mapping) >= 9
    assert all(_same(from_archive[k], from_file[k]) for k in report.mapping.values())
    assert all(_same(from_archive[t], model.state_dict()[s]) for s, t in report.mapping.items())

    named = _NamedGains().eval()
    torch.export.save(torch.export.export(named, (torch.randn(2, 4),)), tmp_path / "named.pt2")
    info = netscope.keys(str(tmp_path / "named.pt2"))
    assert not info.keys_in_model_order and list(info.tensors) == list(torch.export.load(tmp_path / "named.pt2")
                                                                      .state_dict)
    assert any("not in the model's order" in n for n in info.notes)

    tied = nn.Sequential(nn.Embedding(10, 8), nn.BatchNorm1d(8), nn.Linear(8, 10, bias=False)).eval()
    tied[2].weight = tied[0].weight  # torch.export lists the tied key beside the first: order unknown
    torch.export.save(torch.export.export(tied, (torch.randint(0, 10, (3,)),)), tmp_path / "tied.pt2")
    info = netscope.keys(str(tmp_path / "tied.pt2"))
    assert list(torch.export.load(tmp_path / "tied.pt2").state_dict)[:2] == ["0.weight", "2.weight"]
    assert not info.keys_in_model_order and set(info.tensors) == set(tied.state_dict())


def _lightning_checkpoint(tmp_path, callback, name, **trainer_options):
    """A real Trainer.fit of a LightningModule holding _Net as ``model`` (CPU, batches of 4 of 8 samples) with
    ``callback``, saved with Trainer.save_checkpoint; the path."""
    lightning = pytest.importorskip("lightning", reason="lightning is not installed")

    class Module(lightning.LightningModule):
        def __init__(self):
            super().__init__()
            self.model = _Net()

        def training_step(self, batch, _):
            return nn.functional.cross_entropy(self.model(batch[0]), batch[1])

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.5)

    torch.manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(8, 3, 8, 8), torch.randint(0, 2, (8,)))
    trainer = lightning.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False,
                                enable_checkpointing=False, accelerator="cpu", default_root_dir=str(tmp_path),
                                callbacks=[callback], **trainer_options)
    trainer.fit(Module(), torch.utils.data.DataLoader(data, batch_size=4))
    path = tmp_path / name
    trainer.save_checkpoint(path)
    return path


def test_lightning_averaging_state_is_named_as_the_averaging_count_and_swa_copies_are_remapped(tmp_path, capsys):
    """Real checkpoints of Lightning's weight averaging callbacks. EMA (WeightAveraging): 'averaging_state' is the
    AveragedModel's {'n_averaged': tensor} (read back from the file), not a dict of model tensors, so keys no longer
    offers it with --key; a note says what state_dict and current_model_state hold. StochasticWeightAveraging keeps
    its averaged copy of the model in its callback state: keys lists it, and remap renames it by the same plan (it
    loads strictly into the bare model, tensors equal; the count and the callback's other state untouched)."""
    callbacks = pytest.importorskip("lightning.pytorch.callbacks", reason="lightning is not installed")
    if not hasattr(callbacks, "EMAWeightAveraging"):
        pytest.skip("this lightning has no EMAWeightAveraging callback")
    ema = _lightning_checkpoint(tmp_path, callbacks.EMAWeightAveraging(decay=0.5), "ema.ckpt", max_steps=2)
    written = torch.load(ema, weights_only=True)
    assert set(written["averaging_state"]) == {"n_averaged"}  # what the file really holds
    info = netscope.keys(str(ema))
    assert info.state_dict_path == ("state_dict",)
    [listed] = [n for n in info.notes if "the file also holds" in n]
    assert "current_model_state (9 tensors)" in listed and "averaging_state" not in listed
    [averaging] = [n for n in info.notes if n.startswith("Lightning weight averaging")]
    assert "'averaging_state' the averaging count (n_averaged), no model weights" in averaging
    assert averaging.endswith("read: state_dict (the averaged weights)")
    assert netscope.keys(str(ema), key="current_model_state").notes[-1].endswith(
        "read: current_model_state (the model's current, not averaged, weights)")

    swa = _lightning_checkpoint(tmp_path, callbacks.StochasticWeightAveraging(swa_lrs=0.1, swa_epoch_start=1),
                                "swa.ckpt", max_epochs=2)
    written = torch.load(swa, weights_only=True)
    [state_key] = written["callbacks"]
    copy_path = f"callbacks.{state_key}.average_model_state"
    averaged = written["callbacks"][state_key]["average_model_state"]
    assert set(averaged) == set(written["state_dict"])  # a copy of the same model's state dict
    assert any(not torch.equal(averaged[k], written["state_dict"][k]) for k in averaged)  # and not the same weights
    info = netscope.keys(str(swa))
    assert any(f"{copy_path} (9 tensors)" in n for n in info.notes)
    assert any(n.startswith("Lightning StochasticWeightAveraging") for n in info.notes)
    assert list(netscope.keys(str(swa), key=copy_path).tensors) == list(averaged)
    out = tmp_path / "bare.ckpt"
    assert main(["remap", str(swa), "tests.test_remap_real_files:_Net", "-o", str(out)]) == 0
    assert f"renamed by the same mapping: {copy_path}" in capsys.readouterr().out
    saved = torch.load(out, weights_only=True)
    copy = saved["callbacks"][state_key]
    bare = _Net()
    bare.load_state_dict(copy["average_model_state"], strict=True)
    assert all(_same(bare.state_dict()[k[len("model."):]], v) for k, v in averaged.items())
    kept = written["callbacks"][state_key]
    assert {k: v for k, v in copy.items() if k != "average_model_state"} == \
        {k: v for k, v in kept.items() if k != "average_model_state"}


def test_a_state_dict_saved_inside_a_tuple_or_list_is_found_remapped_and_the_sequence_kept(tmp_path, capsys):
    """torch.save((model.state_dict(), optimizer.state_dict(), epoch)) and torch.save([sd, sd_ema]) used to read as
    'no model tensors found' (0 tensors listed); --key 0 was refused with 'the candidates are: none'."""
    torch.manual_seed(0)
    model, ema = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8)), nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(3, 4)).sum().backward()
    optimizer.step()
    as_tuple, as_list = tmp_path / "tuple.pt", tmp_path / "list.pt"
    torch.save((model.state_dict(), optimizer.state_dict(), 7), as_tuple)
    torch.save([model.state_dict(), ema.state_dict()], as_list)
    info = netscope.keys(str(as_tuple))
    assert info.state_dict_path == (0,) and list(info.tensors) == list(model.state_dict())
    assert netscope.keys(str(as_list), key="1").state_dict_path == (1,)
    target = "tests.test_remap_real_files:wrapped_linear_bn"
    for path, copies in ((as_tuple, ((0, model),)), (as_list, ((0, model), (1, ema)))):
        out = tmp_path / f"out_{path.name}"
        assert main(["remap", str(path), target, "-o", str(out)]) == 0
        saved = torch.load(out, weights_only=True)
        assert type(saved) is type(torch.load(path, weights_only=True))
        for index, truth in copies:
            fresh = wrapped_linear_bn()
            fresh.load_state_dict(saved[index], strict=True)
            assert all(_same(fresh.state_dict()["backbone." + k], v) for k, v in truth.state_dict().items())
    assert saved_tuple_extras(tmp_path / "out_tuple.pt") == (optimizer.state_dict()["param_groups"][0]["lr"], 7)
    capsys.readouterr()
    assert main(["remap", str(as_tuple), "tests.test_remap_real_files:_Linear", "-o", str(tmp_path / "x.pt")]) == 2
    assert "the output is a tuple, which has no entry to keep them under" in capsys.readouterr().err


def saved_tuple_extras(path):
    saved = torch.load(path, weights_only=True)
    return saved[1]["param_groups"][0]["lr"], saved[2]


def wrapped_linear_bn():
    return _Wrapped(nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8)))


class _Linear(nn.Module):  # takes the Linear only: the BatchNorm tensors are left unmatched
    def __init__(self):
        super().__init__()
        self.layer = nn.Sequential(nn.Linear(4, 8))


def test_a_safetensors_file_netscope_wrote_keeps_the_model_order_as_evidence(tmp_path):
    """netscope records the key order in its .safetensors metadata, so its own files pair by position as .pt does."""
    pytest.importorskip("safetensors", reason="safetensors is not installed")
    torch.manual_seed(0)
    saved = _Defined()
    torch.save(saved.state_dict(), tmp_path / "model.pt")
    netscope.remap_file(str(tmp_path / "model.pt"), _Defined(), str(tmp_path / "model.safetensors"))
    assert netscope.keys(str(tmp_path / "model.safetensors")).keys_in_model_order
    new, _ = netscope.remap(str(tmp_path / "model.safetensors"), _Renamed())
    assert all(_same(new["stage1." + k], v) for k, v in saved.zeta.state_dict().items())
    assert all(_same(new["stage2." + k], v) for k, v in saved.alpha.state_dict().items())


class _TiedLM(nn.Module):
    def __init__(self, tie: bool = True):
        super().__init__()
        self.body = nn.Sequential(nn.Embedding(20, 8), nn.LayerNorm(8))
        self.head = nn.Linear(8, 20, bias=False)
        if tie:
            self.head.weight = self.body[0].weight


@pytest.mark.parametrize("writer", ["huggingface_hub", "huggingface_hub sharded", "safetensors.save_model"])
def test_a_shared_tensor_saved_once_with_the_libraries_alias_record_is_restored_not_guessed(tmp_path, writer):
    """safetensors.torch.save_model and huggingface_hub save a tied tensor once and record the dropped name in the
    metadata ({'body.0.weight': 'head.weight'}). Before, netscope ignored that record: the embedding was missing
    and was filled from the head by structure ('the only layer of this kind'), or left missing in an untied
    model. Now the dropped name is restored as an alias and maps by name."""
    pytest.importorskip("safetensors", reason="safetensors is not installed")
    torch.manual_seed(0)
    saved = _TiedLM()
    if writer == "safetensors.save_model":
        from safetensors.torch import save_model

        save_model(saved, str(tmp_path / "model.safetensors"))
    else:
        hub = pytest.importorskip("huggingface_hub", reason="huggingface_hub is not installed")
        hub.save_torch_state_dict(saved.state_dict(), str(tmp_path),
                                  max_shard_size="1KB" if writer.endswith("sharded") else "5GB")
    source = next(p for p in (tmp_path / "model.safetensors.index.json", tmp_path / "model.safetensors") if p.exists())
    untied = _TiedLM(tie=False)
    new, report = netscope.remap(str(source), untied)
    assert report.decisions and all(d.reason == "exact" for d in report.decisions)
    untied.load_state_dict(new, strict=True)
    for key, value in saved.state_dict().items():
        assert _same(untied.state_dict()[key], value)


@pytest.mark.parametrize("from_file", [True, False])
def test_diff_reads_batchnorm_versions_under_the_remapped_names_as_torch_will(tmp_path, from_file):
    """A Lightning-style state dict ('model.' prefix) saved by torch with _metadata version 2 but without
    num_batches_tracked: after the remap the version sits under 'bn', so torch's strict load does not add the
    counter. diff used to look the version up under the model's name in the un-renamed _metadata, miss it, and
    say torch would fill the key (a strict load that then failed)."""
    torch.manual_seed(0)
    state = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).state_dict()
    renamed = type(state)((f"model.{k}", v) for k, v in state.items() if not k.endswith("num_batches_tracked"))
    renamed._metadata = type(state._metadata)((f"model.{k}" if k else k, v) for k, v in state._metadata.items())
    torch.save(renamed, tmp_path / "run.pt")
    source = str(tmp_path / "run.pt") if from_file else torch.load(tmp_path / "run.pt", weights_only=True)
    report = netscope.diff(source, nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)))
    new, _ = netscope.remap(torch.load(tmp_path / "run.pt", weights_only=True),
                            nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)))
    oracle = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    torch_fills = not oracle.load_state_dict(new, strict=False).missing_keys
    assert not torch_fills  # torch itself: with version 2 under '1', the counter stays missing
    assert "1.num_batches_tracked" not in report.loader_fills and "1.num_batches_tracked" in report.missing


@pytest.mark.parametrize("kind", ["prune", "parametrize", "old weight_norm"])
def test_reparametrized_tensors_are_named_with_the_fix_that_works(kind):
    """Tensors of a pruned or parametrized module (weight_orig/weight_mask, parametrizations.weight.original0/1,
    weight_g/weight_v) are never renamed into the plain weight (it is computed from them): each is unused with a
    hint naming torch's own undo, and after that undo the state dict loads strictly into the plain model."""
    import warnings

    from torch.nn.utils import parametrize, prune
    from torch.nn.utils.parametrizations import weight_norm

    def plain():
        return nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))

    torch.manual_seed(0)
    saved = plain()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # the old weight_norm is deprecated: still what old code saved
        if kind == "prune":
            prune.l1_unstructured(saved[0], "weight", 0.5)
            undo, marker = (lambda: prune.remove(saved[0], "weight")), "prune.remove"
        elif kind == "parametrize":
            weight_norm(saved[0])
            undo, marker = (lambda: parametrize.remove_parametrizations(saved[0], "weight")), "remove_parametrizations"
        else:
            torch.nn.utils.weight_norm(saved[0])
            undo, marker = (lambda: torch.nn.utils.remove_weight_norm(saved[0])), "remove_weight_norm"
    report = netscope.diff(dict(saved.state_dict()), plain())
    extra = [d for d in report.decisions if d.source and d.source.startswith("0.") and d.source not in ("0.bias",)]
    assert extra and all(d.reason == "unused" and d.target is None and marker in d.detail for d in extra), \
        [(d.source, d.reason, d.detail) for d in extra]
    undo()
    plain().load_state_dict(saved.state_dict(), strict=True)  # the hint's fix works
