"""Sharded checkpoints described by a ``*.index.json`` (``weight_map``: key -> shard file), as written by
Hugging Face ``save_pretrained`` for both safetensors and ``pytorch_model-*.bin`` shards."""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from typing import Dict, List, Tuple

from netscope.errors import CheckpointError


def read_index(path: str) -> Tuple["OrderedDict[str, List[str]]", dict]:
    """Shard file (absolute path) -> its keys in index order, and the index's ``metadata``."""
    try:
        with open(path, "r", encoding="utf-8") as handle:
            index = json.load(handle)
    except (UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a valid JSON index ({exc}); re-download or regenerate it.") from None
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise CheckpointError(
            f"{path} has no 'weight_map' object (key -> shard file), so it is not a sharded-checkpoint "
            "index such as model.safetensors.index.json."
        )
    folder = os.path.dirname(os.path.abspath(path))
    shards: "OrderedDict[str, List[str]]" = OrderedDict()
    for key, shard in weight_map.items():
        shard_path = os.path.normpath(os.path.join(folder, shard))
        if os.path.dirname(shard_path) != folder and not shard_path.startswith(folder + os.sep):
            raise CheckpointError(f"{path} points key {key!r} at {shard!r}, outside the index's folder; refusing.")
        shards.setdefault(shard_path, []).append(key)
    missing = [s for s in shards if not os.path.isfile(s)]
    if missing:
        names = ", ".join(os.path.basename(m) for m in missing[:5])
        raise CheckpointError(
            f"{path} lists {len(missing)} shard file(s) that are not there ({names}); download every shard "
            "into the index's folder."
        )
    meta = index.get("metadata") if isinstance(index.get("metadata"), dict) else {}
    return shards, meta


def shard_format(shards) -> str:
    kinds = {"sharded-safetensors" if s.endswith(".safetensors") else "sharded-torch" for s in shards}
    return kinds.pop() if len(kinds) == 1 else "sharded-mixed"


def reconcile(index_path: str, listed: Dict[str, List[str]], found: Dict[str, List[str]]) -> List[str]:
    """Notes where the index and the shards' own headers disagree."""
    notes: List[str] = []
    for shard, keys in listed.items():
        have = set(found.get(shard, ()))
        absent = [k for k in keys if k not in have]
        extra = [k for k in found.get(shard, ()) if k not in set(keys)]
        name = os.path.basename(shard)
        if absent:
            notes.append(f"the index maps {len(absent)} key(s) to {name} that the shard does not hold "
                         f"(e.g. {absent[0]!r}); the shard or the index is stale.")
        if extra:
            notes.append(f"{name} holds {len(extra)} tensor(s) the index does not list (e.g. {extra[0]!r}); "
                         "they are included.")
    return notes
