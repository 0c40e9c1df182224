"""Per-rank bytes of a data-parallel job, from each tensor's shape: FSDP2 shards, DDP replicates.

FSDP2 (``torch.distributed.fsdp.fully_shard``) splits every parameter along dim 0 the way
``torch.chunk(param, world_size, dim=0)`` does: ``ceil(dim0 / world)`` rows per rank, the last ranks
getting fewer or none. Each rank allocates the padded chunk, and ``DTensor.to_local()`` is the
unpadded part. Gradients and optimizer state that have the parameter's shape are sharded the same way;
scalar state (Adam's ``step``) is kept whole on every rank. DDP keeps everything whole on every rank.
"""

from __future__ import annotations

from math import prod
from typing import Sequence, Tuple

Shape = Tuple[int, ...]


def shard_rows(dim0: int, world: int, rank: int) -> int:
    """Rows of a ``dim0``-row tensor that ``rank`` holds (``torch.chunk`` semantics)."""
    chunk = -(-dim0 // world) if dim0 else 0
    return max(0, min(chunk, dim0 - rank * chunk))


def local_numel(shape: Sequence[int], world: int, rank: int, *, padded: bool = False) -> int:
    """Elements of ``rank``'s shard of a parameter of ``shape``; ``padded``: what the rank allocates."""
    shape = tuple(shape) or (1,)  # FSDP2 views a 0-dim parameter as one row
    rest = prod(shape[1:])
    rows = -(-shape[0] // world) if padded else shard_rows(shape[0], world, rank)
    return rows * rest
