"""Operator-level multiply-add counting.

One registry keyed by aten op overload packet. It starts from PyTorch's own per-operator formulas
(``torch.utils.flop_counter.flop_registry``, which counts 2 FLOPs per multiply-add) and adds the
operators that registry lacks but real models hit (CPU flash attention and its backward, the fused
``nn.MultiheadAttention`` fast path). Operators without an entry cost no multiply-adds
(elementwise ops, reductions, views), the same convention torchvision's published ``_ops`` use.
"""

from __future__ import annotations

from typing import Callable, Dict

import torch
from torch.utils import flop_counter

aten = torch.ops.aten

MacFormula = Callable[..., int]  # (*args, out_val=..., **kwargs) -> multiply-adds


def _shape_of(value):
    """Tensors -> ``torch.Size``, inside plain lists and tuples too; anything else as it is.

    A cheap stand-in for the ``tree_map`` that ``flop_counter.shape_wrapper`` runs on every call: that
    generic pytree walk cost more than the formula itself and was the trace's biggest Python hot spot.
    """
    if isinstance(value, torch.Tensor):
        return value.shape
    if isinstance(value, (list, tuple)):
        return (list if isinstance(value, list) else tuple)(_shape_of(v) for v in value)
    return value


def _from_flops(flop_fn) -> MacFormula:
    shape_fn = getattr(flop_fn, "__wrapped__", None)  # the formula behind flop_counter's shape_wrapper
    if shape_fn is None:  # a raw-tensor formula (registered with get_raw=True): call it as it is
        def raw_macs(*args, out_val=None, **kwargs) -> int:
            return int(flop_fn(*args, out_val=out_val, **kwargs)) // 2

        return raw_macs

    def macs(*args, out_val=None, **kwargs) -> int:
        shapes = [_shape_of(a) for a in args]
        if kwargs:
            kwargs = {k: _shape_of(v) for k, v in kwargs.items()}
        return int(shape_fn(*shapes, out_shape=_shape_of(out_val), **kwargs)) // 2

    return macs


def _native_mha_macs(query, key, value, embed_dim, num_head, *args, out_val=None, **kwargs) -> int:
    """``aten._native_multi_head_attention``: q/k/v projections, scores, weighted sum, output projection."""
    batch, target_len = query.shape[0], query.shape[1]
    source_len = key.shape[1]
    projections = batch * target_len * embed_dim * embed_dim  # q
    projections += 2 * batch * source_len * embed_dim * embed_dim  # k, v
    attention = 2 * batch * target_len * source_len * embed_dim  # q @ k^T and attn @ v over all heads
    output = batch * target_len * embed_dim * embed_dim
    return projections + attention + output


def _cpu_flash_backward_macs(grad_out, query, key, value, *args, out_val=None, **kwargs) -> int:
    """``aten._scaled_dot_product_flash_attention_for_cpu_backward``: the count flop_counter gives the
    other flash-attention backwards (scores recomputed, then four batched matmuls)."""
    return flop_counter.sdpa_backward_flop_count(grad_out.shape, query.shape, key.shape, value.shape) // 2


def _conv_backward_macs(grad_out, x, weight, bias_sizes, stride, padding, dilation, transposed, output_padding,
                        groups, output_mask, *args, out_val=None, **kwargs) -> int:
    """``aten.convolution_backward``: the input gradient and the weight gradient (as ``output_mask`` asks)
    each cost the forward's multiply-adds, grouped convolutions included. flop_counter's formula ignores
    ``groups`` and counts a ``g``-group backward as ``g + 1`` forwards (65x for a 64-channel depthwise conv)."""
    forward = flop_counter.conv_flop_count(list(x.shape), list(weight.shape), list(grad_out.shape),
                                           transposed=transposed) // 2
    return forward * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


def _addmm_macs(bias, a, b, *args, out_val=None, **kwargs) -> int:
    """``aten.addmm``: (m, k) @ (k, n); the bias add is not a multiply-add."""
    m, k = a.shape
    return m * k * b.shape[1]


def _baddbmm_macs(bias, a, b, *args, out_val=None, **kwargs) -> int:
    """``aten.baddbmm``: batched (m, k) @ (k, n)."""
    batch, m, k = a.shape
    return batch * m * k * b.shape[2]


# Same counts as flop_counter's formulas for these ops, without its nested shape-wrapping calls: they
# are the ops every Linear layer and batched matmul hits, so they dominate the trace's Python cost.
# convolution_backward is the exception that corrects a count (groups, see _conv_backward_macs).
_DIRECT = {aten.addmm: _addmm_macs, aten.baddbmm: _baddbmm_macs, aten.convolution_backward: _conv_backward_macs}


def build_registry() -> Dict[object, MacFormula]:
    registry: Dict[object, MacFormula] = {op: _DIRECT.get(op) or _from_flops(fn)
                                          for op, fn in flop_counter.flop_registry.items()}

    def add(op, fn):
        if op in registry:
            raise ValueError(f"multiply-add formula for {op} registered twice")
        registry[op] = fn

    flash = flop_counter.flop_registry.get(aten._scaled_dot_product_flash_attention)
    cpu_flash = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if flash is not None and cpu_flash is not None and cpu_flash not in registry:
        add(cpu_flash, _from_flops(flash))
    cpu_flash_backward = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward", None)
    if cpu_flash_backward is not None and cpu_flash_backward not in registry:
        add(cpu_flash_backward, _cpu_flash_backward_macs)
    if aten._native_multi_head_attention not in registry:
        add(aten._native_multi_head_attention, _native_mha_macs)
    return registry


MAC_REGISTRY: Dict[object, MacFormula] = build_registry()


def op_macs(func, args, kwargs, out) -> int:
    """Multiply-adds of one aten call, 0 for operators without a formula."""
    formula = MAC_REGISTRY.get(func._overloadpacket)
    if formula is None:
        return 0
    return formula(*args, **kwargs, out_val=out)
