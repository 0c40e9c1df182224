"""``netscope remap CKPT MODEL -o OUT``: rename a checkpoint's keys to a model's naming and write it.

Headers only with ``--dry-run`` (no tensor bytes are read). The input file is never overwritten unless
``--in-place`` is given (``--force`` only allows replacing some *other* existing file).
"""

from __future__ import annotations

import argparse
import os
import sys

from netscope.commands.common import add_model_arguments
from netscope.render.rows import TEXT_FORMATS

HELP = "rename a checkpoint's keys to match a model (prefixes, wrappers, rules, renumbering, structure) and write it"


def add_rule_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rule", action="append", default=[], metavar="REGEX=REPLACEMENT",
                        help="rename rule, repeatable, applied in order (each to the previous result); split on "
                        "the last '=', e.g. --rule '^backbone\\.=' or --rule 'features\\.3\\.=features.2.'")
    parser.add_argument("--rules", default=None, metavar="FILE",
                        help="rules file: REGEX=REPLACEMENT lines, or a plan JSON written by --save-plan")
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
                        help="where to write the renamed checkpoint (.pt/.pth/.bin via torch.save, or .safetensors)")
    parser.add_argument("--force", action="store_true",
                        help="replace OUT and the --save-plan file if they exist (never the input itself)")
    parser.add_argument("--in-place", action="store_true",
                        help="allow OUT to be the input file (replaced atomically); required to overwrite CKPT")
    add_rule_arguments(parser)
    parser.add_argument("--plan", default=None, metavar="PLAN.json", help="replay the per-key decisions of a saved plan")
    parser.add_argument("--invert", action="store_true",
                        help="with --plan: replay it backwards (model naming to checkpoint naming)")
    parser.add_argument("--save-plan", default=None, metavar="PLAN.json",
                        help="write the per-key decisions (with reason codes) and compact rules as JSON")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the plan without reading tensor data or writing anything")


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


def refuse_distributed_pieces(notes) -> None:
    """A per-rank shard or an unconsolidated FSDP file is answered with how to consolidate it."""
    from netscope.errors import CheckpointError

    for note in notes:
        if "onsolidate first" in note:
            raise CheckpointError(note)


def render_report(report, args: argparse.Namespace) -> str:
    from netscope.render.rows import check_format

    check_format(args.format, args.table_style)
    return report.render(args.format, table_style=args.table_style, include_exact=args.all)


def outcome(report, args: argparse.Namespace) -> int:
    """Exit code: 1 below --min-coverage or when a strict load would fail, else 0."""
    from netscope.errors import EXIT_FINDINGS
    from netscope.remapping import check_coverage

    check_coverage(report, args.min_coverage)  # raises CoverageError (exit 1)
    problems = [p for p in report.strict_problems() if "map to nothing" not in p]
    if problems:
        sys.stderr.write("netscope: a strict load would fail: " + "; ".join(problems) + "\n")
        return EXIT_FINDINGS
    return 0


def _same_file(a: str, b: str) -> bool:
    if os.path.exists(a) and os.path.exists(b):
        return os.path.samefile(a, b)
    return os.path.realpath(a) == os.path.realpath(b)


def run(args: argparse.Namespace) -> int:
    from netscope.commands.common import check_output_paths, model_for_keys
    from netscope.errors import UsageError
    from netscope.remapping import RemapReport, check_coverage, plan_mapping
    from netscope.remapping.plan import write_plan

    from netscope.render.rows import check_format

    check_format(args.format, args.table_style)
    if args.invert and not args.plan:
        raise UsageError("--invert replays a saved plan backwards; give the plan with --plan PLAN.json")
    if not args.dry_run and not args.out:
        raise UsageError("give the output file with -o OUT (e.g. -o remapped.pt), or use --dry-run to only print the plan")
    if args.out and _same_file(args.out, args.checkpoint) and not args.in_place:
        raise UsageError(f"-o {args.out} is the input checkpoint itself; choose another file name, or pass "
                         "--in-place to replace the input (written atomically)")
    check_min_coverage_option(args)
    in_place = args.out and _same_file(args.out, args.checkpoint)
    check_output_paths(args, (args.save_plan, None if args.dry_run or in_place else args.out))
    rules = collect_rules(args)
    model = model_for_keys(args)
    weights_only = not args.unsafe_pickle
    from netscope.remapping.layout import layout_from_metas, model_layout, source_layout

    target = model_layout(model)
    if args.dry_run:
        from netscope.checkpoints import inspect_checkpoint

        info = inspect_checkpoint(args.checkpoint, weights_only=weights_only)
        refuse_distributed_pieces(info.notes)
        plan, coverage = plan_mapping(layout_from_metas(info.tensors), target, rules=rules, plan=args.plan,
                                      invert=args.invert)
        report = RemapReport(plan, coverage, args.checkpoint, type(model).__name__, tuple(info.notes) + ("dry run: nothing written",))
    else:
        from netscope.checkpoints import load_checkpoint, save_checkpoint
        from netscope.remapping.apply import apply_plan, rebuild_container

        loaded = load_checkpoint(args.checkpoint, weights_only=weights_only)
        refuse_distributed_pieces(loaded.info.notes)
        plan, coverage = plan_mapping(source_layout(loaded.state_dict), target, rules=rules, plan=args.plan,
                                      invert=args.invert)
        report = RemapReport(plan, coverage, args.checkpoint, type(model).__name__, tuple(loaded.info.notes))
        check_coverage(report, args.min_coverage)  # below the threshold: nothing is written
        new_state_dict = apply_plan(loaded.state_dict, plan, target.tensors)
        notes = list(report.notes)
        renamed = 0
        if args.out.lower().endswith(".safetensors"):
            tensors = {k: v for k, v in new_state_dict.items() if _is_tensor(v)}
            dropped = len(new_state_dict) - len(tensors)
            if dropped or loaded.info.state_dict_path:
                notes.append("a .safetensors file holds tensors only: the other entries of the container were not written")
            container = tensors
        else:
            container, renamed = rebuild_container(loaded.container, tuple(loaded.info.state_dict_path),
                                                   new_state_dict, plan)
        save_checkpoint(container, args.out, force=args.force or args.in_place)
        notes.append(f"written: {args.out}")
        report = RemapReport(plan, coverage, args.checkpoint, type(model).__name__, tuple(notes), renamed)
    if args.save_plan:
        write_plan(report.plan, args.save_plan, force=args.force)
    sys.stdout.write(render_report(report, args).rstrip("\n") + "\n")
    return outcome(report, args)


def _is_tensor(value) -> bool:
    import torch

    return isinstance(value, torch.Tensor)
