"""Which tensors are the same data, decided without reading any."""

from __future__ import annotations

import sys
from typing import Hashable

import torch


def tensor_identity(tensor: torch.Tensor) -> Hashable:
    """Equal for tensors that are the same data: one object, or equal views of one storage.

    Meta and fake tensors compare by their storage object (views of one meta storage, as the
    no-memory build makes for tensors that share memory); storage-less tensors fall back to object
    identity; no data is read.
    """
    if tensor.device.type == "meta" or _is_fake(tensor):
        try:
            return ("meta-view", tensor.untyped_storage()._cdata, tensor.storage_offset(),
                    tuple(tensor.shape), tuple(tensor.stride()), tensor.dtype)
        except (RuntimeError, NotImplementedError, TypeError, AttributeError):
            return ("object", id(tensor))
    try:
        storage = tensor.untyped_storage()
        if storage.nbytes() > 0:
            return ("view", str(tensor.device), storage.data_ptr(), tensor.storage_offset(),
                    tuple(tensor.shape), tuple(tensor.stride()), tensor.dtype)
    except (RuntimeError, NotImplementedError, TypeError):  # tensor subclasses without storage
        pass
    return ("object", id(tensor))


def _is_fake(tensor: torch.Tensor) -> bool:
    fake = sys.modules.get("torch._subclasses.fake_tensor")  # no fake tensor exists unless it was imported
    return fake is not None and isinstance(tensor, fake.FakeTensor)
