"""The torch-free reader of zip torch.save files: same CheckpointInfo as torch.load, never runs code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from collections import OrderedDict

import pytest
import torch

from netscope.checkpoints import inspect_checkpoint, readers, torch_format, torch_zip
from netscope.cli import main
from netscope.errors import CheckpointError


def _torch_info(path: str):
    """The oracle: what the torch.load-based reader gives."""
    container, notes = torch_format.load(path, weights_only=True, mmap=True)
    return readers._info_from_container(path, "torch", container, notes)[0]


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(),
                               torch.nn.Linear(4, 2))


def _plain_no_metadata():
    return OrderedDict((k, v.clone()) for k, v in _model().state_dict().items())


def _lightning():
    model = _model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(2, 3, 3, 3)).sum().backward()
    opt.step()
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2)
    return {"epoch": 3, "global_step": 120, "pytorch-lightning_version": "2.1.0",
            "state_dict": model.state_dict(), "optimizer_states": [opt.state_dict()],
            "lr_schedulers": [sched.state_dict()], "loops": {"fit_loop": {"epoch_progress": {"current": 3}}},
            "callbacks": {}, "hparams": {"lr": 1e-3, "betas": (0.9, 0.999), "name": "x" * 50, "flag": True,
                                         "nothing": None, "tags": {"a", "b"}, "z": 1 + 2j, "raw": b"\x00\x01"}}


def _dtypes():
    dtypes = [torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.float8_e4m3fn,
              torch.float8_e5m2, torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8,
              torch.uint16, torch.uint32, torch.uint64, torch.bool, torch.complex64, torch.complex128]
    sd = {str(d).rpartition(".")[2]: torch.zeros(2, 3, dtype=d) for d in dtypes}
    sd["conj"] = torch.ones(3, dtype=torch.complex64).conj()
    sd["scalar"] = torch.tensor(1.5)
    sd["dtype_entry"] = torch.float16
    return sd


def _shared_and_views():
    w = torch.randn(6, 8)
    e = torch.zeros(0)
    f8 = torch.zeros(4, 4, dtype=torch.float8_e5m2)
    return {"w": w, "tied": w, "t": w.t(), "row": w[2], "cols": w[:, ::3], "tail": w[3:], "expanded":
            torch.randn(1, 4).expand(3, 4), "empty": e, "empty_again": e, "other_empty": torch.zeros(3, 0),
            "f8": f8, "f8_view": f8[1:, 2:]}


def _parameters():
    p = torch.nn.Parameter(torch.randn(3, 2))
    q = torch.nn.Parameter(torch.randn(2), requires_grad=False)
    q.tag = "frozen"  # a Parameter with Python state: saved through _rebuild_parameter_with_state
    return {"p": p, "q": q, "p_again": p, "buffer": torch.arange(4)}


def _nested():
    return {"model": {"state_dict": _model().state_dict()}, "meta": {"version": 2}, "ema": None}


def _deepspeed_like():
    return {"module": _model().state_dict(), "ds_version": "0.14", "dp_world_size": 8}


LAYOUTS = {
    "plain_with_metadata": lambda: _model().state_dict(),
    "plain_no_metadata": _plain_no_metadata,
    "lightning": _lightning,
    "dtypes": _dtypes,
    "shared_and_views": _shared_and_views,
    "parameters": _parameters,
    "nested": _nested,
    "deepspeed_like": _deepspeed_like,
    "empty": dict,
    "only_numbers": lambda: {"epoch": 1, "loss": 0.5},
}


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_fast_reader_matches_torch_load(tmp_path, name):
    path = str(tmp_path / f"{name}.pt")
    torch.save(LAYOUTS[name](), path)
    torch_zip.read_container(path)  # the fast path covers this layout (raises if it would fall back)
    fast = inspect_checkpoint(path)
    oracle = _torch_info(path)
    assert list(fast.tensors.items()) == list(oracle.tensors.items())
    assert fast == oracle
    assert fast.to_dict() == oracle.to_dict()


def test_storage_sharing_and_views_are_exact(tmp_path):
    path = str(tmp_path / "shared.pt")
    torch.save(_shared_and_views(), path)
    info = inspect_checkpoint(path)
    ids = {k: m.storage_id for k, m in info.tensors.items()}
    assert ids["w"] == ids["tied"] == ids["t"] == ids["row"] == ids["cols"] == ids["tail"] == "s0"
    assert ids["f8"] == ids["f8_view"] != ids["w"]
    assert info.tensors["cols"].shape == (6, 3) and info.tensors["f8_view"].shape == (3, 2)
    assert info.tensors["f8"].dtype == "float8_e5m2"
    assert info.total_bytes == 6 * 8 * 4 + 3 * 4 * 4 + 16  # w once, the expanded view's elements, f8 once


def test_dtype_entries_and_sets_summarized_like_torch(tmp_path):
    path = str(tmp_path / "lightning.pt")
    torch.save(_lightning(), path)
    info = inspect_checkpoint(path)
    assert info.layout.startswith("Lightning ")
    assert info.state_dict_path == ("state_dict",)
    assert info.other_entries["epoch"] == "int 3"
    assert info.other_entries["optimizer_states"] == "list (1 item)"


@pytest.mark.parametrize("obj", [torch.zeros(3), [torch.zeros(2)], torch.nn.Parameter(torch.ones(2))],
                         ids=["tensor", "list", "parameter"])
def test_non_mapping_top_level_falls_back_to_torch(tmp_path, obj):
    path = str(tmp_path / "x.pt")
    torch.save(obj, path)
    with pytest.raises(torch_zip.FastPathUnavailable):
        torch_zip.read_container(path)
    assert inspect_checkpoint(path) == _torch_info(path)


class _Payload:
    """Unpickling this would create a marker file: the test proves nothing ran."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_malicious_pickle_is_never_executed(tmp_path):
    marker = str(tmp_path / "pwned")
    path = str(tmp_path / "evil.pt")
    torch.save({"weight": torch.zeros(2), "payload": _Payload(marker)}, path)
    with pytest.raises(torch_zip.FastPathUnavailable, match="open"):
        torch_zip.read_container(path)
    assert not os.path.exists(marker)
    with pytest.raises(CheckpointError) as fast_error:
        inspect_checkpoint(path)
    assert not os.path.exists(marker)
    with pytest.raises(CheckpointError) as oracle_error:
        torch_format.load(path, weights_only=True, mmap=True)
    assert str(fast_error.value) == str(oracle_error.value)
    assert "weights_only=True" in str(fast_error.value)
    assert not os.path.exists(marker)


def _rewrite_zip(src: str, dst: str, change) -> None:
    """Copy a zip, passing every (name, bytes) through ``change`` (None drops the record)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = change(info.filename, zin.read(info))
            if data is not None:
                zout.writestr(info.filename, data)


@pytest.mark.parametrize("damage", ["truncated", "garbage_pickle", "missing_storage", "short_storage",
                                    "bad_byteorder"])
def test_damaged_files_give_the_torch_error(tmp_path, damage):
    good = str(tmp_path / "good.pt")
    torch.save({"w": torch.randn(4, 4), "b": torch.randn(4)}, good)
    bad = str(tmp_path / "bad.pt")
    if damage == "truncated":
        with open(good, "rb") as handle:
            data = handle.read()
        with open(bad, "wb") as handle:
            handle.write(data[: len(data) // 2])
    else:
        changes = {
            "garbage_pickle": lambda n, d: b"\x80\x02garbage" if n.endswith("data.pkl") else d,
            "missing_storage": lambda n, d: None if n.endswith("data/1") else d,
            "short_storage": lambda n, d: d[:8] if n.endswith("data/0") else d,
            "bad_byteorder": lambda n, d: b"middle" if n.endswith("byteorder") else d,
        }
        _rewrite_zip(good, bad, changes[damage])
    with pytest.raises(torch_zip.FastPathUnavailable):
        torch_zip.read_container(bad)
    # torch.load decides: the same error, or (a short storage record under mmap) the same listing
    assert _outcome(lambda: inspect_checkpoint(bad)) == _outcome(lambda: _torch_info(bad))


def _outcome(read):
    try:
        return read()
    except CheckpointError as exc:
        return f"CheckpointError: {exc}"


def test_sharded_torch_index_uses_fast_reader(tmp_path):
    sd = _model().state_dict()
    keys = list(sd)
    torch.save({k: sd[k] for k in keys[:3]}, tmp_path / "pytorch_model-00001-of-00002.bin")
    torch.save({k: sd[k] for k in keys[3:]}, tmp_path / "pytorch_model-00002-of-00002.bin")
    weight_map = {k: f"pytorch_model-0000{1 if i < 3 else 2}-of-00002.bin" for i, k in enumerate(keys)}
    index = tmp_path / "pytorch_model.bin.index.json"
    index.write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    fast = inspect_checkpoint(str(index))
    oracle = readers._sharded_info(str(index), True, load=True)[0]  # torch.load path, tensors read
    assert fast == oracle
    assert list(fast.tensors) == keys


def test_keys_command_on_zip_file_does_not_import_torch(tmp_path):
    path = str(tmp_path / "model.pt")
    torch.save(_lightning(), path)
    code = ("import sys; from netscope.cli import main; rc = main(['keys', sys.argv[1]]); "
            "print('torch' in sys.modules, rc, file=sys.stderr)")
    result = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True, timeout=120)
    assert result.stderr.strip().splitlines()[-1] == "False 0"
    assert "0.weight" in result.stdout and "Lightning" in result.stdout


def test_keys_command_output_unchanged(tmp_path, capsys):
    path = str(tmp_path / "model.pt")
    torch.save(_shared_and_views(), path)
    assert main(["keys", path, "--format", "json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown == _torch_info(path).to_dict()


def test_bare_storages_and_dtypes_as_values(tmp_path):
    bare = str(tmp_path / "bare.pt")
    torch.save({"w": torch.zeros(2), "raw": torch.zeros(3).untyped_storage()}, bare)
    with pytest.raises(torch_zip.FastPathUnavailable, match="storage"):
        torch_zip.read_container(bare)  # torch names the storage's type: it reads this file itself
    assert inspect_checkpoint(bare) == _torch_info(bare)
    dtype_entry = str(tmp_path / "dtype.pt")
    torch.save({"w": torch.zeros(2), "dtype": torch.bfloat16, "nested": [{"d": torch.float8_e4m3fn}]}, dtype_entry)
    torch_zip.read_container(dtype_entry)
    assert inspect_checkpoint(dtype_entry) == _torch_info(dtype_entry)
    assert inspect_checkpoint(dtype_entry).other_entries["dtype"] == "dtype"
