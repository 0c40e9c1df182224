"""``netscope check [MODEL]``: size-formula findings; exit 1 when a formula mismatch or error is found, or
when the mult-add total is partial (an operator without a multiply-add formula ran)."""

from __future__ import annotations

import argparse
import json

from netscope.commands.common import add_model_arguments, add_output_arguments, emit
from netscope.errors import EXIT_FINDINGS, EXIT_OK

HELP = ("check every size-changing layer against its formula and that every operator is accounted for; "
        "exit 1 on a mismatch or an uncounted operator (for CI)")

COLUMNS = ("severity", "layer", "class_name", "code", "message")
ALL_COLUMNS = ("layer", "class_name", "status", "formula", "expected_shape", "observed_shape", "rf", "jump")  # JSON's names
ALL_TITLES = {"expected_shape": "expected", "observed_shape": "observed"}  # a table's shorter titles


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    add_output_arguments(parser)
    parser.add_argument("--all", action="store_true",
                        help="list every checked call with its formula, not only the findings")
    parser.add_argument("--no-info", action="store_true", help="hide info-level findings (asymmetric padding, ...)")


def run(args: argparse.Namespace) -> int:
    from netscope.analyses.checks import check_findings, has_problems
    from netscope.commands.common import build_report, check_output_paths
    from netscope.analyses.receptive_field import field_text
    from netscope.render.rows import Lines, check_format, render_rows
    from netscope.report import TEXT_WIDTH

    check_format(args.format, args.table_style)
    check_output_paths(args, (args.output,))
    # A failed pass raises ForwardError with the diagnosis attached; the CLI prints both on stderr (exit 3).
    report = build_report(args, checks=True, audit_names=False, receptive_field=True)
    checks = report.checks
    if args.format == "json":
        text = json.dumps(_document(report, include_info=not args.no_info), indent=2)
    elif args.all:
        one_per_line = args.format == "table"  # a formula per axis, each on its own line
        rows = [{"layer": c.layer, "class_name": c.class_name, "status": c.status,
                 "formula": Lines(c.formula_text.split("; ")) if one_per_line else c.formula_text,
                 "expected_shape": str(list(c.expected_shape)) if c.expected_shape else "",
                 "observed_shape": (str(list(c.observed_shape)) if isinstance(c.observed_shape, tuple)
                                    else str(c.observed_shape)),
                 "rf": field_text(report.layers[c.call_index].receptive_field, "size"),
                 "jump": field_text(report.layers[c.call_index].receptive_field, "jump")} for c in checks]
        text = render_rows(rows, ALL_COLUMNS, args.format, headers=ALL_TITLES, table_style=args.table_style, wrap="formula",
                           width=TEXT_WIDTH, min_wrap=60)  # one axis's formula stays on one line
    else:
        findings = check_findings(checks, include_info=not args.no_info)
        rows = [dict(f.to_dict(), class_name=report.layers[f.call_index].class_name) for f in findings]
        if args.format in ("table", "markdown"):  # the summary's name for the model itself
            rows = [dict(row, layer=row["layer"] or "(root)") for row in rows]
        text = render_rows(rows, COLUMNS + ("fix",) if args.format == "csv" else COLUMNS, args.format,
                           table_style=args.table_style, wrap="message", width=TEXT_WIDTH)
    if args.format in ("table", "markdown"):
        failed = sum(1 for c in checks if c.status != "pass")
        text = (f"{report.run.model}: {len(checks)} size-changing calls checked, {len(checks) - failed} pass, "
                f"{failed} mismatch\n" + _field_line(report) + (text if rows else "no findings"))
        for uncounted in report.uncounted_ops():
            text += f"\nuncounted operator (mult-add total is partial): {uncounted}"
    emit(text, args)
    if report.partial and args.format in ("json", "csv"):  # the table says it inline; keep the data formats clean
        import sys

        sys.stderr.write("netscope: the mult-add total is partial: no formula for "
                         + "; ".join(str(u) for u in report.uncounted_ops()) + "\n")
    return EXIT_FINDINGS if has_problems(checks) or report.partial else EXIT_OK


def _document(report, *, include_info: bool) -> dict:
    """``netscope check -f json``: the schema'd document every command's JSON is (``render.rows.json_document``):
    counts, every check as the summary's JSON has it (shapes as lists of ints) with its call's receptive field,
    the findings (``--no-info``: without info), and the uncounted operators that make the total partial."""
    from netscope.analyses.checks import check_findings
    from netscope.render.columns import field_dict
    from netscope.render.rows import json_document

    checks = report.checks
    failed = sum(1 for c in checks if c.status != "pass")
    return json_document("check", {
        "model": report.run.model,
        "checked": len(checks), "passed": len(checks) - failed, "mismatches": failed,
        "checks": [dict(entry, receptive_field=field_dict(report.layers[c.call_index]))
                   for c, entry in zip(checks, report.checks_dicts())],
        "findings": [dict(f.to_dict(), class_name=report.layers[f.call_index].class_name)
                     for f in check_findings(checks, include_info=include_info)],
        "partial": report.partial,
        "uncounted": [u.to_dict() for u in report.uncounted_ops()],
    })


def _field_line(report) -> str:
    """The model's receptive field, and the last spatial one before it (e.g. before global pooling)."""
    from netscope.analyses.receptive_field import UNKNOWN, WHOLE, field_text

    root = report.layers[0].receptive_field if report.layers else None
    last = _last_spatial(report.layers)
    if root is None and last is None:
        return ""
    if root == UNKNOWN:
        lost = _first_unknown(report.layers)
        text = "unknown (an operator ran that no receptive-field rule covers" + (
            f", first in {lost.name or '(root)'} ({lost.class_name})" if lost is not None else "") + ")"
    else:
        text = "the whole input" if root == WHOLE else field_text(root, "size") or "unknown"
    parts = [f"receptive field of the output: {text}"]
    if last is not None and last.index != 0:
        parts.append(f"last spatial one {field_text(last.receptive_field, 'size')} (jump "
                     f"{field_text(last.receptive_field, 'jump')}) at {last.name} ({last.class_name})")
    return "; ".join(parts) + "\n"


def _last_spatial(layers):
    """The call with a spatial field whose output came last. Calls are listed parent first, so the last one
    listed may sit inside a block (Inception's Mixed_7c.branch_pool.bn): its outermost enclosing call that
    still has a field finished after it."""
    from netscope.analyses.receptive_field import Field

    by_index = {c.index: c for c in layers}
    last = next((c for c in reversed(layers) if isinstance(c.receptive_field, Field)), None)
    call = last
    while call is not None and call.parent is not None:
        call = by_index.get(call.parent)
        if call is not None and isinstance(call.receptive_field, Field):
            last = call
    return last


def _first_unknown(layers):
    """The first call whose field is unknown while its nested calls' fields are not: where it was lost."""
    from netscope.analyses.receptive_field import UNKNOWN

    parents = {c.parent for c in layers if c.receptive_field == UNKNOWN}
    return next((c for c in layers if c.receptive_field == UNKNOWN and c.index not in parents), None)
