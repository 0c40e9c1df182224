"""``netscope diff CKPT MODEL``: missing, unexpected and shape-mismatched keys with their likely reason and
the mapping netscope proposes, from checkpoint headers and a meta-device model (no tensor bytes read)."""

from __future__ import annotations

import argparse
import sys

from netscope.commands.common import add_model_arguments
from netscope.commands.remap import (add_rule_arguments, check_min_coverage_option, collect_rules, outcome,
                                     refuse_distributed_pieces, render_report)

HELP = ("compare a checkpoint's keys with a model's, with reasons and a proposed mapping "
        "(exit 1 when it would not load strictly as-is)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", metavar="CKPT", help="checkpoint file or directory (read from headers only)")
    add_model_arguments(parser, with_inputs=False)
    add_rule_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from netscope.checkpoints import inspect_checkpoint
    from netscope.commands.common import model_for_keys
    from netscope.errors import EXIT_FINDINGS
    from netscope.remapping import DiffReport, plan_mapping
    from netscope.remapping.layout import layout_from_metas, model_layout
    from netscope.render.rows import check_format

    check_format(args.format, args.table_style)
    check_min_coverage_option(args)
    rules = collect_rules(args)
    info = inspect_checkpoint(args.checkpoint, weights_only=not args.unsafe_pickle)
    refuse_distributed_pieces(info.notes)
    model = model_for_keys(args)
    plan, coverage = plan_mapping(layout_from_metas(info.tensors), model_layout(model), rules=rules)
    report = DiffReport(plan, coverage, args.checkpoint, type(model).__name__, tuple(info.notes))
    sys.stdout.write(render_report(report, args).rstrip("\n") + "\n")
    code = outcome(report, args)
    return code if code else (0 if report.clean else EXIT_FINDINGS)
