"""The input-size solver against torchvision's published ``min_size`` and hand-computed small nets."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn
import torchvision

from netscope import solve_input_size
from netscope.cli import main
from netscope.errors import UsageError
from netscope.inputs import InputSpec, TensorSpec
from netscope.specs import resolve_model


def spec(*shape):
    return InputSpec([TensorSpec(tuple(shape))])


@pytest.mark.parametrize("name", ["alexnet", "vgg16", "resnet50", "inception_v3", "squeezenet1_1", "googlenet",
                                  "convnext_tiny", "shufflenet_v2_x0_5"])
def test_smallest_size_matches_torchvision_published_min_size(name):
    kwargs = {"aux_logits": False, "init_weights": False} if name in ("inception_v3", "googlenet") else {}
    resolved = resolve_model(name, kwargs, empty_weights=True)
    result = solve_input_size(resolved.module, resolved.inputs)
    published = torchvision.models.get_model_weights(name).DEFAULT.meta["min_size"]
    assert result.pattern == "any"
    assert (result.min_size, result.min_size) == published
    assert result.output_formula == ("1", "1000")
    assert not result.note


def test_vit_accepts_exactly_224():
    resolved = resolve_model("vit_b_16", {}, empty_weights=True)
    result = solve_input_size(resolved.module, resolved.inputs)
    assert (result.pattern, result.min_size, result.valid_sizes) == ("exact", 224, (224,))
    assert result.summary() == "only exactly s = 224 works: [1, 3, 224, 224]"


class TinyUNet(nn.Module):
    """Two 2x poolings and skip concatenations: only multiples of 4 line up."""

    def __init__(self):
        super().__init__()
        self.enc1 = nn.Conv2d(1, 4, 3, padding=1)
        self.enc2 = nn.Conv2d(4, 4, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.mid = nn.Conv2d(4, 4, 3, padding=1)
        self.up = nn.Upsample(scale_factor=2)
        self.dec2 = nn.Conv2d(8, 4, 3, padding=1)
        self.dec1 = nn.Conv2d(8, 2, 3, padding=1)

    def forward(self, x):
        a = self.enc1(x)
        b = self.enc2(self.pool(a))
        c = self.mid(self.pool(b))
        b = self.dec2(torch.cat([self.up(c), b], 1))
        return self.dec1(torch.cat([self.up(b), a], 1))


def test_skip_connections_give_multiples_of_four():
    result = solve_input_size(TinyUNet(), spec(1, 1, 64, 64))
    assert (result.pattern, result.period, result.min_size, result.valid_sizes) == ("periodic", 4, 4, (4,))
    assert result.output_formula == ("1", "2", "s", "s")
    for size in (4, 8, 12, 64):
        assert result.input_shape(size) == (1, 1, size, size)
    assert all(p.ok == (p.size % 4 == 0) for p in result.probes)


def test_flattened_linear_accepts_only_a_few_sizes():
    model = nn.Sequential(nn.Conv2d(3, 6, 5), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(16 * 5 * 5, 10))
    result = solve_input_size(model, spec(1, 3, 64, 64))  # 64 itself fails: the solver searches upward
    # s -> s-4 -> floor((s-4)/2) -> that-4 -> floor(./2) must be 5: s in 32..35
    assert (result.pattern, result.min_size, result.valid_sizes) == ("exact", 32, (32, 33, 34, 35))


def test_strided_output_is_affine_with_floors():
    model = nn.Sequential(nn.Conv1d(2, 3, 3, stride=2, padding=1), nn.Conv1d(3, 3, 3, stride=2))
    result = solve_input_size(model, spec(1, 2, 50))
    # L1 = floor((s + 2 - 3) / 2) + 1 = floor((s + 1) / 2); L2 = floor((L1 - 3) / 2) + 1 = floor((L1 - 1) / 2)
    # = floor((s - 1) / 4), which is >= 1 from s = 5
    assert (result.pattern, result.min_size) == ("any", 5)
    assert result.output_formula == ("1", "3", "floor((s - 1) / 4)")
    for probe in result.probes:
        if probe.ok:
            assert probe.output_shape[2] == ((probe.size + 1) // 2 - 3) // 2 + 1


def test_solver_never_touches_the_users_model():
    model = TinyUNet().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    solve_input_size(model, spec(1, 1, 16, 16))
    assert model.training and all(p.device.type == "cpu" for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_solver_rejects_an_input_without_spatial_dims():
    with pytest.raises(UsageError, match="no spatial dimensions"):
        solve_input_size(nn.Linear(4, 2), spec(1, 4))


def test_solve_command(capsys):
    assert main(["solve", "alexnet"]) == 0
    assert "every size s >= 63 works" in capsys.readouterr().out
    assert main(["solve", "vgg16", "-f", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["model"], data["pattern"], data["min_size"]) == ("vgg16", "any", 32)
