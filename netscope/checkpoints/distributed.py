"""Recognise checkpoints that are one piece of a distributed save and say how to consolidate them."""

from __future__ import annotations

import os
import re
from typing import Iterable, List

_RANK_FILE = re.compile(
    r"(^|[_\-.])(rank[_\-]?\d+|mp_rank_\d+|zero_pp_rank_\d+|__\d+_\d+\.distcp$)|(^|[_\-.])shard[_\-]?\d+[_\-]of",
    re.IGNORECASE,
)
FLAT_PARAM_TOKENS = ("_flat_param", "flat_param_")

CONSOLIDATE_FSDP = (
    "unconsolidated FSDP checkpoint ({n} keys hold flattened '_flat_param' tensors, not per-layer "
    "weights): consolidate first. Under FSDP, save a full state dict "
    "(torch.distributed.checkpoint.state_dict.get_model_state_dict(model, options=StateDictOptions("
    "full_state_dict=True, cpu_offload=True)) or FSDP.state_dict_type(model, StateDictType.FULL_STATE_DICT)), "
    "or save with torch.distributed.checkpoint and convert with "
    "torch.distributed.checkpoint.format_utils.dcp_to_torch_save(DIR, OUT.pt)."
)
PER_RANK = (
    "{name} looks like one rank's shard of a distributed save: it may hold only part of the model. "
    "Consolidate first: for a torch.distributed.checkpoint directory pass the directory itself (or convert "
    "it with torch.distributed.checkpoint.format_utils.dcp_to_torch_save(DIR, OUT.pt)); for DeepSpeed ZeRO "
    "run the zero_to_fp32.py script saved beside the checkpoint."
)


SHARDED_TENSOR = (
    "{path} holds torch.distributed ShardedTensor pieces: one rank's FSDP LOCAL_STATE_DICT or SHARDED_STATE_DICT "
    "written with torch.save, which only rebuilds inside the process group that saved it and holds part of "
    "the model. Consolidate first: under FSDP save a full state dict (FSDP.state_dict_type(model, "
    "StateDictType.FULL_STATE_DICT)), or save the sharded state with torch.distributed.checkpoint and pass "
    "that directory."
)
_SHARDED_TENSOR_SIGNS = ("torch.distributed._shard.", "ShardedTensor")


def is_sharded_tensor_error(text: str) -> bool:
    """Whether a load failure (or the globals a safe load refused) names torch's ShardedTensor machinery."""
    return any(sign in text for sign in _SHARDED_TENSOR_SIGNS)


def flat_param_keys(keys: Iterable[str]) -> List[str]:
    keys = list(keys)
    joined = "\n".join(keys)  # one scan of all keys first: ordinary checkpoints (100k keys) have none
    if not any(token in joined for token in FLAT_PARAM_TOKENS):
        return []
    return [k for k in keys if any(token in k for token in FLAT_PARAM_TOKENS)]


def distributed_notes(path: str, keys: Iterable[str]) -> List[str]:
    """Notes for FSDP flat-parameter keys and per-rank file names; empty for ordinary checkpoints."""
    notes: List[str] = []
    flat = flat_param_keys(keys)
    if flat:
        notes.append(CONSOLIDATE_FSDP.format(n=len(flat)))
    name = os.path.basename(os.path.normpath(path))
    if _RANK_FILE.search(name):
        notes.append(PER_RANK.format(name=name))
    return notes
