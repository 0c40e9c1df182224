"""Convolutions and pools as the kernel ran them: the aten call's real input, padding, stride and dilation.

A module may pad inside its ``forward`` (timm's ``Conv2dSame``, causal convolutions) or call
``F.conv2d``/``F.max_pool2d`` itself; checking the operator call, not the module's attributes, judges
what the layer really received. :class:`WindowOpLog` watches the dispatch mode's operators and keeps
each windowed call, keyed by the module call that ran it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Dict, List, Optional, Tuple

import torch

from netscope.analyses.formulas.registry import DimFormula, dim_names
from netscope.analyses.formulas.window import Window

Shape = Tuple[int, ...]


@dataclass(frozen=True)
class WindowOp:
    """One convolution or pool operator call: its spatial windows and the shapes it really saw."""

    op: str  # aten name, e.g. "convolution", "max_pool2d_with_indices"
    input_shape: Shape
    output_shape: Shape
    windows: Tuple[Window, ...]  # one per spatial dimension of the operator
    transposed: bool = False
    # (left, right) per spatial dimension that an F.pad right before it in the same call added to its input
    forward_pad: Tuple[Tuple[int, int], ...] = ()
    output_padding: Tuple[int, ...] = ()  # a transposed convolution's, one per spatial dimension

    def unpadded(self) -> "WindowOp":
        """The same windows on the tensor before ``forward_pad``: its padding counted as the window's own."""
        if not self.forward_pad:
            return self
        cut = len(self.input_shape) - self.nd
        sizes = tuple(n - left - right for n, (left, right) in zip(self.sizes, self.forward_pad))
        windows = tuple(replace(w, pad_left=w.pad_left + left, pad_right=w.pad_right + right)
                        for w, (left, right) in zip(self.windows, self.forward_pad))
        return replace(self, input_shape=self.input_shape[:cut] + sizes, windows=windows, forward_pad=())

    @property
    def nd(self) -> int:
        return len(self.windows)

    @property
    def sizes(self) -> Tuple[int, ...]:
        return self.input_shape[-self.nd:]

    def spatial(self, nd: int) -> Optional["WindowOp"]:
        """The same call seen as ``nd``-dimensional: ``max_pool1d`` runs as a 2-d pool over a size-1 axis."""
        extra = self.nd - nd
        if extra < 0:
            return None
        if extra == 0:
            return self
        for window, size in zip(self.windows[:extra], self.sizes[:extra]):
            if size != 1 or window.kernel != 1 or window.stride != 1 or window.pad_left or window.pad_right:
                return None
        cut = len(self.input_shape) - self.nd
        return WindowOp(self.op, self.input_shape[:cut] + self.input_shape[cut + extra:],
                        self.output_shape[:cut] + self.output_shape[cut + extra:], self.windows[extra:],
                        self.transposed, output_padding=self.output_padding[extra:])

    def dims(self) -> Tuple[DimFormula, ...]:
        if self.transposed:
            from netscope.analyses.formulas.conv_transpose import transposed_dim

            extra = self.output_padding or (0,) * self.nd
            return tuple(transposed_dim(name, n, w.stride, w.pad_left, w.dilation, w.kernel, op)
                         for w, name, n, op in zip(self.windows, dim_names(self.nd), self.sizes, extra))
        return tuple(w.formula(n, s) for w, n, s in zip(self.windows, dim_names(self.nd), self.sizes))

    def expected_shape(self) -> Shape:
        return tuple(self.output_shape[:-self.nd]) + tuple(d.expected for d in self.dims())


def operator_ints(value, count: int) -> Tuple[int, ...]:
    """An aten int-list argument (one int, or one per dimension) as ``count`` ints."""
    if type(value) is list and len(value) == count:  # what aten passes: a list of ints, one per dimension
        return tuple(value)
    if isinstance(value, (list, tuple)):
        values = tuple(int(v) for v in value)
        return values * count if len(values) == 1 and count > 1 else values
    return (int(value),) * count


def _arg(args, kwargs, position: int, name: str, default):
    if len(args) > position:
        return args[position]
    return kwargs.get(name, default)


def _convolution(args, kwargs, out) -> Optional[WindowOp]:
    x, weight = args[0], args[1]  # shapes
    nd = len(weight) - 2
    stride = operator_ints(_arg(args, kwargs, 3, "stride", 1), nd)
    padding = operator_ints(_arg(args, kwargs, 4, "padding", 0), nd)
    dilation = operator_ints(_arg(args, kwargs, 5, "dilation", 1), nd)
    transposed = bool(_arg(args, kwargs, 6, "transposed", False))
    output_padding = operator_ints(_arg(args, kwargs, 7, "output_padding", 0), nd) if transposed else ()
    kernels = tuple(weight[2:])
    windows = tuple(Window(k, s, p, p, d) for k, s, p, d in zip(kernels, stride, padding, dilation))
    return WindowOp("convolution", tuple(x), tuple(out), windows, transposed, output_padding=output_padding)


def _pool(name: str, nd: int, dilated: bool):
    def parse(args, kwargs, out) -> Optional[WindowOp]:
        x = args[0]  # a shape
        kernels = operator_ints(_arg(args, kwargs, 1, "kernel_size", 1), nd)
        stride = _arg(args, kwargs, 2, "stride", ())
        strides = operator_ints(stride, nd) if stride else kernels
        padding = operator_ints(_arg(args, kwargs, 3, "padding", 0), nd)
        dilation = operator_ints(_arg(args, kwargs, 4, "dilation", 1), nd) if dilated else (1,) * nd
        ceil_mode = bool(_arg(args, kwargs, 5 if dilated else 4, "ceil_mode", False))
        windows = tuple(Window(k, s, p, p, d, ceil_mode) for k, s, p, d in zip(kernels, strides, padding, dilation))
        return WindowOp(name, tuple(x), tuple(out), windows)

    return parse


@dataclass(frozen=True)
class _Pad:
    """An ``F.pad`` (constant, reflect, replicate): its output shape and (left, right) per padded dimension,
    last dimension first as aten lists them."""

    output_shape: Shape
    pads: Tuple[Tuple[int, int], ...]


def _pad(args, kwargs, out) -> _Pad:
    flat = list(_arg(args, kwargs, 1, "pad", ()))
    return _Pad(tuple(out), tuple(zip(flat[0::2], flat[1::2])))


@dataclass(frozen=True)
class _Unsqueeze:
    """An ``unsqueeze``: the 1-d pools (``F.avg_pool1d``, ``F.max_pool1d``, ``F.lp_pool1d``) run as 2-d ones on
    their input unsqueezed at -2, a size-1 axis that is not one of the layer's dimensions; a convolution on an
    unbatched input runs on it unsqueezed at 0."""

    output_shape: Shape
    dim: int  # where the new axis is, counted from the front of the output


def _unsqueeze(args, kwargs, out) -> _Unsqueeze:
    dim = int(_arg(args, kwargs, 1, "dim", 0))
    return _Unsqueeze(tuple(out), dim + len(out) if dim < 0 else dim)


def _as_pool1d(op: WindowOp, made: Optional[_Unsqueeze]) -> WindowOp:
    """A 2-d pool on an input unsqueezed right before it at the second-to-last axis: the 1-d pool it implements."""
    if made is None or op.nd != 2 or op.transposed or "pool2d" not in op.op or \
            tuple(op.input_shape) != made.output_shape or made.dim != len(op.input_shape) - 2:
        return op
    return op.spatial(1) or op


def _as_unbatched(op: WindowOp, made: Optional[_Unsqueeze], pad: Optional[_Pad] = None) -> WindowOp:
    """A convolution on an input unsqueezed at 0 before it (``F.conv2d`` on a (C, H, W) input adds the batch and
    squeezes it off the result), right before it or with ``pad`` (its 'same' padding) between: the call as the
    layer saw it, without that batch of one."""
    made_input = pad.output_shape if pad is not None else made.output_shape if made is not None else None
    if made is None or op.op != "convolution" or made.dim != 0 or tuple(op.input_shape) != made_input or \
            len(op.input_shape) != op.nd + 2 or len(made.output_shape) != op.nd + 2 or op.output_shape[:1] != (1,):
        return op
    return replace(op, input_shape=op.input_shape[1:], output_shape=op.output_shape[1:])


def _forward_pad(op: WindowOp, pad: Optional[_Pad]) -> WindowOp:
    """``op`` with the padding of the pad that made its input (not under ceil_mode, whose last-window rule
    depends on the operator's own padding)."""
    if pad is None or op.transposed or tuple(op.input_shape) != pad.output_shape or \
            any(w.ceil_mode for w in op.windows):
        return op
    per_dim = dict(enumerate(reversed(pad.pads)))  # first padded dim of the trailing ones -> (left, right)
    first = len(op.input_shape) - len(pad.pads)
    spatial = tuple(per_dim.get(i - first, (0, 0)) for i in range(len(op.input_shape) - op.nd, len(op.input_shape)))
    padded_other = any(per_dim.get(i - first, (0, 0)) != (0, 0) for i in range(len(op.input_shape) - op.nd))
    if padded_other or any(v < 0 for pair in spatial for v in pair) or not any(v for pair in spatial for v in pair):
        return op
    return replace(op, forward_pad=spatial)


def _parsers():
    aten = torch.ops.aten
    table = {aten.convolution: _convolution, aten.unsqueeze: _unsqueeze}
    for name in ("constant_pad_nd", "reflection_pad1d", "reflection_pad2d", "reflection_pad3d",
                 "replication_pad1d", "replication_pad2d", "replication_pad3d"):
        packet = getattr(aten, name, None)
        if packet is not None:
            table[packet] = _pad
    for nd in (1, 2, 3):
        for name, dilated in ((f"max_pool{nd}d_with_indices", True), (f"max_pool{nd}d", True),
                              (f"avg_pool{nd}d", False)):
            packet = getattr(aten, name, None)
            if packet is not None:
                table[packet] = _pool(name, nd, dilated)
    return table


class WindowOpLog:
    """A dispatch-mode observer: every convolution/pool operator call, under the module call running it.

    During the pass it keeps only shapes and the operator's plain arguments; :meth:`by_call` parses them
    afterwards, so the pass pays a tuple per call."""

    def __init__(self, recorder):
        # netscope.run.trace._Recorder's stack (never replaced), which says which call is running; not the recorder,
        # which holds this log through its leaf replay: a cycle kept a pass's calls alive until a full collection
        self.stack = recorder.stack
        self.parsers = _parsers()
        # (call index or None, parser, argument shapes/values, kwargs, output shape, (id of the first argument,
        # id of the output): which pad made which convolution's input, while both tensors are alive)
        self.raw: List[tuple] = []

    def observe(self, func, args, kwargs, out) -> None:
        parser = self.parsers.get(func._overloadpacket)
        if parser is None:
            return
        light = tuple(a.shape if isinstance(a, torch.Tensor) else a for a in args)
        value = out[0] if isinstance(out, (tuple, list)) else out
        stack = self.stack
        self.raw.append((stack[-1].index if stack else None, parser, light, kwargs or {}, value.shape,
                         (id(args[0]), id(value))))

    def by_call(self) -> Dict[int, List[WindowOp]]:
        """Call index -> the windowed operators it ran itself, in order."""
        calls: Dict[int, List[WindowOp]] = {}
        # call index -> (id of its output, the pad it ran last, id of that pad's input: an unsqueeze's output, maybe)
        last_pad: Dict[int, Tuple[int, _Pad, int]] = {}
        # the same for the unsqueeze it ran last, with the id of that unsqueeze's input (an F.pad's output, maybe)
        last_unsqueeze: Dict[int, Tuple[int, _Unsqueeze, int]] = {}
        for index, parser, args, kwargs, out, (first, made_id) in self.raw:
            if index is None:
                continue
            made = parser(args, kwargs, out)
            if isinstance(made, _Pad):
                last_pad[index] = (made_id, made, first)
                continue
            if isinstance(made, _Unsqueeze):
                last_unsqueeze[index] = (made_id, made, first)
                continue
            pad_id, pad, pad_source = last_pad.pop(index, (None, None, None))
            unsqueeze_id, unsqueeze, source = last_unsqueeze.pop(index, (None, None, None))
            if pad is not None and pad_id == first and unsqueeze_id == pad_source and len(pad.pads) <= made.nd:
                # unsqueeze(0) -> pad -> convolution: 'same' padding of an unbatched input
                seen = _as_unbatched(made, unsqueeze, pad)
                if seen is not made:
                    pad = _Pad(pad.output_shape[1:], pad.pads)
                calls.setdefault(index, []).append(_forward_pad(seen, pad))
                continue
            unsqueezed = unsqueeze if unsqueeze_id == first else None
            seen = _as_unbatched(_as_pool1d(made, unsqueezed), unsqueezed)
            read = source if seen is not made else first  # a 1-d pool's or unbatched input is the tensor unsqueezed
            calls.setdefault(index, []).append(_forward_pad(seen, pad if pad_id == read else None))
        return calls
