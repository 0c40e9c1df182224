"""Static bar charts (PNG, SVG, PDF, ...) of parameters and multiply-adds, for papers and pull requests."""

from __future__ import annotations

import os

from netscope.errors import DependencyError, UsageError
from netscope.fileio import atomic_path, cannot_write
from netscope.analyses.breakdown import breakdown
from netscope.render.svg import share
from netscope.units import si

PARAMS_COLOR = "#2f81f7"
MACS_COLOR = "#e16f24"


def plot_format(path: str) -> str:
    """The image format ``path`` asks for (its extension); raises when matplotlib is missing or cannot write it."""
    figure_class = _figure_class()
    fmt = os.path.splitext(path)[1].lstrip(".").lower()
    supported = figure_class().canvas.get_supported_filetypes()
    if fmt not in supported:
        raise UsageError(f"cannot tell the image format of {path!r}; end the file name with one of "
                         + ", ".join(f".{k}" for k in sorted(supported)))
    return fmt


def save_plot(report, path: str) -> None:
    """Write a 2x2 figure (params and mult-adds, per top-level block and per layer type) to ``path``.

    The format follows the file extension (any matplotlib knows: png, svg, pdf, ...). Needs matplotlib.
    """
    fmt = plot_format(path)
    figure = _figure_class()(figsize=(13, 8.5), layout="constrained")
    bars = breakdown(report)
    axes = figure.subplots(2, 2)
    of, bound = (" (of a partial total)", ">=") if report.partial else ("", "")  # an operator had no formula
    panels = ((bars.block_params, "Parameters per top-level block", PARAMS_COLOR, bars.total_params),
              (bars.block_macs, "Mult-adds per top-level block" + of, MACS_COLOR, bars.total_macs),
              (bars.type_params, "Parameters per layer type", PARAMS_COLOR, bars.total_params),
              (bars.type_macs, "Mult-adds per layer type" + of, MACS_COLOR, bars.total_macs))
    for ax, (data, title, color, total) in zip(axes.flat, panels):
        _bar_panel(ax, data, title, color, total)
    failed = ("\nthe forward pass failed: mult-adds count only the calls that ran before the failure"
              if report.failure else "")  # ForwardError.report: what the pass recorded up to its error
    figure.suptitle(f"{report.run.model}: {si(report.totals.total_params)} params, "
                    f"{bound}{si(report.totals.total_macs)} mult-adds{failed}")
    with atomic_path(path) as tmp:
        try:
            figure.savefig(tmp, format=fmt, dpi=150)
        except OSError as exc:  # a full disk: the temp file is removed, the target untouched
            raise cannot_write(path, exc) from None


def _figure_class():
    try:
        from matplotlib.figure import Figure  # the object API: no pyplot, so no global figure state
    except ImportError as err:
        raise DependencyError(
            f"--plot needs matplotlib, which is not installed ({err}); install it with "
            'pip install "netscope[plot]", or leave out --plot (the HTML report has the same charts)'
        ) from None
    return Figure


def _bar_panel(ax, bars, title: str, color: str, total: int) -> None:
    ax.set_title(title, fontsize=11)
    if not bars:
        ax.text(0.5, 0.5, "nothing to show", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    labels = [b.label if len(b.label) <= 28 else b.label[:27] + "…" for b in bars]
    values = [b.value for b in bars]
    positions = range(len(bars))
    ax.barh(positions, values, color=color)
    ax.set_yticks(list(positions), labels, fontsize=8)
    ax.invert_yaxis()  # first bar on top, like the HTML charts
    ax.set_xlim(0, max(values) * 1.3)
    for y, bar in zip(positions, bars):
        ax.text(bar.value, y, f" {si(bar.value)} · {share(bar.value, total)}", va="center", fontsize=8)
    ax.xaxis.set_major_formatter(lambda value, _pos: _tick(value))
    ax.spines[["top", "right"]].set_visible(False)


def _tick(value: float) -> str:
    """Short axis labels: 200 M, 1.5 G (no trailing zeros, so neighbouring ticks never run together)."""
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:g} {prefix}"
    return f"{value:g}"
