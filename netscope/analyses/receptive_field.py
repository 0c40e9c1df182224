"""Cumulative receptive field of every tensor the forward pass makes, relative to the model's input.

Per spatial axis of the input (the dimensions after batch and channel of its first floating tensor
of rank >= 3): ``size`` (input positions one output position sees), ``jump`` (input positions between
neighbouring output positions, the effective stride) and ``start`` (centre of the first output
position's window, in input positions; negative when padding comes first). Sizes are unclipped, as
published tables give them: near a border a position reads fewer input positions. Tracked at the operator
level inside the trace's dispatch mode, so ``F.conv2d``/``F.max_pool2d``/``F.pad`` count like modules:
each operator's output gets its field from its inputs' fields (a weak map, no
tensor kept alive). Elementwise merges take the union of their inputs' fields. Where one output
position depends on every input position (global pooling, flatten -> linear, attention), the field is
:data:`WHOLE`.
An operator without a rule that takes a tracked tensor marks its output :data:`UNKNOWN`, which
propagates through merges. Normalisation statistics are not counted (batch norm in eval uses none; group/layer norm are treated
as elementwise, as receptive-field tables conventionally do).
"""

from __future__ import annotations

import functools
import weakref
from dataclasses import dataclass
from typing import Callable, Dict, NamedTuple, Optional, Tuple, Union

import torch

from netscope.operators.windows import operator_ints

WHOLE = "whole input"
UNKNOWN = "unknown"  # derived from the input through an operator without a rule: never guessed


class Axis(NamedTuple):
    """One spatial axis of a field: size, jump and first centre, in input positions (a NamedTuple: one is
    made per axis per operator, so it is kept cheap)."""

    size: float  # floats hold these exactly for integer strides, kernels and padding (and their halves)
    jump: float
    start: float

    def window(self, kernel: int, stride: int, pad: int, dilation: int = 1) -> "Axis":
        reach = dilation * (kernel - 1)
        return Axis(self.size + reach * self.jump, self.jump * stride, self.start + (reach / 2 - pad) * self.jump)

    def union(self, other: "Axis") -> Optional["Axis"]:
        if self.jump != other.jump:
            return None
        low = min(self.start - (self.size - 1) / 2, other.start - (other.size - 1) / 2)
        high = max(self.start + (self.size - 1) / 2, other.start + (other.size - 1) / 2)
        return Axis(high - low + 1, self.jump, (low + high) / 2)


@dataclass(frozen=True)
class Field:
    """A tensor's receptive field: ``dims[i]`` is the tensor dimension holding input spatial axis ``i``."""

    dims: Tuple[int, ...]
    axes: Tuple[Axis, ...]
    exact: bool = True  # False once an operator's field is an enclosing bound (nearest upsample, pixel shuffle)
    # When a reshape merged the spatial dimensions (with others) into one (channels-last Linear: (N, H, W, C)
    # -> (N*H*W, C)), every axis's dim is that one, and this holds the merged sizes and where each axis sat
    # among them, so the reshape back restores the axes.
    merged: Optional[Tuple[Tuple[int, ...], Tuple[int, ...]]] = None

    def to_dict(self) -> dict:
        return {"size": [_number(a.size) for a in self.axes], "jump": [_number(a.jump) for a in self.axes],
                "start": [_number(a.start) for a in self.axes], "exact": self.exact}

    def text(self, part: str) -> str:
        values = "x".join(str(_number(getattr(a, part))) for a in self.axes)
        return values if self.exact or part != "size" else "<=" + values


FieldLike = Union[Field, str, None]  # a Field, WHOLE, UNKNOWN, or None (not derived from the spatial input)


def _number(value: float):
    return int(value) if float(value).is_integer() else round(float(value), 4)


def field_text(value: FieldLike, part: str) -> str:
    if isinstance(value, Field):
        return value.text(part)
    return "whole" if value == WHOLE else "?" if value == UNKNOWN else ""


def input_field(tensor) -> Optional[Field]:
    """Identity field of a model input: every position sees itself (None unless a floating tensor of rank >= 3)."""
    if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point() or tensor.dim() < 3:
        return None
    nd = tensor.dim() - 2
    return Field(tuple(range(2, tensor.dim())), tuple(Axis(1, 1, 0) for _ in range(nd)))


# ---- rules: (func, args, kwargs, out, field of args[0]) -> field of the output ---------------------------
Rule = Callable[..., FieldLike]


def _spatial_last(field: Field, ndim: int, nd: int) -> bool:
    return field.merged is None and len(field.axes) == nd and field.dims == tuple(range(ndim - nd, ndim))


def _conv(args, kwargs, out, field):
    x, weight = args[0], args[1]
    nd = weight.dim() - 2
    if not _spatial_last(field, x.dim(), nd):
        return None
    get = lambda i, name, default: args[i] if len(args) > i else kwargs.get(name, default)  # noqa: E731
    stride, pad = operator_ints(get(3, "stride", 1), nd), operator_ints(get(4, "padding", 0), nd)
    dilation, transposed = operator_ints(get(5, "dilation", 1), nd), bool(get(6, "transposed", False))
    kernels = tuple(weight.shape[2:])
    if not transposed:
        axes = tuple(a.window(k, s, p, d) for a, k, s, p, d in zip(field.axes, kernels, stride, pad, dilation))
        return Field(field.dims, axes, field.exact)
    # output o gathers inputs i with i*s - p + j*d = o: centred on (o + p - (k-1)d/2)/s, spread (k-1)d/s
    axes = tuple(Axis(a.size + a.jump * d * (k - 1) / s, a.jump / s, a.start + a.jump * (p - d * (k - 1) / 2) / s)
                 for a, k, s, p, d in zip(field.axes, kernels, stride, pad, dilation))
    return Field(field.dims, axes, False)  # which inputs reach an output alternates with o: an enclosing bound


def _pool(nd: int, dilated: bool):
    def rule(args, kwargs, out, field):
        x = args[0]
        if not _spatial_last(field, x.dim(), nd):
            # max_pool1d runs as a 2-d pool over an unsqueezed size-1 axis
            if not (len(field.axes) == nd - 1 and field.dims == tuple(range(x.dim() - nd + 1, x.dim()))):
                return None
        get = lambda i, name, default: args[i] if len(args) > i else kwargs.get(name, default)  # noqa: E731
        kernels = operator_ints(get(1, "kernel_size", 1), nd)
        stride = get(2, "stride", ())
        strides = operator_ints(stride, nd) if stride else kernels
        pads = operator_ints(get(3, "padding", 0), nd)
        dilation = operator_ints(get(4, "dilation", 1), nd) if dilated else (1,) * nd
        skip = nd - len(field.axes)
        axes = tuple(a.window(k, s, p, d) for a, k, s, p, d in
                     zip(field.axes, kernels[skip:], strides[skip:], pads[skip:], dilation[skip:]))
        return Field(field.dims, axes, field.exact)

    return rule


def _adaptive(nd: int):
    def rule(args, kwargs, out, field):
        x = args[0]
        if not _spatial_last(field, x.dim(), nd):
            # adaptive_avg_pool1d runs as a 2-d pool over an unsqueezed size-1 axis
            if not (len(field.axes) == nd - 1 and field.dims == tuple(range(x.dim() - nd + 1, x.dim()))):
                return None
        value = out[0] if isinstance(out, (tuple, list)) else out
        n = len(field.axes)
        sizes, outs = tuple(x.shape[-n:]), tuple(value.shape[-n:])
        if all(o == 1 for o in outs) and any(i > 1 for i in sizes):
            return WHOLE  # global pooling
        # an axis pooled to 1 is one window over all of it (CRNN's AdaptiveAvgPool2d((1, None)) keeps W local)
        axes = tuple(a.window(i // o, i // o, 0) if i % o == 0 else _uneven_bins(a, i, o)
                     for a, i, o in zip(field.axes, sizes, outs))
        return Field(field.dims, axes, field.exact and all(i % o == 0 for i, o in zip(sizes, outs)))

    return rule


def _uneven_bins(a: Axis, size: int, out: int) -> Axis:
    """An enclosing bound of adaptive pooling's uneven bins: output j reads floor(j*r) .. ceil((j+1)*r) - 1 with
    r = size/out, which lies within j*r - (out-1)/out .. (j+1)*r - 1/out: centred on j*r + (r-1)/2, r + 2 - 2/out wide."""
    r = size / out
    return Axis(a.size + (r + 1 - 2 / out) * a.jump, a.jump * r, a.start + (r - 1) / 2 * a.jump)


def _pad(args, kwargs, out, field):
    if field.merged is not None:
        return None
    x, pads = args[0], list(args[1] if len(args) > 1 else kwargs.get("pad", kwargs.get("padding")))
    axes = list(field.axes)
    for i, dim in enumerate(field.dims):
        slot = 2 * (x.dim() - 1 - dim)
        if slot < len(pads):
            axes[i] = Axis(axes[i].size, axes[i].jump, axes[i].start - pads[slot] * axes[i].jump)
    return Field(field.dims, tuple(axes), field.exact)


# How each resampling operator picks its source positions: output o along an axis of scale r reads input
# positions within [o*r + low, o*r + high] (torch's upsample kernels), as (low, high) for the source scale r,
# whether align_corners is set, and the antialias support (taps either side of the centre, before scaling).
_NEAREST, _NEAREST_EXACT, _LINEAR, _CUBIC, _LINEAR_AA, _CUBIC_AA = "nearest", "exact", "linear", "cubic", "aa1", "aa2"
_PIXEL_SHUFFLE = "shuffle"  # output o along an axis is input o // factor: nearest, with no scale argument
_RESAMPLE_KINDS = {"upsample_nearest1d": _NEAREST, "upsample_nearest2d": _NEAREST, "upsample_nearest3d": _NEAREST,
                   "_upsample_nearest_exact1d": _NEAREST_EXACT, "_upsample_nearest_exact2d": _NEAREST_EXACT,
                   "_upsample_nearest_exact3d": _NEAREST_EXACT, "upsample_linear1d": _LINEAR,
                   "upsample_bilinear2d": _LINEAR, "upsample_trilinear3d": _LINEAR, "upsample_bicubic2d": _CUBIC,
                   "_upsample_bilinear2d_aa": _LINEAR_AA, "_upsample_bicubic2d_aa": _CUBIC_AA}


def _source_window(kind: str, r: float, align: bool) -> Tuple[float, float]:
    """(low, high): output o reads input positions within [o*r + low, o*r + high]."""
    if kind in (_NEAREST, _PIXEL_SHUFFLE):  # floor(o*r)
        return -1.0, 0.0
    if kind == _NEAREST_EXACT:  # floor((o + 1/2)*r)
        return r / 2 - 1, r / 2
    centre = 0.0 if align else r / 2 - 0.5  # the source coordinate x of output o, less o*r
    if kind == _LINEAR:  # floor(x) and the next one (x clamped at 0, which stays inside)
        return centre - 1, centre + 1
    if kind == _CUBIC:  # floor(x) - 1 .. floor(x) + 2, clamped into the input
        return centre - 2, centre + 2
    # antialias: taps from int(c - support + 1/2) to int(c + support + 1/2) - 1 around c = r*(o + 1/2), the
    # support widened by the downscale; with align_corners the centre may sit anywhere from r*o to r*(o + 1/2)
    support = (1.0 if kind == _LINEAR_AA else 2.0) * max(r, 1.0)
    return (-support - 0.5 if align else r / 2 - support - 0.5), r / 2 + support - 0.5


def _resampler(kind: str) -> Rule:
    """Upsampling, resizing (any mode, antialias too) and pixel shuffle: an enclosing bound, from the source
    positions each operator reads at the scale it really uses (``1/scale_factor`` when given, which differs
    from in/out when the output size was rounded)."""
    def rule(args, kwargs, out, field):
        if field.merged is not None:
            return None
        if kind == _PIXEL_SHUFFLE:
            align, scales = False, ()
        elif kind in (_NEAREST, _NEAREST_EXACT):  # (self, output_size, scales...)
            align, scales = False, args[2:]
        else:  # (self, output_size, align_corners, scales...)
            align, scales = bool(args[2] if len(args) > 2 else kwargs.get("align_corners", False)), args[3:]
        scales = tuple(scales) + tuple(kwargs[k] for k in ("scales", "scales_d", "scales_h", "scales_w") if k in kwargs)
        return _resample_axes(field, args[0], out, kind, align, scales)

    return rule


def _resample_axes(field: Field, x, out, kind: str, align: bool, scales) -> Field:
    axes = list(field.axes)
    for i, dim in enumerate(field.dims):
        ins, outs = x.shape[dim], out.shape[dim]
        slot = dim - (x.dim() - len(scales))  # the scales are those of the last len(scales) dims
        scale = scales[slot] if 0 <= slot < len(scales) else None
        if align:
            r = (ins - 1) / (outs - 1) if outs > 1 else 0.0
        else:
            r = 1 / scale if scale else ins / outs
        low, high = _source_window(kind, r, align)
        a = axes[i]
        axes[i] = Axis(a.size + (high - low) * a.jump, a.jump * r, a.start + (low + high) / 2 * a.jump)
    return Field(field.dims, tuple(axes), False)


def _pixel_unshuffle(args, kwargs, out, field):
    if field.merged is not None:
        return None
    factor = int(args[1] if len(args) > 1 else kwargs["downscale_factor"])
    return Field(field.dims, tuple(a.window(factor, factor, 0) for a in field.axes), field.exact)


def _same_layout(args, kwargs, out, field):
    """Operators that keep every position where it is (norms, dropout, copies)."""
    x = args[0]
    value = out[0] if isinstance(out, (tuple, list)) else out
    if value.dim() != x.dim() or any(value.shape[d] != x.shape[d] for d in field.dims):
        return None
    return field


def _softmax(args, kwargs, out, field):
    """Softmax along a spatial axis mixes every position on it."""
    return _mixed_over(field, (args[1] % args[0].dim(),), True)


def _slice(args, kwargs, out, field):
    """``x[..., a:b:s]``: along a spatial axis the first centre moves by ``a`` and the jump grows ``s`` times."""
    x = args[0]
    get = lambda i, name, default: args[i] if len(args) > i else kwargs.get(name, default)  # noqa: E731
    dim = get(1, "dim", 0) % x.dim()
    if dim not in field.dims:
        return field
    if field.merged is not None:
        return None
    start, step = get(2, "start", 0) or 0, get(4, "step", 1) or 1
    if start < 0:
        start += x.shape[dim]
    start = max(0, min(start, x.shape[dim]))
    axes = tuple(Axis(a.size, a.jump * step, a.start + start * a.jump) if d == dim else a
                 for a, d in zip(field.axes, field.dims))
    return Field(field.dims, axes, field.exact)


def _select(args, kwargs, out, field):
    """``x[:, i]`` on a non-spatial dim drops it; selecting one spatial position is not a field of a tensor."""
    x = args[0]
    dim = args[1] % x.dim()
    if dim in field.dims:
        return None
    return Field(tuple(d - 1 if d > dim else d for d in field.dims), field.axes, field.exact, field.merged)


def _permute(args, kwargs, out, field):
    order = [d % args[0].dim() for d in args[1]]
    return Field(tuple(order.index(d) for d in field.dims), field.axes, field.exact, field.merged)


def _transpose(args, kwargs, out, field):
    n = args[0].dim()
    a, b = args[1] % n, args[2] % n
    swap = {a: b, b: a}
    return Field(tuple(swap.get(d, d) for d in field.dims), field.axes, field.exact, field.merged)


def _unsqueeze(args, kwargs, out, field):
    dim = args[1] % (args[0].dim() + 1)
    return Field(tuple(d + 1 if d >= dim else d for d in field.dims), field.axes, field.exact, field.merged)


def _squeeze(args, kwargs, out, field):
    x = args[0]
    dims = args[1] if len(args) > 1 else [d for d in range(x.dim()) if x.shape[d] == 1]
    dims = {d % x.dim() for d in (dims if isinstance(dims, (list, tuple)) else [dims]) if x.shape[d] == 1}
    if dims & set(field.dims):
        return None
    return Field(tuple(d - sum(1 for r in dims if r < d) for d in field.dims), field.axes, field.exact, field.merged)


def _view_groups(before, after):
    """Pair the dims of a reshape: [(dims of ``before``, dims of ``after``)] with equal products, in order."""
    groups, i, j = [], 0, 0
    while i < len(before) or j < len(after):
        gi, gj = [i] if i < len(before) else [], [j] if j < len(after) else []
        pi = before[i] if i < len(before) else 1
        pj = after[j] if j < len(after) else 1
        i, j = i + 1, j + 1
        while pi != pj:
            if pi < pj and i < len(before):
                pi *= before[i]
                gi.append(i)
                i += 1
            elif j < len(after):
                pj *= after[j]
                gj.append(j)
                j += 1
            else:
                return None
        groups.append((tuple(gi), tuple(gj)))
    return groups


def _view(args, kwargs, out, field):
    """Reshapes: dims that stay keep their axes; spatial dims merged into one (with others) are remembered
    and restored when a reshape splits them back; anything else unknown."""
    before, after = tuple(args[0].shape), tuple(out.shape)
    groups = _view_groups(before, after)
    if groups is None:
        return None
    where = {d: (gi, gj) for gi, gj in groups for d in gi}
    if field.merged is not None:
        gi, gj = where[field.dims[0]]
        sizes, places = field.merged
        if len(gi) == 1 and len(gj) == 1:
            return Field((gj[0],) * len(field.axes), field.axes, field.exact, field.merged)
        if len(gi) == 1 and tuple(after[d] for d in gj) == sizes:
            return Field(tuple(gj[p] for p in places), field.axes, field.exact)
        return None
    spatial = [where[d] for d in field.dims]
    if all(len(gi) == 1 and len(gj) == 1 for gi, gj in spatial):
        return Field(tuple(gj[0] for _, gj in spatial), field.axes, field.exact)
    gi, gj = spatial[0]
    if len(gj) == 1 and all(g == spatial[0] for g in spatial):  # merged into one dim of the output
        # (flatten(1) too: each feature still reads its own position's field, until a linear layer mixes them)
        return Field((gj[0],) * len(field.axes), field.axes, field.exact,
                     (tuple(before[d] for d in gi), tuple(gi.index(d) for d in field.dims)))
    return None


def _mixed_over(field: Field, mixed, same_rank: bool) -> FieldLike:
    """An operand's share of an output when the operator reads every position along its dims ``mixed``: the
    whole input when they hold all of its spatial axes; unknown when they hold only some (whole along one axis,
    local along another: no (size, jump) says that) or when the output's dims do not line up with the operand's;
    else its field, carried to the same dims of the output."""
    hit = [d in mixed for d in field.dims]
    if all(hit):
        return WHOLE
    if any(hit) or not same_rank:
        return UNKNOWN
    return field


def _mixing_rule(first: int, *mixed: Callable[[int], Tuple[int, ...]]):
    """Products (mm/bmm, operands at ``first``, ``first + 1``), attention (query, key, value) and linear layers:
    ``mixed[i](rank)`` are the dims of operand ``i`` whose every position each output element reads (a matmul's
    summed dims, the keys' and values' sequence, the features a projection mixes); the other dims keep their
    positions in the output (an attention's batch dims, the query's sequence)."""
    def rule(tracker, args, kwargs, out) -> FieldLike:
        value = out[0] if isinstance(out, (tuple, list)) else out
        results = []
        for operand, dims_of in zip(args[first:first + len(mixed)], mixed):
            field = tracker.fields.get(operand) if isinstance(operand, torch.Tensor) else None
            if isinstance(field, Field):
                field = _mixed_over(field, dims_of(operand.dim()), operand.dim() == value.dim())
            if field is not None:
                results.append(field)
        return _union(results) if results else None

    return rule


_LAST = lambda n: (n - 1,)  # noqa: E731
_SECOND_LAST = lambda n: (n - 2,)  # noqa: E731
_LAST_TWO = lambda n: (n - 2, n - 1)  # noqa: E731


def _reduce(args, kwargs, out, field):
    x = args[0]
    dims = args[1] if len(args) > 1 else kwargs.get("dim")
    if dims is None:
        return WHOLE
    dims = {d % x.dim() for d in (dims if isinstance(dims, (list, tuple)) else [dims])}
    keep = bool(args[2] if len(args) > 2 else kwargs.get("keepdim", False))
    if dims >= set(field.dims):
        return WHOLE
    if dims & set(field.dims):
        if not keep or field.merged is not None:
            return None  # an input axis left the tensor while others stay: no field of this tensor
        # the reduced axes become one window over all of their positions; the others keep theirs
        return Field(field.dims, tuple(a.window(x.shape[d], x.shape[d], 0) if d in dims else a
                                       for a, d in zip(field.axes, field.dims)), field.exact)
    if keep:
        return field
    return Field(tuple(d - sum(1 for r in dims if r < d) for d in field.dims), field.axes, field.exact, field.merged)


def _rules() -> Dict[object, Rule]:
    aten = torch.ops.aten
    table: Dict[object, Rule] = {aten.convolution: _conv, aten.constant_pad_nd: _pad,
                                 aten.pixel_unshuffle: _pixel_unshuffle, aten.pixel_shuffle: _resampler(_PIXEL_SHUFFLE),
                                 aten.permute: _permute, aten.transpose: _transpose, aten.unsqueeze: _unsqueeze,
                                 aten.squeeze: _squeeze, aten.view: _view, aten._unsafe_view: _view,
                                 aten.reshape: _view}
    for nd in (1, 2, 3):
        for name, rule in ((f"max_pool{nd}d_with_indices", _pool(nd, True)), (f"max_pool{nd}d", _pool(nd, True)),
                           (f"avg_pool{nd}d", _pool(nd, False)), (f"_adaptive_avg_pool{nd}d", _adaptive(nd)),
                           (f"adaptive_avg_pool{nd}d", _adaptive(nd)), (f"adaptive_max_pool{nd}d", _adaptive(nd)),
                           (f"reflection_pad{nd}d", _pad), (f"replication_pad{nd}d", _pad)):
            packet = getattr(aten, name, None)
            if packet is not None:
                table[packet] = rule
    for name, kind in _RESAMPLE_KINDS.items():
        packet = getattr(aten, name, None)
        if packet is not None:
            table[packet] = _resampler(kind)
    for name in ("native_batch_norm", "_native_batch_norm_legit", "_native_batch_norm_legit_no_training",
                 "native_group_norm", "native_layer_norm", "native_dropout", "clone", "_to_copy", "detach",
                 "alias", "contiguous", "expand"):
        packet = getattr(aten, name, None)
        if packet is not None:
            table[packet] = _same_layout
    table[aten._softmax] = table[aten._log_softmax] = _softmax
    table[aten.slice] = _slice
    table[aten.select] = _select
    for name in ("mean", "sum", "amax", "amin", "max", "min", "var", "std", "var_mean", "std_mean", "logsumexp"):
        table[getattr(aten, name)] = _reduce
    if hasattr(aten, "flatten"):
        table[aten.flatten] = _view
    return table


_aten = torch.ops.aten
SPLITS = frozenset(getattr(_aten, name) for name in ("split", "split_with_sizes", "unsafe_split",
                                                     "unsafe_split_with_sizes", "unbind") if hasattr(_aten, name))
# operators whose outputs read every position along some dims of their operands (see _mixing_rule)
_PRODUCT = _mixing_rule(0, _LAST, _SECOND_LAST)
_SDPA = _mixing_rule(0, _LAST, _LAST_TWO, _SECOND_LAST)  # query: features; key: sequence and features; value: sequence
_PRODUCT_WITH_BIAS = _mixing_rule(1, _LAST, _SECOND_LAST)  # addmm/baddbmm: the bias comes first
MIXING = {_aten.mm: _PRODUCT, _aten.bmm: _PRODUCT, _aten.matmul: _PRODUCT, _aten.addmm: _PRODUCT_WITH_BIAS,
          _aten.baddbmm: _PRODUCT_WITH_BIAS, _aten.linear: _mixing_rule(0, _LAST)}
for _name in ("_scaled_dot_product_flash_attention", "_scaled_dot_product_efficient_attention",
              "_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_cudnn_attention",
              "_scaled_dot_product_fused_attention_overrideable"):
    if hasattr(_aten, _name):
        MIXING[getattr(_aten, _name)] = _SDPA
if hasattr(_aten, "_native_multi_head_attention"):  # projections in and out: every operand's features mix too
    MIXING[_aten._native_multi_head_attention] = _mixing_rule(0, _LAST, _LAST_TWO, _LAST_TWO)


class _WeakTensorMap:
    """tensor -> value without keeping the tensor alive: keyed by id, checked against a weak reference
    (a dead tensor's id may be reused; its entry then no longer matches). Lives for one pass."""

    __slots__ = ("data",)

    def __init__(self):
        self.data = {}

    def __bool__(self) -> bool:
        return bool(self.data)

    def get(self, tensor, default=None):
        entry = self.data.get(id(tensor))
        if entry is None or entry[0]() is not tensor:
            return default
        return entry[1]

    def __contains__(self, tensor) -> bool:
        return self.get(tensor) is not None

    def __setitem__(self, tensor, value) -> None:
        self.data[id(tensor)] = (weakref.ref(tensor), value)


class FieldTracker:
    """A dispatch-mode observer that gives every operator output derived from the input its field."""

    def __init__(self):
        self.fields = _WeakTensorMap()
        self.rules = _rules()
        self.handlers: Dict[object, object] = {}  # operator overload -> how its output's field is made

    def add_input(self, tensor) -> None:
        field = input_field(tensor)
        if field is not None:
            self.fields[tensor] = field

    def field_of(self, value) -> FieldLike:
        """The field of a module output: its first tensor's."""
        if isinstance(value, torch.Tensor):
            return self.fields.get(value)
        if isinstance(value, (tuple, list)) and value:
            return self.field_of(value[0])
        if isinstance(value, dict) and value:
            return self.field_of(next(iter(value.values())))
        return None

    def observe(self, func, args, kwargs, out) -> None:
        handler = self.handlers.get(func)
        if handler is None:
            handler = self.handlers[func] = self._handler_for(func)
        if handler is False:
            return
        result = handler(args, kwargs or {}, out)
        if result is None:
            return
        if isinstance(out, torch.Tensor):
            self.fields[out] = result
            return
        if not isinstance(out, (tuple, list)):
            return
        # several outputs (values and indices, a norm's statistics): each is derived from the input too; one
        # shaped like the first has its positions (max-pool indices, argmax of max.dim), another's are not known
        first = None
        for tensor in out:
            if isinstance(tensor, torch.Tensor):
                if first is None:
                    first = tensor
                same = tensor is first or tensor.shape == first.shape or not isinstance(result, Field)
                self.fields[tensor] = result if same else UNKNOWN

    def _handler_for(self, func):
        """How this operator's output field follows from its inputs' (False: it never carries one)."""
        packet = func._overloadpacket
        if packet is torch.ops.aten.cat:
            return self._cat
        if packet is torch.ops.aten.stack:
            return self._stack
        if packet in SPLITS:
            return self._split
        mixing = MIXING.get(packet)
        if mixing is not None:
            return functools.partial(mixing, self)
        rule = self.rules.get(packet)
        if rule is not None:
            return functools.partial(self._windowed, rule)
        return self._pointwise if _is_pointwise(func) else self._unknown

    def _unknown(self, args, kwargs, out) -> FieldLike:
        """An operator without a rule: its output is marked unknown when it takes a tracked tensor."""
        fields = self.fields
        for a in _tensors(args):
            field = fields.get(a)
            if field is not None:
                return WHOLE if field == WHOLE else UNKNOWN
        return None

    def _windowed(self, rule, args, kwargs, out) -> FieldLike:
        first = args[0] if args else None
        field = self.fields.get(first) if isinstance(first, torch.Tensor) else None
        if field is None or field == WHOLE or field == UNKNOWN:
            return field
        result = rule(args, kwargs, out, field)
        return UNKNOWN if result is None else result

    def _pointwise(self, args, kwargs, out) -> FieldLike:
        """The union of the fields of its tensor inputs, placed on the output's dims as broadcasting aligns them."""
        get = self.fields.get
        known = []
        for a in args:
            if not isinstance(a, torch.Tensor):
                continue
            field = get(a)
            if isinstance(field, Field):
                shift = out.dim() - a.dim()
                if any(a.shape[d] != out.shape[d + shift] for d in field.dims):
                    field = UNKNOWN  # a spatial dim broadcast from size 1
                elif shift:
                    field = Field(tuple(d + shift for d in field.dims), field.axes, field.exact, field.merged)
            if field is not None:
                known.append(field)
        if not known:
            return None
        return known[0] if len(known) == 1 else _union(known)

    def _split(self, args, kwargs, out) -> FieldLike:
        """split/chunk/unbind: every piece gets a field (the output is a list, so it is set here, piece by
        piece). Along a non-spatial dim each piece keeps the input's field; along a spatial one a piece starts
        that many positions further (split), or is one position of the axis (unbind: no field of a tensor)."""
        x = args[0]
        field = self.fields.get(x) if isinstance(x, torch.Tensor) else None
        if field is None:
            return None
        unbind = bool(out) and out[0].dim() < x.dim()  # unbind(x, dim); split(x, sizes, dim)
        where = 1 if unbind else 2
        dim = (args[where] if len(args) > where else kwargs.get("dim", 0)) % x.dim()
        offset = 0
        for piece in out:
            result = field
            if isinstance(field, Field) and dim in field.dims:
                if unbind or field.merged is not None:
                    result = UNKNOWN
                else:
                    result = Field(field.dims, tuple(Axis(a.size, a.jump, a.start + offset * a.jump) if d == dim else a
                                                     for a, d in zip(field.axes, field.dims)), field.exact)
            elif isinstance(field, Field) and unbind:  # each piece is a select along a non-spatial dim
                result = _select((x, dim), {}, piece, field)
            offset += piece.shape[dim] if not unbind else 1
            self.fields[piece] = result
        return None

    def _cat(self, args, kwargs, out) -> FieldLike:
        known = [f for f in (self.fields.get(t) for t in args[0] if isinstance(t, torch.Tensor)) if f is not None]
        if not known:
            return None
        dim = (args[1] if len(args) > 1 else kwargs.get("dim", 0)) % out.dim()
        if any(isinstance(f, Field) and dim in f.dims for f in known):
            return UNKNOWN  # joined along a spatial axis: positions from different inputs, no single field
        return _union(known)


    def _stack(self, args, kwargs, out) -> FieldLike:
        """stack along a new (never spatial) dim: output index k holds input k, so the union of their fields."""
        dim = (args[1] if len(args) > 1 else kwargs.get("dim", 0)) % out.dim()
        known = []
        for t in args[0]:
            field = self.fields.get(t) if isinstance(t, torch.Tensor) else None
            if isinstance(field, Field):
                if field.merged is not None:
                    return UNKNOWN
                field = Field(tuple(d + 1 if d >= dim else d for d in field.dims), field.axes, field.exact)
            if field is not None:
                known.append(field)
        return _union(known) if known else None


def _tensors(args):
    """The tensors among an operator's arguments, in a list argument too (stack, index's indices)."""
    for a in args:
        if isinstance(a, torch.Tensor):
            yield a
        elif isinstance(a, (list, tuple)):
            yield from (t for t in a if isinstance(t, torch.Tensor))


# elementwise operators that torch does not tag pointwise (checked on torch 2.14)
UNTAGGED_ELEMENTWISE = frozenset({"hardswish", "prelu", "_prelu_kernel", "log_sigmoid_forward", "rrelu_with_noise"})


def _is_pointwise(func) -> bool:
    """Tagged pointwise, listed above, or the in-place twin (``hardswish_``) of either."""
    if torch.Tag.pointwise in func.tags:
        return True
    name = func._overloadpacket.__name__
    base = name[:-1] if name.endswith("_") else name
    if base in UNTAGGED_ELEMENTWISE:
        return True
    twin = getattr(torch.ops.aten, base, None) if base != name else None
    overload = getattr(twin, func._overloadname, None) if twin is not None else None
    return overload is not None and torch.Tag.pointwise in overload.tags


def _union(fields) -> FieldLike:
    """Union of branch fields: WHOLE if any is whole, else UNKNOWN if any is unknown or they do not align."""
    if WHOLE in fields:
        return WHOLE
    result = fields[0]
    for other in fields[1:]:
        if result == UNKNOWN or other == UNKNOWN or result.dims != other.dims or result.merged != other.merged:
            return UNKNOWN
        axes = tuple(a.union(b) for a, b in zip(result.axes, other.axes))
        if any(a is None for a in axes):
            return UNKNOWN
        result = Field(result.dims, axes, result.exact and other.exact, result.merged)
    return result
