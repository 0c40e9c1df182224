"""The training-step page: totals, the memory split per rank (stacked bars), backward cost and saved
activations per top-level block, and the layer table; script-free, so it also serves as the notebook view."""

from __future__ import annotations

from html import escape

from netscope.render.assets import PAGE_CSS
from netscope.analyses.breakdown import Bar
from netscope.render.columns import COLUMNS
from netscope.analyses.flow import child_calls, main_container
from netscope.render.html import CSP, MACS_COLOR, run_notes_html
from netscope.render.rows import _cell
from netscope.render.svg import bar_chart_svg
from netscope.units import megabytes, si

# (RankMemory field, label, colour) of the stacked memory bars
MEMORY_PARTS = (("param_bytes", "params", "#2f81f7"), ("grad_bytes", "grads", "#8957e5"),
                ("optimizer_bytes", "optimizer", "#e16f24"), ("activation_bytes", "activations", "#1a7f37"))
SAVED_COLOR = "#1a7f37"
PEAK_COLOR = "#1f2328"  # the page's CSS (.ns-peak) draws it in the text colour of the scheme shown
BAR_WIDTH = 420
ROW = 20
LABEL = 70


def step_html(report) -> str:
    t = report.totals
    title = f"netscope step: {report.run.model}"
    return "".join([
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        f"<title>{escape(title)}</title><style>{PAGE_CSS}</style></head>\n",
        '<body><main class="ns-root ns-page">',
        f"<h1>{escape(title)}</h1>",
        f'<p class="ns-run">{escape(_run_text(report))}</p>',
        run_notes_html(report.run.notes),
        "<section><h2>Totals</h2>", _totals_html(report), _partial_html(report), "</section>",
        "<section><h2>Memory per rank</h2>", memory_split_svg(t.ranks), "</section>",
        "<section><h2>Backward cost and saved activations</h2>", _charts_html(report), "</section>",
        "<section><h2>Layers</h2>", _table_html(report), "</section>",
        "</main></body></html>\n",
    ])


def _run_text(report) -> str:
    t = report.totals
    layout = f"{t.layout}, {t.world_size} ranks" if t.layout != "single" else "one device"
    return (f"one training step on {t.tensors} tensors ({report.run.device}), {t.optimizer}, {t.precision}, {layout}; "
            f"{len(report.layers):,} module calls in {report.run.seconds:.2f} s")


def _partial_html(report) -> str:
    """A visible line when forward or backward mult-adds miss operators without a formula (lower bounds)."""
    missing = [str(u) for u in report.forward.uncounted_ops()] + [
        f"{op} (backward)" for op in report.totals.backward_uncounted]
    if not missing:
        return ""
    return ('<p class="ns-partial" role="alert"><strong>Mult-add totals are partial (lower bounds):</strong> no '
            "formula for " + escape("; ".join(missing)) + "</p>")


def _totals_html(report) -> str:
    t = report.totals
    forward = (">=" if report.forward.partial else "") + f"{t.forward_macs:,} ({si(t.forward_macs)})"
    backward = (">=" if t.backward_uncounted else "") + f"{t.backward_macs:,} ({si(t.backward_macs)})"
    items = [("forward_macs", "Forward mult-adds", t.forward_macs, forward),
             ("backward_macs", "Backward mult-adds", t.backward_macs, backward)]
    for key, label in (("param_bytes", "Params"), ("grad_bytes", "Gradients"), ("optimizer_bytes", "Optimizer state"),
                       ("activation_bytes", "Saved activations"), ("buffer_bytes", "Buffers"), ("input_bytes", "Inputs"),
                       ("peak_bytes", "Estimated peak"), ("measured_peak_bytes", "Measured CUDA peak")):
        value = getattr(t, key)
        # a workspace fake tensors cannot size (t.unsized_workspaces): saved bytes and the peak are lower bounds
        low = ">=" if t.unsized_workspaces and key in ("activation_bytes", "peak_bytes") else ""
        if value is not None:
            items.append((key, label + (" (per rank)" if t.layout != "single" else ""), value, low + megabytes(value)))
    rows = "".join(f'<dt>{escape(label)}</dt><dd data-total="{key}" data-value="{value}">{escape(text)}</dd>'
                   for key, label, value, text in items)
    return f'<dl class="ns-totals">{rows}</dl>'


def memory_split_svg(ranks) -> str:
    """One stacked bar per rank: params, grads, optimizer state, saved activations; the peak as a tick."""
    top = max([sum(getattr(r, k) for k, _, _ in MEMORY_PARTS) for r in ranks] + [r.peak_bytes for r in ranks]) or 1
    width = LABEL + BAR_WIDTH + 10
    height = ROW * len(ranks) + 24
    parts = [f'<figure class="ns-chart"><svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="memory per rank">']
    for row, rank in enumerate(ranks):
        y = row * ROW + 2
        x = float(LABEL)
        parts.append(f'<text x="{LABEL - 6}" y="{y + 13}" text-anchor="end">rank {rank.rank}</text>')
        for key, label, color in MEMORY_PARTS:
            value = getattr(rank, key)
            length = BAR_WIDTH * value / top
            parts.append(f'<rect data-part="{key}" data-value="{value}" x="{x:.1f}" y="{y + 2}" width="{length:.1f}" '
                         f'height="{ROW - 6}" fill="{color}"><title>rank {rank.rank} {label}: {megabytes(value)}'
                         "</title></rect>")
            x += length
        peak_x = LABEL + BAR_WIDTH * rank.peak_bytes / top
        parts.append(f'<line x1="{peak_x:.1f}" x2="{peak_x:.1f}" y1="{y}" y2="{y + ROW - 2}" class="ns-peak" '
                     f'stroke="{PEAK_COLOR}" stroke-width="2"><title>estimated peak {megabytes(rank.peak_bytes)}</title>'
                     "</line>")
    legend_y = ROW * len(ranks) + 16
    x = LABEL
    for key, label, color in MEMORY_PARTS + (("peak", "| estimated peak", PEAK_COLOR),):
        peak = ' class="ns-peak"' if key == "peak" else ""
        parts.append(f'<rect{peak} x="{x}" y="{legend_y - 9}" width="10" height="10" fill="{color}"/>'
                     f'<text x="{x + 13}" y="{legend_y}">{escape(label)}</text>')
        x += 20 + 7 * len(label)
    parts.append("</svg></figure>")
    return "".join(parts)


def _charts_html(report) -> str:
    container = main_container(report.layers)
    blocks = child_calls(report.layers).get(container.index, []) if container is not None else []
    backward = [Bar(c.display_name, report.backward_macs[c.index]) for c in blocks]
    saved = [Bar(c.display_name, report.saved_bytes[c.index]) for c in blocks]
    return ('<div class="ns-charts">'
            + bar_chart_svg("Backward mult-adds per top-level block", [b for b in backward if b.value],
                            total=report.totals.backward_macs, fmt=si,
                            color=MACS_COLOR)
            + bar_chart_svg("Saved for backward per top-level block", [b for b in saved if b.value],
                            total=report.saved_bytes[0] if report.saved_bytes else 0, fmt=megabytes,
                            color=SAVED_COLOR)
            + "</div>")


def _table_html(report) -> str:
    keys = ("layer", "type", "output", "params", "macs", "bwd_macs", "saved")
    head = "".join(f'<th class="ns-num">{escape(COLUMNS[k].title)}</th>' if COLUMNS[k].numeric
                   else f"<th>{escape(COLUMNS[k].title)}</th>" for k in keys)
    body = []
    for row in report.rows(keys):
        cells = []
        for key in keys:
            text = escape(_cell(row[key]))
            if key == "layer":
                stripped = text.lstrip(" ")
                text = "&nbsp;" * (len(text) - len(stripped)) * 2 + stripped
            cells.append(f'<td class="ns-num">{text}</td>' if COLUMNS[key].numeric else f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table class="ns-table"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
