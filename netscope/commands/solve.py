"""``netscope solve [MODEL]``: which input sizes the model accepts, confirmed on the meta device."""

from __future__ import annotations

import argparse
import sys
import json

from netscope.commands.common import add_model_arguments, emit
from netscope.errors import EXIT_FINDINGS, EXIT_OK

HELP = "find the smallest input size a model accepts and which larger sizes work (runs on the meta device)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser, with_inputs=False)
    parser.add_argument("--input", "-i", action="append", default=[], metavar="SHAPE[:DTYPE]",
                        help="reference input (batch and channels are kept; the trailing dimensions vary), "
                        "e.g. 1,3,224,224")
    parser.add_argument("--spatial", type=int, default=None, metavar="N",
                        help="how many trailing dimensions to vary together (default: all after batch, channels)")
    parser.add_argument("--max-size", type=int, default=None, metavar="S", help="largest size to try")
    parser.add_argument("--max-probes", type=int, default=400, metavar="N", help="most meta-device runs to spend")
    parser.add_argument("--format", "-f", default="text", choices=("text", "json"), help="output format")
    parser.add_argument("--output", "-o", default=None, metavar="FILE", help="write to FILE instead of stdout")
    parser.add_argument("--force", action="store_true", help="overwrite an existing --output file")


def run(args: argparse.Namespace) -> int:
    from netscope.commands.common import check_output_paths
    from netscope.inputs import parse_inputs
    from netscope.shapes import format_shape_tree
    from netscope.solver import NONE, solve_input_size

    check_output_paths(args, (args.output,))
    spec = parse_inputs(args.input)  # validate before building the model
    from netscope.commands.common import resolve_no_memory
    from netscope.run import materialized

    resolved = resolve_no_memory(args)
    spec = spec or resolved.inputs
    model = materialized(resolved.module, spec)  # lazy modules: sized by one pass on --input, then solved
    if model is not resolved.module and not args.quiet:
        sys.stderr.write(f"netscope: note: {resolved.label} has lazy modules; they were sized by one pass on "
                         f"{format_shape_tree([s.shape for s in spec.args])} and the sizes below are for that model\n")
    result = solve_input_size(model, spec, spatial=args.spatial, max_size=args.max_size,
                              max_probes=args.max_probes)
    if args.format == "json":
        from netscope.render.rows import json_document

        emit(json.dumps(json_document("solve", dict(result.to_dict(), model=resolved.label)), indent=2), args)
    else:
        emit(f"{resolved.label}: {result.render()}", args)
    return EXIT_FINDINGS if result.pattern == NONE else EXIT_OK
