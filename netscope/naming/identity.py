"""Which tensors are the same data, decided without reading any."""

from __future__ import annotations

import sys
from typing import Hashable, Optional

import torch


def tensor_identity(tensor: torch.Tensor) -> Hashable:
    """Equal for tensors that are the same data: one object, or equal views of one storage.

    Meta and fake tensors compare by their storage object (views of one meta storage, as the
    no-memory build makes for tensors that share memory); storage-less tensors fall back to object
    identity; no data is read.
    """
    key = storage_key(tensor)
    if key is None:
        return ("object", id(tensor))
    return ("view", key, tensor.storage_offset(), tuple(tensor.shape), tuple(tensor.stride()), tensor.dtype)


def storage_of(identity: Hashable) -> Optional[Hashable]:
    """The :func:`storage_key` inside a :func:`tensor_identity`; None for object identities."""
    return identity[1] if identity[0] == "view" else None


def storage_key(tensor: torch.Tensor) -> Optional[Hashable]:
    """Equal for tensors on one storage, whatever their view; None when that cannot be told."""
    try:
        if tensor.device.type == "meta" or _is_fake(tensor):
            return ("meta", tensor.untyped_storage()._cdata)
        storage = tensor.untyped_storage()
        return (str(tensor.device), storage.data_ptr()) if storage.nbytes() > 0 else None
    except (RuntimeError, NotImplementedError, TypeError, ValueError, AttributeError):  # no storage (subclasses, lazy)
        return None


def _is_fake(tensor: torch.Tensor) -> bool:
    fake = sys.modules.get("torch._subclasses.fake_tensor")  # no fake tensor exists unless it was imported
    return fake is not None and isinstance(tensor, fake.FakeTensor)
