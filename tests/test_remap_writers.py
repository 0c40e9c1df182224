"""Issue 14.9 / done-when: checkpoints as the real libraries write them (torch zip and legacy, safetensors,
transformers save_pretrained shards, Lightning Trainer, timm CheckpointSaver with EMA) round-trip through
``remap_file`` bit-exact with every tensor accounted for; the per-layout counts are printed (-s)."""

from __future__ import annotations

import argparse

import pytest
import torch
import torch.nn as nn

import netscope


def _accounted(report, source_count):
    """loaded + aliases + unmatched == every source tensor."""
    loaded = sum(1 for d in report.decisions if d.loads and d.source is not None and d.reason != "alias-of")
    aliases = sum(1 for d in report.decisions if d.reason == "alias-of" and d.target is None)
    assert loaded + aliases + len(report.unmatched) == source_count
    print(f"\n{report.source_label}: {source_count} tensors = {loaded} loaded + {aliases} aliases + "
          f"{len(report.unmatched)} kept unmatched")


def _check(out_state, expected):
    assert set(out_state) == set(expected)
    for key, value in expected.items():
        assert out_state[key].dtype == value.dtype and torch.equal(out_state[key], value), key


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(5))


@pytest.mark.parametrize("layout", ["torch-zip", "torch-legacy", "safetensors"])
def test_plain_layouts_round_trip(layout, tmp_path):
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    wrapped = {"module." + k: v for k, v in expected.items()}
    if layout == "safetensors":
        from safetensors.torch import save_file

        path = tmp_path / "m.safetensors"
        save_file(wrapped, str(path))
    else:
        path = tmp_path / "m.pt"
        torch.save(wrapped, path, _use_new_zipfile_serialization=layout == "torch-zip")
    out = tmp_path / ("out" + (".safetensors" if layout == "safetensors" else ".pt"))
    report = netscope.remap_file(str(path), model, str(out))
    _accounted(report, len(wrapped))
    loaded = netscope.read_checkpoint(str(out)).state_dict
    _check(loaded, expected)


def test_transformers_save_pretrained_shards_round_trip(tmp_path):
    transformers = pytest.importorskip("transformers", reason="transformers is not installed")
    config = transformers.BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=20, max_position_embeddings=16)
    torch.manual_seed(0)
    model = transformers.BertModel(config)
    model.save_pretrained(str(tmp_path / "hf"), max_shard_size="4KB")
    assert list((tmp_path / "hf").glob("*.index.json"))
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    info = netscope.keys(str(tmp_path / "hf"))
    out = tmp_path / "bert.safetensors"
    report = netscope.remap_file(str(tmp_path / "hf"), transformers.BertModel(config), str(out))
    _accounted(report, len(info.tensors))
    _check(netscope.read_checkpoint(str(out)).state_dict, {k: v for k, v in expected.items() if k in info.tensors})


def test_lightning_trainer_checkpoint_round_trips_with_optimizer_state(tmp_path):
    pl = pytest.importorskip("lightning.pytorch", reason="lightning is not installed")

    class Module(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))

        def training_step(self, batch, _):
            x, y = batch
            return nn.functional.mse_loss(self.model(x), y)

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=0.01)

    torch.manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(8, 3), torch.randn(8, 1))
    module = Module()
    trainer = pl.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(tmp_path))
    trainer.fit(module, torch.utils.data.DataLoader(data, batch_size=4))
    path = tmp_path / "run.ckpt"
    trainer.save_checkpoint(str(path))
    expected = {k: v.clone() for k, v in module.model.state_dict().items()}
    out = tmp_path / "plain.ckpt"
    target = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    report = netscope.remap_file(str(path), target, str(out))
    _accounted(report, len(expected))
    saved = torch.load(out, weights_only=False)
    _check(saved["state_dict"], expected)
    original = torch.load(path, weights_only=False)
    assert saved["optimizer_states"][0]["param_groups"] == original["optimizer_states"][0]["param_groups"]
    assert saved["global_step"] == original["global_step"] and set(saved) == set(original)


def test_timm_checkpoint_saver_with_ema_round_trips_and_key_picks_ema(tmp_path):
    timm_utils = pytest.importorskip("timm.utils", reason="timm is not installed")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    ema_cls = getattr(timm_utils, "ModelEmaV3", None) or getattr(timm_utils, "ModelEmaV2")
    ema = ema_cls(model, decay=0.5)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.update(model)
    saver = timm_utils.CheckpointSaver(model, optimizer, args=argparse.Namespace(lr=0.1, model="seq"), model_ema=ema,
                                       checkpoint_dir=str(tmp_path), recovery_dir=str(tmp_path), max_history=1)
    saver.save_checkpoint(epoch=0, metric=1.0)
    path = tmp_path / "last.pth.tar"
    assert path.exists()
    raw = {k: v.clone() for k, v in model.state_dict().items()}
    smoothed = {k: v.clone() for k, v in ema.module.state_dict().items()}
    assert any(not torch.equal(raw[k], smoothed[k]) for k in raw)
    info = netscope.keys(str(path))  # weights_only, with args as argparse.Namespace
    assert any("state_dict_ema" in n for n in info.notes)
    out = tmp_path / "ema.pth.tar"
    target = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    report = netscope.remap_file(str(path), target, str(out), key="state_dict_ema")
    _accounted(report, len(smoothed))
    saved = torch.load(out, weights_only=False)
    _check(saved["state_dict_ema"], smoothed)
    _check(saved["state_dict"], raw)
    assert saved["args"].lr == 0.1


class _TiedLM(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(11, 4)
        self.head = nn.Linear(4, 11, bias=False)
        self.head.weight = self.embed.weight


def test_safetensors_output_of_a_tied_model_says_the_alias_is_not_in_load_file(tmp_path):
    """safetensors stores the shared tensor once; `load_file` (the oracle) then lacks the other key, so the
    remap notes it, and netscope.load restores the tie with a strict load."""
    from safetensors.torch import load_file

    torch.manual_seed(0)
    model = _TiedLM()
    source = tmp_path / "src.pt"
    torch.save({"module." + k: v for k, v in model.state_dict().items()}, source)
    out = tmp_path / "out.safetensors"
    report = netscope.remap_file(str(source), _TiedLM(), str(out))
    plain = load_file(str(out))
    missing = set(model.state_dict()) - set(plain)
    assert missing == {"head.weight"}
    assert any("head.weight = embed.weight" in n and "load_file does not" in n for n in report.notes)
    target = _TiedLM()
    netscope.load(str(out), target, strict=True)
    assert torch.equal(target.head.weight, model.embed.weight) and target.head.weight is target.embed.weight
    untied = tmp_path / "untied.safetensors"
    plain_model = nn.Linear(3, 2)
    torch.save(plain_model.state_dict(), tmp_path / "lin.pt")
    report = netscope.remap_file(str(tmp_path / "lin.pt"), nn.Linear(3, 2), str(untied))
    assert not any("share a tensor" in n for n in report.notes)
