"""Checkpoints holding tensors nobody designed for: sparse and nested tensors, the float8 "fnuz" dtypes in
safetensors, tensors under non-string keys. Oracles: torch.load(weights_only=True), safetensors.safe_open,
torch.equal on every tensor, load_state_dict(strict=True)."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
import torch.nn as nn

import netscope
from netscope.checkpoints import inspect_checkpoint, load_checkpoint
from netscope.cli import main
from netscope.errors import CheckpointError


class _Holder(nn.Module):
    """A model whose buffers are exactly ``state``'s keys, dtypes and layouts (the remap target)."""

    def __init__(self, state):
        super().__init__()
        for key, value in state.items():
            self.register_buffer(key, value.clone())


def _sparse_state():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's "sparse CSR is in beta" warning
        return {"coo": torch.eye(3).to_sparse(), "csr": (torch.eye(3) * 2).to_sparse_csr(), "dense": torch.ones(2)}


def test_sparse_tensors_are_listed_and_remapped_unchanged(tmp_path, capsys):
    state = _sparse_state()
    source = tmp_path / "sparse.pt"
    torch.save({"module." + k: v for k, v in state.items()}, source)
    assert main(["keys", str(source), "-f", "json"]) == 0
    listed = json.loads(capsys.readouterr().out)["tensors"]
    oracle = torch.load(source, weights_only=True)
    assert {k: (v["shape"], v["dtype"]) for k, v in listed.items()} == {
        k: (list(v.shape), str(v.dtype).split(".")[1]) for k, v in oracle.items()}
    info = inspect_checkpoint(str(source))
    assert any("sparse" in note and "module.coo" in note and "module.csr" in note for note in info.notes)

    out = tmp_path / "out.pt"
    model = _Holder(state)
    netscope.remap_file(str(source), model, str(out))
    written = torch.load(out, weights_only=True)
    model.load_state_dict(written, strict=True)
    for key, tensor in state.items():
        assert written[key].layout == tensor.layout
        assert torch.equal(written[key].to_dense(), tensor.to_dense())


def test_nested_tensor_is_refused_by_name_not_a_traceback(tmp_path, capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "nested tensors are in prototype stage"
        nested = torch.nested.nested_tensor([torch.randn(2, 3), torch.randn(4, 3)])
    path = tmp_path / "nested.pt"
    torch.save({"nt": nested, "w": torch.ones(2)}, path)
    assert torch.load(path, weights_only=True)["nt"].is_nested  # the oracle reads it
    with pytest.raises(CheckpointError, match="'nt'.*nested"):
        inspect_checkpoint(str(path))
    assert main(["keys", str(path)]) == 2
    err = capsys.readouterr().err
    assert "nested" in err and "Traceback" not in err
    with pytest.raises(CheckpointError, match="nested"):
        netscope.remap({"nt": nested, "w": torch.ones(2)}, _Holder({"w": torch.ones(2)}))


def test_nested_tensor_beside_the_state_dict_is_summarized(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nested = torch.nested.nested_tensor([torch.randn(2, 3), torch.randn(4, 3)])
    path = tmp_path / "beside.pt"
    torch.save({"model": {"w": torch.ones(2)}, "extra": nested}, path)
    info = inspect_checkpoint(str(path))
    assert list(info.tensors) == ["w"]
    assert "nested" in info.other_entries["extra"] and "2" in info.other_entries["extra"]


def test_every_safetensors_dtype_code_has_torchs_name_and_size(tmp_path):
    safetensors_torch = pytest.importorskip("safetensors.torch")
    from netscope.checkpoints.dtypes import SAFETENSORS_DTYPES, itemsize

    codes = getattr(safetensors_torch, "_TYPES", None)
    if not codes:
        pytest.skip("this safetensors version keeps no code -> dtype table")
    for code, dtype in codes.items():  # the library's own table is the oracle
        name = str(dtype).split(".")[1]
        assert SAFETENSORS_DTYPES.get(code) == name, code
        assert itemsize(name) == torch.empty((), dtype=dtype).element_size(), code


@pytest.mark.parametrize("dtype", [torch.float8_e4m3fnuz, torch.float8_e5m2fnuz])
def test_fnuz_safetensors_listed_with_its_bytes_and_read_bit_identical(tmp_path, dtype):
    safetensors_torch = pytest.importorskip("safetensors.torch")
    from safetensors import safe_open

    tensor = (torch.randn(3, 5) * 4).to(dtype)
    path = str(tmp_path / "f8.safetensors")
    safetensors_torch.save_file({"w": tensor}, path)
    info = inspect_checkpoint(path)
    assert info.tensors["w"].dtype == str(dtype).split(".")[1]
    assert info.total_bytes == tensor.numel() * tensor.element_size()
    with safe_open(path, framework="pt") as handle:
        oracle = handle.get_tensor("w")
    loaded = load_checkpoint(path).state_dict["w"]
    assert loaded.dtype == oracle.dtype and torch.equal(loaded.view(torch.uint8), oracle.view(torch.uint8))


def test_tensors_under_integer_keys_are_named_in_the_listing(tmp_path):
    path = tmp_path / "intkeys.pt"
    torch.save({0: torch.randn(2), 1: torch.randn(3, 4), "named": torch.randn(1)}, path)
    info = inspect_checkpoint(str(path))
    assert info.tensors == {}  # not a state dict: a module's keys are strings
    assert any("not names: 0, 1" in note for note in info.notes)
    for key, value in torch.load(path, weights_only=True).items():  # none is left out of the listing
        assert info.other_entries[str(key)] == f"tensor float32 {tuple(value.shape)}"


def test_nested_jagged_tensor_is_named_as_such_in_a_fresh_process(tmp_path):
    import subprocess
    import sys

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nested = torch.nested.nested_tensor([torch.randn(2, 3), torch.randn(4, 3)], layout=torch.jagged)
    path = tmp_path / "jagged.pt"
    torch.save({"nt": nested, "w": torch.ones(2)}, path)
    # a fresh process (torch.nested's jagged internals not imported), as a user's `netscope keys` runs
    done = subprocess.run([sys.executable, "-m", "netscope", "keys", str(path)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2
    assert "nested" in done.stderr and "Traceback" not in done.stderr
    assert "run code" not in done.stderr  # not called an unsafe pickle: the file holds only tensors


def _quantized(values):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's deprecation warning for quantized tensors
        return torch.quantize_per_tensor(values, 0.1, 0, torch.qint8)


def test_quantized_tensor_into_a_float_weight_is_not_called_loadable(tmp_path, capsys):
    path = tmp_path / "q.pt"
    torch.save({"weight": _quantized(torch.randn(4, 4)), "bias": torch.zeros(4)}, path)
    model = nn.Linear(4, 4)
    with pytest.raises(RuntimeError, match="quantized"):  # the oracle: torch's own strict load refuses it
        nn.Linear(4, 4).load_state_dict(torch.load(path, weights_only=True), strict=True)
    report = netscope.diff(str(path), model)
    assert not report.clean
    assert [d.source for d in report.mismatched] == ["weight"]
    assert "qint8" in report.mismatched[0].detail and "dequantize" in report.mismatched[0].detail
    before = model.weight.detach().clone()
    with pytest.raises(netscope.errors.NetscopeError, match="qint8"):
        netscope.load(str(path), model, strict=True)
    assert torch.equal(model.weight, before)  # nothing loaded
    assert main(["diff", str(path), f"{__file__}:_linear4"]) == 1
    capsys.readouterr()


def _linear4():
    return nn.Linear(4, 4)


def test_quantized_tensor_into_a_quantized_buffer_still_loads(tmp_path):
    values = _quantized(torch.randn(4))
    path = tmp_path / "qq.pt"
    torch.save({"q": values}, path)
    model = _Holder({"q": _quantized(torch.zeros(4))})
    netscope.load(str(path), model, strict=True)
    assert torch.equal(model.q.int_repr(), values.int_repr())


def _unwritable_in_safetensors():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [("q", _quantized(torch.randn(4)), "qint8"), ("coo", torch.eye(3).to_sparse(), "sparse"),
                ("c", torch.randn(2, dtype=torch.complex128), "complex128")]


@pytest.mark.parametrize("key,tensor,named", _unwritable_in_safetensors(), ids=["quantized", "sparse", "complex128"])
def test_safetensors_output_refuses_what_the_format_cannot_hold_by_name(tmp_path, key, tensor, named):
    safetensors_torch = pytest.importorskip("safetensors.torch")
    from netscope.checkpoints import save_checkpoint

    with pytest.raises(Exception):  # the oracle: the library itself cannot write it
        safetensors_torch.save_file({key: tensor}, str(tmp_path / "oracle.safetensors"))
    path = tmp_path / "out.safetensors"
    with pytest.raises(CheckpointError) as raised:
        save_checkpoint({key: tensor, "fine": torch.ones(2)}, str(path))
    message = str(raised.value)
    assert repr(key) in message and named in message and ".pt" in message
    assert "disk" not in message  # not blamed on the disk
    assert not path.exists()


def _slices_of_one_storage():
    base = torch.randn(100)
    return {
        "halves": {"a": base[:50], "b": base[50:]},
        "apart": {"x": base[:10], "y": base[50:60]},
        "overlapping": {"x": base[0:10], "y": base[5:15]},
        "nested_in_whole": {"whole": base, "part": base[20:30]},
        "tied": {"w": base[:40], "w2": base[:40]},
    }


def _bytes_held(state):
    """Brute force: the distinct storage elements the tensors reach, times their size (contiguous slices here)."""
    reached = {}
    for tensor in state.values():
        storage = tensor.untyped_storage().data_ptr()
        index = torch.arange(tensor.untyped_storage().nbytes() // tensor.element_size())
        seen = reached.setdefault(storage, set())
        seen.update(index.as_strided(tensor.shape, tensor.stride(), tensor.storage_offset()).flatten().tolist())
    return sum(len(s) for s in reached.values()) * 4


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy-torch.load"])
@pytest.mark.parametrize("case", list(_slices_of_one_storage()))
def test_total_bytes_count_each_shared_byte_once(tmp_path, case, legacy, capsys):
    state = _slices_of_one_storage()[case]
    path = tmp_path / f"{case}.pt"
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)
    expected = _bytes_held(state)
    info = inspect_checkpoint(str(path))
    assert info.total_bytes == expected
    assert main(["keys", str(path)]) == 0
    footer = capsys.readouterr().out.strip().splitlines()
    total = next(line for line in footer if line.startswith("total:"))
    assert f"({expected:,} bytes" in total and "counted once" in total


def test_sparse_tensor_into_a_dense_weight_is_not_called_loadable(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sparse = torch.eye(4).to_sparse()
    path = tmp_path / "sparse_weight.pt"
    torch.save({"weight": sparse, "bias": torch.zeros(4)}, path)
    with pytest.raises(RuntimeError, match="sparse"):  # the oracle: torch's own load refuses it
        nn.Linear(4, 4).load_state_dict(torch.load(path, weights_only=True), strict=True)
    model = nn.Linear(4, 4)
    report = netscope.diff(str(path), model)
    assert not report.clean and [d.source for d in report.mismatched] == ["weight"]
    assert "sparse_coo" in report.mismatched[0].detail and "to_dense" in report.mismatched[0].detail
    before = model.weight.detach().clone()
    with pytest.raises(netscope.errors.NetscopeError, match="sparse"):
        netscope.load(str(path), model, strict=True)
    assert torch.equal(model.weight, before)


def test_complex_tensor_into_a_real_one_is_named_in_a_note(tmp_path):
    path = tmp_path / "complex.pt"
    torch.save({"weight": torch.randn(4, 4, dtype=torch.complex64), "bias": torch.zeros(4)}, path)
    model = nn.Linear(4, 4)
    with pytest.warns(UserWarning, match="imaginary"):  # the oracle: torch's copy drops the imaginary part
        model.load_state_dict(torch.load(path, weights_only=True))
    notes = " ".join(netscope.diff(str(path), nn.Linear(4, 4)).plan.notes)
    assert "weight complex64 into weight float32" in notes and "imaginary" in notes


def test_a_missing_root_level_buffer_names_the_model_without_a_blank_module(tmp_path):
    model = _Holder({"scale": torch.ones(2), "shift": torch.zeros(2)})
    report = netscope.diff({"scale": torch.ones(2)}, model)
    (missing,) = [d for d in report.plan.decisions if d.reason == "missing"]
    assert missing.target == "shift" and "(the _Holder itself)" in missing.detail


class _WithExtraState(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 2)
        self.tag = "x"

    def get_extra_state(self):
        return {"tag": self.tag}

    def set_extra_state(self, state):
        self.tag = state["tag"]


def test_non_tensor_entries_the_model_lacks_are_a_strict_problem(tmp_path, capsys):
    path = tmp_path / "leaves.pt"
    torch.save({"weight": torch.randn(2, 2), "bias": torch.zeros(2), "name": "run-7", "extra": [torch.ones(1)]}, path)
    with pytest.raises(RuntimeError, match="Unexpected key"):  # the oracle: torch's strict load refuses them
        nn.Linear(2, 2).load_state_dict(torch.load(path, weights_only=True), strict=True)
    report = netscope.diff(str(path), nn.Linear(2, 2))
    assert not report.clean and report.stray_entries == ("name", "extra")
    assert any("'name'" in p for p in report.strict_problems())
    assert main(["diff", str(path), f"{__file__}:_linear2"]) == 1
    assert "'name'" in capsys.readouterr().err
    model = nn.Linear(2, 2)
    before = model.weight.detach().clone()
    with pytest.raises(netscope.errors.NetscopeError, match="name"):
        netscope.load(str(path), model, strict=True)
    assert torch.equal(model.weight, before)
    out = tmp_path / "out.pt"
    written = netscope.remap_file(str(path), nn.Linear(2, 2), str(out))
    assert written.stray_entries == ("name", "extra")
    kept = torch.load(out, weights_only=True)
    assert kept["name"] == "run-7" and torch.equal(kept["extra"][0], torch.ones(1))  # nothing dropped


def _linear2():
    return nn.Linear(2, 2)


def test_extra_state_the_model_has_is_no_strict_problem(tmp_path):
    source = _WithExtraState()
    source.tag = "saved"
    path = tmp_path / "extra.pt"
    torch.save({"module." + k: v for k, v in source.state_dict().items()}, path)
    model = _WithExtraState()
    report = netscope.diff(str(path), model)
    assert report.stray_entries == () and report.strict_problems() == []
    netscope.load(str(path), model, strict=True)
    assert model.tag == "saved"


def test_meta_device_tensors_in_a_file_are_named_and_never_loaded(tmp_path):
    path = tmp_path / "meta.pt"
    torch.save({"weight": torch.empty(2, 2, device="meta"), "bias": torch.ones(2)}, path)
    with pytest.raises(RuntimeError, match="meta"):  # the oracle: torch's load cannot copy out of a meta tensor
        nn.Linear(2, 2).load_state_dict(torch.load(path, weights_only=True))
    info = inspect_checkpoint(str(path))
    assert any("weight" in note and "meta device" in note for note in info.notes)
    assert any("meta device" in note for note in netscope.diff(str(path), nn.Linear(2, 2)).notes)
    model = nn.Linear(2, 2)
    before = model.bias.detach().clone()
    with pytest.raises(netscope.errors.NetscopeError, match="meta"):
        netscope.load(str(path), model)
    assert torch.equal(model.bias, before)  # nothing loaded, not even the tensors that have values
    with torch.device("meta"):
        on_meta = nn.Linear(2, 2)
    netscope.load(str(path), on_meta)  # a model on the meta device takes them (assigned)
    assert on_meta.weight.is_meta and torch.equal(on_meta.bias, torch.ones(2))


def test_tree_subtree_sizes_count_a_shared_storage_once(tmp_path, capsys):
    weight = torch.randn(4, 6)
    path = tmp_path / "tree.pt"
    torch.save({"m.a": weight, "m.b": weight, "m.c": torch.zeros(2), "n.d": weight[:2]}, path)
    assert main(["keys", str(path), "--tree", "-f", "csv"]) == 0
    rows = {row.split(",")[0]: row.split(",") for row in capsys.readouterr().out.strip().splitlines()[1:]}
    header_index = 5  # key, shape, dtype, tensors, elements, bytes, size
    assert int(rows["m"][header_index]) == 4 * 6 * 4 + 2 * 4  # the tied pair once, plus m.c
    assert int(rows["n"][header_index]) == 2 * 6 * 4


def test_packed_float4_safetensors_listed_as_torch_loads_it(tmp_path):
    safetensors_torch = pytest.importorskip("safetensors.torch")
    if not hasattr(torch, "float4_e2m1fn_x2"):
        pytest.skip("this torch has no float4_e2m1fn_x2")
    packed = torch.arange(6, dtype=torch.uint8).reshape(2, 3).view(torch.float4_e2m1fn_x2)
    path = str(tmp_path / "f4.safetensors")
    try:
        safetensors_torch.save_file({"w": packed, "s": torch.ones(2)}, path)
        oracle = safetensors_torch.load_file(path)["w"]
    except Exception as exc:  # an older safetensors without the packed dtype
        pytest.skip(f"safetensors cannot round-trip float4: {exc}")
    info = inspect_checkpoint(path)
    assert info.tensors["w"].dtype == "float4_e2m1fn_x2" and info.tensors["w"].shape == tuple(oracle.shape)
    assert info.total_bytes == oracle.numel() * oracle.element_size() + 8
    loaded = load_checkpoint(path).state_dict["w"]
    assert torch.equal(loaded.view(torch.uint8), oracle.view(torch.uint8))
    assert netscope.diff(path, _Holder({"w": packed, "s": torch.ones(2)})).clean  # headers agree with the model


def test_uninitialized_lazy_parameters_are_refused_by_name(tmp_path, capsys):
    path = tmp_path / "lazy.pt"
    torch.save(nn.LazyLinear(3).state_dict(), path)
    with pytest.raises(CheckpointError, match="uninitialized.*'weight'"):
        inspect_checkpoint(str(path), weights_only=False)
    assert main(["keys", str(path), "--unsafe-pickle"]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_extra_state_the_checkpoint_lacks_is_a_strict_problem(tmp_path):
    path = tmp_path / "plain.pt"
    torch.save({"fc.weight": torch.randn(2, 2), "fc.bias": torch.zeros(2)}, path)
    with pytest.raises(RuntimeError, match="_extra_state"):  # the oracle: torch's strict load reports it missing
        _WithExtraState().load_state_dict(torch.load(path, weights_only=True), strict=True)
    report = netscope.diff(str(path), _WithExtraState())
    assert not report.clean and report.missing_entries == ("_extra_state",)
    assert any("'_extra_state'" in p for p in report.strict_problems())
    with pytest.raises(netscope.errors.NetscopeError, match="_extra_state"):
        netscope.load(str(path), _WithExtraState())
    netscope.load(str(path), _WithExtraState(), strict=False)  # torch's non-strict load takes it


class _ExtraStateNoSetter(nn.Module):
    """get_extra_state without set_extra_state: torch's loader neither needs nor refuses the key."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(2))

    def get_extra_state(self):
        return 1


def test_extra_state_without_a_setter_is_not_required(tmp_path):
    path = tmp_path / "w.pt"
    torch.save({"w": torch.ones(2)}, path)
    _ExtraStateNoSetter().load_state_dict(torch.load(path, weights_only=True), strict=True)  # the oracle: loads
    report = netscope.diff(str(path), _ExtraStateNoSetter())
    assert report.missing_entries == () and report.clean
