"""The two records every checkpoint reader returns: a headers-only listing and a loaded checkpoint."""

from __future__ import annotations

from dataclasses import dataclass, field
from math import prod
from operator import attrgetter, mul
from typing import Any, Dict, Hashable, List, Mapping, Optional, Sequence, Tuple

from netscope.checkpoints.dtypes import itemsize
from netscope.records import TensorMeta


@dataclass(frozen=True)
class CheckpointInfo:
    """What a checkpoint holds, read from headers only: tensor bytes are never read."""

    path: str
    format: str  # "safetensors" | "torch" | "sharded-safetensors" | "sharded-torch" | "dcp"
    layout: str  # human description: "plain state_dict", "Lightning {'state_dict': ...}", ...
    state_dict_path: Tuple[Any, ...]  # keys into the container where the model tensors live; () at top level
    tensors: Mapping[str, TensorMeta]  # key -> shape, dtype, storage id; in file order
    other_entries: Mapping[str, str] = field(default_factory=dict)  # non-tensor entries, summarized
    notes: Tuple[str, ...] = ()  # FSDP / per-rank / legacy-format remarks, each a full sentence
    # whether ``tensors`` is in the order the model registered them: torch.save keeps it; safetensors (unless
    # netscope recorded the order), HF shard indexes and DCP metadata list keys sorted, not in the model's order
    keys_in_model_order: bool = True

    @property
    def total_elements(self) -> int:
        return sum(map(prod, map(attrgetter("shape"), self.tensors.values())))

    @property
    def total_bytes(self) -> int:
        """Bytes of tensor data, counting a storage shared by several keys once."""
        return bytes_held(list(self.tensors), list(self.tensors.values()))

    @property
    def state_dict_entries(self) -> Tuple[str, ...]:
        """Keys of the state dict's own non-tensor entries (``_extra_state``, a stray string), as ``other_entries``
        names them; only torch.save and DCP files can hold any."""
        if self.format not in ("torch", "dcp") or not self.tensors:
            return ()
        if not self.state_dict_path:
            return tuple(self.other_entries)
        prefix = ".".join(map(str, self.state_dict_path)) + "."
        return tuple(key[len(prefix):] for key in self.other_entries if key.startswith(prefix))

    @property
    def shares_storage(self) -> bool:
        """Whether several keys share one storage (then ``total_bytes`` counts its bytes once)."""
        storages = [m.storage_id for m in self.tensors.values() if m.storage_id is not None]
        return len(set(storages)) < len(storages)

    def to_dict(self) -> dict:
        """The JSON document ``netscope keys -f json`` writes (schema ``netscope.keys``)."""
        from netscope.render.rows import json_document

        return json_document("keys", {
            "path": self.path,
            "format": self.format,
            "layout": self.layout,
            "state_dict_path": list(self.state_dict_path),
            "tensors": {
                key: {"shape": list(m.shape), "dtype": m.dtype, "storage_id": m.storage_id}
                for key, m in self.tensors.items()
            },
            "other_entries": dict(self.other_entries),
            "notes": list(self.notes),
            "total_tensors": len(self.tensors),
            "total_elements": self.total_elements,
            "total_bytes": self.total_bytes,
        })


@dataclass
class LoadedCheckpoint:
    """A checkpoint in memory: the whole container plus the dict that holds the model tensors."""

    info: CheckpointInfo
    container: Any  # the whole loaded object (dict, ...), tensors on CPU
    state_dict: dict  # the dict at info.state_dict_path; keeps `._metadata` when the source had it


def bytes_held(keys: Sequence[str], metas: Sequence[TensorMeta]) -> int:
    """Bytes of the tensors ``metas`` (under ``keys``), a storage several of them share counted once
    (:func:`deduplicated_bytes`); a tensor without a storage id is its own storage."""
    from netscope.checkpoints.dtypes import itemsizes

    # map() keeps the per-tensor work in C on 100k-key files
    sizes = list(map(mul, map(prod, map(attrgetter("shape"), metas)), itemsizes(map(attrgetter("dtype"), metas))))
    storages: List[Hashable] = list(map(attrgetter("storage_id"), metas))
    if None in storages:
        storages = [("key", key) if storage is None else storage for key, storage in zip(keys, storages)]
    return deduplicated_bytes(storages, sizes, metas)


def deduplicated_bytes(storages: Sequence[Hashable], sizes: Sequence[int],
                       metas: Optional[Sequence[TensorMeta]] = None) -> int:
    """The sum of ``sizes`` (one per tensor), a storage several tensors share counted once: ``storages`` names
    each tensor's storage. A shared storage counts the bytes the views whose ``metas`` give a span reach together
    (two halves of one tensor: both), or its largest view where that is more."""
    if len(set(storages)) == len(storages):  # no storage shared: the common case
        return sum(sizes)
    largest: Dict[Hashable, int] = {}
    spans: Dict[Hashable, List[Optional[Tuple[int, int]]]] = {}
    for index, (storage, nbytes) in enumerate(zip(storages, sizes)):
        if nbytes >= largest.get(storage, 0):
            largest[storage] = nbytes
        span = metas[index].span if metas is not None else None
        size = itemsize(metas[index].dtype) if span is not None else 0
        spans.setdefault(storage, []).append((span[0] * size, span[1] * size) if span is not None else None)
    return sum(max(nbytes, _union_length(spans[storage]) if len(spans[storage]) > 1 else 0)
               for storage, nbytes in largest.items())  # one view alone: its own bytes, as when nothing is shared


def _union_length(ranges: List[Optional[Tuple[int, int]]]) -> int:
    """Bytes covered by the union of the ``[begin, end)`` ranges that are known (not None)."""
    total, reached = 0, None
    for begin, end in sorted(r for r in ranges if r is not None):
        if reached is None or begin > reached:
            total += end - begin
            reached = end
        elif end > reached:
            total += end - reached
            reached = end
    return total
