"""``netscope diff A B`` with two checkpoints: the second one's keys are the target (API and CLI)."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from netscope.remapping import diff
from tests.test_bad_input import run_cli


class Net(nn.Module):
    def __init__(self, first: str, second: str):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3)
        setattr(self, first, nn.Linear(8, 8))  # registered first: first in torch.save's key order
        setattr(self, second, nn.Linear(8, 8))
        self.head = nn.Linear(8, 2)


@pytest.fixture()
def files(tmp_path):
    model = Net("a", "b")
    full = tmp_path / "full.pt"
    torch.save(model.state_dict(), full)
    less = {k: v for k, v in model.state_dict().items() if k != "head.bias"}
    fewer = tmp_path / "fewer.pt"
    torch.save(less, fewer)
    prefixed = tmp_path / "prefixed.pt"
    torch.save({"module." + k: v for k, v in model.state_dict().items()}, prefixed)
    return model, full, fewer, prefixed


def test_api_two_files_compares_keys_by_name(files):
    model, full, fewer, prefixed = files
    report = diff(str(full), str(fewer))
    assert report.unexpected_by_name == ["head.bias"]  # in full, not in fewer
    assert report.missing_by_name == []
    assert not report.clean
    assert report.target_label == str(fewer)
    same = diff(str(full), str(full))
    assert same.clean and same.missing_by_name == [] and same.unexpected_by_name == []
    stripped = diff(str(prefixed), str(full))
    assert stripped.mapping == {"module." + k: k for k in model.state_dict()}


def test_api_second_checkpoint_as_state_dict(files):
    model, full, _, _ = files
    report = diff(str(full), dict(model.state_dict()))
    assert report.clean


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc, self.norm = nn.Linear(8, 8), nn.LayerNorm(8)


class Stages(nn.Module):
    def __init__(self, first: str, second: str, head: str):
        super().__init__()
        setattr(self, first, Block())  # registered first: first in torch.save's key order
        setattr(self, second, Block())
        setattr(self, head, nn.Linear(8, 2))


def test_sorted_target_file_gives_no_position_evidence(tmp_path):
    """A .safetensors target lists its keys sorted by name ('alpha' before 'zeta' whatever the model's order):
    two same-shaped blocks must not be paired by their order in it; saved in registration order they are,
    as against the model itself."""
    safetensors = pytest.importorskip("safetensors.torch")
    source = Stages("stage1", "stage2", "classifier")
    target = Stages("zeta", "alpha", "head")  # zeta registered first, sorted last
    src = tmp_path / "src.pt"
    torch.save(source.state_dict(), src)
    dst = tmp_path / "dst.safetensors"
    safetensors.save_file(dict(target.state_dict()), str(dst))
    report = diff(str(src), str(dst))
    blocks = [d for d in report.decisions if d.source and d.source.startswith(("stage1.", "stage2."))]
    assert blocks and all(not d.loads and d.reason == "ambiguous" for d in blocks), \
        [(d.source, d.target, d.reason) for d in blocks]
    assert report.mapping["classifier.weight"] == "head.weight"  # unique kind and shape: still paired
    ordered = tmp_path / "dst.pt"
    torch.save(target.state_dict(), ordered)
    by_order = diff(str(src), str(ordered)).mapping
    assert by_order == diff(str(src), target).mapping
    assert by_order["stage1.fc.weight"] == "zeta.fc.weight" and by_order["stage2.fc.weight"] == "alpha.fc.weight"


class Renamed(nn.Module):
    def __init__(self, body: str):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3)
        setattr(self, body, nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)))


def test_checkpoint_target_decides_like_its_model(tmp_path):
    source, target = Renamed("enc"), Renamed("encoder")
    src, dst = tmp_path / "src.pt", tmp_path / "dst.pt"
    torch.save(source.state_dict(), src)
    torch.save(target.state_dict(), dst)
    from_file, from_model = diff(str(src), str(dst)), diff(str(src), target)
    assert from_file.mapping == from_model.mapping
    assert from_file.mapping["enc.0.weight"] == "encoder.0.weight"  # the rename is found at all


def test_cli_two_files(files, capsys):
    _, full, fewer, _ = files
    code, out, err = run_cli(["diff", str(full), str(fewer)], capsys)
    assert code == 1
    assert "head.bias" in out and "unused" in out
    code, out, err = run_cli(["diff", str(full), str(full)], capsys)
    assert code == 0, err
    assert "Traceback" not in err
