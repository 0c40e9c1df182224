"""netscope summary: the layer-by-layer table and totals."""

from __future__ import annotations

import sys

from netscope.commands.common import add_model_arguments, add_output_arguments, emit

HELP = "layer-by-layer table of shapes, parameters and multiply-adds, plus totals (default model: resnet50)"


def add_arguments(parser) -> None:
    add_model_arguments(parser)
    add_output_arguments(parser)
    parser.add_argument("--depth", "-d", type=int, default=None, metavar="N",
                        help="show rows down to this nesting depth (the whole tree is recorded regardless; checks, "
                             "findings and totals always cover every layer)")
    parser.add_argument("--columns", "-c", default=None, metavar="COLS",
                        help="comma-separated columns (or 'all'): layer,index,name,type,depth,parent,call_number,"
                        "input,output,params,own_params,trainable,trainable_partial,macs,own_macs,output_bytes,"
                        "is_leaf,kernel,stride,padding,dilation,groups,output_padding,check,rf,jump (rf/jump: receptive field on the "
                        "input, tracked when asked for). JSON and CSV honour "
                        "them too (JSON default: every column but the tree-drawn 'layer')")
    parser.add_argument("--expand", action="store_true",
                        help="show every call of runs of identical repeated blocks (folded into one row by default "
                        "in table and markdown; CSV and JSON always keep every call)")
    parser.add_argument("--receptive-field", action="store_true",
                        help="track every layer's receptive field (also in JSON; implied by --columns rf or jump)")
    parser.add_argument("--html", default=None, metavar="FILE", help="also write a self-contained HTML report")
    parser.add_argument("--plot", default=None, metavar="FILE",
                        help="also write bar charts of params and mult-adds (png, svg, pdf; needs matplotlib)")
    parser.add_argument("--by-op", action="store_true",
                        help="show mult-adds and call counts per operator (overall, then per module call) "
                        "instead of the layer table")
    parser.add_argument("--strict", action="store_true",
                        help="exit 1 when the mult-add total is partial (an operator without a formula ran)")


def run(args) -> int:
    from netscope.commands.common import build_report, check_output_paths, check_table_options, say_written
    from netscope.errors import ForwardError
    from netscope.render.columns import parse_columns

    check_table_options(args)
    if args.plot:  # fail fast: matplotlib missing or an unknown image extension
        from netscope.render.plot import plot_format

        plot_format(args.plot)
    check_output_paths(args, (args.output, args.html, args.plot))
    wanted = args.receptive_field or bool({"rf", "jump"} & set(parse_columns(args.columns)))
    try:
        report = build_report(args, receptive_field=wanted)
    except ForwardError as err:  # exit 3 stays; each file asked for still answers: what ran, or a line saying none
        _failure_files(args, err)
        raise
    if args.by_op:
        emit(report.by_operator_text(args.format, table_style=args.table_style), args)
    else:
        emit(report.render(args.format, columns=args.columns, depth=args.depth, table_style=args.table_style,
                           expand=args.expand, width=_terminal_width(args)), args)
    if args.html:
        from netscope.fileio import write_text_atomic
        from netscope.render.html import report_html

        write_text_atomic(args.html, report_html(report), force=args.force)
        say_written(args, args.html)
    if args.plot:
        from netscope.render.plot import save_plot

        save_plot(report, args.plot)
        say_written(args, args.plot)
    if report.partial and not args.strict and args.format in ("json", "csv") and not args.quiet:
        sys.stderr.write("netscope: the mult-add total is partial (a lower bound; rows marked >=): no formula for "
                         + "; ".join(str(u) for u in report.uncounted_ops()) + "\n")  # the table says it inline
    if report.partial and args.strict:
        from netscope.errors import EXIT_FINDINGS

        sys.stderr.write("netscope: --strict: the mult-add total is partial (operators without a formula: "
                         + ", ".join(u.op for u in report.uncounted_ops()) + ")\n")
        return EXIT_FINDINGS
    return 0


def _failure_files(args, err) -> None:
    """The files asked for when the forward pass raised: ``--html`` and ``--plot`` of what was recorded up to the
    failure (``err.report``, which says so), or one stderr line each saying that nothing was written and why;
    ``-o`` (the table of a pass that did not finish is not written, as it is not printed) gets its line too."""
    from netscope.commands.common import say_not_written, say_written
    from netscope.fileio import write_text_atomic

    say_not_written(args, ("output",), "the forward pass failed (the error below)")
    report = getattr(err, "report", None)
    if report is None:
        say_not_written(args, ("html", "plot"), "nothing was recorded before the error below")
        return
    if args.html:
        from netscope.render.html import report_html

        write_text_atomic(args.html, report_html(report), force=args.force)
    if args.plot:
        from netscope.render.plot import save_plot

        save_plot(report, args.plot)
    for path in (args.html, args.plot):
        say_written(args, path, " (what the forward pass recorded up to its failure, with the error)")


def _terminal_width(args):
    """The terminal's width when the table goes to one; None (the report's 120 columns) when written to a
    file or a pipe, so saved output does not depend on the window it was made in."""
    import os
    import shutil

    from netscope.fileio import command_stdout

    stdout = command_stdout()
    if args.output or stdout is None or not stdout.isatty():
        return None
    if "COLUMNS" in os.environ:
        return shutil.get_terminal_size().columns
    try:  # the terminal the table goes to: file descriptor 1 is pointed at stderr while a command runs (cli.py)
        return os.get_terminal_size(stdout.fileno()).columns
    except (AttributeError, OSError, ValueError):
        return shutil.get_terminal_size().columns
