"""Issue 14: never a tensor in the wrong place (names over position, ambiguity refused with a ready rule),
never a tensor lost (kept, side file, or dropped only when asked), exit codes as documented."""

from __future__ import annotations

import hashlib
import json
import re
import shlex

import pytest
import torch
import torch.nn as nn
import torchvision

import netscope
from netscope.cli import main
from netscope.remapping import CoverageError, plan_mapping
from netscope.remapping.sides import TensorLayout
from netscope.records import TensorMeta


def _same(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------- evidence over position

class Attention(nn.Module):
    def __init__(self, names):
        super().__init__()
        self.names = names
        for name in names:
            setattr(self, name, nn.Linear(8, 8))


class Block(nn.Module):
    def __init__(self, names, attr):
        super().__init__()
        setattr(self, attr, Attention(names))
        self.norm = nn.LayerNorm(8)
        self.mlp = nn.Linear(8, 16)


def _blocks(names, attr, n=2):
    torch.manual_seed(len(names) + len(attr))
    return nn.Sequential(*[Block(names, attr) for _ in range(n)])


def test_qkv_saved_in_one_order_and_declared_in_another_are_mapped_by_name():
    source = _blocks(["q_proj", "k_proj", "v_proj", "out_proj"], "attn")
    target = _blocks(["value", "key", "query", "out"], "attention")
    new, report = netscope.remap(source.state_dict(), target)
    twin = {"q_proj": "query", "k_proj": "key", "v_proj": "value", "out_proj": "out"}
    for i in range(2):
        for s, t in twin.items():
            for leaf in ("weight", "bias"):
                assert _same(new[f"{i}.attention.{t}.{leaf}"], source.state_dict()[f"{i}.attn.{s}.{leaf}"])
                assert report.mapping[f"{i}.attn.{s}.{leaf}"] == f"{i}.attention.{t}.{leaf}"
    reasons = {d.reason for d in report.decisions if d.source and ".attn." in d.source}
    assert reasons == {"name-evidence"}
    target.load_state_dict(new, strict=True)


def test_same_shape_siblings_without_name_evidence_are_refused_with_a_working_rule():
    source = _blocks(["a", "b", "c"], "attn", n=1)
    target = _blocks(["x", "y", "z"], "attention", n=1)
    new, report = netscope.remap(source.state_dict(), target)
    assert sorted(report.ambiguous) == sorted(k for k in source.state_dict() if ".attn." in k)
    assert not any(".attention." in k for k in new)  # nothing guessed
    with pytest.raises(netscope.remapping.StrictLoadError, match="ambiguous"):
        netscope.load(source.state_dict(), _blocks(["x", "y", "z"], "attention", n=1))
    detail = next(d.detail for d in report.decisions if d.reason == "ambiguous")
    rules = [parsed for flag, parsed in zip(shlex.split(detail.split("paste: ")[1])[::2],
                                            shlex.split(detail.split("paste: ")[1])[1::2]) if flag == "--rule"]
    assert rules  # pasting the suggested rules (if the order is right) resolves the group
    new, report = netscope.remap(source.state_dict(), target, rules=rules)
    assert report.ambiguous == [] and report.unused == []
    assert _same(new["0.attention.y.weight"], source.state_dict()["0.attn.b.weight"])



def _timm_regnet_to_torchvision(key):
    """timm's RegNet names -> torchvision's, written by hand from both libraries' module trees (sN.bM is
    trunk_output.blockN.blockN-(M-1); conv1/conv2/conv3 are f.a/f.b/f.c, downsample is proj)."""
    found = re.match(r"s(\d+)\.b(\d+)\.(.*)$", key)
    if found:
        stage, block, rest = int(found[1]), int(found[2]), found[3]
        for a, b in (("conv1.conv.", "f.a.0."), ("conv1.bn.", "f.a.1."), ("conv2.conv.", "f.b.0."), ("conv2.bn.", "f.b.1."),
                     ("conv3.conv.", "f.c.0."), ("conv3.bn.", "f.c.1."), ("se.", "f.se."), ("downsample.conv.", "proj.0."),
                     ("downsample.bn.", "proj.1.")):
            if rest.startswith(a):
                return f"trunk_output.block{stage}.block{stage}-{block - 1}.{b}{rest[len(a):]}"
    return next(b + key[len(a):] for a, b in (("stem.conv.", "stem.0."), ("stem.bn.", "stem.1."), ("head.fc.", "fc."))
                if key.startswith(a))


def test_timm_regnet_into_torchvision_never_puts_the_first_1x1_conv_into_the_shortcut():
    """timm's RegNet block registers conv1, conv2, se, conv3, downsample; torchvision's proj (the shortcut), f.a,
    f.b, f.se, f.c. In regnety_004's first block conv1, downsample, proj and f.a are all 1x1 convs 32 -> 48, and
    conv1 (+ its norm) went into proj by position ("structural"): the residual branch's conv in the shortcut.
    Oracle: the hand conversion above, which loads strictly and gives torchvision timm's very outputs."""
    timm = pytest.importorskip("timm", reason="timm is not installed")
    torch.manual_seed(0)
    source = timm.create_model("regnety_004", pretrained=False).eval()
    state = source.state_dict()
    converted = torchvision.models.regnet_y_400mf(weights=None).eval()
    converted.load_state_dict({_timm_regnet_to_torchvision(k): v for k, v in state.items()}, strict=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(converted(x), source(x))
    new, report = netscope.remap(state, torchvision.models.regnet_y_400mf(weights=None))
    assert len(report.mapping) > len(state) // 3  # the branches still map (the shortcuts, registered last, do not)
    wrong = [(s, t) for s, t in report.mapping.items() if _timm_regnet_to_torchvision(s) != t]
    assert wrong == []
    assert all(_same(new[t], state[s]) for s, t in report.mapping.items())

def test_bert_mlm_head_does_not_fill_the_pooler():
    transformers = pytest.importorskip("transformers", reason="transformers is not installed")
    config = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=24, max_position_embeddings=32)
    torch.manual_seed(0)
    mlm = transformers.BertForMaskedLM(config)
    for cls in (transformers.BertModel, transformers.BertForSequenceClassification):
        model = cls(config)
        pooler = model.pooler if hasattr(model, "pooler") else model.bert.pooler
        before = pooler.dense.weight.detach().clone()
        new, report = netscope.remap(mlm.state_dict(), model)
        assert not any("pooler" in t for t in report.mapping.values())
        assert any("pooler.dense.weight" in k for k in report.missing)
        assert "cls.predictions.transform.dense.weight" in report.ambiguous
        with pytest.raises(CoverageError):
            netscope.remap(mlm.state_dict(), model, min_coverage=0.99)
        netscope.load(mlm.state_dict(), model, strict=False)
        assert torch.equal(pooler.dense.weight, before)  # HF's own loader also leaves it initialised


def _moe(names, layers, experts, hidden=8, ffn=16):
    tensors = {}
    for layer in range(layers):
        for expert in range(experts):
            for name in names:
                shape = (ffn, hidden) if name in ("gate_proj", "up_proj", "w1", "w3") else (hidden, ffn)
                tensors[f"model.layers.{layer}.mlp.experts.{expert}.{name}.weight"] = TensorMeta(shape, "float32")
    return TensorLayout(tensors)


def test_moe_rename_refuses_only_the_ambiguous_pair_and_one_rule_resolves_every_expert():
    source, target = _moe(["gate_proj", "up_proj", "down_proj"], 3, 4), _moe(["w1", "w2", "w3"], 3, 4)
    plan, coverage = plan_mapping(source, target)
    mapping = plan.mapping()
    downs = [k for k in source.tensors if ".down_proj." in k]
    assert {k: mapping[k] for k in downs} == {k: k.replace("down_proj", "w2") for k in downs}
    ambiguous = {d.source for d in plan.decisions if d.reason == "ambiguous"}
    assert ambiguous == {k for k in source.tensors if ".gate_proj." in k or ".up_proj." in k}
    assert coverage.fraction == pytest.approx(1 / 3)
    plan, coverage = plan_mapping(source, target, rules=["gate_proj=w1"])
    assert coverage.fraction == 1.0
    assert plan.mapping() == {k: k.replace("gate_proj", "w1").replace("up_proj", "w3").replace("down_proj", "w2")
                              for k in source.tensors}
    assert len(plan.rules) == 3 and plan.rules_reproduce_mapping  # the index is a group, not 36 literals


def test_user_rule_runs_before_the_automatic_prefix_strip_and_idle_rules_are_not_listed():
    torch.manual_seed(0)
    model, raw, ema = (nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2)) for _ in range(3))
    state = {**{"model." + k: v for k, v in raw.state_dict().items()},
             **{"model_ema." + k: v for k, v in ema.state_dict().items()}}
    new, report = netscope.remap(state, model, rules=[r"^model_ema\.=", "never_matches=x"])
    assert all(_same(new[k], v) for k, v in ema.state_dict().items())
    assert [r.text() for r in report.rules] == [r"^model_ema\.="]
    assert any("never_matches=x" in n for n in report.plan.notes)
    assert sorted(report.unused) == sorted("model." + k for k in raw.state_dict())


def test_load_takes_the_checkpoint_first_and_still_accepts_the_old_order():
    torch.manual_seed(0)
    source, a, b = (nn.Linear(3, 2) for _ in range(3))
    netscope.load(source.state_dict(), a)
    netscope.load(b, source.state_dict())
    assert _same(a.weight, source.weight) and _same(b.weight, source.weight)


# ---------------------------------------------------------------- never lose a tensor; exit codes

@pytest.fixture()
def ten_class(tmp_path):
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=10)
    path = tmp_path / "run.pt"
    torch.save(model.state_dict(), path)
    return model.state_dict(), path


def test_bare_state_dict_with_a_head_that_does_not_fit_is_refused_and_in_place_leaves_it_byte_identical(
        ten_class, tmp_path, capsys):
    state, path = ten_class
    digest = _digest(path)
    assert main(["remap", str(path), "resnet18", "-o", str(path), "--in-place"]) == 2
    err = capsys.readouterr().err
    assert "fc.weight" in err and "--drop-unmatched" in err and "--unmatched-out" in err and "left unchanged" in err
    assert _digest(path) == digest
    out = tmp_path / "out.pt"
    assert main(["remap", str(path), "resnet18", "-o", str(out)]) == 2 and not out.exists()
    capsys.readouterr()
    side = tmp_path / "head.pt"
    assert main(["remap", str(path), "resnet18", "-o", str(out), "--unmatched-out", str(side)]) == 0
    text = capsys.readouterr().out
    assert "not loaded into the model: 2 checkpoint tensor(s), written to" in text
    kept = torch.load(side, weights_only=True)
    assert set(kept) == {"fc.weight", "fc.bias"} and all(_same(kept[k], state[k]) for k in kept)
    written = torch.load(out, weights_only=True)
    assert "fc.weight" not in written and all(_same(written[k], state[k]) for k in written)
    assert main(["remap", str(path), "resnet18", "-o", str(path), "--in-place", "--drop-unmatched"]) == 0
    assert "dropped (--drop-unmatched)" in capsys.readouterr().out
    assert set(torch.load(path, weights_only=True)) == set(state) - {"fc.weight", "fc.bias"}


def test_container_keeps_unmatched_tensors_and_other_entries(ten_class, tmp_path, capsys):
    state, _ = ten_class
    path = tmp_path / "lightning.ckpt"
    optimizer = {"state": {0: {"momentum_buffer": torch.ones(3)}}, "param_groups": [{"lr": 0.1, "params": [0]}]}
    torch.save({"state_dict": {"model." + k: v for k, v in state.items()}, "epoch": 4,
                "optimizer_states": [optimizer], "hyper_parameters": {"lr": 0.1}}, path)
    out = tmp_path / "out.pth.tar"  # timm's extension is accepted
    assert main(["remap", str(path), "resnet18", "-o", str(out)]) == 0  # no --min-coverage: exit 0 once written
    text = capsys.readouterr().out
    assert "kept in" in text and "netscope_unmatched" in text
    saved = torch.load(out, weights_only=True)
    assert saved["epoch"] == 4 and saved["hyper_parameters"] == {"lr": 0.1}
    assert _same(saved["optimizer_states"][0]["state"][0]["momentum_buffer"], torch.ones(3))
    assert set(saved["netscope_unmatched"]) == {"model.fc.weight", "model.fc.bias"}
    assert _same(saved["netscope_unmatched"]["model.fc.weight"], state["fc.weight"])
    accounted = set(saved["state_dict"]) | {k[len("model."):] for k in saved["netscope_unmatched"]}
    assert accounted == set(state)  # every source tensor is somewhere
    assert main(["remap", str(path), "resnet18", "-o", str(tmp_path / "b.pt"), "--min-coverage", "0.9999"]) == 1
    assert not (tmp_path / "b.pt").exists()
    assert main(["remap", str(path), "resnet18", "-o", str(tmp_path / "c.pt"), "--min-coverage", "7"]) == 2


def test_key_chooses_the_ema_weights_and_lists_candidates(tmp_path, capsys):
    torch.manual_seed(0)
    raw, ema = torchvision.models.resnet18(weights=None), torchvision.models.resnet18(weights=None)
    path = tmp_path / "timm.pth.tar"
    torch.save({"epoch": 2, "arch": "resnet18", "state_dict": raw.state_dict(), "state_dict_ema": ema.state_dict()},
               path)
    info = netscope.keys(str(path))
    assert info.state_dict_path == ("state_dict",)
    assert any("state_dict_ema (122 tensors)" in n and "--key" in n and "EMA" in n for n in info.notes)
    out = tmp_path / "ema.pt"
    assert main(["remap", str(path), "resnet18", "-o", str(out), "--key", "state_dict_ema"]) == 0
    capsys.readouterr()
    saved = torch.load(out, weights_only=True)
    assert all(_same(saved["state_dict_ema"][k], v) for k, v in ema.state_dict().items())
    assert all(_same(saved["state_dict"][k], v) for k, v in raw.state_dict().items())  # carried unchanged
    model = torchvision.models.resnet18(weights=None)
    netscope.load(str(path), model, key="state_dict_ema")
    assert all(_same(model.state_dict()[k], v) for k, v in ema.state_dict().items())
    assert main(["diff", str(path), "resnet18", "--key", "nope"]) == 2
    err = capsys.readouterr().err
    assert "state_dict (122 tensors)" in err and "state_dict_ema (122 tensors)" in err


# ---------------------------------------------------------------- wrappers registry: peft

def test_full_peft_state_dict_maps_its_base_weights_and_names_the_adapters():
    peft = pytest.importorskip("peft", reason="peft is not installed")

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.q_proj, self.v_proj, self.out = nn.Linear(6, 6), nn.Linear(6, 6), nn.Linear(6, 3)

        def forward(self, x):
            return self.out(self.q_proj(x) + self.v_proj(x))

    torch.manual_seed(0)
    base = Tiny()
    expected = {k: v.clone() for k, v in base.state_dict().items()}
    wrapped = peft.get_peft_model(base, peft.LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    state = wrapped.state_dict()
    assert any(".base_layer." in k for k in state) and all(k.startswith("base_model.model.") for k in state)
    fresh = Tiny()
    new, report = netscope.remap(state, fresh)
    assert set(new) == set(expected) and all(_same(new[k], expected[k]) for k in expected)
    assert report.coverage.fraction == 1.0
    adapters = [d for d in report.decisions if d.reason == "unused"]
    assert adapters and all("lora_" in d.source and "merge_and_unload" in d.detail for d in adapters)


def test_timm_train_checkpoint_with_argparse_args_reads_safely(tmp_path):
    import argparse

    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    path = tmp_path / "checkpoint-3.pth.tar"
    torch.save({"epoch": 3, "arch": "linear", "state_dict": model.state_dict(),
                "args": argparse.Namespace(lr=0.1, model="linear")}, path)
    loaded = netscope.read_checkpoint(str(path))  # weights_only=True: Namespace allow-listed as timm does
    assert loaded.container["args"].lr == 0.1
    assert all(_same(loaded.state_dict[k], v) for k, v in model.state_dict().items())
    fresh = nn.Linear(3, 2)
    netscope.load(str(path), fresh)
    assert _same(fresh.weight, model.weight)


def test_accelerate_save_state_folder_resolves_to_its_model_file(tmp_path):
    accelerate = pytest.importorskip("accelerate", reason="accelerate is not installed")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    accelerator = accelerate.Accelerator(cpu=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.save_state(str(tmp_path / "state"))
    files = sorted(p.name for p in (tmp_path / "state").iterdir())
    assert any(f.startswith("optimizer") for f in files) and len(files) > 1
    info = netscope.keys(str(tmp_path / "state"))
    assert set(info.tensors) == set(expected)
    fresh = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    netscope.load(str(tmp_path / "state"), fresh)
    assert all(_same(fresh.state_dict()[k], v) for k, v in expected.items())


def test_a_missing_pickling_library_is_named(tmp_path, monkeypatch, capsys):
    import sys
    import types

    fake = types.ModuleType("fakelib_for_netscope")

    class HistoryBuffer:  # stands in for mmengine's message-hub objects
        pass

    HistoryBuffer.__module__ = "fakelib_for_netscope"
    HistoryBuffer.__qualname__ = "HistoryBuffer"
    fake.HistoryBuffer = HistoryBuffer
    monkeypatch.setitem(sys.modules, "fakelib_for_netscope", fake)
    path = tmp_path / "mm.pth"
    torch.save({"state_dict": nn.Linear(2, 2).state_dict(), "message_hub": HistoryBuffer()}, path)
    monkeypatch.delitem(sys.modules, "fakelib_for_netscope")
    assert main(["keys", str(path), "--unsafe-pickle"]) == 2
    err = capsys.readouterr().err
    assert "'fakelib_for_netscope'" in err and "not installed" in err and "corrupt" not in err


def test_torch_export_archive_is_listed_from_its_weights_config_and_remapped(tmp_path, capsys):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)).eval()
    program = torch.export.export(model, (torch.randn(2, 3),))
    path = tmp_path / "m.pt2"
    torch.export.save(program, str(path))
    info = netscope.keys(str(path))
    expected = model.state_dict()
    assert info.format == "pt2" and list(info.tensors) == list(expected)
    assert all(info.tensors[k].shape == tuple(v.shape) and info.tensors[k].dtype == str(v.dtype)[6:]
               for k, v in expected.items())
    assert main(["keys", str(path)]) == 0 and "corrupt" not in capsys.readouterr().out
    fresh = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    netscope.load(str(path), fresh)
    assert all(_same(fresh.state_dict()[k], v) for k, v in expected.items())


def test_keys_lists_the_chosen_sub_dict(tmp_path, capsys):
    torch.manual_seed(0)
    path = tmp_path / "two.pt"
    torch.save({"state_dict": nn.Linear(2, 3).state_dict(), "state_dict_ema": nn.Linear(4, 5).state_dict()}, path)
    assert main(["keys", str(path), "--key", "state_dict_ema", "--format", "json"]) == 0
    data = __import__("json").loads(capsys.readouterr().out)
    assert data["state_dict_path"] == ["state_dict_ema"] and data["tensors"]["weight"]["shape"] == [5, 4]


@pytest.mark.parametrize("first", ["model.", "ema."])
def test_two_full_copies_under_rival_prefixes_are_refused_not_chosen_by_file_order(first):
    """A checkpoint holding a model and its EMA (or a student and its teacher) under two prefixes: either
    strips to every model key, so the file's order must not pick one. Both are refused as ambiguous with
    the rules to paste; with a rule, exactly the chosen copy's tensors load."""
    torch.manual_seed(0)
    model, raw, ema = (nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)) for _ in range(3))
    copies = {"model.": raw.state_dict(), "ema.": ema.state_dict()}
    order = [first] + [p for p in copies if p != first]
    state = {p + k: v for p in order for k, v in copies[p].items()}
    _, report = netscope.remap(state, model)
    assert sorted(report.ambiguous) == sorted(state) and report.coverage.fraction == 0.0
    assert r"--rule '^model\.='" in report.decisions[0].detail and r"--rule '^ema\.='" in report.decisions[0].detail
    for chosen in copies:
        new, report = netscope.remap(state, model, rules=[f"^{chosen.replace('.', chr(92) + '.')}="])
        assert set(new) == set(model.state_dict())
        assert all(_same(new[k], v) for k, v in copies[chosen].items())
        assert sorted(report.unused) == sorted(k for k in state if not k.startswith(chosen))


def test_same_named_transposed_weights_stay_mismatches_and_are_not_moved_by_shape():
    """A GPT-2 Conv1D checkpoint ((in, out) weights) into an nn.Linear port with the same names: mlp.c_fc's
    [32, 128] fits c_proj's [32, 128] by shape, but the names say c_fc; structure must not swap them."""
    class Mlp(nn.Module):
        def __init__(self):
            super().__init__()
            self.c_fc, self.c_proj = nn.Linear(32, 128), nn.Linear(128, 32)

    torch.manual_seed(0)
    source = Mlp()
    state = {k: (v.t().contiguous() if v.dim() == 2 else v) for k, v in source.state_dict().items()}  # Conv1D layout
    new, report = netscope.remap(state, Mlp())
    by_source = {d.source: d for d in report.decisions}
    for name in ("c_fc.weight", "c_proj.weight"):
        assert (by_source[name].target, by_source[name].reason) == (name, "shape-mismatch")
        assert "transposed" in by_source[name].detail
    assert "c_proj.weight" not in new and "c_fc.weight" not in new  # neither weight lands on the other layer
    assert _same(new["c_fc.bias"], source.c_fc.bias) and _same(new["c_proj.bias"], source.c_proj.bias)



class _NanoGPT(nn.Module):
    """A GPT-2 written with nn.Linear (weights (out, in)) under Hugging Face's key names, as nanoGPT is."""

    def __init__(self, n_embd=32, n_layer=2, n_head=4, vocab=50, block=16):
        super().__init__()
        self.n_head = n_head
        blocks = []
        for _ in range(n_layer):
            b = nn.Module()
            b.ln_1, b.ln_2, b.attn, b.mlp = nn.LayerNorm(n_embd), nn.LayerNorm(n_embd), nn.Module(), nn.Module()
            b.attn.c_attn, b.attn.c_proj = nn.Linear(n_embd, 3 * n_embd), nn.Linear(n_embd, n_embd)
            b.mlp.c_fc, b.mlp.c_proj = nn.Linear(n_embd, 4 * n_embd), nn.Linear(4 * n_embd, n_embd)
            blocks.append(b)
        self.transformer = nn.ModuleDict(dict(wte=nn.Embedding(vocab, n_embd), wpe=nn.Embedding(block, n_embd),
                                              h=nn.ModuleList(blocks), ln_f=nn.LayerNorm(n_embd)))
        self.lm_head = nn.Linear(n_embd, vocab, bias=False)
        self.transformer.wte.weight = self.lm_head.weight

    def forward(self, idx):
        t = self.transformer
        x = t.wte(idx) + t.wpe(torch.arange(idx.shape[1]))
        for b in t.h:
            q, k, v = b.attn.c_attn(b.ln_1(x)).split(x.shape[-1], dim=2)
            heads = [z.unflatten(-1, (self.n_head, -1)).transpose(1, 2) for z in (q, k, v)]
            y = nn.functional.scaled_dot_product_attention(*heads, is_causal=True).transpose(1, 2).flatten(2)
            x = x + b.attn.c_proj(y)
            x = x + b.mlp.c_proj(nn.functional.gelu(b.mlp.c_fc(b.ln_2(x)), approximate="tanh"))
        return self.lm_head(t.ln_f(x))


def test_square_conv1d_weights_beside_transposed_ones_are_held_back_not_loaded_untransposed():
    """HF GPT-2 (transformers' Conv1D, weights (in, out)) into a nanoGPT port (nn.Linear, (out, in)), same names.
    c_attn, c_fc and mlp.c_proj are reported transposed, but attn.c_proj is square and used to load as stored,
    reported exact: transposed, silently wrong. Oracle: transformers' own modules (which are Conv1D) and the
    logits of both models once the user's .t() is applied to exactly the keys the report names."""
    transformers = pytest.importorskip("transformers", reason="transformers is not installed")
    from transformers.pytorch_utils import Conv1D

    config = transformers.GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=50, n_positions=16, attn_pdrop=0.0,
                                     resid_pdrop=0.0, embd_pdrop=0.0, bos_token_id=0, eos_token_id=0)
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(config).eval()
    state = hf.state_dict()
    conv1d = {f"{name}.weight" for name, m in hf.named_modules() if isinstance(m, Conv1D)}
    assert "transformer.h.0.attn.c_proj.weight" in conv1d and state["transformer.h.0.attn.c_proj.weight"].shape == (32, 32)
    port = _NanoGPT().eval()
    new, report = netscope.remap(state, port)
    assert not conv1d & set(report.mapping)  # no Conv1D weight loads as it is stored, square or not
    assert sorted(d.source for d in report.mismatched) == sorted(conv1d)
    square = [d for d in report.mismatched if d.source.endswith("attn.c_proj.weight")]
    assert square and all("transposed" in d.detail and d.target == d.source for d in square)
    for source, target in report.mapping.items():  # everything else is the very tensor of that layer
        assert _same(new[target], state[source])
    fixed = dict(new, **{d.target: state[d.source].t() for d in report.mismatched})
    port.load_state_dict(fixed, strict=True)
    idx = torch.randint(0, 50, (2, 10))
    with torch.no_grad():
        torch.testing.assert_close(port(idx), hf(idx).logits, atol=1e-5, rtol=1e-5)


def test_a_replayed_plan_may_load_a_held_back_square_weight_as_stored():
    """The user's --plan is the one way to say a held-back square weight is (out, in) already: it loads."""
    class Mlp(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.proj = nn.Linear(8, 32), nn.Linear(8, 8)

    state = {k: (v.t().contiguous() if k == "fc.weight" else v) for k, v in Mlp().state_dict().items()}
    _, report = netscope.remap(state, Mlp())
    held = next(d for d in report.mismatched if d.source == "proj.weight")
    assert "square" in held.detail and "--plan" in held.detail and "fc.weight" in held.detail
    plan = report.plan.to_dict()
    for d in plan["decisions"]:
        if d["source"] == "proj.weight":
            d["reason"] = "exact"
    new, report = netscope.remap(state, Mlp(), plan=plan)
    assert report.mapping["proj.weight"] == "proj.weight" and _same(new["proj.weight"], state["proj.weight"])


# Meta's original Llama names -> Hugging Face's, as transformers' convert_llama_weights_to_hf.py wrote them
# (the published conversion, independent of netscope). attention_norm is the norm *before* attention.
META_TO_HF_LLAMA = [("tok_embeddings.", "model.embed_tokens."), ("norm.", "model.norm."), ("output.", "lm_head."),
                    ("attention.wq.", "self_attn.q_proj."), ("attention.wk.", "self_attn.k_proj."),
                    ("attention.wv.", "self_attn.v_proj."), ("attention.wo.", "self_attn.o_proj."),
                    ("feed_forward.w1.", "mlp.gate_proj."), ("feed_forward.w2.", "mlp.down_proj."),
                    ("feed_forward.w3.", "mlp.up_proj."), ("attention_norm.", "input_layernorm."),
                    ("ffn_norm.", "post_attention_layernorm.")]


def _hf_llama_key(meta_key: str) -> str:
    if meta_key.startswith("layers."):
        block, _, rest = meta_key.partition(".")[2].partition(".")
        return f"model.layers.{block}.{_hf_llama_key(rest)}"
    return next(hf + meta_key[len(m):] for m, hf in META_TO_HF_LLAMA if meta_key.startswith(m))


def test_a_shared_word_is_not_name_evidence_when_both_names_have_words_the_other_lacks():
    """Meta-format Llama (attention_norm, ffn_norm) onto HF's LlamaForCausalLM (input_layernorm,
    post_attention_layernorm): 'attention' is in attention_norm and post_attention_layernorm, but they are
    different layers (same shape): nothing may load into the wrong one; the pair is refused as ambiguous."""
    transformers = pytest.importorskip("transformers", reason="transformers is not installed")
    config = transformers.LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                      num_key_value_heads=4, vocab_size=50, max_position_embeddings=32)
    torch.manual_seed(0)
    hf_model = transformers.LlamaForCausalLM(config)
    meta_keys = {}
    for key in hf_model.state_dict():  # invert the published mapping to write the Meta-format checkpoint
        meta_keys[next(k for k in _all_meta_keys(config.num_hidden_layers) if _hf_llama_key(k) == key)] = key
    meta_state = {m: hf_model.state_dict()[h].clone() for m, h in meta_keys.items()}
    new, report = netscope.remap(meta_state, transformers.LlamaForCausalLM(config))
    wrong = [(d.source, d.target) for d in report.decisions
             if d.loads and d.reason != "alias-of" and _hf_llama_key(d.source) != d.target]
    assert wrong == []
    for key, tensor in new.items():  # whatever loads is the very tensor the conversion puts there
        source = next((m for m, h in meta_keys.items() if h == key), None)
        if report.mapping.get(source) == key:
            assert _same(tensor, meta_state[source])
    norms = [k for k in meta_state if "_norm." in k]
    assert sorted(norms) == sorted(k for k in report.ambiguous if "_norm." in k)



@pytest.mark.parametrize("tied", [False, True])
def test_uneven_same_shape_siblings_are_hinted_by_names_never_the_embedding_into_the_output_head(tied):
    """Meta's root holds tok_embeddings and output ([vocab, dim] both), Hugging Face's holds lm_head alone (its
    embed_tokens sits under model.). Both are refused, but the hint used to pair them in order and offered
    --rule tok_embeddings -> lm_head: the embedding into the output head. Now names decide over every layer of
    that shape (tok_embeddings ~ model.embed_tokens) and the one left on each side follows; pasting the hint
    loads exactly what transformers' published conversion puts there, in either direction."""
    transformers = pytest.importorskip("transformers", reason="transformers is not installed")
    config = transformers.LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                      num_key_value_heads=4, vocab_size=50, max_position_embeddings=32,
                                      tie_word_embeddings=tied)
    torch.manual_seed(0)
    hf_state = transformers.LlamaForCausalLM(config).state_dict()
    meta_state = {k: hf_state[_hf_llama_key(k)].clone() for k in _all_meta_keys(config.num_hidden_layers)}
    if not tied:
        assert not torch.equal(meta_state["tok_embeddings.weight"], meta_state["output.weight"])
    _, report = netscope.remap(meta_state, transformers.LlamaForCausalLM(config))
    hint = next(d for d in report.decisions if d.source == "tok_embeddings.weight")
    assert hint.reason == "ambiguous"
    rules = re.findall(r"--rule '([^']*)'", hint.detail)
    new, report = netscope.remap(meta_state, transformers.LlamaForCausalLM(config), rules=rules)
    assert report.mapping["tok_embeddings.weight"] == "model.embed_tokens.weight"
    assert report.mapping["output.weight"] == "lm_head.weight"
    for source, target in report.mapping.items():
        assert target == _hf_llama_key(source) and _same(new[target], meta_state[source])
    back = netscope.diff(hf_state, meta_state)  # the other way: Hugging Face's file against Meta's keys
    hint = next(d for d in back.decisions if d.source == "lm_head.weight")
    rules = re.findall(r"--rule '([^']*)'", hint.detail)
    back = netscope.diff(hf_state, meta_state, rules=rules)
    assert back.mapping["lm_head.weight"] == "output.weight"
    assert back.mapping["model.embed_tokens.weight"] == "tok_embeddings.weight"


def _all_meta_keys(layers: int):
    top = ["tok_embeddings.weight", "norm.weight", "output.weight"]
    per_block = ["attention.wq.weight", "attention.wk.weight", "attention.wv.weight", "attention.wo.weight",
                 "feed_forward.w1.weight", "feed_forward.w2.weight", "feed_forward.w3.weight",
                 "attention_norm.weight", "ffn_norm.weight"]
    return top + [f"layers.{i}.{leaf}" for i in range(layers) for leaf in per_block]


class _TiedLM(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(11, 4)
        self.body = nn.Linear(4, 4)
        self.head = nn.Linear(4, 11, bias=False)
        self.head.weight = self.embed.weight


def test_two_checkpoint_tensors_into_one_tied_tensor_are_named_not_silently_one_dropped(tmp_path):
    """A checkpoint from an untied run (embed and head stored apart, different values) into a tied model: one
    tensor holds one value, so torch's load_state_dict keeps the head's and the embedding's values are gone
    (torch says nothing). netscope names both keys and which one survives; a checkpoint saved tied does not
    get the note."""
    torch.manual_seed(0)
    untied = {k: v.clone() for k, v in _TiedLM().state_dict().items()}
    untied["head.weight"] = torch.randn(11, 4)
    oracle = _TiedLM()
    oracle.load_state_dict(untied, strict=True)  # torch's own load: no error, one of the two is lost
    assert _same(oracle.embed.weight.detach(), untied["head.weight"])
    assert not torch.equal(oracle.embed.weight.detach(), untied["embed.weight"])

    notes = [n for n in netscope.diff(untied, _TiedLM()).plan.notes if "tied" in n]
    assert len(notes) == 1 and "embed.weight" in notes[0] and "loading keeps head.weight" in notes[0]
    model = _TiedLM()
    report = netscope.load(untied, model, strict=True)
    assert any("tied" in n for n in report.plan.notes)
    assert _same(model.embed.weight.detach(), oracle.embed.weight.detach())  # the note says what load did

    path = tmp_path / "tied.pt"
    torch.save(_TiedLM().state_dict(), path)  # saved tied: one storage under both keys
    assert not any("tied" in n for n in netscope.diff(str(path), _TiedLM()).plan.notes)
    assert not any("tied" in n for n in netscope.diff(_TiedLM().state_dict(), _TiedLM()).plan.notes)

    # stored apart but equal (a copy of each tensor, as a torch.distributed.checkpoint stores tied keys): the
    # headers cannot tell, so diff notes it; remap and load read the values and see that nothing is lost
    apart = {k: v.clone() for k, v in _TiedLM().state_dict().items()}
    assert any("tied" in n for n in netscope.diff(apart, _TiedLM()).plan.notes)
    assert not any("tied" in n for n in netscope.remap(apart, _TiedLM())[1].plan.notes)
    assert not any("tied" in n for n in netscope.load(apart, _TiedLM()).plan.notes)
    copies = tmp_path / "copies.pt"
    torch.save(apart, copies)
    assert not any("tied" in n for n in netscope.remap_file(str(copies), _TiedLM(), str(tmp_path / "o.pt")).plan.notes)
    untied_file = tmp_path / "untied.pt"
    torch.save(untied, untied_file)
    assert any("tied" in n for n in netscope.remap_file(str(untied_file), _TiedLM(), str(tmp_path / "u.pt"),
                                                        drop_unmatched=True).plan.notes)


# the CLI builds _TiedLM from a model file that imports it from here
_TIED_LM_FILE = ("import sys\nsys.path.insert(0, %r)\nfrom test_remap_safety import _TiedLM as TiedLM\n"
                 % str(__import__("pathlib").Path(__file__).parent))


def test_the_tied_tensor_note_is_in_report_notes_the_text_and_the_json(tmp_path, capsys):
    """The value a tied model drops (an untied checkpoint's embedding) is named where a user reads notes: the
    API's ``report.notes`` of diff/remap/load/remap_file, the CLI's text and its JSON ``notes`` (one note, once)."""
    torch.manual_seed(0)
    untied = {k: v.clone() for k, v in _TiedLM().state_dict().items()}
    untied["head.weight"] = torch.randn(11, 4)
    path = tmp_path / "untied.pt"
    torch.save(untied, path)

    def tied_notes(notes):
        return [n for n in notes if "one tensor in the model (tied)" in n]

    reports = [netscope.diff(untied, _TiedLM()), netscope.remap(untied, _TiedLM())[1],
               netscope.load(untied, _TiedLM(), strict=False),
               netscope.remap_file(str(path), _TiedLM(), str(tmp_path / "o.pt"), drop_unmatched=True)]
    for report in reports:
        [note] = tied_notes(report.notes)
        assert "the values of embed.weight are lost" in note and tied_notes(report.to_dict()["notes"]) == [note]
        assert sum(note in line for line in report.summary_lines()) == 1  # printed once

    model_file = tmp_path / "tied_lm.py"
    model_file.write_text(_TIED_LM_FILE)
    for command in (["remap", str(path), f"{model_file}:TiedLM", "--dry-run"], ["diff", str(path), f"{model_file}:TiedLM"]):
        capsys.readouterr()
        assert main(command) in (0, 1)
        assert len(tied_notes(capsys.readouterr().out.splitlines())) == 1
        assert main(command + ["-f", "json"]) in (0, 1)
        assert len(tied_notes(json.loads(capsys.readouterr().out)["notes"])) == 1


def test_integer_or_float8_weights_into_float_tensors_are_named():
    """A quantized checkpoint (int8 / float8 weights with their scales beside them) matches a float model key by
    key and shape, and torch's load_state_dict copies the stored numbers as they are: wrong weights, no error.
    netscope loads the same way but says so; a float16 checkpoint into float32 (an exact widening) gets no note."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 4), nn.Linear(4, 4))
    dense = model.state_dict()
    scale = dense["0.weight"].abs().max() / 127
    quantized = dict(dense)
    quantized["0.weight"] = torch.round(dense["0.weight"] / scale).to(torch.int8)
    quantized["0.weight_scale"] = scale
    quantized["1.weight"] = dense["1.weight"].to(torch.float8_e4m3fn)
    oracle = nn.Sequential(nn.Linear(8, 4), nn.Linear(4, 4))
    oracle.load_state_dict(quantized, strict=False)  # torch: the int8 numbers land as floats, unscaled
    assert torch.equal(oracle[0].weight.detach(), quantized["0.weight"].float())
    assert not torch.allclose(oracle[0].weight.detach(), dense["0.weight"], atol=0.1)

    notes = [n for n in netscope.diff(quantized, oracle).plan.notes if "quantization scale" in n]
    assert len(notes) == 1 and "2 checkpoint tensor(s)" in notes[0] and "0.weight_scale" in notes[0]
    half = {k: v.half() for k, v in dense.items()}
    assert not any("quantization scale" in n for n in netscope.diff(half, oracle).plan.notes)


def test_a_peft_adapter_file_gets_a_rule_that_inserts_the_adapter_name(tmp_path):
    """peft's save_pretrained writes '...lora_A.weight'; the peft-wrapped model names it '...lora_A.default.weight'.
    The unused keys' reason carries a ready rule; pasted, every LoRA tensor lands on the key peft itself loads it
    into (peft's set_peft_model_state_dict is the oracle), and nothing else is touched."""
    transformers = pytest.importorskip("transformers", reason="transformers is not installed")
    peft = pytest.importorskip("peft", reason="peft is not installed")

    def build():
        torch.manual_seed(0)
        config = transformers.GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=20, n_positions=16)
        return peft.get_peft_model(transformers.GPT2LMHeadModel(config),
                                   peft.LoraConfig(r=2, target_modules=["c_attn"], fan_in_fan_out=True))

    trained = build()
    with torch.no_grad():
        for name, parameter in trained.named_parameters():
            if "lora_" in name:
                parameter.add_(torch.randn_like(parameter))
    trained.save_pretrained(tmp_path)
    adapter = str(tmp_path / "adapter_model.safetensors")
    oracle = build()
    peft.set_peft_model_state_dict(oracle, __import__("safetensors.torch").torch.load_file(adapter))
    expected = {k: v for k, v in oracle.state_dict().items() if "lora_" in k}

    report = netscope.diff(adapter, build())
    lora = [d for d in report.decisions if d.source and "lora_" in d.source]
    assert lora and all(d.target is None and "adapter 'default'" in d.detail for d in lora)
    rule = re.search(r"--rule '([^']+)'", lora[0].detail).group(1)
    new, report = netscope.remap(__import__("safetensors.torch").torch.load_file(adapter), build(), rules=[rule])
    loaded = {t: new[t] for t in report.mapping.values()}
    assert sorted(loaded) == sorted(expected)
    assert all(_same(loaded[k], expected[k]) for k in expected)


class _TwoLayers(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc, self.out = nn.Linear(16, 16), nn.Linear(16, 4)

    def forward(self, x):
        return self.out(self.fc(x))


@pytest.mark.parametrize("safe", [True, False], ids=["safetensors", "bin"])
def test_lora_matrices_never_fill_base_weights_of_their_shape(tmp_path, safe):
    """A real peft adapter (LoRA r=16 on `out`, saved by save_pretrained): lora_A is [16, 16] like fc.weight,
    lora_B [4, 16] like out.weight. Into the base model they went structurally into fc.weight and out.weight,
    and into the peft-wrapped model lora_B into out.base_layer.weight: adapter deltas written over base weights.
    Now they are never paired with the model's plain tensors: unused (base) or left for the adapter-name rule
    (peft-wrapped), and with that rule each lands where peft's own loader puts it; outputs then agree."""
    peft = pytest.importorskip("peft", reason="peft is not installed")

    def wrapped():
        torch.manual_seed(0)
        return peft.get_peft_model(_TwoLayers(), peft.LoraConfig(r=16, target_modules=["out"]))

    trained = wrapped()
    with torch.no_grad():
        for name, parameter in trained.named_parameters():
            if "lora_" in name:
                parameter.copy_(torch.randn_like(parameter))
    trained.save_pretrained(tmp_path, safe_serialization=safe)
    adapter = str(tmp_path / ("adapter_model.safetensors" if safe else "adapter_model.bin"))
    _, report = netscope.remap(adapter, _TwoLayers())
    assert report.mapping == {} and len(report.unused) == 2
    assert all("LoRA adapter tensor" in d.detail for d in report.decisions if d.source)
    target = wrapped()
    _, report = netscope.remap(adapter, target)
    assert report.mapping == {}
    rule = re.search(r"--rule '([^']+)'", report.decisions[0].detail).group(1)
    new, report = netscope.remap(adapter, target, rules=[rule])
    oracle = wrapped()
    saved = (__import__("safetensors.torch").torch.load_file(adapter) if safe
             else torch.load(adapter, weights_only=True))  # read by the libraries, not by netscope
    peft.set_peft_model_state_dict(oracle, saved)
    expected = {k: v for k, v in oracle.state_dict().items() if "lora_" in k}
    assert sorted(report.mapping.values()) == sorted(expected)
    assert all(_same(new[k], expected[k]) for k in expected)
    target.load_state_dict(new, strict=False)
    x = torch.randn(3, 16)
    with torch.no_grad():
        torch.testing.assert_close(target(x), trained(x))


@pytest.mark.parametrize("plain_dict", [True, False])
def test_diff_of_a_file_without_num_batches_tracked_agrees_with_torchs_strict_load(tmp_path, capsys, plain_dict):
    """BatchNorm's loader supplies a missing num_batches_tracked when the state dict has no _metadata version 2
    (a plain dict, an old file), and not otherwise. `netscope diff FILE` (headers only) must say what torch's
    own strict load_state_dict of torch.load(FILE) does: exit 0 when it loads, 1 when it raises."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    state = model.state_dict()
    del state["1.num_batches_tracked"]
    path = tmp_path / "ckpt.pt"
    torch.save(dict(state) if plain_dict else state, path)
    try:
        nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).load_state_dict(torch.load(path), strict=True)
        torch_loads = True
    except RuntimeError:
        torch_loads = False
    assert torch_loads is plain_dict  # the two cases really differ
    report = netscope.diff(str(path), nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)))
    assert (report.strict_problems() == []) is torch_loads
    assert (report.loader_fills == ("1.num_batches_tracked",)) is torch_loads
    spec = tmp_path / "bn_model.py"
    spec.write_text("import torch.nn as nn\n\ndef build():\n    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))\n")
    assert main(["diff", str(path), f"{spec}:build", "-q"]) == (0 if torch_loads else 1)


def test_lightning_hyper_parameters_holding_a_path_read_safely(tmp_path):
    """Lightning keeps save_hyperparameters() values as given, so a data_dir=Path(...) is pickled as a PosixPath;
    building a path object reads no file and runs no code, so safe loading builds it (it asked for --unsafe-pickle),
    while any other class stays refused."""
    import pathlib

    model = nn.Linear(3, 2)
    path = tmp_path / "epoch=0-step=1.ckpt"
    torch.save({"epoch": 0, "global_step": 1, "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                "hyper_parameters": {"data_dir": pathlib.Path("/data/imagenet"), "lr": 0.1}}, path)
    loaded = netscope.read_checkpoint(str(path))  # weights_only=True
    assert loaded.container["hyper_parameters"]["data_dir"] == torch.load(path, weights_only=False)[
        "hyper_parameters"]["data_dir"] == pathlib.Path("/data/imagenet")
    fresh = nn.Linear(3, 2)
    netscope.load(str(path), fresh)
    assert _same(fresh.weight, model.weight)
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": {"callback": _NotAllowed()}}, path)
    with pytest.raises(netscope.errors.CheckpointError, match="unsafe-pickle"):
        netscope.read_checkpoint(str(path))


class _NotAllowed:  # a class safe loading must keep refusing
    pass


def test_a_refusal_names_its_reason_once(tmp_path, capsys):
    """torchvision's MobileNetV2 into timm's: blocks whose layer counts differ are refused as ambiguous, and the
    message says 'ambiguous:' once per tensor (the reason and a detail that began with it read 'ambiguous:
    ambiguous:'), on stderr and in the report's list."""
    pytest.importorskip("timm")
    torch.save(torchvision.models.mobilenet_v2(weights=None).state_dict(), tmp_path / "tv.pth")
    code = main(["remap", str(tmp_path / "tv.pth"), "timm:mobilenetv2_100", "-o", str(tmp_path / "out.pt")])
    err = capsys.readouterr().err
    assert code == 2 and "ambiguous" in err and "ambiguous: ambiguous" not in err
    assert not (tmp_path / "out.pt").exists()
    code = main(["remap", str(tmp_path / "tv.pth"), "timm:mobilenetv2_100", "-o", str(tmp_path / "out.pt"),
                 "--drop-unmatched"])
    out = capsys.readouterr()
    assert "ambiguous: ambiguous" not in out.out + out.err


class _ConvBnBlock(nn.Module):
    """conv<s>/bn<s> pairs of one shape, declared in the order given: norm layers interleave the convs."""

    def __init__(self, suffixes):
        super().__init__()
        for s in suffixes:
            setattr(self, f"conv{s}", nn.Conv2d(8, 8, 3, bias=False))
            setattr(self, f"bn{s}", nn.BatchNorm2d(8))


def _conv_bn_net(parent, suffixes):
    net = nn.Module()
    setattr(net, parent, nn.Sequential(_ConvBnBlock(suffixes), _ConvBnBlock(suffixes)))
    return net


@pytest.mark.parametrize("order", ["AB", "BA"])
def test_interleaved_same_shape_siblings_under_a_renamed_parent_are_not_paired_by_position(order):
    """layer1.N.conv1/bn1/conv2/bn2 -> stage1.N.convX/bnX: the norms between the convs must not hide that two
    convs (and two norms) of one shape are interchangeable; with names that do not decide, a written mapping
    is either right by value or refused, never conv1 silently in convB."""
    torch.manual_seed(0)
    source = _conv_bn_net("layer1", "12")
    with torch.no_grad():
        for t in list(source.parameters()) + [b for b in source.buffers() if b.is_floating_point()]:
            t.copy_(torch.randn(t.shape))
    target = _conv_bn_net("stage1", order)
    state = source.state_dict()
    new, report = netscope.remap(state, target)
    ambiguous = report.keys_with("ambiguous")
    truth = {"A": "1", "B": "2"}
    for key, tensor in new.items():
        parts = key.split(".")
        if parts[0] != "stage1":
            continue
        want = ".".join(["layer1", parts[1], parts[2][:-1] + truth[parts[2][-1]], parts[3]])
        assert _same(tensor, state[want]), f"{key} holds a tensor other than {want}"
    assert "layer1.0.conv1.weight" in ambiguous and "layer1.1.bn2.weight" in ambiguous
    assert any("--rule" in p for p in report.strict_problems())


def _enc_dec(first, second, blocks="layers"):
    """Two identical stacks (Linear + LayerNorm blocks) registered in the order given."""
    net = nn.Module()
    for name in (first, second):
        stack = nn.Module()
        setattr(stack, blocks, nn.ModuleList([nn.Sequential(nn.Linear(8, 8), nn.LayerNorm(8)) for _ in range(2)]))
        setattr(net, name, stack)
    return net


@pytest.mark.parametrize("target_names, blocks, to_source", [
    (("dec", "enc"), "layers", {"dec": "decoder", "enc": "encoder"}),
    (("decoder", "encoder"), "blocks", {"decoder": "decoder", "encoder": "encoder"}),
])
def test_identical_stacks_registered_in_another_order_are_not_swapped_against_their_names(target_names, blocks,
                                                                                          to_source):
    """encoder/decoder stacks of identical blocks; the target declares the decoder first (and renames the stacks
    or their block lists). Position says encoder -> first stack, the stack names say otherwise: every written
    tensor must be the one its name says (by value); the rest is refused, never swapped."""
    torch.manual_seed(0)
    source = _enc_dec("encoder", "decoder")
    with torch.no_grad():
        for p in source.parameters():
            p.copy_(torch.randn(p.shape))
    state = source.state_dict()
    new, report = netscope.remap(state, _enc_dec(*target_names, blocks=blocks))
    for key, tensor in new.items():
        stack, _, rest = key.partition(".")
        want = f"{to_source[stack]}.{rest.replace(blocks + '.', 'layers.', 1)}"
        assert _same(tensor, state[want]), f"{key} holds a tensor other than {want}"
    assert set(new) | set(report.missing) >= {f"{target_names[0]}.{blocks}.0.0.weight"}


def _decoder_layer(attention_names):
    """One decoder layer holding two attention blocks of identical shape (q, k, v, o), in the order given."""
    net, layer = nn.Module(), nn.Module()
    net.layer = nn.ModuleList([layer])
    for name in attention_names:
        block = nn.Module()
        for leaf in "qkvo":
            setattr(block, leaf, nn.Linear(8, 8))
        setattr(layer, name, block)
    return net


def test_same_shape_sibling_subtrees_without_name_evidence_are_not_paired_by_position():
    """self_attn/encoder_attn -> crossattention/attention, the target declaring the cross-attention first:
    nothing in the names pairs them (self_attn is not attention, encoder_attn not crossattention), position
    pairs self_attn with crossattention. As for same-shape leaf siblings: refused with a rule, never swapped.
    What casts the doubt: self_attn shares a word (attn ~ attention) with attention, none with crossattention,
    so the order of those siblings is not evidence (zeta/alpha -> stage1/stage2 share no word and still pair)."""
    torch.manual_seed(0)
    source = _decoder_layer(["self_attn", "encoder_attn"])
    with torch.no_grad():
        for p in source.parameters():
            p.copy_(torch.randn(p.shape))
    state = source.state_dict()
    new, report = netscope.remap(state, _decoder_layer(["crossattention", "attention"]))
    to_source = {"crossattention": "encoder_attn", "attention": "self_attn"}
    for key, tensor in new.items():
        parts = key.split(".")
        want = ".".join(parts[:2] + [to_source[parts[2]]] + parts[3:])
        assert _same(tensor, state[want]), f"{key} holds a tensor other than {want}"
    assert "layer.0.self_attn.q.weight" in report.keys_with("ambiguous")
