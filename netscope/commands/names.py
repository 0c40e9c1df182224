"""`netscope names`: where every state_dict key comes from, and what is wrong with the naming."""

from __future__ import annotations

import argparse
from dataclasses import replace

from netscope.commands.common import (add_model_arguments, add_output_arguments, check_output_paths, emit,
                                     resolve_from_args)

HELP = "state_dict naming audit: key origins, aliases, unregistered modules, wrapper prefixes (no forward pass)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser, with_inputs=False)
    add_output_arguments(parser)
    parser.add_argument("--findings-only", action="store_true",
                        help="print only the findings and totals, not one row per key")
    parser.add_argument("--columns", "-c", default=None, metavar="COLS",
                        help="comma-separated columns of the key table (or 'all'): key,origins,expression,shape,dtype,"
                             "trainable,in_state_dict,alias_group; shown as asked (table, markdown, csv)")


def run(args: argparse.Namespace) -> int:
    from netscope.naming import audit_names
    from netscope.naming.report import entry_columns
    from netscope.render.rows import check_format

    check_format(args.format, args.table_style)  # before building the model
    entry_columns(args.columns, args.format)
    check_output_paths(args, (args.output,))
    resolved = resolve_from_args(args, empty_weights=True)  # naming is structural: meta weights suffice
    report = replace(audit_names(resolved.module, label=resolved.label), build=resolved.build)
    emit(report.render(args.format, args.table_style, findings_only=args.findings_only, columns=args.columns), args)
    return 0
