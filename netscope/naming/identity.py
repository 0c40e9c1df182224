"""Which tensors are the same data, decided without reading any."""

from __future__ import annotations

from typing import Hashable

import torch


def tensor_identity(tensor: torch.Tensor) -> Hashable:
    """Equal for tensors that are the same data: one object, or equal views of one storage.

    Meta and storage-less tensors fall back to object identity; no data is read.
    """
    if tensor.device.type != "meta":
        try:
            storage = tensor.untyped_storage()
            if storage.nbytes() > 0:
                return ("view", str(tensor.device), storage.data_ptr(), tensor.storage_offset(),
                        tuple(tensor.shape), tuple(tensor.stride()), tensor.dtype)
        except (RuntimeError, NotImplementedError, TypeError):  # tensor subclasses without storage
            pass
    return ("object", id(tensor))
