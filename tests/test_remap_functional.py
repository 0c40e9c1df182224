"""Functional equivalence as the oracle for remap: a source model with random weights, its state dict remapped
into another implementation of the same network, loaded, and run on the same input in float64. Equal outputs
mean the mapping is right; a report with no strict problem and different outputs is a silent wrong answer
(the one failure remap must never have). A refusal or a flagged key is acceptable when it is named."""

from __future__ import annotations

from typing import Sequence

import pytest
import torch
import torch.nn as nn

import netscope


class Chain(nn.Module):
    """Linear layers named ``names``, run in that order (tanh between): the order is the network."""

    def __init__(self, names: Sequence[str], dims: Sequence[int], order: Sequence[int] = ()):
        super().__init__()
        self.names = list(names)
        pairs = list(zip(dims, dims[1:]))
        for n in order or range(len(self.names)):  # declaration order (the state dict's), not the run order
            setattr(self, self.names[n], nn.Linear(*pairs[n]))

    def forward(self, x):
        for name in self.names:
            x = torch.tanh(getattr(self, name)(x))
        return x


class Nested(nn.Module):
    """A Chain under a named parent: the siblings are not under the same path on both sides."""

    def __init__(self, parent: str, names, dims):
        super().__init__()
        self.parent = parent
        setattr(self, parent, Chain(names, dims))

    def forward(self, x):
        return getattr(self, self.parent)(x)


def _random(model: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, dtype=p.dtype))
    return model.eval()


def _remap_and_run(source: nn.Module, target: nn.Module):
    """(strict problems, outputs equal, report) after remapping source's weights into target; every tensor
    written is the one at the same place in the network (two Chains: the i-th layer run is the i-th), except
    where the key is the same on both sides: an equal key is the evidence torch's own load goes by."""
    source, target = _random(source.double()), target.double().eval()
    state = source.state_dict()
    new, report = netscope.remap(state, target)
    exact = {d.target for d in report.decisions if d.reason == "exact"}
    for key, tensor in new.items():
        if key in exact:
            continue
        want = _same_place(key, source, target)
        assert torch.equal(tensor, state[want]), f"{key} holds a tensor other than {want}: {report.mapping}"
    problems = report.strict_problems()
    target.load_state_dict(new, strict=not problems)
    x = torch.randn(5, source_in(source), dtype=torch.float64)
    with torch.no_grad():
        equal = torch.allclose(source(x), target(x), rtol=1e-12, atol=0)
    return problems, equal, report


def _chain(model: nn.Module) -> Chain:
    return model if isinstance(model, Chain) else getattr(model, model.parent)


def _same_place(key: str, source: nn.Module, target: nn.Module) -> str:
    module, _, leaf = key.rpartition(".")
    s, t = _chain(source), _chain(target)
    prefix = "" if s is source else source.parent + "."
    return f"{prefix}{s.names[t.names.index(module.rpartition('.')[2])]}.{leaf}"


def source_in(model: nn.Module) -> int:
    return next(m for m in model.modules() if isinstance(m, nn.Linear)).in_features


@pytest.mark.parametrize("source, target", [
    # 0-based names into 1-based ones of other words: the digits agree one layer off (fc2 ~ linear2, whose
    # position is fc1's); pairing by the digits and the last by elimination swaps three same-shape layers
    (Chain(["fc0", "fc1", "fc2", "fc3"], [3, 8, 8, 8, 8]),
     Chain(["linear1", "linear2", "linear3", "linear4"], [3, 8, 8, 8, 8])),
    (Chain(["bn0", "bn1", "bn2"], [4, 4, 4, 4]), Chain(["batchnorm1", "batchnorm2", "batchnorm3"], [4, 4, 4, 4])),
    (Nested("encoder", ["fc0", "fc1", "fc2"], [3, 8, 8, 8]),
     Nested("body", ["linear1", "linear2", "linear3"], [3, 8, 8, 8])),
    # 0-based into 1-based with the same word: fc1 and fc2 match by key (as torch's own load would), and the one
    # left, fc0, is no 'only layer of its kind' for fc3: its number says another layer
    (Chain(["fc0", "fc1", "fc2"], [3, 3, 3, 3]), Chain(["fc1", "fc2", "fc3"], [3, 3, 3, 3])),
], ids=["shifted-numbers", "shifted-numbers-abbreviated", "shifted-numbers-other-parent", "shifted-same-word"])
def test_a_shifted_numbering_is_no_name_evidence(source, target):
    problems, equal, report = _remap_and_run(source, target)
    assert equal or problems, f"remap reported success and the outputs differ: {report.mapping}"


class GatedMLP(nn.Module):
    """down(silu(gate(x)) * up(x)) with gate and up of one shape, declared in ``order``."""

    def __init__(self, gate: str, up: str, down: str, order: Sequence[str] = ()):
        super().__init__()
        self.roles = (gate, up, down)
        shapes = {gate: (4, 8), up: (4, 8), down: (8, 4)}
        for name in order or self.roles:
            setattr(self, name, nn.Linear(*shapes[name]))

    def forward(self, x):
        gate, up, down = (getattr(self, name) for name in self.roles)
        return down(torch.nn.functional.silu(gate(x)) * up(x))


@pytest.mark.parametrize("source, target", [
    # Meta's w1 (gate), w3 (up) against T5's wi_0 (gate), wi_1 (up): w1 ~ wi_1 by the digit is the up
    # projection, so gate and up were swapped and strict load said yes
    (GatedMLP("w1", "w3", "w2", order=("w1", "w2", "w3")), GatedMLP("wi_0", "wi_1", "wo")),
    (GatedMLP("wi_0", "wi_1", "wo"), GatedMLP("w1", "w3", "w2", order=("w1", "w2", "w3"))),
], ids=["meta-to-t5", "t5-to-meta"])
def test_numbers_of_two_different_numberings_do_not_pair_a_gate_and_an_up_projection(source, target):
    source, target = _random(source.double()), target.double().eval()
    state = source.state_dict()
    new, report = netscope.remap(state, target)
    truth = dict(zip(target.roles, source.roles))
    for key, tensor in new.items():
        module, _, leaf = key.partition(".")
        assert torch.equal(tensor, state[f"{truth[module]}.{leaf}"]), f"{key}: {report.mapping}"
    assert report.strict_problems(), "gate and up have no evidence between them: named, not guessed"


@pytest.mark.parametrize("source, target", [
    (Chain(["fc1", "fc2", "fc3"], [3, 8, 8, 8]), Chain(["linear1", "linear2", "linear3"], [3, 8, 8, 8])),
    (Chain(["conv1", "bn1", "conv2"], [3, 8, 8, 8]), Chain(["conv1", "norm1", "conv2"], [3, 8, 8, 8])),
    (Chain(["q", "k", "v"], [4, 4, 4, 4], order=[2, 0, 1]), Chain(["query", "key", "value"], [4, 4, 4, 4])),
], ids=["same-numbers", "bn-norm", "declared-in-other-order"])
def test_names_that_agree_still_map_and_run_the_same(source, target):
    problems, equal, _ = _remap_and_run(source, target)
    assert not problems and equal


def _tv_to_hf_resnet(key: str) -> str:
    """torchvision ResNet-18's key -> Hugging Face ResNet's, written from the two libraries' module code."""
    import re

    key = re.sub(r"^conv1\.", "resnet.embedder.embedder.convolution.", key)
    key = re.sub(r"^bn1\.", "resnet.embedder.embedder.normalization.", key)
    key = re.sub(r"^fc\.", "classifier.1.", key)
    m = re.match(r"layer(\d)\.(\d)\.(\w+?)(\.\d)?\.(\w+)$", key)
    if m:
        stage, block, module, index, leaf = m.groups()
        inner = {"conv1": "layer.0.convolution", "bn1": "layer.0.normalization", "conv2": "layer.1.convolution",
                 "bn2": "layer.1.normalization", "downsample.0": "shortcut.convolution",
                 "downsample.1": "shortcut.normalization"}[module + (index or "")]
        key = f"resnet.encoder.stages.{int(stage) - 1}.layers.{block}.{inner}.{leaf}"
    return key


@pytest.mark.parametrize("direction", ["torchvision-to-hf", "hf-to-torchvision"])
def test_resnet_between_torchvision_and_hugging_face_puts_no_tensor_in_another_layer(direction):
    """Matched from the end, torchvision's layer4.0.downsample.1 (a 512-channel BatchNorm, last in its block) met
    Hugging Face's layer.1.normalization (last in its block, where bn2 belongs): written, with the report
    calling it structural. The rest of the block is refused, so every tensor written must be the right one."""
    torchvision = pytest.importorskip("torchvision")
    transformers = pytest.importorskip("transformers")
    hf = transformers.ResNetForImageClassification(transformers.ResNetConfig(
        depths=[2, 2, 2, 2], layer_type="basic", hidden_sizes=[64, 128, 256, 512], downsample_in_first_stage=False,
        num_labels=1000))
    tv = torchvision.models.resnet18(weights=None)
    source, target = (tv, hf) if direction == "torchvision-to-hf" else (hf, tv)
    state = _random(source).state_dict()
    new, report = netscope.remap(state, target)
    truth = {_tv_to_hf_resnet(k): k for k in tv.state_dict()}
    if source is hf:
        truth = {v: k for k, v in truth.items()}
    assert set(truth) == set(target.state_dict()), "the truth table covers the model"
    wrong = [key for key, tensor in new.items() if not torch.equal(tensor, state[truth[key]])]
    written_from = {t: s for s, t in report.mapping.items()}
    assert not wrong, f"{len(wrong)} tensor(s) from another layer, first {wrong[0]} <- {written_from.get(wrong[0])}"


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm = nn.LayerNorm(8)
        self.fc = nn.Linear(8, 8)

    def forward(self, x):
        return torch.tanh(self.fc(self.norm(x)))


class Blocks(nn.Module):
    """Same-shape blocks run in ``names`` order, declared (so saved) in ``order``; ``names`` of digits make
    them a ModuleList under ``blocks``."""

    def __init__(self, names: Sequence[str], order: Sequence[int] = ()):
        super().__init__()
        self.names = list(names)
        if all(n.isdigit() for n in names):
            self.blocks = nn.ModuleList(Block() for _ in names)
        else:
            for n in order or range(len(names)):
                setattr(self, names[n], Block())

    def _block(self, name):
        return self.blocks[int(name)] if hasattr(self, "blocks") else getattr(self, name)

    def forward(self, x):
        for name in self.names:
            x = self._block(name)(x)
        return x


def _block_key(key: str, source: Blocks, target: Blocks) -> str:
    parts = key.split(".")
    name = parts[1] if parts[0] == "blocks" else parts[0]
    want = source.names[target.names.index(name)]
    return (f"blocks.{want}" if hasattr(source, "blocks") else want) + "." + ".".join(parts[-2:])


@pytest.mark.parametrize("source, target", [
    # block4 saved first: by position it is blocks.0, by its number blocks.3 (1-based): refused, not a tie
    # broken toward the equal number (block2 -> blocks.2 is one off)
    (Blocks(["block1", "block2", "block3", "block4"], order=[3, 2, 1, 0]), Blocks(["0", "1", "2", "3"])),
    (Blocks(["0", "1", "2", "3"]), Blocks(["block1", "block2", "block3", "block4"], order=[3, 2, 1, 0])),
    # the model declares encoder2 first: position gave enc1 to encoder2 although enc1 ~ encoder1 by name
    (Blocks(["enc1", "enc2"]), Blocks(["encoder1", "encoder2"], order=[1, 0])),
    # 1-based into 0-based, one word: enc1 and dec1 match by key, and enc2 is no stand-in for enc0
    (Blocks(["enc1", "enc2", "dec1", "dec2"]), Blocks(["enc0", "enc1", "dec0", "dec1"])),
], ids=["numbered-saved-reversed", "into-numbered-declared-reversed", "names-over-declaration-order",
        "leftover-with-another-number"])
def test_numbered_blocks_are_not_paired_against_their_numbers(source, target):
    source, target = _random(source.double()), target.double().eval()
    state = source.state_dict()
    new, report = netscope.remap(state, target)
    exact = {d.target for d in report.decisions if d.reason == "exact"}
    for key, tensor in new.items():
        if key not in exact:  # an equal key is the evidence torch's own load goes by
            want = _block_key(key, source, target)
            assert torch.equal(tensor, state[want]), f"{key} holds a tensor other than {want}: {report.mapping}"
    problems = report.strict_problems()
    target.load_state_dict(new, strict=not problems)
    x = torch.randn(3, 8, dtype=torch.float64)
    with torch.no_grad():
        assert problems or torch.allclose(source(x), target(x), rtol=1e-12, atol=0)


def test_numbered_blocks_in_their_order_still_map():
    source, target = _random(Blocks(["block1", "block2", "block3"]).double()), Blocks(["0", "1", "2"]).double()
    new, report = netscope.remap(source.state_dict(), target)
    assert not report.strict_problems()
    target.load_state_dict(new)
    x = torch.randn(3, 8, dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(source(x), target(x), rtol=1e-12, atol=0)
