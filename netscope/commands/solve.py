"""``netscope solve [MODEL]``: which input sizes the model accepts, per axis, probed size by size."""

from __future__ import annotations

import argparse
import sys
import json

from netscope.commands.common import add_model_arguments, add_output_file_arguments, emit, resolve_from_args
from netscope.errors import EXIT_FINDINGS, EXIT_OK

HELP = ("find which input sizes a model accepts, per spatial axis: every size up to --max-size is run on the "
        "meta device, and the sizes where the verdict changes are confirmed on the CPU")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser, with_inputs=False)
    parser.add_argument("--input", "-i", action="append", default=[], metavar="SHAPE[:DTYPE]",
                        help="reference input (batch and channels are kept; the trailing dimensions vary), "
                        "e.g. 1,3,224,224")
    parser.add_argument("--spatial", type=int, default=None, metavar="N",
                        help="how many trailing dimensions vary (default: all after batch, channels; the length of "
                        "integer token ids of shape batch,length)")
    parser.add_argument("--max-size", type=int, default=None, metavar="S",
                        help="largest size to probe (default: 4x the reference size, at least 64)")
    parser.add_argument("--max-probes", type=int, default=4000, metavar="N",
                        help="most runs to spend; a scan cut short says which sizes it probed")
    parser.add_argument("--square-only", action="store_true",
                        help="scan all spatial axes together only, not each axis on its own")
    parser.add_argument("--no-real", action="store_true",
                        help="never run the real model on the CPU (meta and fake tensors only)")
    parser.add_argument("--format", "-f", default="text", choices=("text", "json"), help="output format")
    add_output_file_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from netscope.commands.common import check_output_paths
    from netscope.inputs import parse_inputs
    from netscope.run.shapes import format_shape_tree
    from netscope.analyses.solver import solve_input_size

    check_output_paths(args, (args.output,))
    spec = parse_inputs(args.input)  # validate before building the model
    from netscope.run.prepare import materialized

    resolved = resolve_from_args(args, empty_weights=True)  # falls back to fake, then real, builds
    spec = spec or resolved.inputs
    model = materialized(resolved.module, spec)  # lazy modules: sized by one pass on --input, then solved
    if model is not resolved.module and not args.quiet:
        sys.stderr.write(f"netscope: note: {resolved.label} has lazy modules; they were sized by one pass on "
                         f"{format_shape_tree([s.shape for s in spec.args])} and the sizes below are for that model\n")
    real = None if args.no_real else _real_builder(args, model, spec)
    result = solve_input_size(model, spec, spatial=args.spatial, max_size=args.max_size,
                              max_probes=args.max_probes, real_model=real, per_axis=not args.square_only)
    if args.format == "json":
        emit(json.dumps(dict(result.to_dict(), model=resolved.label), indent=2), args)
    else:
        emit(f"{resolved.label}: {result.render()}", args)
    return EXIT_OK if result.valid_sizes else EXIT_FINDINGS


def _real_builder(args: argparse.Namespace, structural, spec):
    """A callable building the model with real (random) weights on the CPU (lazy modules sized by one pass
    on ``spec``, as the structural model was), or None when they would not fit."""
    from netscope.run.devices import available_memory_bytes
    from netscope.run.no_memory import weight_bytes
    from netscope.analyses.solver import REAL_PARAMS_LIMIT

    available = available_memory_bytes("cpu")
    if sum(p.numel() for p in structural.parameters()) > REAL_PARAMS_LIMIT:
        return None
    if available is not None and 2 * weight_bytes(structural) > available:
        return None
    def build():
        import torch

        from netscope.run.prepare import uninitialized_lazy

        model = resolve_from_args(args, note=False).module
        if uninitialized_lazy(model):
            inputs, kwargs = spec.for_model(model).build(torch.device("cpu"), "float32")
            with torch.no_grad():
                model(*inputs, **kwargs)
        return model

    return build
