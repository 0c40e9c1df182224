"""``netscope diff CKPT MODEL``: missing, unexpected and shape-mismatched keys with their likely reason and
the mapping netscope proposes, from checkpoint headers and a meta-device model (no tensor bytes read).
``netscope diff CKPT OTHER_CKPT`` compares two checkpoints the same way, the second one's keys as the target."""

from __future__ import annotations

import argparse
import os
import sys

from netscope.commands.common import add_model_arguments, add_output_file_arguments, check_output_paths, emit
from netscope.commands.remap import add_rule_arguments, check_min_coverage_option, collect_rules, render_report

HELP = ("compare a checkpoint's keys with a model's (or another checkpoint's), with reasons and a proposed "
        "mapping (exit 1 when it would not load strictly as-is)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", metavar="CKPT", help="checkpoint file or directory (read from headers only)")
    add_model_arguments(parser, with_inputs=False)
    for action in parser._actions:
        if action.dest == "model":
            action.help += "; or a second checkpoint (file or path/to/dir), whose keys are then the target"
    add_rule_arguments(parser)
    add_output_file_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Exit 0 when the checkpoint loads strictly as-is, 1 when not (or below --min-coverage), 2 bad input."""
    from netscope.commands.common import model_for_keys
    from netscope.errors import EXIT_FINDINGS
    from netscope.remapping import check_coverage, diff
    from netscope.render.rows import check_format

    check_format(args.format, args.table_style)
    check_min_coverage_option(args)
    check_output_paths(args, (args.output,))
    rules = collect_rules(args)
    # a second checkpoint, unless the first is no file at all (then the arguments are swapped: model_for_keys says so)
    second = _is_checkpoint_path(args.model) and os.path.exists(args.checkpoint)
    model = args.model if second else model_for_keys(args)
    report = diff(args.checkpoint, model, rules=rules, weights_only=not args.unsafe_pickle, key=args.key)
    emit(render_report(report, args).rstrip("\n") + "\n", args)
    check_coverage(report, args.min_coverage)
    problems = [p for p in report.strict_problems() if "map to nothing" not in p]
    if problems:
        sys.stderr.write("netscope: a strict load would fail: " + "; ".join(problems) + "\n")
    elif not report.clean and not getattr(args, "quiet", False):
        sys.stderr.write(f"netscope: the checkpoint does not load strictly as-is ({len(report.missing_by_name)} "
                         f"missing, {len(report.unexpected_by_name)} unexpected by exact name); the mapped one "
                         + ("would match the second one's keys: `netscope remap CKPT MODEL` writes it for that "
                            "checkpoint's model" if second else "would: write it with `netscope remap`")
                         + (f" (the {len(report.unused)} tensor(s) that map to nothing go to --unmatched-out FILE or "
                            "are dropped with --drop-unmatched)" if report.unused else "") + "\n")
    return 0 if report.clean else EXIT_FINDINGS


def _is_checkpoint_path(spec) -> bool:
    """The second argument names a checkpoint (an existing file that is not Python, or a path to a directory),
    not a model: a bare name (``resnet18``) stays a model name even where a folder of that name exists."""
    if not spec or not os.path.exists(spec):
        return False
    if os.path.isdir(spec):
        return os.sep in spec or spec.startswith(".")
    return not spec.endswith(".py")
