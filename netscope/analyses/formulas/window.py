"""Sliding-window arithmetic shared by convolutions, pools and unfold: one dimension at a time.

``out = floor((in + pad_left + pad_right - dilation*(kernel-1) - 1) / stride) + 1`` (``ceil`` in
ceil_mode, where PyTorch also drops a last window that would start inside the right padding). Besides
the number, it explains the dimension: the formula text, and the warnings a careful engineer wants.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import List, Tuple

from netscope.records import Finding, Severity

from netscope.analyses.formulas.registry import DimFormula


WINDOW_CODES = frozenset({"stride-skips-input", "ceil-mode-extra-window", "minimum-size", "asymmetric-padding"})


@dataclass(frozen=True)
class Unread:
    """Where one dimension's windows leave input positions unread."""

    size: int
    head: int  # before the first position read
    between: int  # between the first and last position read (kernel < stride, or dilation holes)
    tail: int  # after the last position read
    longest_gap: int  # the longest run of unread positions between two reads
    design_gap: int = 0  # the layer's own gap between reads (kernel < stride, dilation holes), at any input size

    @property
    def total(self) -> int:
        return self.head + self.between + self.tail

    @property
    def by_design(self) -> bool:
        """The windows skip positions on purpose (a 1x1 stride-2 downsample) and the edges skip no more: judged
        by the layer's own gap, so that a single window (a 2x2 input to that downsample) reads the same."""
        gap = max(self.longest_gap, self.design_gap)
        return gap > 0 and max(self.head, self.tail) <= gap


@dataclass(frozen=True)
class Window:
    """One spatial dimension of a sliding window."""

    kernel: int
    stride: int
    pad_left: int
    pad_right: int
    dilation: int = 1
    ceil_mode: bool = False

    @property
    def span(self) -> int:
        """How many input positions one window covers, holes included."""
        return self.dilation * (self.kernel - 1) + 1

    def output_size(self, size: int) -> int:
        """Output length for an input of ``size`` (may be < 1: the caller reports that as invalid)."""
        numerator = size + self.pad_left + self.pad_right - self.span
        if not self.ceil_mode:
            return numerator // self.stride + 1
        out = -((-numerator) // self.stride) + 1
        if (out - 1) * self.stride >= size + self.pad_left:
            out -= 1
        return out

    def text(self, name: str, size: int) -> str:
        out = self.output_size(size)
        pad = f"2*{self.pad_left}" if self.pad_left == self.pad_right else f"{self.pad_left} + {self.pad_right}"
        rounding = "ceil" if self.ceil_mode else "floor"
        body = f"{rounding}(({size} + {pad} - {self.dilation}*({self.kernel}-1) - 1) / {self.stride}) + 1"
        if self.ceil_mode and out != self._ceil_without_rule(size):
            body += " - 1 (the last window would start in the right padding)"
        return f"{name}: {body} = {out}"

    def _ceil_without_rule(self, size: int) -> int:
        numerator = size + self.pad_left + self.pad_right - self.span
        return -((-numerator) // self.stride) + 1

    def formula(self, name: str, size: int) -> DimFormula:
        return DimFormula(name, self.text(name, size), self.output_size(size))

    def read_mask(self, size: int) -> bytearray:
        """One byte per input position (padding excluded): 1 where some window reads it, 0 where none does."""
        out = self.output_size(size)
        if out < 1:
            return bytearray(size)
        reach = (out - 1) * self.stride + self.span + self.dilation  # room for every tap of every window
        marks = bytearray(max(reach, self.pad_left + size))
        last = self.stride * (out - 1) + 1
        for tap in range(0, self.span, self.dilation):  # tap j of every window at once: one strided slice
            marks[tap:tap + last:self.stride] = b"\x01" * out
        return marks[self.pad_left:self.pad_left + size]

    def unread(self, size: int) -> "Unread":
        """Input positions no window reads: before the first read, between reads, after the last read."""
        mask = self.read_mask(size)
        first = mask.find(1)
        if first < 0:
            return Unread(size, size, 0, 0, 0)  # the windows read padding only
        last = mask.rfind(1)
        inside = mask[first:last + 1]
        gap = max((len(run) for run in inside.split(b"\x01")), default=0)
        return Unread(size, first, inside.count(0), size - 1 - last, gap, self.design_gap)

    @property
    def design_gap(self) -> int:
        """The longest run of positions no window reads between reads, on an input long enough for three
        windows without padding: what the layer skips by design."""
        if self.stride <= 1 and self.dilation <= 1:
            return 0
        plain = Window(self.kernel, self.stride, 0, 0, self.dilation)
        inside = plain.read_mask(self.span + 2 * self.stride)
        inside = inside[:inside.rfind(1) + 1]
        return max((len(run) for run in inside.split(b"\x01")), default=0)

    def right_padding_read(self, size: int) -> int:
        out = self.output_size(size)
        last_end = (out - 1) * self.stride + self.span
        return max(0, min(self.pad_right, last_end - size - self.pad_left))


def window_notes(windows: Tuple[Window, ...], sizes: Tuple[int, ...], names: Tuple[str, ...],
                 *, smallest_ok: bool = True) -> Tuple[Finding, ...]:
    """Warnings about one call's windows: unread rows, ceil_mode windows, minimum sizes, asymmetric padding.

    A pure function of immutable values, remembered for the latest few hundred arguments: a network repeats a
    few window configurations on a few sizes, and each call is checked twice (module formula, operator)."""
    key = (tuple(windows), tuple(sizes), tuple(names), smallest_ok)
    try:
        return _remembered_notes(key)
    except TypeError:  # an unhashable size (a symbolic one): computed without the memo
        return _window_notes(*key)


@functools.lru_cache(maxsize=512)
def _remembered_notes(key) -> Tuple[Finding, ...]:
    return _window_notes(*key)


def _window_notes(windows: Tuple[Window, ...], sizes: Tuple[int, ...], names: Tuple[str, ...],
                  smallest_ok: bool) -> Tuple[Finding, ...]:
    skipped: List[str] = []
    subsampled: List[str] = []
    extra: List[str] = []
    minimum: List[str] = []
    asymmetric: List[str] = []
    for window, size, name in zip(windows, sizes, names, strict=True):
        out = window.output_size(size)
        unread = window.unread(size)
        if unread.total:
            (subsampled if unread.by_design else skipped).append(unread_text(window, unread, name))
        if window.ceil_mode:
            floor_out = Window(window.kernel, window.stride, window.pad_left, window.pad_right,
                               window.dilation, False).output_size(size)
            if out > floor_out:
                extra.append(f"{name}: ceil_mode adds a window that hangs over the edge ({floor_out} -> {out})")
        if smallest_ok and out == 1 and size > 1 and window.output_size(size - 1) < 1:
            minimum.append(f"{name}: the output is 1 and an input of {size - 1} would fail")
        right = window.right_padding_read(size)
        if window.pad_left != right and (window.pad_left or right):
            asymmetric.append(f"{name}: windows read {window.pad_left} padded position(s) on the left but "
                              f"{right} on the right, so the output is shifted against the input")
    notes = []
    if skipped:
        notes.append(Finding(Severity.WARNING, "stride-skips-input", "; ".join(skipped),
                             fix="pad or crop the input so (size + padding - kernel reach) is a multiple of the stride"))
    if subsampled:
        notes.append(Finding(Severity.INFO, "stride-skips-input", "; ".join(subsampled),
                             fix="by design for a subsampling layer (kernel smaller than the stride); "
                                 "use a kernel as large as the stride to read every position"))
    if extra:
        # info: the layer's author asked for it (GoogLeNet's and SqueezeNet's Caffe-style pools)
        notes.append(Finding(Severity.INFO, "ceil-mode-extra-window", "; ".join(extra),
                             fix="expected with ceil_mode=True; use ceil_mode=False to drop the partial window"))
    if minimum:
        # info, not a warning: a head whose kernel covers its whole input (VGG's 7x7 conv-as-linear) is built so
        notes.append(Finding(Severity.INFO, "minimum-size", "; ".join(minimum),
                             fix="this input is the smallest this layer accepts; do not feed smaller inputs"))
    if asymmetric:
        notes.append(Finding(Severity.INFO, "asymmetric-padding", "; ".join(asymmetric),
                             fix="choose an input size where (size + 2*padding - kernel) divides by the stride"))
    return tuple(notes)


def unread_text(window: Window, unread: Unread, name: str) -> str:
    """Which positions of one dimension no window reads, and why, with the numbers."""
    size = unread.size
    reasons = []
    if unread.between:
        taps = f"{window.kernel} position(s) {window.dilation} apart" if window.dilation > 1 else \
            f"{window.kernel} position(s)"
        reasons.append(f"{unread.between} between windows (each reads {taps} and windows step by {window.stride})")
    edges = [f"the first {unread.head}" if unread.head else "", f"the last {unread.tail}" if unread.tail else ""]
    edge = " and ".join(e for e in edges if e)
    if edge:
        why = ""
        if unread.tail and not window.ceil_mode:
            room = size + window.pad_left + window.pad_right - window.span
            why = (f": ({size} + {window.pad_left} + {window.pad_right} - {window.span}) = {room} is "
                   f"{room % window.stride} more than a multiple of the stride {window.stride}")
        reasons.append(f"{edge} beyond the windows{why}")
    return f"{name}: {unread.total} of {size} input positions are never read: " + "; ".join(reasons)
