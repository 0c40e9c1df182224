"""Issue 14.9: a torch.distributed.checkpoint directory written by a real 2-process gloo job (CPU) is
remapped file to file with lists kept as lists, tensors bit-exact, and the optimizer state restorable with
``set_optimizer_state_dict``; torch's own ``dcp_to_torch_save`` output is the reference."""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn as nn

import netscope

dist = pytest.importorskip("torch.distributed", reason="torch.distributed is not available")
if not dist.is_available() or not dist.is_gloo_available():
    pytest.skip("torch.distributed with the gloo backend is not available", allow_module_level=True)


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


def _worker(rank: int, folder: str) -> None:
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=2)
    try:
        model = _model()
        optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
        model(torch.randn(3, 4, generator=torch.Generator().manual_seed(1))).sum().backward()
        optimizer.step()
        model_state, optim_state = get_state_dict(model, optimizer)
        dcp.save({"model": model_state, "optim": optim_state, "step": 1}, checkpoint_id=os.path.join(folder, "ckpt"))
        dist.barrier()  # neither rank tears the group down while the other still uses it (gloo aborts then)
    finally:
        dist.destroy_process_group()


def _same_structure(a, b, path="") -> None:
    assert type(a) is type(b) or (isinstance(a, dict) and isinstance(b, dict)), (path, type(a), type(b))
    if isinstance(a, dict):
        assert set(a) == set(b), path
        for key in a:
            _same_structure(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for n, (x, y) in enumerate(zip(a, b)):
            _same_structure(x, y, f"{path}[{n}]")
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b), path
    else:
        assert a == b, path


def test_dcp_from_a_two_process_gloo_job_round_trips_with_lists_and_optimizer_state(tmp_path):
    import torch.multiprocessing as mp
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save
    from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

    mp.spawn(_worker, args=(str(tmp_path),), nprocs=2, join=True)
    folder = tmp_path / "ckpt"
    reference = tmp_path / "reference.pt"
    dcp_to_torch_save(str(folder), str(reference))
    expected = torch.load(reference, weights_only=False)

    out = tmp_path / "remapped.pt"
    model = _model()
    report = netscope.remap_file(str(folder), model, str(out))
    assert report.coverage.fraction == 1.0 and report.unmatched == ()
    saved = torch.load(out, weights_only=False)
    _same_structure(saved, expected)
    assert isinstance(saved["optim"]["param_groups"], list)

    optimizer = torch.optim.AdamW(model.parameters(), lr=0.5)
    model.load_state_dict(saved["model"])
    set_optimizer_state_dict(model, optimizer, saved["optim"])  # failed when param_groups came back a dict
    assert optimizer.param_groups[0]["lr"] == 0.01


def test_optimizer_only_dcp_save_is_not_taken_for_model_weights(tmp_path):
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    model = _model()
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.randn(2, 4)).sum().backward()
    optimizer.step()
    dcp.save(get_optimizer_state_dict(model, optimizer), checkpoint_id=str(tmp_path / "optim"))
    info = netscope.keys(str(tmp_path / "optim"))
    assert dict(info.tensors) == {}
    assert any("only optimizer state" in note for note in info.notes)
    with pytest.raises(netscope.NetscopeError, match="only optimizer state"):
        netscope.load(str(tmp_path / "optim"), _model())


def _local_state_worker(rank: int, folder: str) -> None:
    import warnings

    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP, StateDictType

    warnings.filterwarnings("ignore")
    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous-local", rank=rank, world_size=2)
    try:
        fsdp = FSDP(_model(), device_id=torch.device("cpu"), use_orig_params=False)
        with FSDP.state_dict_type(fsdp, StateDictType.LOCAL_STATE_DICT):
            torch.save(fsdp.state_dict(), os.path.join(folder, f"local_rank{rank}.pt"))
        dist.barrier()  # neither rank tears the group down while the other still uses it (gloo aborts then)
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("unsafe", [False, True])
def test_a_torch_saved_fsdp_local_state_dict_is_named_not_called_corrupt(tmp_path, capsys, unsafe):
    """FSDP's LOCAL_STATE_DICT saved with torch.save holds ShardedTensors, which torch.load rebuilds only
    inside a process group: the error says so and how to consolidate (it read 'truncated or corrupt')."""
    import torch.multiprocessing as mp

    from netscope.cli import main

    mp.spawn(_local_state_worker, args=(str(tmp_path),), nprocs=2)
    path = str(tmp_path / "local_rank0.pt")
    with pytest.raises(Exception):  # the oracle: torch itself cannot rebuild it outside the process group
        torch.load(path, weights_only=False)
    assert main(["keys", path, *(["--unsafe-pickle"] if unsafe else [])]) == 2
    err = capsys.readouterr().err
    assert "ShardedTensor" in err and "FULL_STATE_DICT" in err and "corrupt" not in err
