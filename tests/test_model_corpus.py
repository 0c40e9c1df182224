"""A corpus of real-world models and inputs (issue 15): ``summary``, ``check`` and ``names`` run on each with
no traceback (only NetscopeError, with its documented exit code, may end a call) and leave the model
bit-identical (tests/test_model_state.py's snapshot). Configurations are small so the corpus stays quick.

The table of outcomes is printed with ``NETSCOPE_CORPUS_TABLE=1 pytest -k corpus_table``.
"""

from __future__ import annotations

import dataclasses
import os
import textwrap
import warnings
from typing import Any, Callable, NamedTuple

import pytest
import torch
import torch.nn as nn
import torchvision
from torch.nn.utils.rnn import pack_padded_sequence

import netscope
from netscope.cli import main
from netscope.errors import NetscopeError
from test_model_state import assert_same, snapshot


class Case(NamedTuple):
    build: Callable[[], nn.Module]
    inputs: dict  # keyword arguments for netscope.summary / netscope.check
    kind: str


def tv(name, **kwargs):
    return lambda: torchvision.models.get_model(name, weights=None, **kwargs)


def timm_model(name, **kwargs):
    def build():
        timm = pytest.importorskip("timm")
        return timm.create_model(name, pretrained=False, **kwargs)

    return build


def hf(config_class, model_class, **fields):
    def build():
        transformers = pytest.importorskip("transformers")
        config = getattr(transformers, config_class)(**fields)
        return getattr(transformers, model_class)(config)

    return build


def ids(*shape, high=50):
    return torch.randint(0, high, shape, generator=torch.Generator().manual_seed(0))


def quiet(function):
    def build():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit is deprecated (FutureWarning); users still have such modules
            return function()

    return build


# ---- user models with odd constructors and forwards ------------------------------------------------------

class ReadsValues(nn.Module):
    """The constructor reads a value from a freshly initialized weight."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 4)
        self.scale = float(self.fc.weight.abs().max())

    def forward(self, x):
        return self.fc(x) * self.scale


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(30, 8)
        self.out = nn.Linear(8, 30, bias=False)
        self.out.weight = self.embed.weight

    def forward(self, ids):
        return self.out(self.embed(ids))


class DictInOut(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 3)
        self.b = nn.Linear(5, 3)

    def forward(self, left, right=None, *, scale=1.0):
        return {"sum": self.a(left) + self.b(right), "left": self.a(left) * scale}


@dataclasses.dataclass
class Output:
    logits: torch.Tensor
    features: Any


class Pair(NamedTuple):
    first: torch.Tensor
    second: torch.Tensor


class StructuredOutputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        features = self.body(x)
        pooled = features.mean((2, 3))
        return Output(self.head(pooled), Pair(features, pooled))


class CatchesItsOwnError(nn.Module):
    def __init__(self):
        super().__init__()
        self.strict = nn.Linear(6, 4)
        self.fallback = nn.Linear(8, 4)

    def forward(self, x):
        try:
            return self.strict(x)
        except RuntimeError:
            return self.fallback(x)


class Stateful(nn.Module):
    """Train-time statistics and a counter buffer updated by the forward."""

    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm1d(8)
        self.drop = nn.Dropout(0.3)
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))

    def forward(self, x):
        self.calls += 1
        return self.drop(self.bn(x))


class PackedLSTM(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(40, 8)
        self.lstm = nn.LSTM(8, 12, num_layers=2, batch_first=True, bidirectional=True)
        self.head = nn.Linear(24, 3)

    def forward(self, tokens, lengths):
        packed = pack_padded_sequence(self.embed(tokens), lengths, batch_first=True, enforce_sorted=False)
        _, (hidden, _) = self.lstm(packed)
        return self.head(torch.cat([hidden[-2], hidden[-1]], dim=1))


class GRUTagger(nn.Module):
    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(6, 10, batch_first=True)
        self.rnn = nn.RNN(10, 5, batch_first=True)

    def forward(self, x):
        return self.rnn(self.gru(x)[0])[0]


class LazyMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.LazyLinear(16), nn.ReLU(), nn.LazyLinear(4))

    def forward(self, x):
        return self.body(x)


class LazyCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.LazyConv2d(8, 3)
        self.bn = nn.LazyBatchNorm2d()
        self.fc = nn.LazyLinear(3)

    def forward(self, x):
        return self.fc(torch.flatten(self.bn(self.conv(x)), 1))


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(6 * 7 * 7, 4)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(torch.relu(self.conv(x))), 1))


def packed_input():
    return (ids(3, 7, high=40), torch.tensor([7, 3, 5]))


image = {"input_size": (1, 3, 32, 32)}

CORPUS = {
    # torchvision classification
    "tv-resnet18": Case(tv("resnet18", num_classes=10), image, "torchvision"),
    "tv-mobilenet_v3_small": Case(tv("mobilenet_v3_small", num_classes=10), image, "torchvision"),
    "tv-squeezenet1_1": Case(tv("squeezenet1_1", num_classes=10), {"input_size": (1, 3, 64, 64)}, "torchvision"),
    "tv-shufflenet_v2_x0_5": Case(tv("shufflenet_v2_x0_5", num_classes=10), image, "torchvision"),
    "tv-regnet_y_400mf": Case(tv("regnet_y_400mf", num_classes=10), image, "torchvision"),
    "tv-vit_b_32-tiny": Case(lambda: torchvision.models.VisionTransformer(32, 8, 2, 2, 32, 64, num_classes=5),
                             image, "torchvision"),
    # torchvision detection, segmentation, video
    "tv-fasterrcnn_mobilenet": Case(tv("fasterrcnn_mobilenet_v3_large_320_fpn", weights_backbone=None, num_classes=3,
                                       min_size=96, max_size=96),
                                    {"input_data": ([torch.rand(3, 96, 96)],)}, "detection"),
    "tv-ssdlite320": Case(tv("ssdlite320_mobilenet_v3_large", weights_backbone=None, num_classes=3),
                          {"input_data": ([torch.rand(3, 64, 64)],)}, "detection"),
    "tv-lraspp_mobilenet": Case(tv("lraspp_mobilenet_v3_large", weights_backbone=None, num_classes=3),
                                {"input_size": (1, 3, 64, 64)}, "segmentation"),
    "tv-deeplabv3_mobilenet": Case(tv("deeplabv3_mobilenet_v3_large", weights_backbone=None, num_classes=3,
                                      aux_loss=False), {"input_size": (1, 3, 64, 64)}, "segmentation"),
    "tv-r3d_18": Case(tv("r3d_18", num_classes=4), {"input_size": (1, 3, 4, 32, 32)}, "video"),
    "tv-mc3_18": Case(tv("mc3_18", num_classes=4), {"input_size": (1, 3, 4, 32, 32)}, "video"),
    # timm
    "timm-resnet10t": Case(timm_model("resnet10t", num_classes=5), image, "timm"),
    "timm-vit_tiny": Case(timm_model("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=2, num_classes=5),
                          image, "timm"),
    "timm-convnext_atto": Case(timm_model("convnext_atto", num_classes=5), image, "timm"),
    "timm-efficientnet_b0": Case(timm_model("efficientnet_b0", num_classes=5), image, "timm"),
    # Hugging Face transformers
    "hf-bert": Case(hf("BertConfig", "BertModel", hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=64, vocab_size=100), {"input_data": ids(2, 16)}, "hf"),
    "hf-gpt2": Case(hf("GPT2Config", "GPT2LMHeadModel", n_embd=32, n_layer=2, n_head=2, vocab_size=100),
                    {"input_data": ids(2, 16)}, "hf"),
    "hf-llama": Case(hf("LlamaConfig", "LlamaForCausalLM", hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, intermediate_size=64, vocab_size=100),
                     {"input_data": ids(1, 12)}, "hf"),
    "hf-t5": Case(hf("T5Config", "T5ForConditionalGeneration", d_model=32, d_ff=64, num_layers=1, num_heads=2,
                     d_kv=16, vocab_size=100),
                  {"input_data": {"input_ids": ids(1, 10), "decoder_input_ids": ids(1, 6)}}, "hf"),
    "hf-vit": Case(hf("ViTConfig", "ViTForImageClassification", hidden_size=32, num_hidden_layers=2,
                      num_attention_heads=2, intermediate_size=64, image_size=32, patch_size=8, num_labels=3),
                   image, "hf"),
    # recurrent networks
    "rnn-packed-lstm": Case(PackedLSTM, {"input_data": packed_input()}, "rnn"),
    "rnn-gru-rnn": Case(GRUTagger, {"input_size": (2, 9, 6)}, "rnn"),
    "rnn-packed-direct": Case(lambda: nn.LSTM(5, 7, batch_first=True),
                              {"input_data": pack_padded_sequence(torch.randn(2, 4, 5), torch.tensor([4, 2]),
                                                                  batch_first=True)}, "rnn"),
    # TorchScript
    "jit-script-cnn": Case(quiet(lambda: torch.jit.script(SmallCNN())), {"input_size": (2, 3, 16, 16)}, "torchscript"),
    "jit-trace-resnet18": Case(quiet(lambda: torch.jit.trace(torchvision.models.resnet18(num_classes=3).eval(),
                                                              torch.randn(1, 3, 32, 32))), image, "torchscript"),
    "jit-trace-gru": Case(quiet(lambda: torch.jit.trace(GRUTagger(), torch.randn(2, 9, 6))),
                          {"input_size": (2, 9, 6)}, "torchscript"),
    # lazy modules
    "lazy-mlp": Case(LazyMLP, {"input_size": (2, 12)}, "lazy"),
    "lazy-cnn": Case(LazyCNN, {"input_size": (2, 3, 10, 10)}, "lazy"),
    # user models with odd constructors and forwards
    "user-reads-values": Case(ReadsValues, {"input_size": (2, 8)}, "user"),
    "user-tied": Case(Tied, {"input_size": (2, 5), "input_dtypes": ["int64"]}, "user"),
    "user-dict-in-out": Case(DictInOut, {"input_data": {"left": torch.randn(2, 4), "right": torch.randn(2, 5)}},
                             "user"),
    "user-structured-outputs": Case(StructuredOutputs, {"input_size": (1, 3, 8, 8)}, "user"),
    "user-catches-its-own-error": Case(CatchesItsOwnError, {"input_size": (2, 8)}, "user"),
    "user-stateful-train": Case(Stateful, {"input_size": (4, 8), "mode": "train"}, "user"),
    "user-compiled": Case(lambda: torch.compile(SmallCNN()), {"input_size": (1, 3, 16, 16)}, "user"),
}


def run_all(case: Case):
    """summary, check, names on one model: (outcome per entry point, model unchanged)."""
    torch.manual_seed(0)
    model = case.build()
    model.train()  # the user's model in train mode: netscope runs eval unless told otherwise
    before = snapshot(model)
    outcome = {}
    for name, call in (("summary", lambda: netscope.summary(model, **case.inputs)),
                       ("check", lambda: netscope.check(model, **case.inputs)),
                       ("names", lambda: netscope.audit_names(model))):
        if name == "names" and case.kind == "lazy":  # naming/ reads every shape: the naming-truth work covers it
            outcome[name] = "ok: not run (lazy: issue 15's naming part)"
            continue
        try:
            result = call()
        except NetscopeError as err:  # a documented failure: its exit code, never a traceback
            outcome[name] = f"exit {err.exit_code}: {str(err)[:60]}"
        else:
            outcome[name] = _describe(name, result)
    after = snapshot(model)
    return model, outcome, before, after


def _describe(name, result):
    if name == "summary":
        return f"ok: {len(result.layers)} calls, {result.totals.total_params:,} params"
    if name == "check":
        return f"ok: {len(result)} checked, {sum(c.status != 'pass' for c in result)} mismatch"
    return f"ok: {len(result.findings)} findings"


def test_the_corpus_is_large_and_varied():
    kinds = {case.kind for case in CORPUS.values()}
    assert len(CORPUS) >= 30
    assert {"timm", "hf", "detection", "segmentation", "video", "rnn", "torchscript", "lazy", "user"} <= kinds


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_corpus_model_runs_everywhere_and_is_left_unchanged(name):
    model, outcome, before, after = run_all(CORPUS[name])
    assert_same(before, after)
    assert all(text.startswith("ok") for text in outcome.values()), outcome


USER_FILE = textwrap.dedent("""
    import torch, torch.nn as nn

    class ReadsValues(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, 4)
            self.scale = float(self.fc.weight.abs().max())

        def forward(self, x):
            return self.fc(x) * self.scale

    class LazyMLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.LazyLinear(16), nn.ReLU(), nn.LazyLinear(4))

        def forward(self, x):
            return self.body(x)
""")


@pytest.mark.parametrize("command", ["summary", "check"])
@pytest.mark.parametrize("spec", ["ReadsValues", "LazyMLP"])
@pytest.mark.parametrize("device", ["auto", "meta"])
def test_user_files_with_odd_constructors_from_the_cli(spec, command, device, tmp_path, monkeypatch, capsys):
    (tmp_path / "odd_models.py").write_text(USER_FILE)
    monkeypatch.chdir(tmp_path)
    try:
        code = main([command, f"odd_models.py:{spec}", "-i", "2,8", "--device", device, "-q"])
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "Traceback" not in captured.err


@pytest.mark.skipif(not os.environ.get("NETSCOPE_CORPUS_TABLE"), reason="set NETSCOPE_CORPUS_TABLE=1 to print it")
def test_corpus_table(capsys):
    """Not an assertion of its own: prints the outcome table (``NETSCOPE_CORPUS_TABLE=1 pytest -k corpus_table``)."""
    rows = []
    for name in sorted(CORPUS):
        try:
            _, outcome, before, after = run_all(CORPUS[name])
        except pytest.skip.Exception as skip:
            rows.append(f"| {name} | skipped: {skip} | | | |")
            continue
        try:
            assert_same(before, after)
            same = "yes"
        except AssertionError:
            same = "NO"
        rows.append(f"| {name} | {CORPUS[name].kind} | {outcome['summary']} | {outcome['check']} | "
                    f"{outcome['names']} | {same} |")
    with capsys.disabled():
        print("\n| model | kind | summary | check | names | unchanged |\n|---|---|---|---|---|---|")
        print("\n".join(rows))
