"""Read checkpoints lazily and write them atomically.

``inspect_checkpoint`` lists tensors from headers alone (safetensors header, ``torch.load(mmap=True)``
views, sharded ``*.index.json``, ``torch.distributed.checkpoint`` metadata); ``load_checkpoint`` reads
tensors on CPU; ``save_checkpoint`` writes ``.pt/.pth/.bin`` or ``.safetensors`` through a temp file and
rename. Loading is ``weights_only=True`` unless the caller explicitly opts in to full unpickling.
"""

from __future__ import annotations

from netscope.checkpoints.info import CheckpointInfo, LoadedCheckpoint
from netscope.checkpoints.containers import describe_layout, find_state_dict
from netscope.checkpoints.readers import (
    READERS,
    detect_format,
    inspect_checkpoint,
    load_checkpoint,
    register_reader,
)
from netscope.checkpoints.writing import save_checkpoint

# names the top-level ``netscope`` package re-exports
keys = inspect_checkpoint
read_checkpoint = load_checkpoint

__all__ = [
    "CheckpointInfo",
    "LoadedCheckpoint",
    "READERS",
    "describe_layout",
    "detect_format",
    "find_state_dict",
    "inspect_checkpoint",
    "keys",
    "load_checkpoint",
    "read_checkpoint",
    "register_reader",
    "save_checkpoint",
]
