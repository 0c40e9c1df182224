"""The multiply-add formulas netscope adds to ``torch.utils.flop_counter``'s, one function per operator.

Conventions (each formula counts multiply-adds, never FLOPs):

- matrix products and convolutions: one per weight element applied per output position, the count
  torch's ``flop_registry`` makes (halved) and torchvision publishes as GFLOPS / GIPS;
- RNN kernels (``mkldnn_rnn_layer``, ``_cudnn_rnn``): every weight matrix is applied once per time
  step and batch row (input, hidden and LSTM projection matrices); gate math is elementwise (0), so
  LSTM/GRU/RNN count the same as the ``mm``/``addmm`` calls the meta device decomposes them into;
- ``_trilinear`` (``nn.Bilinear``): one per point of the broadcast product space (N·out·in1·in2);
- ``torchvision::deform_conv2d``: as the plain convolution of that weight; sampling the offsets
  (bilinear interpolation) and the mask product are elementwise (0);
- FFTs (``_fft_r2c``, ``_fft_c2c``, ``_fft_c2r``): per transformed dimension of length n, a radix-2
  transform counts n·⌈log₂ n⌉/2 complex multiply-adds (one per butterfly) per 1-d signal, over the
  complex signal's full (two-sided) length; a complex multiply-add counts as one;
- ``quantized::`` conv/linear (fused ``_relu`` variants, dynamic and transposed ones included): the
  integer multiply-adds of the float twin, from the packed weight's shape.
"""

from __future__ import annotations

import math

import torch
from torch.utils import flop_counter

from netscope.operators.registry import _from_flops, register_macs

aten = torch.ops.aten


# ---- fast paths for the commonest operators ---------------------------------------------------------
# Same counts as flop_counter's formulas, without its nested shape-wrapping calls: every Linear layer
# and batched matmul hits these, so they dominate the trace's Python cost.

@register_macs("aten::addmm", overrides_torch=True)
def addmm_macs(bias, a, b, *args, out_val=None, **kwargs) -> int:
    """(m, k) @ (k, n); the bias add is not a multiply-add."""
    m, k = a.shape
    return m * k * b.shape[1]


@register_macs("aten::baddbmm", overrides_torch=True)
def baddbmm_macs(bias, a, b, *args, out_val=None, **kwargs) -> int:
    """Batched (m, k) @ (k, n)."""
    batch, m, k = a.shape
    return batch * m * k * b.shape[2]


@register_macs("aten::convolution_backward", overrides_torch=True)
def conv_backward_macs(grad_out, x, weight, bias_sizes, stride, padding, dilation, transposed, output_padding,
                       groups, output_mask, *args, out_val=None, **kwargs) -> int:
    """The input gradient and the weight gradient (as ``output_mask`` asks) each cost the forward's
    multiply-adds, grouped convolutions included. flop_counter's formula ignores ``groups`` and counts a
    ``g``-group backward as ``g + 1`` forwards (65x for a 64-channel depthwise conv)."""
    forward = flop_counter.conv_flop_count(list(x.shape), list(weight.shape), list(grad_out.shape),
                                           transposed=transposed) // 2
    return forward * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


# ---- attention ------------------------------------------------------------------------------------

_flash = flop_counter.flop_registry.get(aten._scaled_dot_product_flash_attention)
if _flash is not None and hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu"):
    register_macs("aten::_scaled_dot_product_flash_attention_for_cpu")(_from_flops(_flash))


if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward"):
    @register_macs("aten::_scaled_dot_product_flash_attention_for_cpu_backward")
    def cpu_flash_backward_macs(grad_out, query, key, value, *args, out_val=None, **kwargs) -> int:
        """The count flop_counter gives the other flash-attention backwards (scores recomputed, then four
        batched matmuls); it has no entry for the CPU kernel."""
        return flop_counter.sdpa_backward_flop_count(grad_out.shape, query.shape, key.shape, value.shape) // 2


@register_macs("aten::_native_multi_head_attention")
def native_mha_macs(query, key, value, embed_dim, num_head, *args, out_val=None, **kwargs) -> int:
    """q/k/v projections, scores, weighted sum, output projection (``nn.MultiheadAttention`` fast path)."""
    batch, target_len = query.shape[0], query.shape[1]
    source_len = key.shape[1]
    projections = batch * target_len * embed_dim * embed_dim  # q
    projections += 2 * batch * source_len * embed_dim * embed_dim  # k, v
    attention = 2 * batch * target_len * source_len * embed_dim  # q @ k^T and attn @ v over all heads
    output = batch * target_len * embed_dim * embed_dim
    return projections + attention + output


@register_macs("aten::_transformer_encoder_layer_fwd")
def transformer_encoder_layer_macs(src, embed_dim, num_heads, qkv_weight, qkv_bias, proj_weight, proj_bias,
                                   use_gelu, norm_first, eps, norm_weight_1, norm_bias_1, norm_weight_2,
                                   norm_bias_2, ffn_weight_1, *args, out_val=None, **kwargs) -> int:
    """``nn.TransformerEncoderLayer``'s fused eval path: q/k/v and output projections, scores and weighted
    sum over all heads, and the two feed-forward matmuls (what the unfused layer's operators count)."""
    tokens = src.shape[:-1].numel()
    seq = src.shape[-2]
    hidden = ffn_weight_1.shape[0]
    projections = tokens * embed_dim * (3 * embed_dim + embed_dim)
    attention = 2 * tokens * seq * embed_dim
    return projections + attention + 2 * tokens * embed_dim * hidden


# ---- recurrent kernels ----------------------------------------------------------------------------

def _rnn_rows(input) -> int:
    """Time steps x batch rows the kernel runs (a packed sequence's input is already (sum of batch sizes, in))."""
    return input.numel() // input.shape[-1] if input.dim() else 0


@register_macs("aten::mkldnn_rnn_layer")
def mkldnn_rnn_layer_macs(input, weight_ih, weight_hh, *args, out_val=None, **kwargs) -> int:
    """One layer and direction of the CPU LSTM kernel: both weight matrices once per step and row."""
    return _rnn_rows(input) * (weight_ih.numel() + weight_hh.numel())


@register_macs("aten::_cudnn_rnn")
def cudnn_rnn_macs(input, weights, *args, out_val=None, **kwargs) -> int:
    """All layers and directions at once: every weight matrix (not the bias vectors) once per step and row."""
    return _rnn_rows(input) * sum(w.numel() for w in weights if w.dim() == 2)


@register_macs("aten::miopen_rnn")
def miopen_rnn_macs(input, weights, *args, out_val=None, **kwargs) -> int:
    return cudnn_rnn_macs(input, weights)


# ---- bilinear -------------------------------------------------------------------------------------

@register_macs("aten::_trilinear")
def trilinear_macs(i1, i2, i3, expand1, expand2, expand3, sumdim, *args, out_val=None, **kwargs) -> int:
    """``nn.Bilinear``: one multiply-add per point of the three inputs' broadcast product space."""
    full = []
    for tensor, expand in ((i1, expand1), (i2, expand2), (i3, expand3)):
        dims = list(tensor.shape)
        for position in sorted(expand):
            dims.insert(position, 1)
        full.append(dims)
    return math.prod(max(sizes) for sizes in zip(*full))


# ---- torchvision ----------------------------------------------------------------------------------

@register_macs("torchvision::deform_conv2d")
def deform_conv2d_macs(input, weight, *args, out_val=None, **kwargs) -> int:
    """As the plain convolution: out elements x (in channels per group x kernel area)."""
    return out_val.numel() * math.prod(weight.shape[1:])


# ---- FFT ------------------------------------------------------------------------------------------

def _fft_macs(full_shape, dims) -> int:
    points = math.prod(full_shape)
    total = 0
    for d in dims:
        n = full_shape[d]
        if n > 1:
            total += points * math.ceil(math.log2(n)) // 2
    return total


@register_macs("aten::_fft_r2c")
def fft_r2c_macs(self, dim, *args, out_val=None, **kwargs) -> int:
    return _fft_macs(tuple(self.shape), dim)


@register_macs("aten::_fft_c2c")
def fft_c2c_macs(self, dim, *args, out_val=None, **kwargs) -> int:
    return _fft_macs(tuple(self.shape), dim)


@register_macs("aten::_fft_c2r")
def fft_c2r_macs(self, dim, *args, out_val=None, **kwargs) -> int:
    return _fft_macs(tuple(out_val.shape), dim)


# ---- quantized ------------------------------------------------------------------------------------

def quantized_conv_macs(qx, packed, *args, out_val=None, **kwargs) -> int:
    """Integer multiply-adds: the whole packed weight (C_out, C_in/groups, k...) once per output position,
    or, transposed ((C_in, C_out/groups, k...)), once per input position."""
    positions = qx if packed.transpose() else out_val
    return positions.numel() // positions.shape[1] * math.prod(packed.unpack()[0].shape)


def quantized_linear_macs(x, packed, *args, out_val=None, **kwargs) -> int:
    """Integer multiply-adds: out elements x in_features."""
    return out_val.numel() * x.shape[-1]


def _quantized_rnn_macs(gates: int):
    """``aten::quantized_lstm`` / ``quantized_gru`` (dynamic-quantized ``nn.LSTM``/``nn.GRU``), every overload:
    per row and direction, layer 0 runs ``gates*H x (I + H)`` weights, later layers ``gates*H x (dirs*H + H)``
    (the float kernel's count; the packed weights themselves are opaque ``CellParamsBase`` objects)."""
    def macs(input, second, *args, out_val=None, **kwargs) -> int:
        packed = not isinstance(second, (list, tuple)) and second.dim() == 1  # .data: (data, batch_sizes, hx, ...)
        hx, params, _, num_layers, _, _, bidirectional = (args[0], *args[1:7]) if packed else (second, *args[:6])
        hidden = (hx[0] if isinstance(hx, (list, tuple)) else hx).shape[-1]
        dirs = 2 if bidirectional else 1
        per_row = gates * hidden * ((input.shape[-1] + hidden) + (num_layers - 1) * (dirs * hidden + hidden))
        return _rnn_rows(input) * dirs * per_row
    return macs


register_macs("aten::quantized_lstm")(_quantized_rnn_macs(4))
register_macs("aten::quantized_gru")(_quantized_rnn_macs(3))


def quantized_rnn_cell_macs(input, hx, w_ih, w_hh, *args, out_val=None, **kwargs) -> int:
    """Dynamic-quantized RNN cells: both packed weight matrices once per batch row."""
    return _rnn_rows(input) * (w_ih.unpack()[0].numel() + w_hh.unpack()[0].numel())


for _name in ("lstm", "gru", "rnn_tanh", "rnn_relu"):
    register_macs(f"quantized::quantized_{_name}_cell_dynamic")(quantized_rnn_cell_macs)
for _name in ("conv1d", "conv2d", "conv3d", "conv1d_relu", "conv2d_relu", "conv3d_relu",
              "conv_transpose1d", "conv_transpose2d", "conv_transpose3d", "conv2d_add", "conv2d_add_relu"):
    register_macs(f"quantized::{_name}")(quantized_conv_macs)
for _name in ("linear", "linear_relu", "linear_dynamic", "linear_relu_dynamic", "linear_dynamic_fp16",
              "linear_relu_dynamic_fp16", "linear_leaky_relu", "linear_tanh", "linear_with_input_q_dtype_qweight"):
    register_macs(f"quantized::{_name}")(quantized_linear_macs)
