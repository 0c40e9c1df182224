"""``netscope diff CKPT MODEL``: missing, unexpected and shape-mismatched keys with their likely reason and
the mapping netscope proposes, from checkpoint headers and a meta-device model (no tensor bytes read)."""

from __future__ import annotations

import argparse
import sys

from netscope.commands.common import add_model_arguments
from netscope.fileio import command_stdout
from netscope.commands.remap import add_rule_arguments, check_min_coverage_option, collect_rules, render_report

HELP = ("compare a checkpoint's keys with a model's, with reasons and a proposed mapping "
        "(exit 1 when it would not load strictly as-is)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", metavar="CKPT", help="checkpoint file or directory (read from headers only)")
    add_model_arguments(parser, with_inputs=False)
    add_rule_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Exit 0 when the checkpoint loads strictly as-is, 1 when not (or below --min-coverage), 2 bad input."""
    from netscope.commands.common import model_for_keys
    from netscope.errors import EXIT_FINDINGS
    from netscope.remapping import check_coverage, diff
    from netscope.render.rows import check_format

    check_format(args.format, args.table_style)
    check_min_coverage_option(args)
    rules = collect_rules(args)
    model = model_for_keys(args)
    report = diff(args.checkpoint, model, rules=rules, weights_only=not args.unsafe_pickle, key=args.key)
    command_stdout().write(render_report(report, args).rstrip("\n") + "\n")
    check_coverage(report, args.min_coverage)
    problems = [p for p in report.strict_problems() if "map to nothing" not in p]
    if problems:
        sys.stderr.write("netscope: a strict load would fail: " + "; ".join(problems) + "\n")
    elif not report.clean and not getattr(args, "quiet", False):
        sys.stderr.write(f"netscope: the checkpoint does not load strictly as-is ({len(report.missing_by_name)} "
                         f"missing, {len(report.unexpected_by_name)} unexpected by exact name); the mapped one "
                         "would: write it with `netscope remap`"
                         + (f" (the {len(report.unused)} tensor(s) that map to nothing go to --unmatched-out FILE or "
                            "are dropped with --drop-unmatched)" if report.unused else "") + "\n")
    return 0 if report.clean else EXIT_FINDINGS
