"""``netscope remap CKPT MODEL -o OUT``: rename a checkpoint's keys to a model's naming and write it.

Headers only with ``--dry-run`` (no tensor bytes are read). The input file is never overwritten unless
``--in-place`` is given (``--force`` only allows replacing some *other* existing file).
"""

from __future__ import annotations

import argparse
import sys

from netscope.commands.common import add_model_arguments
from netscope.fileio import write_stdout
from netscope.render.rows import TEXT_FORMATS

HELP = "rename a checkpoint's keys to match a model (prefixes, wrappers, rules, renumbering, structure) and write it"


def add_rule_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rule", action="append", default=[], metavar="REGEX=REPLACEMENT",
                        help="rename rule, repeatable, applied in order (each to the previous result); split on "
                        "the last '=', e.g. --rule '^backbone\\.=' or --rule 'features\\.3\\.=features.2.'")
    parser.add_argument("--rules", default=None, metavar="FILE",
                        help="rules file: REGEX=REPLACEMENT lines, or a plan JSON written by --save-plan")
    parser.add_argument("--key", default=None, metavar="NAME",
                        help="the dict of tensors to use inside the checkpoint, e.g. state_dict_ema or model.ema "
                        "(default: found automatically; the other candidates are listed in the notes)")
    parser.add_argument("--unsafe-pickle", action="store_true",
                        help="allow arbitrary pickled objects (weights_only=False): only for files you trust, "
                        "since unpickling can run code stored in the file")
    parser.add_argument("--format", "-f", default="table", choices=TEXT_FORMATS, help="report format")
    parser.add_argument("--table-style", default="simple", metavar="STYLE", help="tabulate style for --format table")
    parser.add_argument("--all", action="store_true", help="list exact matches too (default: only the rest)")
    parser.add_argument("--min-coverage", type=float, default=None, metavar="FRACTION",
                        help="fail (exit 1) when less than this fraction of the model's parameter elements "
                        "would be loaded, e.g. 0.99")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", metavar="CKPT", help="checkpoint file or directory to read")
    add_model_arguments(parser, with_inputs=False)
    parser.add_argument("-o", "--out", default=None, metavar="OUT",
                        help="where to write the renamed checkpoint (.pt/.pth/.bin/.ckpt/.pth.tar via torch.save, "
                        "or .safetensors)")
    parser.add_argument("--force", action="store_true",
                        help="replace OUT and the --save-plan file if they exist (never the input itself)")
    parser.add_argument("--in-place", action="store_true",
                        help="allow OUT to be the input file (replaced atomically); required to overwrite CKPT; "
                        "refused when a tensor would be dropped")
    add_rule_arguments(parser)
    parser.add_argument("--plan", default=None, metavar="PLAN.json", help="replay the per-key decisions of a saved plan")
    parser.add_argument("--invert", action="store_true",
                        help="with --plan: replay it backwards (model naming to checkpoint naming)")
    parser.add_argument("--save-plan", default=None, metavar="PLAN.json",
                        help="write the per-key decisions (with reason codes) and compact rules as JSON")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the plan without reading tensor data or writing anything")
    parser.add_argument("--unmatched-out", default=None, metavar="FILE",
                        help="write the checkpoint tensors that do not go into the model to FILE (original keys); "
                        "default: keep them in OUT's container under 'netscope_unmatched' where it has one")
    parser.add_argument("--drop-unmatched", action="store_true",
                        help="drop the checkpoint tensors that do not go into the model (they are listed)")
    parser.add_argument("--state-dict-only", action="store_true",
                        help="write the state dict alone, without the container's other entries (optimizer, "
                        "EMA, epoch...); needed for a .safetensors OUT from a container")


def collect_rules(args: argparse.Namespace):
    from netscope.remapping.rules import parse_rule, read_rules_file

    rules = [parse_rule(text) for text in args.rule]
    if getattr(args, "rules", None):
        rules.extend(read_rules_file(args.rules))
    return rules


def check_min_coverage_option(args: argparse.Namespace) -> None:
    """``--min-coverage`` must be a fraction; checked before any file is read."""
    from netscope.errors import UsageError

    value = args.min_coverage
    if value is not None and not 0.0 <= value <= 1.0:
        raise UsageError(f"--min-coverage {value} is not a fraction between 0 and 1; write it like --min-coverage 0.99")


def render_report(report, args: argparse.Namespace) -> str:
    from netscope.render.rows import check_format

    check_format(args.format, args.table_style)
    return report.render(args.format, table_style=args.table_style, include_exact=args.all)


def outcome(report, args: argparse.Namespace) -> int:
    """Exit code of ``remap``: 0 once written (or planned); below --min-coverage a CoverageError (exit 1)
    was raised before anything was written."""
    problems = [p for p in report.strict_problems() if "map to nothing" not in p]
    if problems and not getattr(args, "quiet", False):  # a note, like every other: -q silences it
        sys.stderr.write("netscope: note: a strict load of the result would fail: " + "; ".join(problems) + "\n")
    return 0


def run(args: argparse.Namespace) -> int:
    from netscope.commands.common import check_output_paths, model_for_keys
    from netscope.remapping import remap_file
    from netscope.remapping.files import same_file
    from netscope.remapping.plan import write_plan
    from netscope.render.rows import check_format

    check_format(args.format, args.table_style)
    check_min_coverage_option(args)
    in_place = bool(args.out) and same_file(args.out, args.checkpoint)
    check_output_paths(args, (args.save_plan, args.unmatched_out,
                              None if args.dry_run or in_place else args.out))
    rules = collect_rules(args)
    model = model_for_keys(args)
    report = remap_file(args.checkpoint, model, args.out, rules=rules, plan=args.plan, invert=args.invert,
                        key=args.key, weights_only=not args.unsafe_pickle, min_coverage=args.min_coverage,
                        drop_unmatched=args.drop_unmatched, unmatched_out=args.unmatched_out,
                        state_dict_only=args.state_dict_only, in_place=args.in_place, force=args.force,
                        dry_run=args.dry_run)
    if args.save_plan:
        write_plan(report.plan, args.save_plan, force=args.force)
    write_stdout(render_report(report, args).rstrip("\n") + "\n")
    return outcome(report, args)
