"""Tensor storage identity, decided without reading any data: the one place that says which tensors are
the same storage, or the same view of it (used by naming, the no-memory build, checkpoint reading and
writing, and remapping)."""

from __future__ import annotations

import sys
from typing import Any, Hashable, Iterable, List, Optional, Tuple


def storage_key(tensor) -> Optional[Tuple[Any, ...]]:
    """Equal for tensors on one storage, whatever their view; None when that cannot be told (storage-less
    tensor subclasses, lazy parameters, empty storages). Meta and fake tensors compare by their storage
    object (views of one meta storage, as the no-memory build makes for tensors that share memory)."""
    try:
        if tensor.device.type == "meta" or _is_fake(tensor):
            return ("meta", tensor.untyped_storage()._cdata)
        storage = tensor.untyped_storage()
        return (str(tensor.device), storage.data_ptr()) if storage.nbytes() > 0 else None
    except (RuntimeError, NotImplementedError, TypeError, ValueError, AttributeError):  # no storage
        return None


def distinct_storages(tensors: Iterable) -> List[Tuple[Any, Optional[int]]]:
    """``(tensor, bytes of its storage)`` for the first of ``tensors`` on each storage (views of one storage, or one
    tensor under two names, once: the memory they hold); a tensor whose storage cannot be told (a sparse one, a
    storage-less subclass) is its own entry, with None."""
    tensors = tensors if isinstance(tensors, list) else list(tensors)
    sizes = _own_storage_sizes(tensors)
    return list(zip(tensors, sizes)) if sizes is not None else _storages_one_by_one(tensors)


def storages_beyond(tensors: Iterable, held: Iterable) -> List[Tuple[Any, Optional[int]]]:
    """:func:`distinct_storages` of ``tensors`` less the storages ``held`` are on: the memory ``tensors`` add to
    what ``held`` already holds (a buffer registered as a view of a parameter adds nothing to the parameters)."""
    tensors = tensors if isinstance(tensors, list) else list(tensors)
    held = held if isinstance(held, list) else list(held)
    if not held or not tensors:  # (most models hold no buffer: no pass over the parameters for them)
        return distinct_storages(tensors)
    held_ids = set(map(id, held))
    return [(t, n) for t, n in distinct_storages(held + tensors) if id(t) not in held_ids]


def _storages_one_by_one(tensors: List) -> List[Tuple[Any, Optional[int]]]:
    """:func:`distinct_storages` told through :func:`storage_key`, tensor by tensor."""
    seen = set()
    out: List[Tuple[Any, Optional[int]]] = []
    for tensor in tensors:
        key = storage_key(tensor)
        if key is None:
            out.append((tensor, None))
        elif key not in seen:
            seen.add(key)
            out.append((tensor, tensor.untyped_storage().nbytes()))
    return out


def held_bytes(tensors: Iterable, beyond: Iterable = ()) -> int:
    """The bytes ``tensors`` hold together: each storage once (:func:`distinct_storages`), and a tensor whose storage
    cannot be told by what it stores (``run.shapes.stored_bytes``: a sparse tensor's values and indices); with
    ``beyond``, only the storages none of those is on (:func:`storages_beyond`)."""
    tensors = tensors if isinstance(tensors, list) else list(tensors)
    beyond = beyond if isinstance(beyond, list) else list(beyond)
    sizes = None if beyond else _own_storage_sizes(tensors)
    if sizes is not None:
        return sum(sizes)
    from netscope.run.shapes import stored_bytes

    entries = storages_beyond(tensors, beyond) if beyond else _storages_one_by_one(tensors)
    return sum(stored_bytes(t) if n is None else n for t, n in entries)


def _own_storage_sizes(tensors: List) -> Optional[List[int]]:
    """Each tensor's storage bytes when every one is a plain tensor or parameter on a storage of its own at a
    distinct address (a model's weights, as usual): read in C loops, and then :func:`storage_key`'s keys are all
    distinct. None otherwise (subclasses such as fake tensors, which are never asked for a data pointer; meta and
    empty storages, which have none; storages that several tensors share): told tensor by tensor."""
    import torch

    if not set(map(type, tensors)) <= _plain_types(torch):
        return None
    try:
        storages = list(map(torch.Tensor.untyped_storage, tensors))
        sizes = list(map(torch.UntypedStorage.nbytes, storages))
        addresses = set(map(torch.UntypedStorage.data_ptr, storages))
    except (RuntimeError, NotImplementedError, TypeError, ValueError, AttributeError):  # a sparse one: no storage
        return None
    if len(addresses) == len(tensors) and 0 not in addresses and 0 not in sizes:
        return sizes
    return None


def storage_or_object_key(tensor) -> Tuple[Any, ...]:
    """:func:`storage_key`, else a key one storage (an empty one) or, for a tensor without a storage (sparse,
    nested, quantized subclasses), one tensor object has: equal only for keys that hold the same data."""
    key = storage_key(tensor)
    if key is not None:
        return key
    try:
        return ("cdata", tensor.untyped_storage()._cdata)  # an empty storage: one key per storage
    except (RuntimeError, NotImplementedError, TypeError, ValueError, AttributeError):  # no storage at all
        return ("object", id(tensor))


def view_key(tensor) -> Optional[Tuple[Any, ...]]:
    """Equal for tensors that are the same view of one storage (offset, shape, strides, dtype); None as above."""
    key = storage_key(tensor)
    if key is None:
        return None
    return (key, tensor.storage_offset(), tuple(tensor.shape), tuple(tensor.stride()), tensor.dtype)


def element_span(tensor) -> Optional[Tuple[int, int]]:
    """``[first, end)``: the elements of its storage (in its own dtype) the view reaches; None without a storage."""
    if storage_key(tensor) is None:
        return None
    offset = tensor.storage_offset()
    if tensor.numel() == 0:
        return offset, offset
    return offset, offset + 1 + sum((d - 1) * s for d, s in zip(tensor.shape, tensor.stride()))


def tensor_identity(tensor) -> Hashable:
    """Equal for tensors that are the same data: one object, or equal views of one storage; tensors whose
    storage cannot be told fall back to object identity."""
    key = view_key(tensor)
    return ("view",) + key if key is not None else ("object", id(tensor))


def storage_of(identity: Hashable) -> Optional[Hashable]:
    """The :func:`storage_key` inside a :func:`tensor_identity`; None for object identities."""
    return identity[1] if identity[0] == "view" else None


def storage_id_text(tensor) -> Optional[str]:
    """``storage_key`` as the short text a ``TensorMeta.storage_id`` holds (``cpu:140234...``)."""
    key = storage_key(tensor)
    return f"{key[0]}:{key[1]}" if key is not None else None


def _plain_types(torch) -> frozenset:
    """The tensor classes whose storage :func:`distinct_storages` reads in bulk: torch's own, no subclass."""
    return frozenset(t for t in (torch.Tensor, torch.nn.Parameter, getattr(torch.nn, "Buffer", None)) if t is not None)


def _is_fake(tensor) -> bool:
    fake = sys.modules.get("torch._subclasses.fake_tensor")  # no fake tensor exists unless it was imported
    return fake is not None and isinstance(tensor, fake.FakeTensor)

