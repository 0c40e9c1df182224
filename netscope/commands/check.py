"""``netscope check [MODEL]``: size-formula findings only; exit 1 when a formula mismatch or error is found."""

from __future__ import annotations

import argparse

from netscope.commands.common import add_model_arguments, add_output_arguments, emit, resolve_from_args
from netscope.errors import EXIT_FINDINGS, EXIT_MODEL_FAILED, EXIT_OK

HELP = "check every size-changing layer against its formula; exit 1 on a mismatch (for CI)"

COLUMNS = ("severity", "layer", "class_name", "code", "message")
ALL_COLUMNS = ("layer", "class_name", "status", "formula", "expected", "observed")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    add_output_arguments(parser)
    parser.add_argument("--all", action="store_true",
                        help="list every checked call with its formula, not only the findings")
    parser.add_argument("--no-info", action="store_true", help="hide info-level findings (asymmetric padding, ...)")


def traced_model(args: argparse.Namespace):
    """(resolved model, input spec, TraceResult or the ForwardError) for a command line."""
    from netscope.devices import resolve_device
    from netscope.errors import ForwardError
    from netscope.inputs import normalize_dtype, parse_inputs
    from netscope.trace import trace

    device = resolve_device(args.device)
    dtype = normalize_dtype(args.dtype)
    resolved = resolve_from_args(args, empty_weights=(device.type == "meta"))
    spec = parse_inputs(args.input) or resolved.inputs
    model = resolved.module  # built by this command, so moving it is fine
    if device.type != "meta":
        model = model.to(device)
    try:
        return resolved, model, spec, trace(model, spec, device=device, dtype=dtype,
                                            mode="train" if args.train else "eval")
    except ForwardError as err:
        return resolved, model, spec, err


def run(args: argparse.Namespace) -> int:
    from netscope.checks import check_findings, check_trace, has_problems
    from netscope.errors import ForwardError
    from netscope.render.rows import render_rows

    resolved, model, spec, result = traced_model(args)
    if isinstance(result, ForwardError):
        from netscope.diagnosis import diagnose_failure

        emit(diagnose_failure(model, spec, result).render(), args)
        return EXIT_MODEL_FAILED
    checks = check_trace(result)
    if args.all:
        rows = [{"layer": c.layer, "class_name": c.class_name, "status": c.status, "formula": c.formula_text,
                 "expected": str(list(c.expected_shape)) if c.expected_shape else "",
                 "observed": str(c.observed_shape)} for c in checks]
        text = render_rows(rows, ALL_COLUMNS, args.format, table_style=args.table_style)
    else:
        findings = check_findings(checks, include_info=not args.no_info)
        rows = [dict(f.to_dict(), class_name=result.calls[f.call_index].class_name) for f in findings]
        text = render_rows(rows, COLUMNS + ("fix",) if args.format in ("json", "csv") else COLUMNS, args.format,
                           table_style=args.table_style)
    if args.format in ("table", "markdown"):
        failed = sum(1 for c in checks if c.status != "pass")
        text = (f"{resolved.label}: {len(checks)} size-changing calls checked, {len(checks) - failed} pass, "
                f"{failed} mismatch\n" + (text if rows else "no findings"))
    emit(text, args)
    return EXIT_FINDINGS if has_problems(checks) else EXIT_OK
