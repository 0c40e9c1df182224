"""Which tensors are the same data, decided without reading any (the helper lives in checkpoints/identity)."""

from __future__ import annotations

from netscope.checkpoints.identity import storage_key, storage_of, tensor_identity

__all__ = ["storage_key", "storage_of", "tensor_identity"]
