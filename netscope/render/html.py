"""The HTML report: one self-contained page (``report_html``) and a compact, script-free notebook view."""

from __future__ import annotations

from html import escape
from typing import Dict, List, Tuple

from netscope.render.assets import NOTEBOOK_CSS, PAGE_CSS, PAGE_JS
from netscope.render.breakdown import breakdown
from netscope.render.flow import shape_flow
from netscope.render.html_data import check_notes, finding_rows, report_payload, script_json
from netscope.render.svg import bar_chart_svg
from netscope.shapes import format_shape_tree
from netscope.units import megabytes, si

PARAMS_COLOR = "#2f81f7"
MACS_COLOR = "#e16f24"
FINDINGS_PER_KIND = 8  # findings listed per kind; the rest are counted (each still has its badge)
NOTEBOOK_ROWS = 60  # calls listed in the notebook view (depth 0 and 1)
# No network: nothing but inline styles, inline scripts and data: images may load.
CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"
TREE_HEADERS = (("Layer", ""), ("Class", ""), ("Input", ""), ("Output", ""), ("Params", "ns-num"),
                ("Mult-adds", "ns-num"), ("Checks", ""))


def report_html(report) -> str:
    """The full page: totals, run, shape flow, bar charts, findings and the collapsible, searchable tree."""
    title = f"netscope: {report.run.model}"
    head = "".join(f'<th class="{cls}">{name}</th>' if cls else f"<th>{name}</th>" for name, cls in TREE_HEADERS)
    return "".join([
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<link rel="icon" href="data:,">',
        f"<title>{escape(title)}</title><style>{PAGE_CSS}</style></head>\n",
        '<body><main class="ns-root ns-page">',
        f"<h1>{escape(title)}</h1>",
        f'<p class="ns-run">{_run_text(report)}</p>',
        '<div class="ns-cols"><section><h2>Totals</h2>', _totals_html(report), "</section>",
        f"<section><h2>Checks</h2>{_findings_summary(report)}</section></div>",
        "<section><h2>Shape flow</h2>", _flow_html(report), "</section>",
        "<section><h2>Where the parameters and multiply-adds are</h2>", _charts_html(report, by_type=True),
        "</section>",
        _findings_html(report),
        '<section><h2>Layers</h2><div class="ns-toolbar">',
        '<input id="ns-search" type="search" placeholder="Filter layers by name or class" '
        'aria-label="Filter layers by name or class" autocomplete="off">',
        '<button id="ns-expand" type="button">Expand all</button>',
        '<button id="ns-collapse" type="button">Collapse</button><span id="ns-status"></span></div>',
        f'<table class="ns-table ns-tree"><thead><tr>{head}</tr></thead><tbody id="ns-tree-body"></tbody></table>',
        "<noscript><p>The layer tree needs JavaScript; the totals, flow and charts above do not.</p></noscript>",
        "</section></main>\n",
        f'<script type="application/json" id="ns-data">{script_json(report_payload(report))}</script>\n',
        f"<script>{PAGE_JS}</script>\n</body></html>\n",
    ])


def notebook_html(report) -> str:
    """A compact, script-free view for Jupyter: totals, flow, block charts and the top-level calls."""
    shown = [c for c in report.layers if c.depth <= 1][:NOTEBOOK_ROWS]
    left = sum(1 for c in report.layers if c.depth <= 1) - len(shown)
    status = {c.call_index: check_notes(c) for c in report.checks}
    placed, _ = finding_rows(report)
    body = []
    for c in shown:
        notes = _badges(status.get(c.index), placed.get(c.index, []))
        body.append(
            f"<tr><td>{'&nbsp;' * 4 * c.depth}{escape(c.display_name if c.depth else '(root)')}</td>"
            f"<td>{escape(c.class_name)}</td><td>{escape(format_shape_tree(c.output_shapes))}</td>"
            f'<td class="ns-num">{c.subtree_params:,}</td><td class="ns-num" title="{c.macs:,}">{si(c.macs)}</td>'
            f"<td>{notes}</td></tr>"
        )
    more = f'<p class="ns-note">{left:,} more top-level calls not listed.</p>' if left > 0 else ""
    deeper = len(report.layers) - len(shown) - max(left, 0)
    note = (f'<p class="ns-note">{len(report.layers):,} calls in all ({deeper:,} nested deeper not listed); '
            "the full, searchable tree is in <code>report.to_html()</code> or "
            "<code>netscope summary MODEL --html FILE</code>.</p>")
    return "".join([
        f'<div class="ns-root ns-nb"><style>{NOTEBOOK_CSS}</style>',
        f"<b>{escape(report.run.model)}</b><div class=\"ns-run\">{_run_text(report)}</div>",
        _totals_html(report), "<div>", _flow_html(report), "</div>", _charts_html(report, by_type=False),
        '<table class="ns-table"><thead><tr><th>Layer</th><th>Class</th><th>Output</th>'
        '<th class="ns-num">Params</th><th class="ns-num">Mult-adds</th><th>Checks</th></tr></thead><tbody>',
        "".join(body), "</tbody></table>", more, note, "</div>",
    ])


# ---- sections ------------------------------------------------------------------------------------

def _run_text(report) -> str:
    r = report.run
    return escape(f"{r.device}, {r.dtype}, {r.mode} mode, input {format_shape_tree(r.input_shapes)}, "
                  f"{len(report.layers):,} module calls, traced in {r.seconds:.2f} s")


def _totals_items(totals) -> List[Tuple[str, str, int, str]]:
    """(key, label, exact value, text shown) for each figure of ``Totals`` worth showing."""
    t = totals
    items = [
        ("total_params", "Total params", t.total_params, f"{t.total_params:,}"),
        ("trainable_params", "Trainable params", t.trainable_params, f"{t.trainable_params:,}"),
        ("non_trainable_params", "Non-trainable params", t.non_trainable_params, f"{t.non_trainable_params:,}"),
    ]
    if t.shared_param_tensors:
        items.append(("shared_params", f"Shared ({t.shared_param_tensors} tensors, counted once)",
                      t.shared_params, f"{t.shared_params:,}"))
    if t.uncalled_params:
        items.append(("uncalled_params", "Params in modules not called", t.uncalled_params, f"{t.uncalled_params:,}"))
    items += [
        ("total_macs", "Total mult-adds", t.total_macs, f"{t.total_macs:,} ({si(t.total_macs)})"),
        ("input_bytes", "Input size", t.input_bytes, megabytes(t.input_bytes)),
        ("activation_bytes", "Forward activations (est.)", t.activation_bytes, megabytes(t.activation_bytes)),
        ("param_bytes", "Params size", t.param_bytes, megabytes(t.param_bytes)),
        ("buffer_bytes", f"Buffers ({t.buffer_elements:,} elements)", t.buffer_bytes, megabytes(t.buffer_bytes)),
    ]
    estimate = t.input_bytes + t.activation_bytes + t.param_bytes + t.buffer_bytes
    items.append(("estimated_total_bytes", "Estimated total size", estimate, megabytes(estimate)))
    if t.peak_memory_bytes is not None:
        items.append(("peak_memory_bytes", "Measured CUDA peak", t.peak_memory_bytes, megabytes(t.peak_memory_bytes)))
    return items


def _totals_html(report) -> str:
    rows = "".join(f'<dt>{escape(label)}</dt><dd data-total="{key}" data-value="{value}">{escape(text)}</dd>'
                   for key, label, value, text in _totals_items(report.totals))
    return f'<dl class="ns-totals">{rows}</dl>' + _partial_html(report)


def _partial_html(report) -> str:
    """A plain, visible line when the mult-add total misses operators without a formula."""
    uncounted = report.uncounted_ops()
    if not uncounted:
        return ""
    return ('<p class="ns-partial" role="alert"><strong>Mult-add total is partial (a lower bound):</strong> no '
            "formula for " + escape("; ".join(str(u) for u in uncounted)) + "</p>")


def _flow_html(report) -> str:
    flow = shape_flow(report.layers, report.run.input_shapes)
    if not flow.steps:
        return '<p class="ns-empty">no tensor flows along the main path</p>'
    parts = ['<div class="ns-flow" aria-label="shape flow">']
    for number, step in enumerate(flow.steps):
        if number:
            if flow.omitted and number == len(flow.steps) - 1:
                parts.append(f'<span class="ns-more-steps">… {flow.omitted:,} more …</span>')
            parts.append('<span class="ns-stage" title="spatial size halves">½</span>' if step.halves
                         else '<span class="ns-arrow">→</span>')
        cls = "ns-step ns-half" if step.halves else "ns-step"
        parts.append(f'<span class="{cls}" title="{escape(step.label)}: {escape(step.text)}">'
                     f"<b>{escape(step.text)}</b><small>{escape(step.label)}</small></span>")
    parts.append("</div>")
    return "".join(parts)


def _charts_html(report, *, by_type: bool) -> str:
    bars = breakdown(report.layers)
    charts = [bar_chart_svg("Parameters per top-level block", bars.block_params, fmt=si, color=PARAMS_COLOR),
              bar_chart_svg("Mult-adds per top-level block", bars.block_macs, fmt=si, color=MACS_COLOR)]
    if by_type:
        charts += [bar_chart_svg("Parameters per layer type", bars.type_params, fmt=si, color=PARAMS_COLOR),
                   bar_chart_svg("Mult-adds per layer type", bars.type_macs, fmt=si, color=MACS_COLOR)]
    return f'<div class="ns-charts">{"".join(charts)}</div>'


def _badges(check, naming) -> str:
    out = []
    if check is not None:
        status, problem, warnings = check
        cls = "ns-pass" if status == "pass" else "ns-mismatch" if "mismatch" in status or "fail" in status else "ns-other"
        out.append(f'<span class="ns-badge {cls}" title="{escape(problem or "formula check passed")}">'
                   f"{escape(status)}</span>")
        if warnings:
            out.append(f'<span class="ns-badge ns-warn" title="{escape(chr(10).join(warnings))}">'
                       f"{len(warnings)} warn</span>")
    if naming:
        text = "\n\n".join(f"{code}: {message}" for code, message, _ in naming)
        out.append(f'<span class="ns-badge ns-names" title="{escape(text)}">{len(naming)} naming</span>')
    return "".join(out)


def _findings_summary(report) -> str:
    checks = report.checks
    passed = sum(1 for c in checks if c.status == "pass")
    warned = sum(len(getattr(c, "findings", ()) or ()) for c in checks)
    lines = [f"Formula checks: {len(checks):,} ({passed:,} pass, {len(checks) - passed:,} do not, "
             f"{warned:,} warning{'' if warned == 1 else 's'})"
             if checks else "Formula checks: none ran",
             f"Naming findings: {len(report.findings):,}"]
    return "<ul>" + "".join(f"<li>{escape(line)}</li>" for line in lines) + "</ul>"


def _findings_html(report) -> str:
    """Findings grouped by kind: the first few of each with the layer as a link that filters the tree."""
    groups: Dict[str, List[Tuple[str, str, str]]] = {}
    for check in report.checks:
        status, problem, warnings = check_notes(check)
        if problem:
            groups.setdefault(f"formula check: {status}", []).append((check.layer, f"{check.class_name}: {problem}", ""))
        for warning in warnings:
            groups.setdefault("formula check warning", []).append((check.layer, f"{check.class_name}: {warning}", ""))
    for finding in report.findings:
        groups.setdefault(finding.code, []).append((finding.layer or "", finding.message, finding.fix or ""))
    if not groups:
        return ""
    parts = ['<section class="ns-findings"><h2>Findings</h2>']
    for kind, items in groups.items():
        fixes = {fix for _, _, fix in items}
        shared_fix = fixes.pop() if len(fixes) == 1 else None
        parts.append(f"<h3>{escape(kind)} ({len(items):,})</h3><ul>")
        for layer, message, fix in items[:FINDINGS_PER_KIND]:
            where = (f'<button type="button" class="ns-link" data-find="{escape(layer)}">{escape(layer)}</button> '
                     if layer else "")
            own_fix = f' <span class="ns-fix">Fix: {escape(fix)}</span>' if fix and shared_fix is None else ""
            parts.append(f"<li>{where}{escape(message)}{own_fix}</li>")
        if len(items) > FINDINGS_PER_KIND:
            parts.append(f"<li>… and {len(items) - FINDINGS_PER_KIND:,} more of this kind "
                         "(the tree's badges show each one).</li>")
        parts.append("</ul>" + (f'<p class="ns-fix">Fix: {escape(shared_fix)}</p>' if shared_fix else ""))
    parts.append("</section>")
    return "".join(parts)
