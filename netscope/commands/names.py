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


def run(args: argparse.Namespace) -> int:
    from netscope.naming import audit_names
    from netscope.render.rows import check_format

    check_format(args.format, args.table_style)  # before building the model
    check_output_paths(args, (args.output,))
    resolved = resolve_from_args(args, empty_weights=True)  # naming is structural: meta weights suffice
    report = replace(audit_names(resolved.module, label=resolved.label), build=resolved.build)
    emit(report.render(args.format, args.table_style, findings_only=args.findings_only), args)
    return 0
