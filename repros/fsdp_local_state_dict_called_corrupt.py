"""FSDP1's LOCAL_STATE_DICT saved with torch.save (one file per rank, ShardedTensor values): `netscope keys`
asked for --unsafe-pickle, and with it said "The file is truncated, corrupt, or not a PyTorch checkpoint;
re-download or re-save it" (checkpoints/torch_format.py:_corrupt), although the file is intact: torch.load
rebuilds ShardedTensors only inside a process group. Now one paragraph says what it is and how to
consolidate. Run: PYTHONPATH=. python repros/fsdp_local_state_dict_called_corrupt.py
"""
import os
import tempfile

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn

from netscope.cli import main


def worker(rank, folder):
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP, StateDictType

    dist.init_process_group("gloo", init_method=f"file://{folder}/rdv", rank=rank, world_size=2)
    fsdp = FSDP(nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 2)), device_id=torch.device("cpu"), use_orig_params=False)
    with FSDP.state_dict_type(fsdp, StateDictType.LOCAL_STATE_DICT):
        torch.save(fsdp.state_dict(), os.path.join(folder, f"local_rank{rank}.pt"))
    dist.destroy_process_group()


if __name__ == "__main__":
    folder = tempfile.mkdtemp()
    mp.spawn(worker, args=(folder,), nprocs=2)
    print("exit", main(["keys", os.path.join(folder, "local_rank0.pt"), "--unsafe-pickle"]))
