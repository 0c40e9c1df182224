"""The HTML report: one self-contained page (``report_html``) and a compact, script-free notebook view."""

from __future__ import annotations

import json
from html import escape
from typing import Dict, List, Tuple

from netscope.records import NOT_RECORDED, Severity
from netscope.render.assets import NOTEBOOK_CSS, PAGE_CSS, PAGE_JS
from netscope.analyses.breakdown import breakdown, owners as breakdown_owners
from netscope.render.columns import COLUMNS
from netscope.analyses.flow import shape_flow
from netscope.render.folding import Fold, visible_calls
from netscope.render.headline import estimated_total_bytes, headline
from netscope.render.html_data import TREE_COLUMNS, check_notes, finding_rows, report_payload, script_json
from netscope.render.svg import bar_chart_svg, share
from netscope.run.shapes import format_shape_tree
from netscope.units import megabytes, plural, si, si_exact

PARAMS_COLOR = "#2f81f7"
MACS_COLOR = "#e16f24"
FINDINGS_PER_KIND = 8  # findings listed per kind; the rest are counted (each still has its badge)
NOTEBOOK_ROWS = 60  # rows listed in the notebook view (depth 0 and 1, identical blocks folded)
HEAVIEST = 10  # calls listed in the "heaviest layers" view, by mult-adds and by parameters
# No network: nothing but inline styles, inline scripts and data: images may load.
CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"


def report_html(report) -> str:
    """The full page: totals, run, shape flow, bar charts, findings and the collapsible, searchable tree.
    A report of a forward pass that raised (``report.failure``, ``ForwardError.report``) holds what it recorded
    up to there: a banner under the title gives the error and says so (figures count only the calls that ran)."""
    failure = report.failure
    title = f"netscope: {report.run.model}" + (" (forward pass failed)" if failure else "")
    head = "".join(_tree_header(key) for key in TREE_COLUMNS)
    return "".join([
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<link rel="icon" href="data:,">',
        f"<title>{escape(title)}</title><style>{PAGE_CSS}</style></head>\n",
        '<body><main class="ns-root ns-page">',
        f"<h1>{escape(title)}</h1>",
        _failure_html(failure),
        f'<p class="ns-headline">{escape(headline(report))}</p>',
        f'<p class="ns-run">{_run_text(report)}</p>',
        run_notes_html(report.run.notes),
        '<div class="ns-cols"><section><h2>Totals</h2>', _totals_html(report), "</section>",
        f"<section><h2>Checks</h2>{_findings_summary(report)}</section></div>",
        "<section><h2>Shape flow</h2>", _flow_html(report), "</section>",
        "<section><h2>Where the parameters and multiply-adds are</h2>", _charts_html(report, by_type=True),
        "</section>",
        _findings_html(report),
        _heaviest_html(report),
        '<section><h2 id="ns-layers">Layers</h2><div class="ns-toolbar">',
        '<input id="ns-search" type="search" placeholder="Filter layers by name or class" '
        'aria-label="Filter layers by name or class" autocomplete="off">',
        '<button id="ns-expand" type="button">Expand all</button>',
        '<button id="ns-collapse" type="button">Collapse</button>',
        '<span id="ns-status" role="status" aria-live="polite"></span></div>',
        '<div class="ns-scroll" tabindex="0" role="region" aria-labelledby="ns-layers">',
        f'<table class="ns-table ns-tree" role="treegrid" aria-labelledby="ns-layers"><thead><tr>{head}</tr></thead>'
        '<tbody id="ns-tree-body"></tbody></table></div>',
        "<noscript><p>The layer tree needs JavaScript; the totals, flow and charts above do not.</p></noscript>",
        "</section></main>\n",
        f'<script type="application/json" id="ns-data">{script_json(report_payload(report))}</script>\n',
        f"<script>{PAGE_JS}</script>\n</body></html>\n",
    ])


def notebook_html(report) -> str:
    """A compact, script-free view for Jupyter: the headline, totals, flow, block charts and the top-level
    calls with identical blocks folded. Colours follow Jupyter's theme variables (or the browser's
    light/dark preference outside Jupyter); every rule is scoped under ``.ns-root.ns-nb``."""
    status = {c.call_index: check_notes(c) for c in report.checks}
    placed, _ = finding_rows(report)
    folds = report.folds()
    partial = report.partial_calls()

    def bound(calls) -> str:  # an uncounted operator ran in one of them: the count is a lower bound
        return "&gt;=" if any(c.index in partial for c in calls) else ""

    def macs_cell(calls) -> str:  # inside TorchScript no hook ran: the count is unknown, never 0
        if any(c.output_shapes == NOT_RECORDED for c in calls):
            return NOT_RECORDED
        return bound(calls) + si(sum(c.macs for c in calls))

    def macs_title(call) -> str:
        return NOT_RECORDED if call.output_shapes == NOT_RECORDED else f"{bound([call])}{call.macs:,}"

    body = []
    listed = 0
    top_level = 0
    for item in visible_calls(report.layers, folds, depth=1):
        top_level += 1
        if listed >= NOTEBOOK_ROWS:
            continue
        listed += 1
        if isinstance(item, Fold):
            members = [report.layers[i] for i in item.members]
            first = report.layers[item.first]
            body.append(
                f'<tr class="ns-fold"><td>{"&nbsp;" * 4 * members[0].depth}{escape(item.label)}</td>'
                f"<td>{item.count} × {escape(item.class_name)} <small>as {escape(first.name)}</small></td>"
                f"<td>{escape(format_shape_tree(members[0].output_shapes))}</td>"
                f'<td class="ns-num">{sum(m.subtree_params for m in members):,}</td>'
                f'<td class="ns-num">{macs_cell(members)}</td><td></td></tr>')
            continue
        c = item
        notes = _badges(status.get(c.index), placed.get(c.index, []))
        body.append(
            f"<tr><td>{'&nbsp;' * 4 * c.depth}{escape(c.display_name if c.depth else '(root)')}</td>"
            f"<td>{escape(c.class_name)}</td><td>{escape(format_shape_tree(c.output_shapes))}</td>"
            f'<td class="ns-num">{c.subtree_params:,}</td>'
            f'<td class="ns-num" title="{macs_title(c)}">{macs_cell([c])}</td>'
            f"<td>{notes}</td></tr>"
        )
    more = (f'<p class="ns-note">{top_level - listed:,} more top-level rows not listed.</p>'
            if top_level > listed else "")
    note = (f'<p class="ns-note">{plural(len(report.layers), "call")} in all; the full, searchable tree is in '
            "<code>report.to_html()</code> or <code>netscope summary MODEL --html FILE</code>.</p>")
    return "".join([
        f'<div class="ns-root ns-nb"><style>{NOTEBOOK_CSS}</style>',
        _failure_html(report.failure),
        f'<div class="ns-headline">{escape(headline(report))}</div><div class="ns-run">{_run_text(report)}</div>',
        run_notes_html(report.run.notes),
        "<details><summary>Totals</summary>", _totals_html(report), "</details>",
        "<div>", _flow_html(report), "</div>",
        "<details><summary>Where the parameters and multiply-adds are</summary>",
        _charts_html(report, by_type=False), "</details>",
        _notebook_findings(report),
        '<details open><summary>Top-level calls</summary><table class="ns-table"><thead><tr>'
        '<th>Layer</th><th>Class</th><th>Output</th><th class="ns-num">Params</th><th class="ns-num">Mult-adds</th>'
        "<th>Checks</th></tr></thead><tbody>",
        "".join(body), "</tbody></table>", more, note, "</details></div>",
    ])


def _notebook_findings(report) -> str:
    """The check and naming findings at any depth (the rows below list only the top levels), the first few of
    each kind, as on the page; open when an error or warning is among them."""
    groups = _findings_groups_html(report, linked=False)
    if not groups:
        return ""
    counts = _severity_counts(report)
    opened = " open" if counts[Severity.ERROR.value] or counts[Severity.WARNING.value] else ""
    return f"<details{opened}><summary>Findings: {_severity_text(counts)}</summary>{groups}</details>"


# ---- sections ------------------------------------------------------------------------------------

def _failure_html(failure: str) -> str:
    if not failure:
        return ""
    return (f'<p class="ns-failure" role="alert"><strong>The forward pass failed:</strong> '
            f'<span class="ns-error">{escape(failure)}</span><br>'
            "This page shows what was recorded up to the failure: the calls after it never ran, and the "
            "multiply-adds, shapes and activation sizes count only the calls that did (parameters are the whole "
            "model's).</p>")


def run_notes_html(notes) -> str:
    """The run's notes (what the text report prints as ``Note:`` lines: layers inside TorchScript not listed,
    counts at capacity, a fallback device, ...), one plain-text item each."""
    if not notes:
        return ""
    return '<ul class="ns-run-notes">' + "".join(f"<li>Note: {escape(str(note))}</li>" for note in notes) + "</ul>"


def _run_text(report) -> str:
    r = report.run
    return escape(f"{r.device}, {r.dtype}, {r.mode} mode, input {format_shape_tree(r.input_shapes)}, "
                  f"{plural(len(report.layers), 'module call')}, traced in {r.seconds:.2f} s")


def _totals_items(totals) -> List[Tuple[str, str, int, str]]:
    """(key, label, exact value, text shown) for each figure of ``Totals`` worth showing."""
    t = totals
    items = [
        ("total_params", "Total params", t.total_params, f"{t.total_params:,}"),
        ("trainable_params", "Trainable params", t.trainable_params, f"{t.trainable_params:,}"),
        ("non_trainable_params", "Non-trainable params", t.non_trainable_params, f"{t.non_trainable_params:,}"),
    ]
    if t.shared_param_tensors:
        plural = "" if t.shared_param_tensors == 1 else "s"
        items.append(("shared_params", f"Shared ({t.shared_param_tensors} tensor{plural}, counted once)",
                      t.shared_params, f"{t.shared_params:,}"))
    if t.uncalled_params:
        items.append(("uncalled_params", "Params in modules not called", t.uncalled_params, f"{t.uncalled_params:,}"))
    items += [
        ("total_macs", "Total mult-adds", t.total_macs, si_exact(t.total_macs, exact_first=True)),
        ("input_bytes", "Input size", t.input_bytes, megabytes(t.input_bytes)),
        ("activation_bytes", "Forward activations (est.)", t.activation_bytes, megabytes(t.activation_bytes)),
        ("param_bytes", "Params size", t.param_bytes, megabytes(t.param_bytes)),
        ("buffer_bytes", f"Buffers ({t.buffer_elements:,} elements)", t.buffer_bytes, megabytes(t.buffer_bytes)),
    ]
    estimate = estimated_total_bytes(t)
    items.append(("estimated_total_bytes", "Estimated total size", estimate, megabytes(estimate)))
    if t.peak_memory_bytes is not None:
        items.append(("peak_memory_bytes", "Measured CUDA peak", t.peak_memory_bytes, megabytes(t.peak_memory_bytes)))
    return items


def _totals_html(report) -> str:
    bound = ">=" if report.partial else ""  # an operator without a formula ran: the total is a lower bound
    rows = "".join(f'<dt>{escape(label)}</dt><dd data-total="{key}" data-value="{value}">'
                   f'{escape((bound if key == "total_macs" else "") + text)}</dd>'
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
        cls = "ns-step" + (" ns-half" if step.halves else "") + (" ns-branch" if step.branch else "")
        what = "enters" if step.branch else "output"
        join = f" {step.join}" if step.join else ""
        mark = f'<i class="ns-join">{escape(step.join)}</i>' if step.join else ""
        parts.append(f'<span class="{cls}" title="{escape(step.label)} ({what}): {escape(step.text)}{escape(join)}">'
                     f"<b>{escape(step.text)}</b><small>{escape(step.label)}</small>{mark}</span>")
    parts.append("</div>")
    if flow.batch is not None:
        parts.append(f'<p class="ns-run">Shapes without the batch dimension ({flow.batch}); '
                     "dashed: data entering a container; ½: spatial size halves; ⊕ skip: a block adds its input back; "
                     "← name: an earlier step's output joins here.</p>")
    return "".join(parts)


def _charts_html(report, *, by_type: bool) -> str:
    bars = breakdown(report)
    p, m = bars.total_params, bars.total_macs
    of = " (of a partial total)" if report.partial else ""  # shares of a lower bound: say so where they are read
    charts = [bar_chart_svg("Parameters per top-level block", bars.block_params, total=p, fmt=si, color=PARAMS_COLOR),
              bar_chart_svg("Mult-adds per top-level block" + of, bars.block_macs, total=m, fmt=si, color=MACS_COLOR)]
    if by_type:
        charts += [bar_chart_svg("Parameters per layer type", bars.type_params, total=p, fmt=si, color=PARAMS_COLOR),
                   bar_chart_svg("Mult-adds per layer type" + of, bars.type_macs, total=m, fmt=si, color=MACS_COLOR)]
    return f'<div class="ns-charts">{"".join(charts)}</div>'


def _badges(check, naming) -> str:
    """The notebook's badges: check status, its warnings and notes, naming findings (by their severity)."""
    out = []
    if check is not None:
        status, problem, warnings, notes = check
        cls = "ns-pass" if status == "pass" else "ns-mismatch" if "mismatch" in status or "fail" in status else "ns-other"
        out.append(f'<span class="ns-badge {cls}" title="{escape(problem or "formula check passed")}">'
                   f"{escape(status)}</span>")
        if warnings:
            out.append(f'<span class="ns-badge ns-warn" title="{escape(chr(10).join(warnings))}">'
                       f"{len(warnings)} warn</span>")
        if notes:
            out.append(f'<span class="ns-badge ns-info" title="{escape(chr(10).join(notes))}">'
                       f"{len(notes)} note{'' if len(notes) == 1 else 's'}</span>")
    if naming:
        text = "\n\n".join(f"{code}: {message}" for code, message, _, _ in naming)
        out.append(f'<span class="ns-badge ns-names" title="{escape(text)}">{len(naming)} naming</span>')
    return "".join(out)


def _severity_counts(report) -> Dict[str, int]:
    """Findings of the checks and the naming audit by their own severity field (as the CLI and JSON report it)."""
    counts = {level.value: 0 for level in Severity}
    for finding in [f for c in report.checks for f in getattr(c, "findings", ()) or ()] + list(report.findings):
        counts[str(finding.severity)] = counts.get(str(finding.severity), 0) + 1
    return counts


SEVERITY_NOUN = {Severity.ERROR.value: "error", Severity.WARNING.value: "warning", Severity.INFO.value: "note"}


def _severity_text(counts: Dict[str, int]) -> str:
    """``0 errors, 2 warnings, 1 note``: :func:`_severity_counts` said in words."""
    return ", ".join(plural(n, SEVERITY_NOUN[level]) for level, n in counts.items())


def _findings_summary(report) -> str:
    checks = report.checks
    passed = sum(1 for c in checks if c.status == "pass")
    counts = _severity_counts(report)
    lines = [f"Formula checks: {len(checks):,} ({passed:,} pass, {len(checks) - passed:,} do not)"
             if checks else "Formula checks: none ran",
             f"Naming findings: {len(report.findings):,}",
             _severity_text(counts)]
    items = "".join(f"<li>{escape(line)}</li>" for line in lines)
    return f'<ul data-severity="{escape(json.dumps(counts))}">{items}</ul>'


def _findings_html(report) -> str:
    """The page's findings section: each listed one links to (and opens) its exact row."""
    groups = _findings_groups_html(report, linked=True)
    return f'<section class="ns-findings"><h2>Findings</h2>{groups}</section>' if groups else ""


def _findings_groups_html(report, *, linked: bool) -> str:
    """Findings grouped by severity and code, the first few of each named with their layer: a button that
    opens that row (``linked``, the page's script handles it) or the plain name (the script-free notebook)."""
    groups: Dict[Tuple[str, str], List[Tuple[str, object, str, str]]] = {}
    for check in report.checks:
        for finding in getattr(check, "findings", ()) or ():
            groups.setdefault((str(finding.severity), finding.code), []).append(
                (check.layer, check.call_index, f"{check.class_name}: {finding.message}", finding.fix or ""))
    first_call = {}
    for call in report.layers:
        first_call.setdefault(call.name, call.index)
    for finding in report.findings:
        index = finding.call_index if finding.call_index is not None else first_call.get(finding.layer)
        groups.setdefault((str(finding.severity), finding.code), []).append(
            (finding.layer or "", index, finding.message, finding.fix or ""))
    if not groups:
        return ""
    order = {Severity.ERROR.value: 0, Severity.WARNING.value: 1, Severity.INFO.value: 2}
    parts = []
    for (severity, code), items in sorted(groups.items(), key=lambda kv: order.get(kv[0][0], 1)):
        fixes = {fix for *_, fix in items}
        shared_fix = fixes.pop() if len(fixes) == 1 else None
        parts.append(f'<h3><span class="ns-badge ns-sev-{escape(severity)}">{escape(severity)}</span> '
                     f"{escape(code)} ({len(items):,})</h3><ul>")
        for layer, index, message, fix in items[:FINDINGS_PER_KIND]:
            if index is not None and linked:
                where = f'<button type="button" class="ns-link" data-row="{index}">{escape(layer or "(root)")}</button> '
            else:
                where = f"<code>{escape(layer or '(root)')}</code> " if layer or index is not None else ""
            own_fix = f' <span class="ns-fix">Fix: {escape(fix)}</span>' if fix and shared_fix is None else ""
            parts.append(f"<li>{where}{escape(message)}{own_fix}</li>")
        if len(items) > FINDINGS_PER_KIND:
            where_rest = ("the tree's badges show each one" if linked
                          else "the page of report.to_html() shows each one on its row")
            parts.append(f"<li>… and {len(items) - FINDINGS_PER_KIND:,} more of this kind ({where_rest}).</li>")
        parts.append("</ul>" + (f'<p class="ns-fix">Fix: {escape(shared_fix)}</p>' if shared_fix else ""))
    return "".join(parts)


def _heaviest_html(report) -> str:
    """The leaf calls that do the most work, and the modules that own the most weights (each tensor counted
    once, tied and uncalled ones included: the charts' numbers), linked to their rows."""
    t = report.totals
    first_call: Dict[str, int] = {}
    for call in report.layers:
        first_call.setdefault(call.name, call.index)
    by_macs = sorted((c for c in report.layers if c.is_leaf and c.macs > 0), key=lambda c: -c.macs)[:HEAVIEST]
    by_params = sorted(breakdown_owners(report), key=lambda o: -o.numel)[:HEAVIEST]
    lists = []
    for title, entries, total in (
            ("By mult-adds", [(c.display_name, c.index, c.class_name, c.macs) for c in by_macs], t.total_macs),
            ("By parameters (owned)", [(o.name or "(root)", first_call.get(o.name), o.class_name, o.numel)
                                       for o in by_params], t.total_params)):
        if not entries:
            continue
        items = "".join(
            (f'<li><button type="button" class="ns-link" data-row="{index}">{escape(name)}</button> '
             if index is not None else f"<li><code>{escape(name)}</code> <small>(not called)</small> ")
            + f"<small>{escape(class_name)}</small> {escape(si(value))} <small>({share(value, total)})</small></li>"
            for name, index, class_name, value in entries)
        lists.append(f"<div><h3>{title}</h3><ol>{items}</ol></div>")
    if not lists:
        return ""
    return f'<section class="ns-heaviest"><h2>Heaviest layers</h2><div class="ns-cols">{"".join(lists)}</div></section>'


def _tree_header(key: str) -> str:
    column = COLUMNS[key]
    cls = ' class="ns-num"' if column.numeric else ""
    if key in ("params", "macs"):
        return (f'<th{cls} aria-sort="none"><button type="button" class="ns-sort" data-sort="{key}" '
                f'title="sort siblings by {escape(column.title.lower())}">{escape(column.title)}</button></th>')
    return f"<th{cls}>{escape(column.title)}</th>"
