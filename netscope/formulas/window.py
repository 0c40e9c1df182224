"""Sliding-window arithmetic shared by convolutions, pools and unfold: one dimension at a time.

``out = floor((in + pad_left + pad_right - dilation*(kernel-1) - 1) / stride) + 1`` (``ceil`` in
ceil_mode, where PyTorch also drops a last window that would start inside the right padding). Besides
the number, it explains the dimension: the formula text, and the warnings a careful engineer wants.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Tuple

from netscope.records import Finding, Severity

from netscope.formulas.registry import DimFormula


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

    def unread_rows(self, size: int) -> int:
        """Input positions at the end that no window reads (the stride does not divide evenly)."""
        out = self.output_size(size)
        if out < 1:
            return 0
        last_end = (out - 1) * self.stride + self.span  # exclusive, in padded coordinates
        return max(0, size + self.pad_left - last_end)

    def right_padding_read(self, size: int) -> int:
        out = self.output_size(size)
        last_end = (out - 1) * self.stride + self.span
        return max(0, min(self.pad_right, last_end - size - self.pad_left))


def window_notes(windows: Tuple[Window, ...], sizes: Tuple[int, ...], names: Tuple[str, ...],
                 *, smallest_ok: bool = True) -> Tuple[Finding, ...]:
    """Warnings about one call's windows: unread rows, ceil_mode windows, minimum sizes, asymmetric padding."""
    unread: List[str] = []
    extra: List[str] = []
    minimum: List[str] = []
    asymmetric: List[str] = []
    for window, size, name in zip(windows, sizes, names, strict=True):
        out = window.output_size(size)
        rows = window.unread_rows(size)
        if rows:
            unread.append(f"{name}: the last {rows} of {size} input positions are never read "
                          f"(stride {window.stride} does not divide the padded size evenly)")
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
    if unread:
        notes.append(Finding(Severity.WARNING, "stride-skips-input", "; ".join(unread),
                             fix="pad or crop the input so (size + padding - kernel) is a multiple of the stride"))
    if extra:
        notes.append(Finding(Severity.WARNING, "ceil-mode-extra-window", "; ".join(extra),
                             fix="expected with ceil_mode=True; use ceil_mode=False to drop the partial window"))
    if minimum:
        notes.append(Finding(Severity.WARNING, "minimum-size", "; ".join(minimum),
                             fix="this input is the smallest this layer accepts; do not feed smaller inputs"))
    if asymmetric:
        notes.append(Finding(Severity.INFO, "asymmetric-padding", "; ".join(asymmetric),
                             fix="choose an input size where (size + 2*padding - kernel) divides by the stride"))
    return tuple(notes)
