"""Tensor storage identity, decided without reading any data: the one place that says which tensors are
the same storage, or the same view of it (used by naming, checkpoint reading/writing and remapping)."""

from __future__ import annotations

from typing import Any, Hashable, Optional, Tuple


def storage_key(tensor) -> Optional[Tuple[Any, ...]]:
    """Equal for tensors on one storage (any view of it); None for meta, storage-less and empty storages."""
    if tensor.device.type == "meta":
        return None
    try:
        storage = tensor.untyped_storage()
    except (RuntimeError, NotImplementedError, TypeError):  # tensor subclasses without a storage
        return None
    if storage.nbytes() == 0:
        return None
    return (str(tensor.device), storage.data_ptr())


def view_key(tensor) -> Optional[Tuple[Any, ...]]:
    """Equal for tensors that are the same view of one storage (offset, shape, strides, dtype); None as above."""
    key = storage_key(tensor)
    if key is None:
        return None
    return key + (tensor.storage_offset(), tuple(tensor.shape), tuple(tensor.stride()), tensor.dtype)


def tensor_identity(tensor) -> Hashable:
    """Equal for tensors that are the same data: one object, or equal views of one storage. Meta and
    storage-less tensors fall back to object identity."""
    key = view_key(tensor)
    return ("view",) + key if key is not None else ("object", id(tensor))


def storage_id_text(tensor) -> Optional[str]:
    """``storage_key`` as the short text a ``TensorMeta.storage_id`` holds (``cpu:140234...``)."""
    key = storage_key(tensor)
    return f"{key[0]}:{key[1]}" if key is not None else None
