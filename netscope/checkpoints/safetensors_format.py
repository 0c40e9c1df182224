"""``.safetensors``: the header parsed in pure Python (and checked against the file size), tensors read
through ``safetensors.safe_open``, and writing with shared storages saved once.

netscope writes two extra metadata entries so a round trip restores what the format cannot hold:
``netscope.aliases`` (alias key -> saved key, for tensors that shared one storage) and
``netscope.state_dict_metadata`` (the ``state_dict._metadata`` module versions), and ``netscope.key_order``
(the state dict's key order, which the safetensors writer does not keep).
"""

from __future__ import annotations

import json
import os
import struct
from collections import OrderedDict
from typing import Any, Dict, List, Mapping, Optional, Tuple

from netscope.checkpoints.dtypes import SAFETENSORS_DTYPES, SAFETENSORS_PACKED, itemsize, torch_dtype_name
from netscope.errors import CheckpointError
from netscope.records import TensorMeta
from netscope.units import first_few

ALIASES_KEY = "netscope.aliases"
SD_METADATA_KEY = "netscope.state_dict_metadata"
ORDER_KEY = "netscope.key_order"
_MAX_HEADER = 100 * 1024 * 1024  # the limit the safetensors library itself enforces


class SafetensorsHeader:
    """The parsed, validated header of one file: tensor entries in data order plus ``__metadata__``."""

    def __init__(self, path: str, entries: "OrderedDict[str, TensorMeta]", metadata: Dict[str, str]):
        self.path = path
        self.entries = entries
        self.metadata = metadata

    @property
    def aliases(self) -> Dict[str, str]:
        found = library_aliases(self.metadata, self.entries)
        raw = self.metadata.get(ALIASES_KEY)
        if not raw:
            return found
        try:
            aliases = json.loads(raw)
        except ValueError:
            return found
        return {**found, **{str(a): str(c) for a, c in aliases.items()}} if isinstance(aliases, dict) else found

    @property
    def key_order(self) -> List[str]:
        raw = self.metadata.get(ORDER_KEY)
        try:
            order = json.loads(raw) if raw else []
        except ValueError:
            return []
        return [str(k) for k in order] if isinstance(order, list) else []

    @property
    def state_dict_metadata(self) -> Optional[dict]:
        raw = self.metadata.get(SD_METADATA_KEY)
        try:
            value = json.loads(raw) if raw else None
        except ValueError:
            return None
        return value if isinstance(value, dict) else None


def _corrupt(path: str, what: str) -> CheckpointError:
    return CheckpointError(
        f"{path} is not a valid safetensors file: {what}. The file is truncated or corrupt; "
        "re-download or re-save it (safetensors.torch.save_file or netscope remap -o FILE.safetensors)."
    )


def _no_duplicates(pairs):
    out = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"key {key!r} appears twice")
        out[key] = value
    return out


def read_header(path: str, *, storage_prefix: str = "") -> SafetensorsHeader:
    """Parse and validate the header; tensor data is never read."""
    size = os.path.getsize(path)
    with open(path, "rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            raise _corrupt(path, f"it is only {size} bytes long, shorter than the 8-byte header length")
        (length,) = struct.unpack("<Q", head)
        if length == 0 or length > _MAX_HEADER or 8 + length > size:
            raise _corrupt(path, f"the header claims {length:,} bytes but the file has {size:,} bytes")
        raw = handle.read(length)
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError) as exc:
        raise _corrupt(path, f"its JSON header does not parse ({exc})") from None
    if not isinstance(header, dict):
        raise _corrupt(path, "its header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict):
        raise _corrupt(path, "its __metadata__ is not a JSON object")
    data_size = size - 8 - length
    spans = [_entry(path, key, entry, data_size) for key, entry in header.items()]
    spans.sort()  # data order: (begin, end, key)
    end = 0
    for index, (b1, e1, k1, _, _) in enumerate(spans):
        if b1 < end:
            b0, e0, k0 = spans[index - 1][:3]
            raise _corrupt(path, f"tensors {k0!r} and {k1!r} overlap (bytes {b0}-{e0} and {b1}-{e1})")
        end = e1
    entries: "OrderedDict[str, TensorMeta]" = OrderedDict(
        (key, TensorMeta(shape, dtype, f"{storage_prefix}s{index}"))
        for index, (_, _, key, shape, dtype) in enumerate(spans))
    return SafetensorsHeader(path, entries, {str(k): str(v) for k, v in metadata.items()})


def _entry(path: str, key: str, entry: Any, data_size: int) -> Tuple[int, int, str, Tuple[int, ...], str]:
    """``(begin, end, key, shape, dtype)`` of one header entry, validated against the data size."""
    try:
        code, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    except (KeyError, TypeError):
        raise _corrupt(path, f"entry {key!r} lacks dtype, shape or data_offsets") from None
    try:
        dtype = SAFETENSORS_DTYPES.get(code) or str(code).lower()
    except TypeError:  # an unhashable dtype (a list, an object)
        raise _corrupt(path, f"entry {key!r} has an invalid dtype {code!r}") from None
    if not isinstance(shape, list):
        raise _corrupt(path, f"entry {key!r} has an invalid shape {shape!r}")
    for d in shape:
        if not isinstance(d, int) or d < 0:
            raise _corrupt(path, f"entry {key!r} has an invalid shape {shape!r}")
    packed = SAFETENSORS_PACKED.get(code) if isinstance(code, str) else None
    if packed:  # the header counts sub-byte values; torch's shape counts the packed elements
        if not shape or shape[-1] % packed:
            raise _corrupt(path, f"entry {key!r} of packed dtype {code} has shape {shape}, whose last dimension "
                                 f"is not a multiple of {packed}")
        shape = shape[:-1] + [shape[-1] // packed]
    numel = 1
    for d in shape:
        numel *= d
    if (not isinstance(offsets, list) or len(offsets) != 2
            or not isinstance(offsets[0], int) or not isinstance(offsets[1], int)
            or offsets[0] < 0 or offsets[0] > offsets[1]):
        raise _corrupt(path, f"entry {key!r} has invalid data_offsets {offsets!r}")
    begin, end = offsets
    if end > data_size:
        raise _corrupt(path, f"tensor {key!r} ends at data byte {end:,} but the file holds only "
                             f"{data_size:,} bytes of tensor data")
    size = itemsize(dtype)
    if size and end - begin != numel * size:
        raise _corrupt(path, f"tensor {key!r} has shape {shape} of {dtype} ({numel * size:,} bytes) but "
                             f"its data_offsets span {end - begin:,} bytes")
    return begin, end, key, tuple(shape), dtype


def library_aliases(metadata: Mapping[str, Any], saved) -> Dict[str, str]:
    """Tensors that shared one storage and were saved once, as safetensors.torch.save_model and huggingface_hub
    (save_torch_state_dict, accelerate's save_model) record them: a metadata entry from the dropped name to the
    saved one (``{"transformer.wte.weight": "lm_head.weight"}``). ``saved``: the keys the file holds."""
    return {k: v for k, v in metadata.items()
            if isinstance(k, str) and isinstance(v, str) and not k.startswith("netscope.") and v in saved
            and k not in saved}


def header_tensors(header: SafetensorsHeader) -> Tuple["OrderedDict[str, TensorMeta]", List[str]]:
    """Saved tensors plus restored aliases (same storage id as the tensor they alias), and notes."""
    tensors: "OrderedDict[str, TensorMeta]" = OrderedDict(header.entries)
    notes: List[str] = []
    for alias, canonical in header.aliases.items():
        if canonical in header.entries and alias not in tensors:
            tensors[alias] = header.entries[canonical]
        else:
            notes.append(f"alias {alias!r} -> {canonical!r} in the netscope metadata names no saved tensor; ignored.")
    return _reordered(tensors, header.key_order), notes


def _reordered(items: "OrderedDict[str, Any]", order: List[str]) -> "OrderedDict[str, Any]":
    """``items`` in the recorded key order when that order names exactly the same keys."""
    if not order or len(order) != len(items) or set(order) != set(items):
        return items
    return OrderedDict((key, items[key]) for key in order)


def user_metadata(header: SafetensorsHeader) -> Dict[str, str]:
    return {k: v for k, v in header.metadata.items() if not k.startswith("netscope.")}


def load_tensors(path: str, header: SafetensorsHeader) -> "OrderedDict[str, Any]":
    """Every tensor (and alias, sharing its tensor) on CPU; ``_metadata`` restored when recorded."""
    from safetensors import SafetensorError, safe_open

    state: "OrderedDict[str, Any]" = OrderedDict()
    try:
        with safe_open(path, framework="pt", device="cpu") as handle:
            for key in header.entries:
                state[key] = handle.get_tensor(key)
    except (SafetensorError, OSError, RuntimeError) as exc:
        raise _corrupt(path, f"reading tensors failed ({exc})") from None
    for alias, canonical in header.aliases.items():
        if canonical in state and alias not in state:
            state[alias] = state[canonical]
    state = _reordered(state, header.key_order)
    sd_metadata = header.state_dict_metadata
    if sd_metadata is not None:
        state._metadata = sd_metadata  # type: ignore[attr-defined]
    return state


def save(state: Mapping[str, Any], path: str, metadata: Optional[Mapping[str, str]] = None) -> None:
    """Write a flat dict of tensors: each storage saved once, non-contiguous tensors made contiguous."""
    import torch
    from safetensors.torch import save_file

    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        shown = first_few(map(repr, bad))
        raise CheckpointError(
            f"a .safetensors file holds only a flat dict of tensors with string keys, but {len(bad)} "
            f"entr{'y is' if len(bad) == 1 else 'ies are'} not ({shown}). Save the state dict alone "
            "(model.state_dict()), or write a .pt file to keep the other entries."
        )
    unfit = [(key, why) for key, why in ((k, _unwritable(v)) for k, v in state.items()) if why]
    if unfit:
        shown = first_few(f"{k!r} ({why})" for k, why in unfit)
        raise CheckpointError(
            f"a .safetensors file cannot hold {len(unfit)} of these tensors: {shown}. The format stores dense "
            "tensors of its own dtypes only; write a .pt file (torch.save keeps them as they are)")
    tensors: Dict[str, Any] = {}
    aliases: Dict[str, str] = {}
    seen: Dict[Tuple[Any, ...], str] = {}
    for key, tensor in state.items():
        tensor = tensor.detach()
        if tensor.device.type != "cpu":
            tensor = tensor.cpu()
        identity = _view_identity(tensor)
        if identity is not None and identity in seen:
            aliases[key] = seen[identity]
            continue
        if identity is not None:
            seen[identity] = key
        tensors[key] = tensor.contiguous() if not _owns_whole_storage(tensor) else tensor
    shared = _storage_groups(tensors)
    for group in shared:  # different views of one storage: the format cannot share them, save copies
        for key in group[1:]:
            tensors[key] = tensors[key].clone()
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    meta.setdefault("format", "pt")
    if aliases:
        meta[ALIASES_KEY] = json.dumps(aliases)
    meta[ORDER_KEY] = json.dumps(list(state))
    sd_metadata = getattr(state, "_metadata", None)
    if isinstance(sd_metadata, Mapping):
        try:
            meta[SD_METADATA_KEY] = json.dumps(dict(sd_metadata))
        except (TypeError, ValueError):
            pass
    save_file(tensors, path, metadata=meta)


def _unwritable(tensor) -> Optional[str]:
    """Why the safetensors writer cannot store ``tensor`` (a sparse layout, a quantized or other dtype it lacks)."""
    import torch

    if tensor.layout != torch.strided:
        return f"a {str(tensor.layout).rpartition('.')[2]} sparse tensor"
    name = torch_dtype_name(tensor.dtype)
    if tensor.is_quantized:
        return f"a quantized {name} tensor"
    return None if name in _writable_dtypes() else f"dtype {name}"


def _writable_dtypes() -> frozenset:
    """The dtype names the installed safetensors writer stores (its own table; ours where it keeps none)."""
    import safetensors.torch

    table = getattr(safetensors.torch, "_SIZE", None)  # torch dtype -> bytes per element
    if isinstance(table, dict) and table:
        return frozenset(map(torch_dtype_name, table))
    return frozenset(SAFETENSORS_DTYPES.values())


def _view_identity(tensor) -> Optional[Tuple[Any, ...]]:
    from netscope.checkpoints.identity import view_key

    return view_key(tensor)


def _owns_whole_storage(tensor) -> bool:
    return (tensor.is_contiguous() and tensor.storage_offset() == 0
            and tensor.untyped_storage().nbytes() == tensor.numel() * tensor.element_size())


def _storage_groups(tensors: Mapping[str, Any]) -> List[List[str]]:
    from netscope.checkpoints.identity import storage_key

    groups: Dict[Any, List[str]] = {}
    for key, tensor in tensors.items():
        storage = storage_key(tensor)
        if storage is not None:
            groups.setdefault(storage, []).append(key)
    return [keys for keys in groups.values() if len(keys) > 1]
