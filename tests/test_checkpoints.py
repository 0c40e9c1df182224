"""Checkpoint reading/writing: every format and layout, headers-only listing, safety, atomic writes."""

from __future__ import annotations

import csv
import io
import json
import os
import struct
import subprocess
import sys
import textwrap
import warnings
import zipfile
from collections import OrderedDict

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
import torch.nn as nn

from netscope.checkpoints import (
    CheckpointInfo,
    find_state_dict,
    inspect_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from netscope.cli import main
from netscope.errors import CheckpointError, NetscopeError
from netscope.records import TensorMeta


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
        self.fc = nn.Linear(4, 5)


def tiny_state():
    torch.manual_seed(0)
    net = TinyNet()
    net.features[1].running_mean.uniform_()
    return net.state_dict()


def bits(t: torch.Tensor) -> bytes:
    """The exact bytes of a tensor, so NaNs and -0.0 compare bit for bit."""
    dense = torch.empty(tuple(t.shape), dtype=t.dtype).copy_(t.detach())  # fresh standard strides
    return dense.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""


def assert_bit_identical(got: dict, want: dict):
    assert list(got) == list(want)
    for key in want:
        assert got[key].dtype == want[key].dtype, key
        assert tuple(got[key].shape) == tuple(want[key].shape), key
        assert bits(got[key]) == bits(want[key]), key


def assert_metas_match(info: CheckpointInfo, state: dict):
    assert list(info.tensors) == list(state)
    for key, tensor in state.items():
        meta = info.tensors[key]
        assert meta.shape == tuple(tensor.shape)
        assert meta.dtype == str(tensor.dtype).replace("torch.", "")


class Box:
    """A harmless custom class: only loadable with the explicit unsafe opt-in."""

    def __init__(self, value=3):
        self.value = value


class Evil:
    """Unpickling this would create a marker file: it must never be built without the opt-in."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


# ---- layouts ----------------------------------------------------------------------------------------

LAYOUTS = [
    # (container builder, expected state-dict path, expected layout substring, expected other entries)
    (lambda sd: sd, (), "plain state_dict", {}),
    (lambda sd: {"state_dict": sd, "epoch": 12, "global_step": 3, "pytorch-lightning_version": "2.1.0",
                 "optimizer_states": [{"state": {}}], "callbacks": {}},
     ("state_dict",), "Lightning", {"epoch": "int 12", "optimizer_states": "list (1 item)"}),
    (lambda sd: {"model": sd, "optimizer": {"state": {0: {"exp_avg": torch.zeros(3)}}, "param_groups": []},
                 "epoch": 7},
     ("model",), "{'model': ...", {"optimizer": "dict (2 keys)", "epoch": "int 7"}),
    (lambda sd: {"state_dict": sd, "state_dict_ema": {k: v.clone() for k, v in sd.items()}, "arch": "tiny"},
     ("state_dict",), "timm train checkpoint", {"arch": "str 'tiny'"}),
    (lambda sd: {"module": sd, "ds_version": "0.14", "dp_world_size": 1},
     ("module",), "DeepSpeed", {"ds_version": "str '0.14'"}),
    (lambda sd: {"meta": {"epoch": 1}, "model": {"net": sd, "step": 4}},
     ("model", "net"), "{'model': ...", {"meta": "dict (1 key)", "model.step": "int 4"}),
]


@pytest.mark.parametrize("build,sd_path,layout,entries", LAYOUTS)
def test_layouts_are_found_listed_and_loaded(tmp_path, build, sd_path, layout, entries):
    state = tiny_state()
    path = str(tmp_path / "ckpt.pth")
    torch.save(build(state), path)
    info = inspect_checkpoint(path)
    assert info.format == "torch"
    assert info.state_dict_path == sd_path
    assert layout in info.layout
    for key, summary in entries.items():
        assert info.other_entries[key] == summary
    assert_metas_match(info, state)
    loaded = load_checkpoint(path)
    assert_bit_identical(loaded.state_dict, state)
    assert loaded.state_dict._metadata == state._metadata  # module versions survive
    assert loaded.info == info


def test_find_state_dict_skips_optimizer_and_accepts_tensor_meta():
    sd = {"w": torch.zeros(2), "b": torch.zeros(1)}
    path, found = find_state_dict({"optimizer": {"state": {"x": torch.zeros(9)}, "param_groups": []},
                                   "weights_holder": {"inner": sd}})
    assert path == ("weights_holder", "inner") and found is sd
    metas = {"a.weight": TensorMeta((2, 3), "float32")}
    assert find_state_dict({"model": metas}) == (("model",), metas)
    assert find_state_dict({}) == ((), {})
    with pytest.raises(CheckpointError, match="no model tensors"):
        find_state_dict({"epoch": 3, "config": {"lr": 0.1}})


def test_checkpoint_without_tensors_is_listed_with_a_note(tmp_path):
    path = str(tmp_path / "meta.pt")
    torch.save({"epoch": 3}, path)
    info = inspect_checkpoint(path)
    assert info.tensors == {} and info.other_entries == {"epoch": "int 3"}
    assert any("no model tensors" in n for n in info.notes)


def test_torch_storage_ids_follow_sharing(tmp_path):
    weight = torch.randn(4, 4)
    state = OrderedDict([("emb.weight", weight), ("head.weight", weight), ("other", torch.randn(4)),
                         ("view", weight[1])])
    path = str(tmp_path / "tied.pt")
    torch.save(state, path)
    info = inspect_checkpoint(path)
    ids = {k: m.storage_id for k, m in info.tensors.items()}
    assert ids["emb.weight"] == ids["head.weight"] == ids["view"] != ids["other"]
    assert info.total_bytes == 16 * 4 + 4 * 4  # the shared storage counted once
    loaded = load_checkpoint(path).state_dict
    assert loaded["emb.weight"].data_ptr() == loaded["head.weight"].data_ptr()


def test_whole_module_pickle_needs_opt_in(tmp_path):
    path = str(tmp_path / "whole.pt")
    net = TinyNet()
    torch.save(net, path)
    with pytest.raises(CheckpointError, match="--unsafe-pickle"):
        inspect_checkpoint(path)
    info = inspect_checkpoint(path, weights_only=False)
    assert "whole TinyNet object" in info.layout
    assert_metas_match(info, net.state_dict())


# ---- safety ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
@pytest.mark.parametrize("reader", [inspect_checkpoint, load_checkpoint])
def test_code_in_pickle_is_refused_not_run(tmp_path, zip_format, reader):
    marker = tmp_path / "pwned"
    path = str(tmp_path / "evil.pt")
    torch.save({"state_dict": tiny_state(), "payload": Evil(str(marker))}, path,
               _use_new_zipfile_serialization=zip_format)
    assert not marker.exists()
    with pytest.raises(CheckpointError) as err:
        reader(path)
    message = str(err.value)
    assert "--unsafe-pickle" in message and "weights_only=False" in message
    assert "io.open" in message  # the refused global is named
    assert not marker.exists()


def test_cli_refuses_unsafe_pickle_without_traceback(tmp_path, capsys):
    marker = tmp_path / "pwned"
    path = str(tmp_path / "evil.pt")
    torch.save(Evil(str(marker)), path)
    assert main(["keys", path]) == 2
    captured = capsys.readouterr()
    assert "--unsafe-pickle" in captured.err and "Traceback" not in captured.err
    assert captured.out == "" and not marker.exists()


def test_unsafe_pickle_opt_in_loads_custom_objects(tmp_path, capsys):
    path = str(tmp_path / "box.pt")
    state = tiny_state()
    torch.save({"state_dict": state, "cfg": Box(5)}, path)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
    loaded = load_checkpoint(path, weights_only=False)
    assert loaded.container["cfg"].value == 5
    assert_bit_identical(loaded.state_dict, state)
    assert main(["keys", path, "--unsafe-pickle"]) == 0
    assert "cfg: Box" in capsys.readouterr().out


def _truncated_zip(tmp_path):
    path = tmp_path / "trunc.pt"
    torch.save(tiny_state(), str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return str(path)


def _truncated_safetensors(tmp_path):
    path = tmp_path / "trunc.safetensors"
    save_checkpoint(tiny_state(), str(path))
    data = path.read_bytes()
    path.write_bytes(data[:-10])
    return str(path)


def _text_file(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("epoch,loss\n1,0.5\n")
    return str(path)


def _empty_file(tmp_path):
    path = tmp_path / "empty.pth"
    path.write_bytes(b"")
    return str(path)


def _plain_pickle(tmp_path):
    import pickle

    path = tmp_path / "plain.pkl"
    path.write_bytes(pickle.dumps({"a": 1}, protocol=2))
    return str(path)


def _random_bytes(tmp_path):
    path = tmp_path / "noise.bin"
    path.write_bytes(bytes(range(7, 250)) * 3)
    return str(path)


def _empty_dir(tmp_path):
    (tmp_path / "folder").mkdir()
    return str(tmp_path / "folder")


def _distcp_file(tmp_path):
    path = tmp_path / "__0_0.distcp"
    path.write_bytes(b"\x00" * 10)
    return str(path)


BAD_FILES = [
    (_truncated_zip, "truncated, corrupt"),
    (_truncated_safetensors, "truncated or corrupt"),
    (_text_file, "text file starting 'epoch,loss'"),
    (_empty_file, "empty \\(0 bytes\\)"),
    (_plain_pickle, "could not be read as a torch.save checkpoint"),
    (_random_bytes, "not a checkpoint"),
    (_empty_dir, "folder without a checkpoint"),
    (_distcp_file, "pass the directory"),
    (lambda tmp_path: str(tmp_path / "missing.pt"), "no file or folder"),
]


@pytest.mark.parametrize("make,message", BAD_FILES, ids=[m.__name__.strip("_") if hasattr(m, "__name__") else "x"
                                                         for m, _ in BAD_FILES])
def test_bad_files_give_one_clear_error(tmp_path, capsys, make, message):
    path = make(tmp_path)
    with pytest.raises(CheckpointError, match=message):
        inspect_checkpoint(path)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)
    assert main(["keys", path]) == 2
    err = capsys.readouterr().err
    assert err.startswith("netscope keys: error: ") and "Traceback" not in err


def _safetensors_bytes(header: dict, data: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


LYING_HEADERS = [
    ({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, 8, "ends at data byte 16"),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
      "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, 12, "overlap"),
    ({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, 8, "span 8 bytes"),
    ({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, 4, "invalid shape"),
    ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}}, 4, "invalid data_offsets"),
    ({"a": {"dtype": "F32"}}, 4, "lacks dtype, shape or data_offsets"),
]


@pytest.mark.parametrize("header,data_len,message", LYING_HEADERS)
def test_safetensors_header_that_lies_is_rejected(tmp_path, header, data_len, message):
    path = tmp_path / "lie.safetensors"
    path.write_bytes(_safetensors_bytes(header, b"\x00" * data_len))
    with pytest.raises(CheckpointError, match=message):
        inspect_checkpoint(str(path))


def test_safetensors_header_length_starting_with_pickle_byte(tmp_path):
    # a header length whose low byte is 0x80 looks like a pickle's first byte: content decides, not that byte
    header = {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}
    raw = json.dumps(header).encode()
    raw += b" " * ((0x80 - len(raw)) % 256)
    path = tmp_path / "odd.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + struct.pack("<2f", 1.5, -2.0))
    assert path.read_bytes()[:1] == b"\x80"
    info = inspect_checkpoint(str(path))
    assert info.format == "safetensors" and info.tensors["w"] == TensorMeta((2,), "float32", "s0")
    assert load_checkpoint(str(path)).state_dict["w"].tolist() == [1.5, -2.0]


def test_safetensors_header_length_beyond_file(tmp_path):
    path = tmp_path / "long.safetensors"
    path.write_bytes(struct.pack("<Q", 10_000) + b"{}")
    with pytest.raises(CheckpointError, match="claims 10,000 bytes"):
        inspect_checkpoint(str(path))


# ---- safetensors -------------------------------------------------------------------------------------------

def mixed_dtype_state():
    torch.manual_seed(1)
    return OrderedDict([
        ("z.half", torch.randn(3, 2).half()),
        ("a.bf16", torch.randn(5).bfloat16()),
        ("m.steps", torch.tensor(7)),
        ("b.mask", torch.rand(4) > 0.5),
        ("c.nan", torch.tensor([float("nan"), -0.0, float("inf")])),
        ("d.i8", torch.arange(-4, 4, dtype=torch.int8)),
    ])


def test_safetensors_header_matches_the_library(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    state = mixed_dtype_state()
    path = str(tmp_path / "lib.safetensors")
    save_file(dict(state), path, metadata={"format": "pt", "producer": "test"})
    info = inspect_checkpoint(path)
    assert info.format == "safetensors" and info.layout == "plain state_dict"
    with safe_open(path, framework="pt") as handle:
        assert set(info.tensors) == set(handle.keys())
        for key in handle.keys():
            tensor = handle.get_tensor(key)
            assert info.tensors[key].shape == tuple(tensor.shape)
            assert info.tensors[key].dtype == str(tensor.dtype).replace("torch.", "")
    assert info.other_entries == {"__metadata__.format": "str 'pt'", "__metadata__.producer": "str 'test'"}
    assert len({m.storage_id for m in info.tensors.values()}) == len(state)


def test_safetensors_round_trip_is_bit_identical_and_keeps_order(tmp_path):
    state = mixed_dtype_state()
    path = str(tmp_path / "rt.safetensors")
    save_checkpoint(state, path)
    info = inspect_checkpoint(path)
    assert list(info.tensors) == list(state)
    assert_bit_identical(load_checkpoint(path).state_dict, state)


def test_safetensors_shared_storage_saved_once_and_restored(tmp_path):
    from safetensors import safe_open

    weight = torch.randn(6, 4)
    state = OrderedDict([("embed.weight", weight), ("bias", torch.randn(4)), ("head.weight", weight),
                         ("transposed", weight.t()), ("row", weight[2])])
    path = str(tmp_path / "tied.safetensors")
    save_checkpoint(state, path)
    with safe_open(path, framework="pt") as handle:
        assert "head.weight" not in handle.keys()  # saved once
        assert len(list(handle.keys())) == 4
    info = inspect_checkpoint(path)
    assert list(info.tensors) == list(state)
    assert info.tensors["head.weight"] == info.tensors["embed.weight"]
    loaded = load_checkpoint(path).state_dict
    assert_bit_identical(loaded, state)
    assert loaded["head.weight"].data_ptr() == loaded["embed.weight"].data_ptr()
    assert loaded["transposed"].is_contiguous()


def _views_of_one_storage(draw_sizes, seed):
    """A state dict of whole tensors, aliases and slices built from a few shared storages."""
    generator = torch.Generator().manual_seed(seed)
    state = OrderedDict()
    bases = [torch.randn(n, 3, generator=generator) for n in draw_sizes]
    for i, base in enumerate(bases):
        state[f"base{i}"] = base
        state[f"alias{i}"] = base
        state[f"row{i}"] = base[-1]
        state[f"col{i}"] = base[:, 1]
    return state


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sizes=st.lists(st.integers(1, 5), min_size=1, max_size=3), seed=st.integers(0, 1000),
       ext=st.sampled_from([".pt", ".safetensors"]))
def test_round_trip_property_values_and_aliases(tmp_path, sizes, seed, ext):
    state = _views_of_one_storage(sizes, seed)
    path = str(tmp_path / f"p{seed}{ext}")
    save_checkpoint(state, path, force=True)
    loaded = load_checkpoint(path).state_dict
    assert_bit_identical(loaded, state)
    info = inspect_checkpoint(path)
    assert_metas_match(info, state)
    for i in range(len(sizes)):  # whole-tensor aliases always share a storage (views too for torch.save)
        assert loaded[f"alias{i}"].data_ptr() == loaded[f"base{i}"].data_ptr()
        assert info.tensors[f"alias{i}"].storage_id == info.tensors[f"base{i}"].storage_id
        if ext == ".pt":
            assert info.tensors[f"row{i}"].storage_id == info.tensors[f"base{i}"].storage_id


def test_safetensors_keeps_state_dict_metadata(tmp_path):
    state = tiny_state()
    path = str(tmp_path / "m.safetensors")
    save_checkpoint(state, path)
    loaded = load_checkpoint(path).state_dict
    assert loaded._metadata == state._metadata
    net = TinyNet()
    net.load_state_dict(loaded, strict=True)


def test_safetensors_refuses_non_tensor_entries(tmp_path):
    with pytest.raises(CheckpointError, match="flat dict of tensors"):
        save_checkpoint({"w": torch.zeros(1), "epoch": 3}, str(tmp_path / "x.safetensors"))
    with pytest.raises(CheckpointError, match="flat dict of tensors"):
        save_checkpoint([torch.zeros(1)], str(tmp_path / "x.safetensors"))
    assert not os.listdir(tmp_path)


def test_hf_shard_file_gets_a_note(tmp_path):
    path = str(tmp_path / "model-00001-of-00002.safetensors")
    save_checkpoint({"w": torch.zeros(2)}, path)
    assert any("index.json" in n for n in inspect_checkpoint(path).notes)


# ---- torch files -------------------------------------------------------------------------------------------

def test_torch_round_trip_keeps_sharing_dtypes_and_metadata(tmp_path):
    weight = torch.randn(3, 3)
    state = OrderedDict([("a", weight), ("b", weight), ("h", torch.randn(2).half())])
    state._metadata = {"": {"version": 1}}
    path = str(tmp_path / "rt.pt")
    save_checkpoint({"model": state, "epoch": 2}, path)
    loaded = load_checkpoint(path)
    assert_bit_identical(loaded.state_dict, state)
    assert loaded.state_dict["a"].data_ptr() == loaded.state_dict["b"].data_ptr()
    assert loaded.state_dict._metadata == {"": {"version": 1}}
    assert loaded.container["epoch"] == 2


def test_legacy_torch_format_works_with_a_note(tmp_path):
    state = tiny_state()
    path = str(tmp_path / "legacy.pth")
    torch.save(state, path, _use_new_zipfile_serialization=False)
    assert not zipfile.is_zipfile(path)
    info = inspect_checkpoint(path)
    assert_metas_match(info, state)
    assert any("legacy" in n for n in info.notes)
    assert_bit_identical(load_checkpoint(path).state_dict, state)


# ---- sharded -------------------------------------------------------------------------------------------------

def _write_sharded(folder, state, ext):
    keys = list(state)
    halves = [keys[: len(keys) // 2], keys[len(keys) // 2:]]
    weight_map = {}
    stem = "model" if ext == ".safetensors" else "pytorch_model"
    for number, part in enumerate(halves, 1):
        name = f"{stem}-{number:05d}-of-00002{ext}"
        save_checkpoint(OrderedDict((k, state[k]) for k in part), str(folder / name))
        weight_map.update({k: name for k in part})
    index = folder / f"{stem}{ext}.index.json"
    index.write_text(json.dumps({"metadata": {"total_size": 123}, "weight_map": weight_map}))
    return str(index)


@pytest.mark.parametrize("ext,fmt", [(".safetensors", "sharded-safetensors"), (".bin", "sharded-torch")])
def test_sharded_index(tmp_path, ext, fmt):
    state = tiny_state()
    index = _write_sharded(tmp_path, state, ext)
    for target in (index, str(tmp_path)):  # the index or its folder
        info = inspect_checkpoint(target)
        assert info.format == fmt and "HF sharded index (2 shards)" == info.layout
        assert_metas_match(info, state)
        assert info.other_entries == {"metadata.total_size": "123"}
        assert not info.notes
    assert_bit_identical(load_checkpoint(index).state_dict, state)


def test_sharded_index_problems(tmp_path):
    state = tiny_state()
    index = _write_sharded(tmp_path, state, ".safetensors")
    data = json.loads(open(index).read())
    data["weight_map"]["ghost.weight"] = "model-00001-of-00002.safetensors"
    open(index, "w").write(json.dumps(data))
    assert any("does not hold" in n for n in inspect_checkpoint(index).notes)
    os.remove(tmp_path / "model-00002-of-00002.safetensors")
    with pytest.raises(CheckpointError, match="not there"):
        inspect_checkpoint(index)
    bad = tmp_path / "x.index.json"
    bad.write_text(json.dumps({"metadata": {}}))
    with pytest.raises(CheckpointError, match="weight_map"):
        inspect_checkpoint(str(bad))


# ---- torch.distributed.checkpoint ---------------------------------------------------------------------------

def _dcp_save(state, folder):
    import torch.distributed.checkpoint as dcp

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dcp.save(state, checkpoint_id=str(folder), no_dist=True)


def test_dcp_listed_from_metadata_only_and_loaded(tmp_path, capsys):
    state = tiny_state()
    folder = tmp_path / "dcp"
    _dcp_save({"model": state, "epoch": 5}, folder)
    info = inspect_checkpoint(str(folder))
    assert info.format == "dcp" and info.state_dict_path == ("model",)
    assert_metas_match(info, state)
    assert info.other_entries == {"epoch": "pickled object (not read)"}
    assert inspect_checkpoint(str(folder / ".metadata")) == info
    assert main(["keys", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "format:     dcp" in out and "features.1.running_mean" in out and "epoch: pickled object" in out
    loaded = load_checkpoint(str(folder))
    assert_bit_identical(loaded.state_dict, state)
    assert loaded.container["epoch"] == 5
    # the listing never reads tensor bytes: it still works with the data files emptied
    for name in os.listdir(folder):
        if name.endswith(".distcp"):
            open(folder / name, "wb").close()
    assert inspect_checkpoint(str(folder)) == info
    with pytest.raises(CheckpointError):
        load_checkpoint(str(folder))


def test_dcp_metadata_with_foreign_globals_is_refused(tmp_path):
    folder = tmp_path / "dcp"
    folder.mkdir()
    marker = tmp_path / "pwned"
    import pickle

    (folder / ".metadata").write_bytes(pickle.dumps(Evil(str(marker))))
    with pytest.raises(CheckpointError, match="other than torch.distributed.checkpoint metadata.*--unsafe-pickle"):
        inspect_checkpoint(str(folder))
    assert not marker.exists()
    (folder / ".metadata").write_bytes(b"\x80\x04garbage")
    with pytest.raises(CheckpointError, match="incomplete or corrupt"):
        inspect_checkpoint(str(folder))


# ---- distributed pieces -------------------------------------------------------------------------------------

def test_unconsolidated_fsdp_is_recognised(tmp_path):
    path = str(tmp_path / "fsdp.pt")
    torch.save({"model": {"_fsdp_wrapped_module._flat_param": torch.zeros(100),
                          "_fsdp_wrapped_module.layer._fsdp_wrapped_module._flat_param": torch.zeros(10)}}, path)
    notes = inspect_checkpoint(path).notes
    assert len(notes) == 1
    assert "consolidate first" in notes[0] and "2 keys" in notes[0] and "dcp_to_torch_save" in notes[0]


@pytest.mark.parametrize("name", ["model_rank0.pt", "mp_rank_00_model_states.pt", "zero_pp_rank_1_mp_rank_00.pt"])
def test_per_rank_file_is_recognised(tmp_path, name):
    path = str(tmp_path / name)
    torch.save(tiny_state(), path)
    notes = inspect_checkpoint(path).notes
    assert any("one rank's shard" in n and "Consolidate first" in n for n in notes)


def test_ordinary_names_get_no_distributed_note(tmp_path):
    path = str(tmp_path / "resnet_ranker_best.pt")
    torch.save(tiny_state(), path)
    assert inspect_checkpoint(path).notes == ()


# ---- writing ------------------------------------------------------------------------------------------------

def test_save_refuses_existing_file_unless_forced(tmp_path):
    path = tmp_path / "out.pt"
    path.write_bytes(b"precious")
    with pytest.raises(NetscopeError, match="already exists"):
        save_checkpoint({"w": torch.zeros(1)}, str(path))
    assert path.read_bytes() == b"precious"
    save_checkpoint({"w": torch.ones(1)}, str(path), force=True)
    assert torch.equal(load_checkpoint(str(path)).state_dict["w"], torch.ones(1))


@pytest.mark.parametrize("ext", [".pt", ".safetensors"])
def test_save_refuses_meta_tensors(tmp_path, ext):
    with pytest.raises(CheckpointError, match="meta device"):
        save_checkpoint({"model": {"w": torch.empty(3, device="meta")}} if ext == ".pt"
                        else {"w": torch.empty(3, device="meta")}, str(tmp_path / f"x{ext}"))
    assert not os.listdir(tmp_path)


def test_save_unknown_extension(tmp_path):
    with pytest.raises(CheckpointError, match="extension"):
        save_checkpoint({"w": torch.zeros(1)}, str(tmp_path / "out.npz"))


@pytest.mark.parametrize("ext", [".pt", ".safetensors"])
def test_interrupted_write_leaves_old_file_and_no_temp(tmp_path, monkeypatch, ext):
    import safetensors.torch

    path = tmp_path / f"ckpt{ext}"
    save_checkpoint({"w": torch.zeros(3)}, str(path))
    before = path.read_bytes()

    def half_write(obj, target, *args, **kwargs):
        with open(target, "wb") as handle:
            handle.write(b"partial bytes")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", half_write)
    monkeypatch.setattr(safetensors.torch, "save_file", half_write)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"w": torch.ones(3)}, str(path), force=True)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == [path.name]


# ---- headers only: memory ---------------------------------------------------------------------------------

_MEASURE = textwrap.dedent("""
    import sys
    from netscope.checkpoints import inspect_checkpoint
    import torch  # noqa: F401  (imported before the baseline)

    def peak_kib():
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])

    for path in sys.argv[1:]:
        base = peak_kib()
        info = inspect_checkpoint(path)
        print(len(info.tensors), info.total_bytes, peak_kib() - base)
""")


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc")
def test_listing_a_large_checkpoint_does_not_read_tensor_bytes(tmp_path):
    # 64 MiB of tensor data per file; the child's peak memory may grow by only a fraction of that
    state = OrderedDict((f"layer{i}.weight", torch.full((1024, 1024), float(i))) for i in range(16))
    paths = [str(tmp_path / f"big{ext}") for ext in (".pt", ".safetensors")]
    for path in paths:
        save_checkpoint(state, path)
    del state
    out = subprocess.run([sys.executable, "-c", _MEASURE, *paths], capture_output=True, text=True, check=True)
    for line, path in zip(out.stdout.splitlines(), paths):
        count, total, grew_kib = map(int, line.split())
        assert count == 16 and total == 16 * 1024 * 1024 * 4
        assert grew_kib < 16 * 1024, f"peak memory grew by {grew_kib} KiB while listing 64 MiB ({path})"
    assert len(out.stdout.splitlines()) == 2


def test_safetensors_listing_reads_only_the_header(tmp_path, monkeypatch):
    import builtins

    state = OrderedDict((f"w{i}", torch.zeros(256, 256)) for i in range(4))
    path = str(tmp_path / "h.safetensors")
    save_checkpoint(state, path)
    header_len = struct.unpack("<Q", open(path, "rb").read(8))[0]
    read = []
    real_open = builtins.open

    class Counting:
        def __init__(self, handle):
            self.handle = handle

        def read(self, n=-1):
            data = self.handle.read(n)
            read.append(len(data))
            return data

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

    monkeypatch.setattr(builtins, "open", lambda *a, **k: Counting(real_open(*a, **k)))
    inspect_checkpoint(path)
    assert sum(read) <= 64 + 8 + header_len  # format sniffing, length, JSON header: no tensor data


# ---- CLI ----------------------------------------------------------------------------------------------------

def test_cli_keys_table_json_tree_csv(tmp_path, capsys):
    state = tiny_state()
    path = str(tmp_path / "l.ckpt")
    torch.save({"state_dict": state, "epoch": 1, "pytorch-lightning_version": "2.0"}, path)
    assert main(["keys", path]) == 0
    out = capsys.readouterr().out
    assert "layout:     Lightning" in out and "epoch: int 1" in out
    assert "features.0.weight" in out and "[4, 3, 3, 3]" in out
    n_elements = sum(t.numel() for t in state.values())
    n_bytes = sum(t.numel() * t.element_size() for t in state.values())
    assert f"total: {len(state)} tensors, {n_elements:,} elements" in out and f"({n_bytes:,} bytes)" in out

    assert main(["keys", path, "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["state_dict_path"] == ["state_dict"] and list(data["tensors"]) == list(state)
    assert data["total_elements"] == n_elements and data["total_bytes"] == n_bytes

    assert main(["keys", path, "--tree"]) == 0
    out = capsys.readouterr().out
    lines = [line.split() for line in out.splitlines()]
    features = next(row for row in lines if row and row[0] == "features")
    feat_elems = sum(t.numel() for k, t in state.items() if k.startswith("features."))
    assert features[1] == str(sum(k.startswith("features.") for k in state)) and features[2] == f"{feat_elems:,}"

    assert main(["keys", path, "--format", "csv"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0] == "key,shape,dtype,elements,bytes,size,shares_storage_with" and len(rows) == len(state) + 1


def test_cli_keys_csv_reads_back_every_key_shape_and_exact_byte_count(tmp_path, capsys):
    """Keys with a comma, a quote, a pipe, a line break and non-ASCII text; a bfloat16 tensor. Parsed with the
    csv module, every row matches torch's own tensor: key, shape, elements, bytes (exact, not rounded), and
    each --tree subtree's bytes are the sum over its tensors."""
    state = {"d.a,b.weight": torch.zeros(3, 5), 'd.q"u.bias': torch.zeros(7), "d.pi|pe.w": torch.zeros(2, 2),
             "d.nl\nx.w": torch.zeros(1), "d.\u00e9\u4e2d x.w": torch.zeros(1000, 3, dtype=torch.bfloat16)}
    path = str(tmp_path / "odd.pt")
    torch.save(state, path)
    assert main(["keys", path, "-f", "csv", "-q"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["key"] for r in rows] == list(state)
    for row, tensor in zip(rows, state.values()):
        assert json.loads(row["shape"]) == list(tensor.shape) and row["dtype"] == str(tensor.dtype).removeprefix("torch.")
        assert int(row["elements"]) == tensor.numel() and int(row["bytes"]) == tensor.numel() * tensor.element_size()
    assert main(["keys", path, "--tree", "-f", "csv", "-q"]) == 0
    rows = {r["key"]: r for r in csv.DictReader(io.StringIO(capsys.readouterr().out))}
    for node in ("d", "d.a,b", "d.nl\nx") + tuple(state):
        inside = [t for k, t in state.items() if k == node or k.startswith(node + ".")]
        assert int(rows[node]["bytes"]) == sum(t.numel() * t.element_size() for t in inside), node


def test_cli_keys_tree_puts_every_tensor_under_its_own_module_when_keys_interleave(tmp_path, capsys):
    """A torch.distributed.checkpoint lists keys in no module order; the tree still nests each tensor under
    its own prefix. Oracle: the full keys rebuilt from the printed depth markers, and each subtree's count."""
    state = {"module.conv.weight": torch.zeros(2, 3), "module.conv2.bias": torch.zeros(4), "module.fc.weight": torch.zeros(5),
             "module.conv.bias": torch.zeros(2), "module.bn.weight": torch.zeros(6), "module.conv2.weight": torch.zeros(4, 7)}
    path = str(tmp_path / "interleaved.pt")
    torch.save(state, path)
    assert main(["keys", path, "--tree", "-q"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    start = next(n for n, row in enumerate(rows) if row and row[0].startswith("---")) + 1
    stack, leaves, counts = [], [], {}
    for row in rows[start:]:
        if not row:
            break
        depth = 0
        while row[depth] == "\u00b7":
            depth += 1
        del stack[depth:]
        stack.append(row[depth])
        name = ".".join(stack)
        if name in state:  # a tensor row: every enclosing header counts it
            leaves.append(name)
            for n in range(1, len(stack)):
                counts[".".join(stack[:n])] = counts.get(".".join(stack[:n]), 0) + 1
        else:
            counts.setdefault(name, 0)
            expected = sum(k.startswith(name + ".") for k in state)
            assert row[depth + 1] == str(expected), row
    assert sorted(leaves) == sorted(state)
    assert all(counts[node] == sum(k.startswith(node + ".") for k in state) for node in counts)

    assert main(["keys", path, "--tree", "-f", "csv", "-q"]) == 0  # CSV: full dotted keys, no depth markers
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert sorted(r["key"] for r in rows if r["key"] in state) == sorted(state)
    assert all(r["tensors"] == str(sum(k.startswith(r["key"] + ".") for k in state)) for r in rows if r["key"] not in state)


def test_cli_keys_output_file(tmp_path, capsys):
    path = str(tmp_path / "s.safetensors")
    save_checkpoint(tiny_state(), path)
    out = tmp_path / "listing.md"
    assert main(["keys", path, "--format", "markdown", "-o", str(out)]) == 0
    assert "| features.0.weight" in out.read_text() and capsys.readouterr().out == ""


def test_public_api_exports():
    import netscope

    assert netscope.keys is inspect_checkpoint
    assert netscope.read_checkpoint is load_checkpoint


def test_key_choice_is_reported_once_and_as_chosen(tmp_path):
    """--key overrules the automatic choice: the notes say what was taken, never both."""
    import torchvision

    from netscope.checkpoints import load_checkpoint

    state = torchvision.models.resnet18(weights=None).state_dict()
    path = tmp_path / "two.pt"
    torch.save({"model": state, "ema": state}, path)
    notes = [n for n in load_checkpoint(str(path), key="ema").info.notes if "taken from" in n]
    assert len(notes) == 1 and notes[0].startswith("the state dict was taken from ema;")


def test_a_tensor_saved_alone_is_named_not_hidden(tmp_path, capsys):
    path = tmp_path / "alone.pt"
    torch.save(torch.zeros(3, 2, dtype=torch.float16), path)
    assert main(["keys", str(path)]) == 0
    out = capsys.readouterr().out
    assert "(top level): tensor float16 (3, 2)" in out  # what the file holds, though it is no state dict
    assert "no model tensors found" in out
    whole = tmp_path / "whole.pt"
    torch.save(nn.Sequential(nn.Linear(2, 2)), whole)  # a pickled module: its state dict is the listing
    assert main(["keys", str(whole), "--unsafe-pickle"]) == 0
    out = capsys.readouterr().out
    assert "0.weight" in out and "(top level)" not in out
