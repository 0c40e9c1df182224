"""Both sides of a mapping as metadata only: ``{key: TensorMeta}`` plus what is known about modules.

The target side is built from ``model.state_dict(keep_vars=True)`` without touching tensor data (works
for meta-device models); the source side from a checkpoint header or an in-memory state dict.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, FrozenSet, List, Mapping, Optional, Tuple

from netscope.checkpoints.dtypes import layout_name
from netscope.checkpoints.identity import storage_id_text
from netscope.records import TensorMeta


@dataclass(frozen=True)
class TensorLayout:
    """Keys in registration/file order, their metadata, and (target side) module types and parameter keys."""

    tensors: Mapping[str, TensorMeta]
    module_types: Mapping[str, str] = field(default_factory=dict)  # module path -> class name ("" root)
    parameter_keys: Optional[FrozenSet[str]] = None  # None: every tensor counts as a parameter
    ordered: bool = True  # the key order is the model's registration order (evidence for structural pairing)
    # (target side) the state dict's non-tensor keys (``_extra_state``); None where that is not known
    entries: Optional[FrozenSet[str]] = None
    required_entries: FrozenSet[str] = frozenset()  # those a strict load needs: modules overriding set_extra_state

    def is_parameter(self, key: str) -> bool:
        return self.parameter_keys is None or key in self.parameter_keys

    def storage_groups(self) -> Dict[str, List[str]]:
        """storage_id -> keys that share it, for storages named by more than one key."""
        first_of: Dict[str, str] = {}  # storage_id -> its first key
        groups: Dict[str, List[str]] = {}  # only storages seen twice, so no list per tensor
        for key, meta in self.tensors.items():
            if meta.storage_id is not None:
                first = first_of.setdefault(meta.storage_id, key)
                if first != key:
                    groups.setdefault(meta.storage_id, [first]).append(key)
        return {sid: groups[sid] for sid in first_of if sid in groups}

    def module_type(self, module: str) -> str:
        return self.module_types.get(module, "")


def dtype_name(dtype) -> str:
    return str(dtype).replace("torch.", "")


def tensor_meta(tensor, storage_id: Optional[str] = None) -> TensorMeta:
    """TensorMeta of a real or meta tensor; ``storage_id`` defaults to the storage's address and offset."""
    return _meta_of(tensor, dtype_name(tensor.dtype), storage_id)


def _meta_of(tensor, dtype: str, storage_id: Optional[str] = None) -> TensorMeta:
    """``tensor_meta`` with the dtype's name already known."""
    if storage_id is None:
        storage_id = storage_id_text(tensor)
    return TensorMeta(tuple(map(int, tensor.shape)), dtype, storage_id, layout=layout_name(tensor))


class _DtypeNames(dict):
    """dtype -> name, computed once per dtype for the life of one layout build."""

    def __missing__(self, dtype) -> str:
        self[dtype] = name = dtype_name(dtype)
        return name


def split_state_dict(state_dict: Mapping) -> Tuple[Dict[str, object], Dict[str, object]]:
    """(tensors, other entries) of a state dict, both in their original order."""
    import torch

    tensors, others = {}, {}
    for key, value in state_dict.items():
        (tensors if isinstance(value, torch.Tensor) else others)[key] = value
    return tensors, others


def source_layout(state_dict: Mapping, saved_in_order: bool = True) -> TensorLayout:
    """Layout of an in-memory state dict (tensors sharing a storage get equal storage ids); ``saved_in_order``:
    whether the file it came from keeps the model's key order (``CheckpointInfo.keys_in_model_order``)."""
    from netscope.checkpoints.containers import refuse_shapeless_tensors

    tensors, _ = split_state_dict(state_dict)
    refuse_shapeless_tensors(tensors)
    names = _DtypeNames()
    metas = {str(k): _meta_of(v, names[v.dtype]) for k, v in tensors.items()}
    return TensorLayout(metas, ordered=saved_in_order and not _sorted_by_name(metas))


def layout_from_metas(metas: Mapping[str, TensorMeta], saved_in_order: bool = True) -> TensorLayout:
    return TensorLayout(dict(metas), ordered=saved_in_order and not _sorted_by_name(metas))


def _sorted_by_name(keys) -> bool:
    """Keys in name order (a dict read from a .safetensors file and saved again): their order is the sort's,
    not the model's. A registration order almost never is (a layer's 'weight' comes before its 'bias')."""
    keys = list(keys)
    return len(keys) > 2 and all(a <= b for a, b in zip(keys, keys[1:]))


def model_layout(model) -> TensorLayout:
    """Layout of a model's state_dict: keys, shapes, dtypes, module types, parameter keys, ties.

    Tied tensors (one Parameter under two names) get the same storage id. No data is read or moved.
    """
    import torch

    from netscope.naming.audit import saved_state

    state = saved_state(model, type(model).__name__, "Comparing a checkpoint with the model needs the keys "
                        "state_dict() returns")
    module_types = {name: type(module).__name__ for name, module in model.named_modules(remove_duplicate=False)}
    parameter_names = {name for name, _ in model.named_parameters(remove_duplicate=False)}
    names = _DtypeNames()
    tensors = {key: TensorMeta(tuple(map(int, value.shape)), names[value.dtype], f"id:{id(value)}",
                               layout=None if value.layout is torch.strided else layout_name(value))
               for key, value in state.items() if isinstance(value, torch.Tensor)}
    entries = frozenset(key for key, value in state.items() if not isinstance(value, torch.Tensor))
    required = frozenset(key for key in entries if _sets_extra_state(model, key)) if entries else frozenset()
    return TensorLayout(tensors, module_types, frozenset(parameter_names.intersection(tensors)), entries=entries,
                        required_entries=required)


def _sets_extra_state(model, key: str) -> bool:
    """Whether ``key`` is the extra state of a module whose class overrides ``set_extra_state``: torch's strict
    load then reports it missing when a checkpoint lacks it."""
    import torch.nn as nn

    owner, _, leaf = key.rpartition(".")
    if leaf != "_extra_state":
        return False
    try:
        module = model.get_submodule(owner)
    except AttributeError:
        return False
    return type(module).set_extra_state is not nn.Module.set_extra_state


def module_of(key: str) -> str:
    """``'layer1.0.conv1.weight'`` -> ``'layer1.0.conv1'``; a root-level tensor -> ``''``."""
    return key.rpartition(".")[0]


def leaf_of(key: str) -> str:
    return key.rpartition(".")[2]
