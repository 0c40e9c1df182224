"""One rank of a real gloo job for tests/test_step.py; a module of its own so that spawned ranks import
only torch, not the test module's imports."""

from __future__ import annotations

import json

import torch
import torch.nn as nn


class Odd(nn.Module):
    """Dim-0 sizes that do not divide by 2 or 4 (padding), one smaller than 4 ranks (an empty shard),
    and a frozen parameter (no gradient, no optimizer state)."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(10, 7)
        self.b = nn.Linear(7, 3)
        self.c = nn.Linear(3, 5, bias=False)
        self.c.weight.requires_grad_(False)

    def forward(self, x):
        return self.c(torch.relu(self.b(torch.relu(self.a(x)))))


def run_rank(rank, world, port, out_dir):
    """One rank of a real gloo job: DDP then FSDP2 (fully_shard), one AdamW step each; bytes to JSON."""
    import os

    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor import DTensor
    from torch.nn.parallel import DistributedDataParallel

    def local(t):
        t = t.to_local() if isinstance(t, DTensor) else t
        return t.numel() * t.element_size()

    def step(model, params):
        optimizer = torch.optim.AdamW([p for p in params if p.requires_grad], lr=1e-3)
        model(torch.randn(4, 10)).sum().backward()
        grads = sum(local(p.grad) for p in params if p.grad is not None)
        optimizer.step()
        state = sum(local(v) for s in optimizer.state.values() for v in s.values() if isinstance(v, torch.Tensor))
        return {"param_bytes": sum(local(p) for p in params), "grad_bytes": grads, "optimizer_bytes": state}

    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        plain = Odd()
        ddp = step(DistributedDataParallel(plain), list(plain.parameters()))
        torch.manual_seed(0)
        sharded = Odd()
        mesh = init_device_mesh("cpu", (world,))
        fully_shard(sharded.a, mesh=mesh)
        fully_shard(sharded, mesh=mesh)
        fsdp = step(sharded, list(sharded.parameters()))
        with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as handle:
            json.dump({"ddp": ddp, "fsdp": fsdp}, handle)
        dist.barrier()  # neither rank tears the group down while the other still uses it (gloo aborts then)
    finally:
        dist.destroy_process_group()
