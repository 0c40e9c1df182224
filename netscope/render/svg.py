"""Horizontal bar charts as inline SVG: no script, no fonts to fetch, readable in any browser or notebook."""

from __future__ import annotations

from html import escape
from typing import Callable, Sequence

from netscope.analyses.breakdown import Bar

ROW = 18  # px per bar
LABEL_WIDTH = 170
BAR_WIDTH = 230
VALUE_WIDTH = 120
MAX_LABEL = 26  # characters; longer labels are cut with an ellipsis (the full one is in the tooltip)


def share(value: int, total: int) -> str:
    """``value`` as a percentage of ``total``: '48.1%' ('<0.1%' for a sliver, never a misleading '0.0%')."""
    if not total:
        return "–"
    percent = 100 * value / total
    return "<0.1%" if 0 < percent < 0.05 else f"{percent:.1f}%"


def bar_chart_svg(title: str, bars: Sequence[Bar], *, total: int, fmt: Callable[[int], str], color: str) -> str:
    """One titled chart; bar lengths are proportional to the values, the largest spanning the full width; each
    bar labelled with its value and its share of ``total`` (the bars add up to it)."""
    width = LABEL_WIDTH + BAR_WIDTH + VALUE_WIDTH
    if not bars:
        return (f'<figure class="ns-chart"><figcaption>{escape(title)}</figcaption>'
                '<p class="ns-empty">nothing to show</p></figure>')
    height = ROW * len(bars) + 4
    top = max(b.value for b in bars) or 1
    parts = [f'<figure class="ns-chart" data-total="{total}"><figcaption>{escape(title)}</figcaption>'
             f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">']
    for row, bar in enumerate(bars):
        y = row * ROW + 2
        length = max(1.0, BAR_WIDTH * bar.value / top)
        label = bar.label if len(bar.label) <= MAX_LABEL else bar.label[:MAX_LABEL - 1] + "…"
        parts.append(
            f'<g data-value="{bar.value}"><title>{escape(bar.label)}: {bar.value:,} ({share(bar.value, total)})</title>'
            f'<text x="{LABEL_WIDTH - 6}" y="{y + 12}" text-anchor="end">{escape(label)}</text>'
            f'<rect x="{LABEL_WIDTH}" y="{y + 2}" width="{length:.1f}" height="{ROW - 5}" fill="{color}" rx="2"/>'
            f'<text x="{LABEL_WIDTH + length + 4:.1f}" y="{y + 12}">{escape(fmt(bar.value))} · '
            f'{share(bar.value, total)}</text></g>'
        )
    parts.append("</svg></figure>")
    return "".join(parts)
