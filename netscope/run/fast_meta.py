"""Shape-only shortcuts for the meta kernels that dominate a meta pass, for the solver's many runs.

PyTorch's meta batch norm, layer norm and addmm run Python decompositions (batch norm: about 85% of
a ResNet-50 meta pass). On well-formed arguments their outputs are plain shapes, built here directly;
anything else (a size mismatch, a missing running statistic, fake tensors, mixed dtypes) goes to the
real meta kernel, so every error is PyTorch's own and nothing is accepted that meta would refuse.
Active only inside ``with fast_meta_kernels():``.
"""

from __future__ import annotations

from typing import Callable, Dict, Optional

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten


def _plain_meta(*tensors) -> bool:
    """Meta tensors or parameters, not fake tensors or other subclasses."""
    return all(t is None or (type(t) in (torch.Tensor, torch.nn.Parameter) and t.device.type == "meta")
               for t in tensors)


def _empty(shape, like: torch.Tensor) -> torch.Tensor:
    return torch.empty(tuple(shape), dtype=like.dtype, device="meta")


def _batch_norm(input, weight, bias, running_mean, running_var, training, momentum, eps):
    if input.dim() < 2 or not _plain_meta(input, weight, bias, running_mean, running_var):
        return None
    channels = input.shape[1]
    stats = (running_mean, running_var)
    if not training and any(t is None for t in stats):
        return None
    if any(t is not None and (t.dim() != 1 or t.shape[0] != channels or t.dtype != input.dtype)
           for t in (weight, bias) + stats):
        return None
    return _empty(input.shape, input), _empty((channels,), input), _empty((channels,), input)


def _layer_norm(input, normalized_shape, weight, bias, eps):
    shape = tuple(normalized_shape)
    k = len(shape)
    if not k or input.dim() < k or tuple(input.shape[-k:]) != shape or not _plain_meta(input, weight, bias):
        return None
    if any(t is not None and (tuple(t.shape) != shape or t.dtype != input.dtype) for t in (weight, bias)):
        return None
    stat = tuple(input.shape[:-k]) + (1,) * k
    return _empty(input.shape, input), _empty(stat, input), _empty(stat, input)


def _addmm(bias, mat1, mat2, *, beta=1, alpha=1):
    if not _plain_meta(bias, mat1, mat2) or mat1.dim() != 2 or mat2.dim() != 2 or mat1.shape[1] != mat2.shape[0]:
        return None
    if not (bias.dtype == mat1.dtype == mat2.dtype):
        return None
    m, p = mat1.shape[0], mat2.shape[1]
    if tuple(bias.shape) not in ((p,), (1, p), (m, p)):
        return None
    return _empty((m, p), mat1)


SHORTCUTS: Dict[object, Callable[..., Optional[object]]] = {
    aten.native_batch_norm.default: _batch_norm,
    aten._native_batch_norm_legit_no_training.default:
        lambda i, w, b, rm, rv, momentum, eps: _batch_norm(i, w, b, rm, rv, False, momentum, eps),
    aten.native_layer_norm.default: _layer_norm,
    aten.addmm.default: _addmm,
}


class fast_meta_kernels(TorchDispatchMode):
    """Answer the operators in ``SHORTCUTS`` from shapes when their arguments are well-formed meta tensors."""

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        shortcut = SHORTCUTS.get(func)
        if shortcut is not None:
            out = shortcut(*args, **kwargs)
            if out is not None:
                return out
        return func(*args, **kwargs)
