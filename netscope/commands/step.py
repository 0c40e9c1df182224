"""netscope step: cost and memory of one training step (forward, backward, optimizer), per rank when sharded."""

from __future__ import annotations

import sys

from netscope.commands.common import add_model_arguments, add_output_arguments, emit, say_written

HELP = "one training step planned on fake tensors: backward mult-adds, params/grads/optimizer/activation bytes, peak"


def add_arguments(parser) -> None:
    from netscope.analyses.step.options import OPTIMIZERS, PRECISIONS

    add_model_arguments(parser, with_inputs=False)
    parser.add_argument("--input", "-i", action="append", default=[], metavar="[NAME=]SHAPE[:DTYPE]",
                        help="dummy input shape per rank, e.g. 8,3,224,224 or 8,1024:int64 (repeat for several inputs; "
                        "NAME=SHAPE for a keyword input)")
    add_output_arguments(parser)
    parser.add_argument("--optimizer", default="adamw", choices=tuple(OPTIMIZERS),
                        help="optimizer whose state is counted (default adamw)")
    parser.add_argument("--precision", default="fp32", choices=tuple(PRECISIONS),
                        help="fp32, or torch.autocast mixed precision (params, grads and optimizer state stay fp32)")
    ranks = parser.add_mutually_exclusive_group()
    ranks.add_argument("--fsdp", type=int, default=None, metavar="N", help="per-rank figures of an N-rank FSDP2 job")
    ranks.add_argument("--ddp", type=int, default=None, metavar="N", help="per-rank figures of an N-rank DDP job")
    parser.add_argument("--activation-checkpointing", action="store_true",
                        help="checkpoint each block of the model's largest nn.ModuleList (torch.utils.checkpoint)")
    parser.add_argument("--keep-grads", action="store_true",
                        help="the loop zeroes gradients in place (zero_grad(set_to_none=False)): they stay allocated "
                        "through the forward")
    parser.add_argument("--depth", "-d", type=int, default=None, metavar="N", help="show rows down to this depth")
    parser.add_argument("--columns", "-c", default=None, metavar="COLS",
                        help="comma-separated columns, e.g. layer,type,macs,bwd_macs,own_bwd_macs,saved,own_saved")
    parser.add_argument("--html", default=None, metavar="FILE", help="also write an HTML page (memory split per rank)")


def run(args) -> int:
    from netscope.commands.common import (check_output_paths, check_table_options, command_inputs, resolve_from_args,
                                          say_not_written)
    from netscope.inputs import parse_inputs
    from netscope.analyses.step.api import run_step_report
    from netscope.analyses.step.options import StepOptions

    check_table_options(args, step=True)
    options = StepOptions(optimizer=args.optimizer, precision=args.precision, fsdp=args.fsdp, ddp=args.ddp,
                          activation_checkpointing=args.activation_checkpointing, keep_grads=args.keep_grads)
    inputs = parse_inputs(args.input)
    check_output_paths(args, (args.output, args.html))
    resolved = resolve_from_args(args, empty_weights=True)  # fake tensors: the weights are never needed
    inputs, input_notes = command_inputs(inputs, resolved)  # as summary does
    if not args.quiet:
        for note in input_notes:
            sys.stderr.write(f"netscope: note: {note}\n")
    try:
        report = run_step_report(resolved.module, inputs, options, label=resolved.label)
    except Exception:
        # files asked for: say there are none rather than leave it unsaid (the error follows)
        say_not_written(args, ("output", "html"), "the step could not be planned (the error below)")
        raise
    emit(report.render(args.format, columns=args.columns, depth=args.depth, table_style=args.table_style), args)
    if args.html:
        from netscope.fileio import write_text_atomic

        write_text_atomic(args.html, report.to_html(), force=args.force)
        say_written(args, args.html)
    return 0
